//! Fault injection: dispatches against an st2 that drops connections, answers 5xx, loses
//! answers after acting on them, restarts, revokes tokens, starts late and answers slowly.
//! Every dispatch must end with its right result, st2 must hold exactly one execution per
//! idempotency key, and every lifecycle event must arrive exactly once. Each test is bounded
//! in time.

use crate::support::stack::app_from_yaml;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::SendJson;
use futures_util::StreamExt;
use portarium_st2::core::dispatch::{Dispatcher, dispatch_key};
use portarium_st2::core::portarium::{DispatchRequest, ErrorKind};
use portarium_st2::core::{DispatchError, Dispatched};
use portarium_st2::events::lifecycle::from_broadcast;
use portarium_st2::events::{EventsConfig, spawn_lifecycle, start_sinks};
use st2_client::St2Client;
use st2_client::St2Config;
use st2_client::secret::Secret;
use st2_client::stream::{ExecutionWatcher, StreamConfig};
use st2_emulator::{Emulator, EmulatorOptions, User};

const KEY: &str = "fault-key";
const DISPATCHES: usize = 500;
const CONCURRENCY: usize = 32;
/// Longest any one test may take; a hang is a failure, not a stuck CI run.
const BOUND: Duration = Duration::from_secs(120);

/// A client that keeps trying through a hostile network, as an operator would configure it.
fn patient(mut cfg: St2Config) -> St2Client {
    cfg.retry.max_retries = 8;
    cfg.retry.backoff.initial = Duration::from_millis(10);
    cfg.retry.backoff.max = Duration::from_millis(200);
    cfg.request_timeout = Duration::from_millis(3_000);
    cfg.connect_timeout = Duration::from_millis(500);
    St2Client::from_config(&cfg).unwrap()
}

fn api_key_client(emu: &Emulator) -> St2Client {
    patient(St2Config::with_api_key(
        emu.base_url().parse().unwrap(),
        Secret::from_value(KEY),
    ))
}

fn request(i: usize, flow_ref: &str) -> DispatchRequest {
    DispatchRequest {
        action_id: format!("step-{i}"),
        idempotency_key: Some(format!("fault-{i}")),
        tenant_id: "tenant-f".into(),
        run_id: "run-f".into(),
        correlation_id: format!("corr-{i}"),
        flow_ref: flow_ref.into(),
        payload: Default::default(),
        trace: None,
        invocation_id: None,
    }
}

/// Every tenth dispatch runs an action that fails, so "the right result" is not always ok.
fn flow_of(i: usize) -> &'static str {
    if i % 10 == 7 {
        "examples.fail"
    } else {
        "core.noop"
    }
}

fn check_result(i: usize, result: &Result<Dispatched, DispatchError>) {
    match (flow_of(i), result) {
        ("core.noop", Ok(Dispatched { output, .. })) => {
            assert_eq!(output["status"], "succeeded", "dispatch {i}: {output}");
        }
        ("examples.fail", Err(DispatchError { kind, message, .. })) => {
            assert_eq!(*kind, ErrorKind::RemoteError, "dispatch {i}: {message}");
            assert!(
                message.contains("failed: exit code 1; boom"),
                "dispatch {i}: {message}"
            );
        }
        (flow, other) => panic!("dispatch {i} of {flow} ended wrongly: {other:?}"),
    }
}

/// Executions st2 holds for dispatch `i`, counted by its trace tag (the dispatch key).
async fn executions_for(st2: &St2Client, i: usize) -> usize {
    let key = dispatch_key(&request(i, flow_of(i)));
    let traces = st2
        .traces()
        .list()
        .trace_tag(&key)
        .limit(10)
        .send()
        .await
        .unwrap();
    traces.items.iter().map(|t| t.action_executions.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_dispatches_survive_drops_5xx_lost_answers_and_restarts() {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Followed through st2's event stream, which is cut every 300 ms and dropped like any
    // other connection: reconnection and reconciliation must lose no completion.
    let client = api_key_client(&emu);
    let watcher = ExecutionWatcher::start(
        client.clone(),
        StreamConfig {
            backoff: st2_client::BackoffConfig::new(
                Duration::from_millis(10),
                Duration::from_millis(200),
            ),
            fallback_poll: Duration::from_millis(200),
            ..StreamConfig::default()
        },
    );
    let dispatcher = Dispatcher::new(client).with_watcher(watcher.clone());
    // Lifecycle events from the same watcher, to a receiver standing in for Portarium.
    let (sink_url, received) = receiver().await;
    let events: EventsConfig = serde_norway::from_str(&format!(
        "http: {{url: '{sink_url}', delivery: {{backoff: {{initial: 10ms, max: 200ms}}}}}}"
    ))
    .unwrap();
    let (sinks, _workers) = start_sinks(&events).await.unwrap();
    let _lifecycle = spawn_lifecycle(
        from_broadcast(watcher.updates()),
        &events,
        sinks,
        Default::default(),
    );
    let faults = emu.faults();
    faults.drop_ratio(0.10);
    faults.fail_ratio(503, 0.05);
    faults.lose_answer_ratio(0.03);

    let done = Arc::new(AtomicUsize::new(0));
    let run = {
        let done = done.clone();
        futures_util::stream::iter(0..DISPATCHES)
            .map(move |i| {
                let d = dispatcher.clone();
                let done = done.clone();
                async move {
                    let r = d
                        .dispatch(&request(i, flow_of(i)), Duration::from_secs(60))
                        .await;
                    done.fetch_add(1, Ordering::Relaxed);
                    (i, r)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
    };
    // Two restarts while dispatches are in flight, at a third and at two thirds of the way,
    // and the stream cut every 300 ms throughout.
    let restarts = async {
        for mark in [DISPATCHES / 3, 2 * DISPATCHES / 3] {
            while done.load(Ordering::Relaxed) < mark {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            emu.restart().await;
        }
    };
    let cuts = async {
        while done.load(Ordering::Relaxed) < DISPATCHES {
            tokio::time::sleep(Duration::from_millis(300)).await;
            faults.cut_streams();
        }
    };
    let restarts = futures_util::future::join(restarts, cuts);
    let (results, _) = tokio::time::timeout(BOUND, futures_util::future::join(run, restarts))
        .await
        .expect("500 dispatches finish within the bound");
    assert!(
        watcher.stats().reconnects >= 3,
        "the stream was cut and reconnected: {:?}",
        watcher.stats()
    );

    assert_eq!(results.len(), DISPATCHES);
    for (i, r) in &results {
        check_result(*i, r);
    }
    // The faults really happened: lost connections (logged with status 0) and 503s.
    let log = emu.request_log();
    let dropped = log.iter().filter(|r| r.status == 0).count();
    let unavailable = log.iter().filter(|r| r.status == 503).count();
    assert!(
        dropped > 50 && unavailable > 20,
        "dropped {dropped}, 503 {unavailable}"
    );

    faults.clear();
    let st2 = api_key_client(&emu);
    for i in 0..DISPATCHES {
        assert_eq!(
            executions_for(&st2, i).await,
            1,
            "dispatch {i}: exactly one st2 execution for its idempotency key"
        );
    }

    // Every execution reported started and completed exactly once: no event lost, none twice.
    let wanted = 2 * DISPATCHES;
    for _ in 0..200 {
        if received.lock().unwrap().len() >= wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = received.lock().unwrap().clone();
    let ids: std::collections::HashSet<&str> =
        got.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "no lifecycle event delivered twice");
    for (i, r) in &results {
        let execution = match r {
            Ok(Dispatched { output, .. }) => output["executionId"].as_str().unwrap().to_string(),
            Err(DispatchError { message, .. }) => message.split(' ').nth(2).unwrap().to_string(),
        };
        let types: Vec<&str> = got
            .iter()
            .filter(|e| e["data"]["executionId"] == execution.as_str())
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        let end = if flow_of(*i) == "core.noop" {
            "com.portarium.run.ActionCompleted"
        } else {
            "com.portarium.run.ActionFailed"
        };
        assert_eq!(
            types
                .iter()
                .filter(|t| **t == "com.portarium.run.ActionDispatched")
                .count(),
            1,
            "dispatch {i} ({execution}) started once: {types:?}"
        );
        assert_eq!(
            types.iter().filter(|t| **t == end).count(),
            1,
            "dispatch {i} ({execution}) ended once: {types:?}"
        );
    }
}

/// A CloudEvents receiver on 127.0.0.1 that keeps what it is sent.
async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post({
            let received = received.clone();
            move |axum::Json(e): axum::Json<serde_json::Value>| async move {
                received.lock().unwrap().push(e);
                axum::http::StatusCode::ACCEPTED
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test]
async fn a_revoked_token_mid_run_is_renewed_without_failing_a_dispatch() {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        users: vec![User {
            name: "portarium".into(),
            password: "s3cret".into(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let client = patient(St2Config::with_password(
        emu.base_url().parse().unwrap(),
        "portarium",
        Secret::from_value("s3cret"),
    ));
    let d = Dispatcher::new(client);
    let revoker = async {
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            emu.revoke_tokens();
        }
    };
    let run = futures_util::stream::iter(0..60)
        .map(|i| {
            let d = d.clone();
            async move {
                (
                    i,
                    d.dispatch(&request(i, flow_of(i)), Duration::from_secs(30))
                        .await,
                )
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    let (results, ()) = tokio::time::timeout(BOUND, futures_util::future::join(run, revoker))
        .await
        .unwrap();
    for (i, r) in &results {
        check_result(*i, r);
    }
    let logins = emu
        .request_log()
        .iter()
        .filter(|r| r.path == "/auth/v1/tokens" && r.status == 201)
        .count();
    assert!(
        logins >= 2,
        "the revoked token was replaced by a new login ({logins})"
    );
    let st2 = api_key_client(&emu);
    for i in 0..60 {
        assert_eq!(executions_for(&st2, i).await, 1, "dispatch {i}");
    }
}

#[tokio::test]
async fn a_slow_st2_cannot_hold_a_dispatch_past_its_deadline() {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let d = Dispatcher::new(api_key_client(&emu));
    emu.faults().delay(Duration::from_millis(1_500));
    let started = tokio::time::Instant::now();
    let r = d
        .dispatch(&request(1, "core.noop"), Duration::from_millis(500))
        .await;
    let took = started.elapsed();
    let Err(DispatchError { kind, message, .. }) = &r else {
        panic!("{r:?}")
    };
    assert_eq!(*kind, ErrorKind::Timeout, "{message}");
    assert!(message.contains("same idempotency key"), "{message}");
    // Every st2 answer takes 1.5 s; the 500 ms deadline must not wait for one.
    assert!(
        took < Duration::from_millis(1_400),
        "answered after {took:?}"
    );

    // Once st2 is quick again, the retry ends in the real result on one execution.
    emu.faults().clear();
    let r = d
        .dispatch(&request(1, "core.noop"), Duration::from_secs(10))
        .await;
    check_result(1, &r);
    assert_eq!(executions_for(&api_key_client(&emu), 1).await, 1);
}

#[tokio::test]
async fn an_adapter_started_before_st2_sees_it_without_a_restart() {
    // A port nothing listens on yet: st2 is down when the adapter starts.
    let port = std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()));
    let yaml = format!(
        "listen: 127.0.0.1:0\nst2: {{base_url: 'http://{port}', api_key: {KEY}, connect_timeout_ms: 300}}\ntenants:\n  - {{id: tenant-f, api_token: token-f}}\n"
    );
    let (_app, base) = app_from_yaml(&yaml).await;
    let http = reqwest::Client::new();
    let st2_reachable = || async {
        let resp = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "ready whatever st2 does");
        let body: serde_json::Value = resp.json().await.unwrap();
        body["st2"]["reachable"] == true
    };
    assert!(!st2_reachable().await, "st2 reported down");
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200,
        "but alive"
    );

    let _emu = Emulator::start(EmulatorOptions {
        listen: port,
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut reachable = false;
    for _ in 0..100 {
        reachable = st2_reachable().await;
        if reachable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reachable, "st2 seen once it is up, with no restart");
    let answer: serde_json::Value = http
        .post(format!("{base}/v1/dispatch"))
        .bearer_auth("token-f")
        .json(&serde_json::json!({
            "actionId": "a", "tenantId": "tenant-f", "runId": "r", "correlationId": "c",
            "flowRef": "core.noop", "payload": {}
        }))
        .send_json()
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
}
