//! The lifecycle sinks against real receivers on 127.0.0.1: an HTTP endpoint that refuses
//! for a while, and a real nats-server (JetStream) that is down, comes up, dies and restarts.
//! Every event must arrive exactly once, in order.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::free_port;
use crate::support::nats::NatsServer;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use portarium_st2::events::CloudEvent;
use portarium_st2::events::config::{DeliveryConfig, HttpSinkConfig, NatsSinkConfig};
use portarium_st2::events::sink::{SinkHandle, http, nats};
use serde_json::json;

fn events(n: usize) -> Vec<CloudEvent> {
    (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "specversion": "1.0", "id": format!("st2:exec-{}:{i}", i % 3),
                "source": "portarium.execution-plane.stackstorm",
                "type": if i % 2 == 0 { "com.portarium.run.ActionDispatched" } else { "com.portarium.run.ActionCompleted" },
                "subject": "runs/r1", "datacontenttype": "application/json", "data": {"i": i},
                "tenantid": "t1", "correlationid": "c1"}))
            .unwrap()
        })
        .collect()
}

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        queue_size: 4,
        backoff: st2_basics::BackoffConfig::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
        ),
        give_up_after: Duration::from_secs(20),
    }
}

async fn wait_delivered(sink: &SinkHandle, n: u64) {
    for _ in 0..1500 {
        if sink.counts().delivered >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {:?} of {n} delivered", sink.counts());
}

#[derive(Clone, Default)]
struct Receiver {
    refusals_left: Arc<Mutex<u32>>,
    accepted: Arc<Mutex<Vec<String>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap) {
    let mut out = HeaderMap::new();
    {
        let mut left = r.refusals_left.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            // Alternate the two transient answers a receiver gives.
            if *left % 2 == 0 {
                out.insert("retry-after", "0".parse().unwrap());
                return (StatusCode::TOO_MANY_REQUESTS, out);
            }
            return (StatusCode::SERVICE_UNAVAILABLE, out);
        }
    }
    assert_eq!(headers["content-type"], "application/cloudevents+json");
    assert_eq!(headers["authorization"], "Bearer sink-token");
    let ev: CloudEvent = serde_json::from_str(&body).unwrap();
    r.accepted.lock().unwrap().push(ev.id);
    (StatusCode::ACCEPTED, out)
}

#[tokio::test]
async fn http_sink_that_refuses_then_recovers_gets_every_event_once_in_order() {
    // Nothing listens on the port at first: connection refused.
    let port = free_port();
    let config: HttpSinkConfig = serde_json::from_value(json!({
        "url": format!("http://127.0.0.1:{port}/events"), "bearer_token": "sink-token",
        "delivery": {"queue_size": 4, "backoff": {"initial": "20ms", "max": "200ms"}}
    }))
    .unwrap();
    let (sink, worker) = http::start(&config).unwrap();
    let all = events(20);
    let producer = {
        let sink = sink.clone();
        let all = all.clone();
        // More events than the queue holds: the producer must wait, not drop.
        tokio::spawn(async move {
            for e in all {
                sink.send(Arc::new(e)).await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.counts().delivered, 0);
    let receiver = Receiver {
        refusals_left: Arc::new(Mutex::new(6)),
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/events", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    producer.await.unwrap();
    wait_delivered(&sink, 20).await;
    let counts = sink.counts();
    assert!(
        counts.retries >= 7,
        "connection refusals and 6 refusals retried: {counts:?}"
    );
    assert!(counts.waited_for_room > 0, "the queue filled: {counts:?}");
    assert_eq!(counts.dropped, 0);
    let got = receiver.accepted.lock().unwrap().clone();
    let want: Vec<String> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(got, want, "each event once, in order");
    drop(sink);
    worker.await.unwrap();
}

#[tokio::test]
async fn http_sink_drops_and_counts_an_event_the_receiver_refuses_for_good() {
    let app = axum::Router::new().route("/events", post(|| async { StatusCode::BAD_REQUEST }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (sink, _w) = http::start(&HttpSinkConfig {
        url: url.parse().unwrap(),
        bearer_token: None,
        headers: Default::default(),
        request_timeout_ms: 2_000,
        delivery: fast(),
    })
    .unwrap();
    sink.send(Arc::new(events(1).remove(0))).await.unwrap();
    for _ in 0..200 {
        if sink.counts().dropped == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sink.counts().dropped, 1);
    assert_eq!(sink.counts().retries, 0);
}

async fn stream_messages(url: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("PORTARIUM_EVENTS").await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn nats_sink_survives_a_late_start_and_a_crash_and_stores_each_event_once() {
    let mut server = NatsServer::on_port(free_port());
    let config = NatsSinkConfig {
        stream: "PORTARIUM_EVENTS".into(),
        subject_prefix: "portarium.events".into(),
        ack_timeout_ms: 500,
        // Room for every event sent while the server is down: this test is about the
        // outage, not back-pressure (the HTTP test covers that).
        delivery: DeliveryConfig {
            queue_size: 16,
            ..fast()
        },
        ..NatsSinkConfig::to(&server.url())
    };
    let (sink, _w) = nats::start(&config).await.unwrap();
    let all = events(16);
    // Server not up yet: the events wait in the queue.
    for e in &all[..4] {
        sink.send(Arc::new(e.clone())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.counts().delivered, 0);
    server.start();
    wait_delivered(&sink, 4).await;
    assert_eq!(stream_messages(&server.url()).await, 4);

    server.stop();
    for e in &all[4..10] {
        sink.send(Arc::new(e.clone())).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.start();
    for e in &all[10..] {
        sink.send(Arc::new(e.clone())).await.unwrap();
    }
    wait_delivered(&sink, 16).await;
    assert_eq!(sink.counts().dropped, 0);
    assert_eq!(
        stream_messages(&server.url()).await,
        16,
        "no loss, no duplicate"
    );

    // The subject is Portarium's: portarium.events.<type without com.portarium.>.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream("PORTARIUM_EVENTS").await.unwrap();
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(
        first.subject.as_str(),
        "portarium.events.run.ActionDispatched"
    );
}

/// A snapshot as st2 sends it, with `context.portarium` and the log up to `status`.
fn snapshot(id: &str, statuses: &[&str]) -> Arc<st2_client::Execution> {
    let log: Vec<_> = statuses
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"timestamp": format!("2026-11-25T08:00:0{i}.000000Z"), "status": s}))
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "id": id, "status": statuses.last().unwrap(), "log": log,
            "action": {"ref": "core.local"},
            "context": {"portarium": {"tenant_id": "t1", "correlation_id": "c1", "run_id": "r1", "action_id": "a1"}}
        }))
        .unwrap(),
    )
}

#[tokio::test]
async fn broadcast_updates_reach_the_http_sink_once_per_transition() {
    let receiver = Receiver::default();
    let app = axum::Router::new()
        .route("/events", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config: portarium_st2::events::EventsConfig = serde_json::from_value(json!({
        "http": {"url": url, "bearer_token": "sink-token"}
    }))
    .unwrap();
    let (sinks, workers) = portarium_st2::events::start_sinks(&config).await.unwrap();
    let handles = sinks.handles().to_vec();
    let (tx, rx) = tokio::sync::broadcast::channel(64);
    let pipeline = portarium_st2::events::spawn_lifecycle(
        portarium_st2::events::lifecycle::from_broadcast(rx),
        &config,
        sinks,
        Default::default(),
    );
    // Duplicated and out of order, two executions interleaved, as several st2stream replicas
    // plus a reconciliation would deliver them.
    for s in [
        snapshot("e1", &["requested", "running"]),
        snapshot("e2", &["requested", "running", "failed"]),
        snapshot("e1", &["requested", "running"]),
        snapshot("e1", &["requested", "running", "succeeded"]),
        snapshot("e2", &["requested", "running"]),
        snapshot("e1", &["requested"]),
        snapshot("e2", &["requested", "running", "failed"]),
    ] {
        tx.send(s).unwrap();
    }
    drop(tx);
    let tracker = pipeline.await.unwrap();
    assert_eq!(tracker.stats().emitted, 4);
    wait_delivered(&handles[0], 4).await;
    drop(handles);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(
        *receiver.accepted.lock().unwrap(),
        [
            "st2:e1:started",
            "st2:e2:started",
            "st2:e2:failed",
            "st2:e1:succeeded"
        ]
    );
}
