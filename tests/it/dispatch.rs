//! The dispatch core against the st2 emulator over real HTTP: every Portarium error kind
//! from a real cause, checks made before st2 is called, and idempotency held in st2 itself.

use std::time::Duration;

use portarium_st2::core::dispatch::Dispatcher;
use portarium_st2::core::portarium::{DispatchRequest, ErrorKind};
use portarium_st2::core::{DispatchError, Dispatched};
use serde_json::{Value, json};
use st2_client::St2Client;
use st2_client::St2Config;
use st2_client::secret::Secret;
use st2_emulator::{Emulator, EmulatorOptions};

const KEY: &str = "dispatch-key";
const WAIT: Duration = Duration::from_secs(10);

async fn setup() -> (Emulator, Dispatcher) {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let d = Dispatcher::new(client(&emu, KEY));
    (emu, d)
}

fn client(emu: &Emulator, key: &str) -> St2Client {
    let mut cfg = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(key));
    cfg.retry.backoff.initial = Duration::from_millis(10);
    cfg.retry.backoff.max = Duration::from_millis(50);
    St2Client::from_config(&cfg).unwrap()
}

fn request(flow_ref: &str, payload: Value, idem: Option<&str>) -> DispatchRequest {
    DispatchRequest {
        action_id: "act-1".into(),
        idempotency_key: idem.map(String::from),
        tenant_id: "tenant-a".into(),
        run_id: "run-1".into(),
        correlation_id: "corr-1".into(),
        flow_ref: flow_ref.into(),
        payload: payload.as_object().cloned().unwrap_or_default(),
        trace: None,
        invocation_id: None,
    }
}

fn creates(emu: &Emulator) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v1/executions")
        .count()
}

fn failure(result: &Result<Dispatched, DispatchError>) -> (ErrorKind, &str) {
    match result {
        Err(DispatchError { kind, message, .. }) => (*kind, message.as_str()),
        ok => panic!("expected a failure, got {ok:?}"),
    }
}

#[tokio::test]
async fn success_returns_the_execution_result_as_output() {
    let (emu, d) = setup().await;
    let r = d
        .dispatch(
            &request("core.echo", json!({"message": "hi"}), Some("k1")),
            WAIT,
        )
        .await;
    let Ok(Dispatched { output, .. }) = r else {
        panic!("{r:?}")
    };
    assert_eq!(output["status"], "succeeded");
    assert_eq!(output["result"]["stdout"], "hi");
    let id = output["executionId"].as_str().unwrap();
    // Portarium's ids ride on the st2 execution, so it can be traced back to its run.
    let e = client(&emu, KEY).executions().get(id).send().await.unwrap();
    assert_eq!(e.context_at("portarium.run_id"), Some(&json!("run-1")));
    assert_eq!(
        e.context_at("portarium.correlation_id"),
        Some(&json!("corr-1"))
    );
    assert!(e.context_at("trace_context.trace_tag").is_some());
}

#[tokio::test]
async fn action_failure_and_st2_timeout_keep_st2s_words() {
    let (_emu, d) = setup().await;
    let r = d
        .dispatch(&request("examples.fail", json!({}), None), WAIT)
        .await;
    let (kind, message) = failure(&r);
    assert_eq!(kind, ErrorKind::RemoteError);
    assert!(
        message.contains("failed") && message.contains("boom"),
        "{message}"
    );

    let r = d
        .dispatch(
            &request("core.local", json!({"cmd": "sleep 5", "timeout": 1}), None),
            WAIT,
        )
        .await;
    assert_eq!(failure(&r).0, ErrorKind::Timeout, "{r:?}");
}

#[tokio::test]
async fn bad_flow_refs_and_payloads_are_refused_before_st2_creates_anything() {
    let (emu, d) = setup().await;
    for bad in ["", "https://evil.example/run", "../core.local", "core"] {
        let r = d.dispatch(&request(bad, json!({}), None), WAIT).await;
        assert_eq!(failure(&r).0, ErrorKind::FlowNotFound, "{bad:?}");
    }
    assert!(
        emu.request_log().is_empty(),
        "malformed flowRefs never reach st2"
    );

    let r = d
        .dispatch(&request("core.nope", json!({}), None), WAIT)
        .await;
    let (kind, message) = failure(&r);
    assert_eq!(kind, ErrorKind::FlowNotFound);
    assert!(message.contains("core.nope"), "{message}");

    let r = d
        .dispatch(
            &request("core.local", json!({"timeout": "soon", "colour": 1}), None),
            WAIT,
        )
        .await;
    let (kind, message) = failure(&r);
    assert_eq!(kind, ErrorKind::RemoteError);
    for field in [
        "cmd: is required",
        "timeout: must be integer",
        "colour: is not a parameter",
    ] {
        assert!(message.contains(field), "{field} missing: {message}");
    }
    assert_eq!(creates(&emu), 0, "nothing was created in st2");
}

#[tokio::test]
async fn refused_credentials_and_rate_limits_map_to_their_kinds() {
    let (emu, _) = setup().await;
    let d = Dispatcher::new(client(&emu, "wrong-key"));
    let r = d
        .dispatch(&request("core.noop", json!({}), None), WAIT)
        .await;
    assert_eq!(failure(&r).0, ErrorKind::Unauthorized);

    let d = Dispatcher::new(client(&emu, KEY));
    emu.faults()
        .fail_next_on("POST", "/api/v1/executions", 429, 1);
    let r = d
        .dispatch(&request("core.noop", json!({}), Some("rl")), WAIT)
        .await;
    assert_eq!(failure(&r).0, ErrorKind::RateLimited);
}

#[tokio::test]
async fn a_retry_after_the_deadline_attaches_to_the_same_execution() {
    let (emu, d) = setup().await;
    let req = request("core.local", json!({"cmd": "sleep 1"}), Some("slow-1"));
    let r = d.dispatch(&req, Duration::from_millis(200)).await;
    let (kind, message) = failure(&r);
    assert_eq!(kind, ErrorKind::Timeout);
    assert!(message.contains("keeps running"), "{message}");

    // A new dispatcher stands for a restarted adapter (or another replica): it holds no
    // memory of the first call, so only st2 can tell it the execution exists.
    let restarted = Dispatcher::new(client(&emu, KEY));
    let r = restarted.dispatch(&req, WAIT).await;
    assert!(r.is_ok(), "{r:?}");
    let again = restarted.dispatch(&req, WAIT).await;
    assert_eq!(again, r, "a finished key answers with the same result");
    assert_eq!(
        creates(&emu),
        1,
        "one st2 execution for one idempotency key"
    );

    let other = request("core.local", json!({"cmd": "sleep 1"}), Some("slow-2"));
    assert!(d.dispatch(&other, WAIT).await.is_ok());
    assert_eq!(creates(&emu), 2, "another key is another execution");
}

#[tokio::test]
async fn without_an_idempotency_key_tenant_run_and_action_identify_the_dispatch() {
    let (emu, d) = setup().await;
    let req = request("core.noop", json!({}), None);
    d.dispatch(&req, WAIT).await.unwrap();
    d.dispatch(&req, WAIT).await.unwrap();
    assert_eq!(creates(&emu), 1);
    let mut next_step = req.clone();
    next_step.action_id = "act-2".into();
    d.dispatch(&next_step, WAIT).await.unwrap();
    assert_eq!(creates(&emu), 2);
}

/// The executions st2 holds for `key`, as `(id, status)`, read through the st2 API.
async fn executions_for(emu: &Emulator, idem: &str) -> Vec<(String, String)> {
    let st2 = client(emu, KEY);
    let key =
        portarium_st2::core::dispatch::dispatch_key(&request("core.noop", json!({}), Some(idem)));
    let page = st2
        .executions()
        .list()
        .filter("context.portarium.dispatch_key", &key)
        .limit(100)
        .send()
        .await
        .unwrap();
    page.items
        .into_iter()
        .map(|e| (e.id, e.status.map(|s| s.to_string()).unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn concurrent_requests_with_one_key_on_one_replica_start_one_execution() {
    let (emu, d) = setup().await;
    let req = request("core.local", json!({"cmd": "sleep 0.2"}), Some("burst"));
    let results = futures_util::future::join_all((0..8).map(|_| d.dispatch(&req, WAIT))).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| match r {
            Ok(Dispatched { output, .. }) => output["executionId"].as_str().unwrap().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 1, "every caller follows the same execution");
    assert_eq!(creates(&emu), 1);
}

#[tokio::test]
async fn replicas_that_race_on_one_key_converge_on_the_oldest_execution() {
    let (emu, _) = setup().await;
    // Two dispatchers share nothing but st2, like two adapter replicas behind a balancer.
    let a = Dispatcher::new(client(&emu, KEY));
    let b = Dispatcher::new(client(&emu, KEY));
    let req = request("core.local", json!({"cmd": "sleep 0.3"}), Some("race"));
    let calls = (0..4).flat_map(|_| [a.dispatch(&req, WAIT), b.dispatch(&req, WAIT)]);
    let results = futures_util::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .iter()
        .map(|r| match r {
            Ok(Dispatched { output, .. }) => output["executionId"].as_str().unwrap().to_string(),
            other => panic!("every racer answers with the winner's result: {other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(
        creates(&emu),
        2,
        "both replicas' first calls missed each other and created — the race under test"
    );
    let held = executions_for(&emu, "race").await;
    let live: Vec<_> = held
        .iter()
        .filter(|(_, status)| !status.starts_with("cancel"))
        .collect();
    assert_eq!(
        live.len(),
        1,
        "one execution ran; any duplicate was canceled: {held:?}"
    );
    assert!(ids.contains(&live[0].0));
}

#[tokio::test]
async fn cancel_on_deadline_cancels_the_execution_it_gave_up_on() {
    let (emu, _) = setup().await;
    let d = Dispatcher::new(client(&emu, KEY)).cancel_on_deadline(true);
    let req = request("core.local", json!({"cmd": "sleep 5"}), Some("give-up"));
    let r = d.dispatch(&req, Duration::from_millis(300)).await;
    let (kind, message) = failure(&r);
    assert_eq!(kind, ErrorKind::Timeout);
    assert!(message.contains("was canceled"), "{message}");
    let held = executions_for(&emu, "give-up").await;
    assert_eq!(held.len(), 1);
    assert!(held[0].1.starts_with("cancel"), "{held:?}");

    // A quick action is not touched: the option acts only on a wait that ran out.
    let quick = request("core.noop", json!({}), Some("quick"));
    assert!(d.dispatch(&quick, WAIT).await.is_ok());
}

#[tokio::test]
async fn the_callers_trace_context_rides_in_the_st2_context() {
    let (emu, d) = setup().await;
    let mut req = request("core.noop", json!({}), Some("traced"));
    req.trace = portarium_st2::core::portarium::TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("vendor=x"),
    );
    let Ok(Dispatched { output, .. }) = d.dispatch(&req, WAIT).await else {
        panic!("dispatch failed")
    };
    let st2 = client(&emu, KEY);
    let e = st2
        .executions()
        .get(output["executionId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let ctx = &e.context["portarium"];
    assert_eq!(
        ctx["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(ctx["tracestate"], "vendor=x");
}

fn queries_to<'a>(log: &'a [st2_emulator::RequestRecord], path: &str) -> Vec<&'a str> {
    log.iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .map(|r| r.query.as_deref().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn keys_are_looked_up_through_st2s_trace_index_by_the_tag_st2_stored() {
    let (emu, d) = setup().await;
    // Characters the percent-encoding of the key has to carry through the query intact.
    let idem = "order 7/a:b%c+d";
    let req = request("core.noop", json!({}), Some(idem));
    let first = d.dispatch(&req, WAIT).await;
    let again = d.dispatch(&req, WAIT).await;
    assert_eq!(first, again, "the retry attaches to the first execution");
    assert_eq!(creates(&emu), 1);
    let log = emu.request_log();
    assert!(
        queries_to(&log, "/api/v1/executions")
            .iter()
            .all(|q| !q.contains("filter=")),
        "no unindexed context filter: {log:?}"
    );
    assert!(!queries_to(&log, "/api/v1/traces").is_empty());

    let key = portarium_st2::core::dispatch::dispatch_key(&req);
    let traces = client(&emu, KEY)
        .traces()
        .list()
        .trace_tag(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(traces.items.len(), 1);
    assert_eq!(traces.items[0].trace_tag.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn without_the_traces_api_keys_fall_back_to_a_context_filter_bounded_in_time() {
    let (emu, d) = setup().await;
    // An older st2, or RBAC without trace access.
    emu.faults().fail_next_on("GET", "/api/v1/traces", 404, 1);
    let req = request("core.noop", json!({}), Some("no-traces"));
    d.dispatch(&req, WAIT).await.unwrap();
    d.dispatch(&req, WAIT).await.unwrap();
    assert_eq!(creates(&emu), 1);
    let log = emu.request_log();
    assert_eq!(
        queries_to(&log, "/api/v1/traces").len(),
        1,
        "once refused, the traces API is not asked again"
    );
    let filtered: Vec<&str> = queries_to(&log, "/api/v1/executions")
        .into_iter()
        .filter(|q| q.contains("filter="))
        .collect();
    assert_eq!(
        filtered.len(),
        3,
        "before each create check, and the convergence: {log:?}"
    );
    assert!(filtered.iter().all(|q| q.contains("timestamp_gt=")));
}
