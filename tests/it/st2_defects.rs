//! Defects found against a real st2 (issue 18), each reproduced against the emulator, which
//! now answers them as st2 does.

use std::sync::Arc;
use std::time::Duration;

use st2_client::secret::Secret;
use st2_client::stream::{ConnectionState, ExecutionWatcher, StreamConfig};
use st2_client::{Execution, ExecutionRequest, St2Client, St2Config};
use st2_emulator::{Emulator, RequestRecord};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::time::Instant;

const KEY: &str = "st2-defects-key";

async fn emulator() -> Emulator {
    crate::support::quick_emulator(KEY).await
}

fn client(emu: &Emulator) -> St2Client {
    let cfg = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(KEY));
    St2Client::from_config(&cfg).unwrap()
}

/// Quick reconnects, and a fallback read so rare that the stream alone settles the waits.
async fn watcher(emu: &Emulator) -> ExecutionWatcher {
    let cfg = StreamConfig {
        silence_timeout: Duration::from_millis(1_000),
        backoff: st2_client::BackoffConfig::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ),
        fallback_poll: Duration::from_secs(120),
        ..StreamConfig::default()
    };
    let w = ExecutionWatcher::start(client(emu), cfg);
    assert!(w.connected(Instant::now() + Duration::from_secs(5)).await);
    w
}

/// Newest st2 time in the snapshots on `rx`: what the watcher knows the stream covers.
fn newest_time(
    rx: &mut broadcast::Receiver<Arc<Execution>>,
    mut newest: OffsetDateTime,
) -> OffsetDateTime {
    while let Ok(e) = rx.try_recv() {
        let times = e.log.iter().map(|l| l.timestamp);
        let times = times.chain(e.start_timestamp).chain(e.end_timestamp);
        newest = times.fold(newest, OffsetDateTime::max);
    }
    newest
}

/// Runs `core.noop` through the stream until the newest time the watcher has seen ends its
/// milliseconds in 0 (`…15.810Z`, which RFC 3339 shortens to `…15.81Z`); returns that time.
async fn stream_until_a_time_ending_in_zero(
    st2: &St2Client,
    w: &ExecutionWatcher,
) -> OffsetDateTime {
    let mut rx = w.updates();
    let mut newest = OffsetDateTime::UNIX_EPOCH;
    for _ in 0..200 {
        let e = st2
            .executions()
            .create(&ExecutionRequest::new("core.noop"))
            .await
            .unwrap();
        w.wait_terminal(&e.id, Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        // Late updates of the same execution land before the time is judged.
        tokio::time::sleep(Duration::from_millis(60)).await;
        newest = newest_time(&mut rx, newest);
        if newest.millisecond() % 10 == 0 {
            return newest;
        }
    }
    panic!("200 executions and no st2 time ending in 0");
}

/// The `timestamp_gt` values the emulator received, as sent (percent-decoded).
fn timestamp_gt_sent(log: &[RequestRecord]) -> Vec<(String, u16)> {
    log.iter()
        .filter(|r| r.path == "/api/v1/executions")
        .filter_map(|r| {
            let query = r.query.as_deref()?;
            let (_, v) =
                url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "timestamp_gt")?;
            Some((v.into_owned(), r.status))
        })
        .collect()
}

/// st2's `ISO8601_UTC_REGEX` (openapi.yaml): date, `T` or a space, time, no fraction or 3 to 6
/// digits, a UTC designator.
fn st2_accepts(t: &str) -> bool {
    let pattern = regex::Regex::new(
        r"^\d{4}-\d{2}-\d{2}(\s|T)\d{2}:\d{2}:\d{2}(\.\d{3,6})?(Z|\+00|\+0000|\+00:00)$",
    )
    .unwrap();
    pattern.is_match(t)
}

fn is_connected(w: &ExecutionWatcher) -> bool {
    w.stats().state == ConnectionState::Connected
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let polled = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), polled)
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}");
    }
}

/// Issue 18 A: a stream cut when the newest time ends in 0 used to send `…15.81Z`, which st2
/// refuses, and to retry it forever. Now the catch-up is accepted and finds what started
/// while the stream was down.
#[tokio::test]
async fn a_stream_cut_at_a_time_ending_in_zero_catches_up_in_st2s_datetime_format() {
    let emu = emulator().await;
    let st2 = client(&emu);
    let w = watcher(&emu).await;
    let cut_at = stream_until_a_time_ending_in_zero(&st2, &w).await;

    // An outage in which an execution nobody waits on starts and ends.
    emu.faults()
        .fail_next_on("GET", "/stream/v1/stream", 503, 5);
    emu.faults().cut_streams();
    until("the cut", || w.stats().connects == 1 && !is_connected(&w)).await;
    let mut rx = w.updates();
    let unwatched = st2
        .executions()
        .create(&ExecutionRequest::new("core.noop"))
        .await
        .unwrap();
    let mut seen_end = false;
    until("the unwatched execution's end", || {
        while let Ok(e) = rx.try_recv() {
            seen_end |= e.id == unwatched.id && e.is_terminal();
        }
        seen_end
    })
    .await;
    until("the reconnect", || w.stats().connects == 2).await;

    let sent = timestamp_gt_sent(&emu.request_log());
    assert!(!sent.is_empty(), "no catch-up list was sent");
    for (t, status) in &sent {
        assert!(st2_accepts(t), "{t} is outside st2's datetime format");
        assert_eq!(t.len(), "2026-12-05T23:45:15.800000Z".len(), "{t}");
        assert_eq!(*status, 200, "st2 refused the catch-up from {t}");
    }
    // The catch-up after the cut started from the time ending in 0, less the 5 s margin.
    let from = st2_client::models::st2_time(cut_at - Duration::from_secs(5));
    assert!(
        sent.iter().any(|(t, _)| *t == from),
        "{sent:?} lacks {from}"
    );
    assert_eq!(w.stats().refused_catchups, 0, "{:?}", w.stats());
}

/// A catch-up st2 refuses is counted, logged and asked again from another time; refused
/// twice it is left out, and the connection goes on instead of looping.
#[tokio::test]
async fn a_refused_catch_up_is_reanchored_and_counted_never_repeated() {
    let emu = emulator().await;
    let st2 = client(&emu);
    let w = watcher(&emu).await;
    stream_until_a_time_ending_in_zero(&st2, &w).await;

    emu.faults()
        .fail_next_on("GET", "/api/v1/executions?", 400, 2);
    emu.faults().cut_streams();
    until("the reconnect", || {
        w.stats().connects == 2 && is_connected(&w)
    })
    .await;

    let stats = w.stats();
    assert_eq!(stats.refused_catchups, 2, "{stats:?}");
    assert_eq!(stats.reconciliations, 2, "{stats:?}");
    let sent = timestamp_gt_sent(&emu.request_log());
    let [(first, 400), (second, 400)] = sent.as_slice() else {
        panic!("two refused lists expected: {sent:?}");
    };
    assert_ne!(first, second, "a refused time was sent again unchanged");
    assert!(
        second.ends_with(".000000Z"),
        "re-anchored to the whole second: {second}"
    );

    // The next cut lists again, from a newer time, and st2 accepts it.
    emu.faults().cut_streams();
    until("the next reconnect", || {
        w.stats().connects == 3 && is_connected(&w)
    })
    .await;
    let sent = timestamp_gt_sent(&emu.request_log());
    let (third, status) = sent.last().unwrap();
    assert_eq!(*status, 200, "{sent:?}");
    assert!(third > second, "{third} is not newer than {second}");
    assert_eq!(w.stats().refused_catchups, 2);
}

/// A config whose inbound class fires `portarium.event` on `emu`.
fn inbound_config(emu: &Emulator) -> portarium_st2::config::Config {
    let yaml = format!(
        "st2: {{base_url: '{}', api_key: {KEY}, stream: {{enabled: false}}}}\n\
         tenants:\n  - {{id: tenant-a, api_token: token-a}}\n\
         events:\n  inbound:\n    classes:\n\
         \x20     - type: com.portarium.run.RunStarted\n        trigger: portarium.event\n",
        emu.base_url()
    );
    portarium_st2::config::Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap()
}

fn trigger_type_calls(emu: &Emulator, method: &str) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.method == method && r.path.starts_with("/api/v1/triggertypes"))
        .count()
}

/// Issue 18 B: a stock st2 has no `portarium.event`; the adapter creates it at start, once.
#[tokio::test]
async fn the_adapter_registers_its_trigger_types_at_start_once() {
    let emu = emulator().await;
    let config = inbound_config(&emu);
    let app = portarium_st2::app::App::build(&config, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        app.client
            .trigger_types()
            .exists("portarium.event")
            .await
            .unwrap()
    );
    assert_eq!(trigger_type_calls(&emu, "POST"), 1);
    app.shutdown(Duration::ZERO).await;
    // A second start finds it and creates nothing.
    let again = portarium_st2::app::App::build(&config, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(trigger_type_calls(&emu, "POST"), 1);
    again.shutdown(Duration::ZERO).await;
}

/// Without the permission to create it, the adapter refuses to start and says what to create.
#[tokio::test]
async fn without_the_permission_the_adapter_refuses_to_start_naming_the_trigger_type() {
    let emu = emulator().await;
    emu.faults()
        .fail_next_on("POST", "/api/v1/triggertypes", 403, 1);
    let refused =
        portarium_st2::app::App::build(&inbound_config(&emu), Duration::from_secs(1)).await;
    let message = refused.err().expect("start refused").to_string();
    assert!(
        message.contains("no trigger type portarium.event")
            && message.contains("with RBAC on, an admin"),
        "{message}"
    );
}
