//! Portarium events against the st2 emulator on 127.0.0.1: `POST /v1/events` (and the same
//! events over a real nats-server) firing st2 rules, and lifecycle events from real execution
//! snapshots in any order.

use std::sync::Arc;
use std::time::Duration;

use crate::support::SendJson;
use futures_util::stream;
use portarium_st2::config::Config;
use portarium_st2::events::CloudEvent;
use portarium_st2::events::inbound::register_trigger_types;
use portarium_st2::events::lifecycle::{self, LifecycleTracker};
use portarium_st2::server::DispatchState;
use portarium_st2::server::events::{EventsState, router};
use serde_json::{Value, json};
use st2_client::{Execution, St2Client};
use st2_emulator::{Emulator, EmulatorOptions};

const KEY: &str = "events-key";

struct Stack {
    emu: Emulator,
    base: String,
    http: reqwest::Client,
    state: EventsState,
}

async fn stack() -> Stack {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let yaml = format!(
        "st2: {{base_url: '{}', api_key: {KEY}}}\n\
         tenants:\n  - {{id: tenant-a, api_token: token-a}}\n\
         events:\n  inbound:\n    max_bytes: 2048\n    classes:\n\
         \x20     - type: com.portarium.run.RunStarted\n        trigger: portarium.event\n\
         \x20     - type: com.portarium.approval.ApprovalGranted\n        trigger: portarium.event\n\
         \x20       schema: {{type: object, required: [approvalId], properties: {{approvalId: {{type: string}}}}}}\n\
         \x20     - type: com.portarium.trigger.TriggerFired\n        webhook: portarium/events\n        max_bytes: 4096\n",
        emu.base_url()
    );
    let config = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap();
    let client = St2Client::from_config(&config.st2).unwrap();
    // What App::build does at start: a stock st2 has no portarium.event.
    register_trigger_types(&client, &config.events.inbound.classes)
        .await
        .unwrap();
    let (state, consumer) = EventsState::start(
        &config.events,
        DispatchState::new(&config.st2, &config.tenants, &config.dispatch, &client).unwrap(),
    );
    assert!(consumer.is_none(), "no NATS consumer unless configured");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(portarium_st2::server::serve(
        listener,
        router(state.clone()),
        std::future::pending(),
    ));
    Stack {
        emu,
        base,
        http: reqwest::Client::new(),
        state,
    }
}

fn event(id: &str, ty: &str, data: Value) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "portarium.control-plane", "type": ty,
           "subject": "runs/run-9", "time": "2026-11-25T08:00:00Z",
           "datacontenttype": "application/json", "data": data,
           "tenantid": "tenant-a", "correlationid": "corr-9", "runid": "run-9"})
}

impl Stack {
    async fn send(&self, token: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/events", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn st2_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/api/v1/{path}", self.emu.base_url()))
            .header("St2-Api-Key", KEY)
            .send_json()
            .await
    }

    /// Executions the emulator holds, waiting until the rules engine's have completed.
    async fn executions_done(&self) -> Vec<Value> {
        for _ in 0..200 {
            let list = self.st2_get("executions").await;
            let all = list.as_array().unwrap().clone();
            if all
                .iter()
                .all(|e| e["status"] == "succeeded" || e["status"] == "failed")
            {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("executions did not complete");
    }

    /// The one execution st2 holds, once done: a run of rule `rule` that printed `stdout`.
    async fn the_rule_run(&self, rule: &str, stdout: &str) -> Value {
        let mut executions = self.executions_done().await;
        assert_eq!(
            executions.len(),
            1,
            "one rule run, whatever the deliveries: {executions:#?}"
        );
        let e = executions.remove(0);
        assert_eq!(e["context"]["rule"]["name"], rule);
        assert_eq!(e["result"]["stdout"].as_str().unwrap().trim(), stdout);
        e
    }

    fn webhook_calls(&self) -> usize {
        self.emu
            .request_log()
            .iter()
            .filter(|r| r.path.contains("/webhooks/"))
            .count()
    }
}

#[tokio::test]
async fn declared_class_fires_the_rule_once_even_when_delivered_twice() {
    let s = stack().await;
    let ev = event(
        "ev-1",
        "com.portarium.run.RunStarted",
        json!({"note": "hi"}),
    );
    let (status, body) = s.send("token-a", &ev).await;
    assert_eq!((status, &body["status"]), (202, &json!("fired")), "{body}");
    assert_eq!(body["target"], "trigger:portarium.event");
    let (status, body) = s.send("token-a", &ev).await;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("duplicate")),
        "{body}"
    );

    let e = s
        .the_rule_run(
            "portarium_event_echo",
            "com.portarium.run.RunStarted ev-1 for tenant-a",
        )
        .await;
    assert_eq!(e["action"]["ref"], "core.echo");
    assert_eq!(e["status"], "succeeded");
    let instances = s.st2_get("triggerinstances").await;
    assert_eq!(instances.as_array().unwrap().len(), 1);
    assert_eq!(instances[0]["trigger"], "portarium.event");
    assert_eq!(instances[0]["payload"]["correlationid"], "corr-9");
    assert_eq!(e["context"]["trigger_instance"]["id"], instances[0]["id"]);
    let traces = s.st2_get("traces?trace_tag=portarium-event-ev-1").await;
    assert_eq!(traces[0]["action_executions"][0]["object_id"], e["id"]);
    assert_eq!(s.webhook_calls(), 1);
}

#[tokio::test]
async fn a_class_mapped_to_a_custom_webhook_runs_its_rule() {
    let s = stack().await;
    let (status, body) = s
        .send(
            "token-a",
            &event("ev-w", "com.portarium.trigger.TriggerFired", json!({})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    s.the_rule_run("portarium_webhook_echo", "webhook ev-w")
        .await;
}

#[tokio::test]
async fn refused_events_name_the_problem_and_never_reach_st2() {
    let s = stack().await;
    let (status, body) = s
        .send(
            "token-a",
            &event("ev-2", "com.portarium.run.RunFailed", json!({})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.contains("com.portarium.run.RunFailed") && msg.contains("com.portarium.run.RunStarted"),
        "{msg}"
    );
    assert_eq!(body["declared"].as_array().unwrap().len(), 3);

    let (status, body) = s
        .send(
            "token-a",
            &event(
                "ev-3",
                "com.portarium.approval.ApprovalGranted",
                json!({"approvalId": 5}),
            ),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("data.approvalId: the value is not of type \"string\""),
        "{body}"
    );

    let big = event(
        "ev-4",
        "com.portarium.run.RunStarted",
        json!({"pad": "x".repeat(3000)}),
    );
    let (status, body) = s.send("token-a", &big).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("2048"), "{body}");

    let mut foreign = event("ev-5", "com.portarium.run.RunStarted", json!({}));
    foreign["tenantid"] = json!("tenant-b");
    assert_eq!(s.send("token-a", &foreign).await.0, 403);
    let mut bad = event("ev-6", "com.portarium.run.RunStarted", json!({}));
    bad["specversion"] = json!("0.3");
    let (status, body) = s.send("token-a", &bad).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("specversion"),
        "{body}"
    );
    assert_eq!(
        s.send(
            "wrong",
            &event("ev-7", "com.portarium.run.RunStarted", json!({}))
        )
        .await
        .0,
        401
    );

    assert_eq!(s.webhook_calls(), 0, "no refused event may reach st2");
    assert!(s.st2_get("executions").await.as_array().unwrap().is_empty());
}

/// Starts `action` through st2's API with our context and collects every distinct snapshot
/// GET returns until it completes.
async fn snapshots(s: &Stack, action: &str, params: Value) -> Vec<Arc<Execution>> {
    let created: Execution = s
        .http
        .post(format!("{}/api/v1/executions", s.emu.base_url()))
        .header("St2-Api-Key", KEY)
        .json(
            &json!({"action": action, "parameters": params, "context": {"portarium": {
            "tenant_id": "tenant-a", "run_id": "run-1", "action_id": "act-1",
            "correlation_id": "corr-1", "dispatch_key": "k1",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}),
        )
        .send_json()
        .await;
    let mut out = vec![Arc::new(created.clone())];
    for _ in 0..500 {
        let e: Execution = s
            .http
            .get(format!(
                "{}/api/v1/executions/{}",
                s.emu.base_url(),
                created.id
            ))
            .header("St2-Api-Key", KEY)
            .send_json()
            .await;
        if out.last().is_none_or(|l| l.log.len() != e.log.len()) {
            out.push(Arc::new(e.clone()));
        }
        if e.is_terminal() {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{action} did not complete");
}

async fn events_of(snaps: Vec<Arc<Execution>>) -> (Vec<CloudEvent>, LifecycleTracker) {
    let mut out = Vec::new();
    let tracker = lifecycle::run(
        stream::iter(snaps),
        LifecycleTracker::new(Default::default()),
        |e| {
            out.push(e);
            async {}
        },
    )
    .await;
    (out, tracker)
}

#[tokio::test]
async fn lifecycle_events_once_per_transition_in_any_order() {
    let s = stack().await;
    let snaps = snapshots(&s, "core.echo", json!({"message": "hi"})).await;
    assert!(snaps.len() >= 2, "several snapshots: {}", snaps.len());
    let (in_order, _) = events_of(snaps.clone()).await;
    let id = &snaps[0].id;
    let ids: Vec<&str> = in_order.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("st2:{id}:started"), format!("st2:{id}:succeeded")]
    );
    let done = &in_order[1];
    assert_eq!(done.event_type, "com.portarium.run.ActionCompleted");
    assert_eq!(done.subject.as_deref(), Some("runs/run-1"));
    assert_eq!(
        (done.tenantid.as_str(), done.correlationid.as_str()),
        ("tenant-a", "corr-1")
    );
    assert_eq!(
        (done.runid.as_deref(), done.actionid.as_deref()),
        (Some("run-1"), Some("act-1"))
    );
    assert!(done.traceparent.is_some());
    assert_eq!(done.data.as_ref().unwrap()["result"]["stdout"], "hi");
    done.validate().expect("valid Portarium CloudEvent");

    // Newest first, each twice, then the oldest again: the same two events, same bytes.
    let mut shuffled: Vec<_> = snaps
        .iter()
        .rev()
        .flat_map(|e| [e.clone(), e.clone()])
        .collect();
    shuffled.push(snaps[0].clone());
    let (replayed, tracker) = events_of(shuffled.clone()).await;
    assert_eq!(replayed, in_order);
    assert_eq!(tracker.stats().emitted, 2);
    assert_eq!(tracker.stats().suppressed, shuffled.len() as u64 - 1);

    let failed = snapshots(&s, "examples.fail", json!({})).await;
    let (events, _) = events_of(failed).await;
    let last = events.last().unwrap();
    assert_eq!(last.event_type, "com.portarium.run.ActionFailed");
    assert_eq!(last.data.as_ref().unwrap()["errorKind"], "RemoteError");
}

#[tokio::test]
async fn executions_not_started_by_us_are_ignored_unless_their_pack_is_governed() {
    let s = stack().await;
    let created: Execution = s
        .http
        .post(format!("{}/api/v1/executions", s.emu.base_url()))
        .header("St2-Api-Key", KEY)
        .json(&json!({"action": "core.noop"}))
        .send_json()
        .await;
    let (events, tracker) = events_of(vec![Arc::new(created.clone())]).await;
    assert!(events.is_empty());
    assert_eq!(tracker.stats().ignored, 1);
    let config = portarium_st2::events::config::LifecycleConfig {
        governed_packs: vec!["core".into()],
        governed_tenant: Some("ops".into()),
        ..Default::default()
    };
    let mut tracker = LifecycleTracker::new(config);
    let mut running = created.clone();
    running.log.push(st2_client::models::LogEntry {
        timestamp: time::OffsetDateTime::now_utc(),
        status: st2_client::ExecutionStatus::Running,
    });
    let events = tracker.observe(&running);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tenantid, "ops");
    assert_eq!(
        events[0].subject.as_deref(),
        Some(format!("executions/{}", created.id).as_str())
    );
}

#[test]
fn events_config_is_checked_naming_the_field_and_takes_env_overrides() {
    let base = "st2: {base_url: 'http://127.0.0.1:1', api_key: k}\n";
    let bad = format!(
        "{base}events:\n  lifecycle: {{governed_packs: [itsm]}}\n  inbound:\n    classes:\n\
         \x20     - {{type: com.portarium.run.RunStarted}}\n\
         \x20     - {{type: other.Thing, trigger: a.b}}\n\
         \x20     - {{type: com.portarium.x.Y, trigger: a.b, schema: {{type: colour}}}}\n"
    );
    let err = Config::from_yaml(&bad, "test", std::iter::empty())
        .unwrap_err()
        .to_string();
    for field in [
        "events.lifecycle.governed_tenant",
        "events.inbound.classes[0].trigger",
        "events.inbound.classes[1].type",
        "events.inbound.classes[2].schema",
    ] {
        assert!(err.contains(field), "{field} missing from: {err}");
    }
    let env = [(
        "PORTARIUM_ST2_EVENTS__NATS__URL".to_string(),
        "nats://127.0.0.1:4222".to_string(),
    )];
    let config = Config::from_yaml(base, "test", env).unwrap();
    let nats = config.events.nats.expect("nats sink from env");
    assert_eq!(
        (nats.url.expose(), nats.stream.as_str()),
        ("nats://127.0.0.1:4222", "PORTARIUM_LIFECYCLE")
    );
}

#[tokio::test]
async fn events_from_portarium_jetstream_fire_rules_once() {
    let s = stack().await;
    let mut server = crate::support::nats::NatsServer::on_port(crate::support::free_port());
    server.start();
    let js = server.portarium_stream().await;
    let config: portarium_st2::events::config::InboundNatsConfig = serde_json::from_value(
        json!({"url": server.url(), "backoff": {"initial": "20ms", "max": "200ms"}}),
    )
    .unwrap();
    let consumer = s.state.spawn_nats_consumer(config);
    // Portarium's outbox may publish the same event twice (at least once), plus one of an
    // undeclared class.
    let ev = event("nats-1", "com.portarium.run.RunStarted", json!({}));
    for body in [
        &ev,
        &ev,
        &event("nats-2", "com.portarium.run.RunFailed", json!({})),
    ] {
        crate::support::nats::publish_event(&js, body).await;
    }
    let mut fired = Vec::new();
    for _ in 0..300 {
        fired = s
            .st2_get("triggerinstances")
            .await
            .as_array()
            .unwrap()
            .clone();
        if !fired.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let executions = s.executions_done().await;
    // Let the consumer see all three messages before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.st2_get("triggerinstances")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(executions.len(), 1);
    assert_eq!(fired[0]["payload"]["id"], "nats-1");
    let info = js
        .get_consumer_from_stream::<async_nats::jetstream::consumer::pull::Config, _, _>(
            "portarium-st2-inbound",
            "PORTARIUM_EVENTS",
        )
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.num_ack_pending, 0, "every message acknowledged");
    consumer.abort();
}
