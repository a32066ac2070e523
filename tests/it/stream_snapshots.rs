//! The watcher reads st2's intermediate stream events by their head only (id, status, times)
//! and the whole document only when somebody needs it: what follows, `updates()` listeners
//! and waits are handed is still the whole execution, against the st2 emulator.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use st2_client::secret::Secret;
use st2_client::stream::{ExecutionEvent, ExecutionWatcher, StreamConfig};
use st2_client::{Execution, ExecutionRequest, St2Client, St2Config};
use tokio::time::Instant;

const KEY: &str = "snapshots-key";

/// The emulator, a client, and a watcher on its stream (polling only once a minute, so
/// statuses after the first arrive as stream events).
async fn streaming() -> (st2_emulator::Emulator, St2Client, ExecutionWatcher) {
    let emu = crate::support::quick_emulator(KEY).await;
    let cfg = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(KEY));
    let st2 = St2Client::from_config(&cfg).unwrap();
    let w = ExecutionWatcher::start(
        st2.clone(),
        StreamConfig {
            fallback_poll: Duration::from_secs(60),
            ..StreamConfig::default()
        },
    );
    assert!(w.connected(Instant::now() + Duration::from_secs(5)).await);
    (emu, st2, w)
}

/// An execution with statuses between `requested` and `succeeded` (it writes 3 lines).
async fn start(st2: &St2Client) -> Execution {
    let mut req = ExecutionRequest::new("examples.output");
    req.parameters.insert("lines".into(), json!(3));
    req.parameters.insert("interval_ms".into(), json!(100));
    st2.executions().create(&req).await.unwrap()
}

/// What only a whole execution carries: the action, the liveaction, parameters, context.
fn assert_whole(e: &Execution, origin: &str) {
    assert_eq!(e.action_ref(), Some("examples.output"), "{origin}: {e:?}");
    assert!(e.action.is_some(), "{origin}: action");
    assert!(e.liveaction.is_some(), "{origin}: liveaction");
    assert_eq!(e.parameters.get("lines"), Some(&json!(3)), "{origin}");
    assert!(!e.context.is_empty(), "{origin}: context");
}

#[tokio::test]
async fn a_follow_is_handed_every_status_whole() {
    let (_emu, st2, w) = streaming().await;
    let created = start(&st2).await;
    let follow = w.follow(&created.id).filter_map(|event| async move {
        match event {
            ExecutionEvent::Status(e) => Some(e),
            _ => None,
        }
    });
    let statuses: Vec<_> = tokio::time::timeout(Duration::from_secs(10), follow.collect())
        .await
        .expect("the follow ends with the execution");
    let names: Vec<&str> = statuses
        .iter()
        .map(|e| e.status.as_ref().unwrap().as_str())
        .collect();
    assert!(names.contains(&"running"), "{names:?}");
    assert_eq!(names.last(), Some(&"succeeded"), "{names:?}");
    for e in &statuses {
        assert_whole(e, e.status.as_ref().unwrap().as_str());
    }
    assert!(w.stats().events >= 3, "{:?}", w.stats());
}

#[tokio::test]
async fn updates_listeners_get_every_stream_snapshot_whole() {
    let (_emu, st2, w) = streaming().await;
    let mut updates = w.updates();
    let created = start(&st2).await;
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let e = tokio::time::timeout_at(deadline, updates.recv())
            .await
            .expect("snapshots up to the terminal one")
            .unwrap();
        if e.id != created.id {
            continue;
        }
        let status = e.status.as_ref().unwrap().as_str().to_string();
        assert_whole(&e, &status);
        statuses.push(status);
    }
    assert!(statuses.iter().any(|s| s == "running"), "{statuses:?}");
}

#[tokio::test]
async fn a_wait_ends_with_the_whole_terminal_execution_as_st2_holds_it() {
    let (_emu, st2, w) = streaming().await;
    let created = start(&st2).await;
    let done = w
        .wait_for(&created, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert_whole(&done, "succeeded");
    let read = st2.executions().get(&created.id).send().await.unwrap();
    assert_eq!(done.status, read.status);
    assert_eq!(done.result, read.result);
    assert_eq!(done.end_timestamp, read.end_timestamp);
    assert_eq!(done.log, read.log);
}

#[tokio::test]
async fn a_head_wait_ends_with_st2s_outcome_and_the_finished_execution_stays_whole_for_others() {
    let (emu, st2, w) = streaming().await;
    let created = start(&st2).await;
    let done = w
        .wait_head(
            std::sync::Arc::new(created.clone()),
            Instant::now() + Duration::from_secs(10),
        )
        .await
        .unwrap();
    let read = st2.executions().get(&created.id).send().await.unwrap();
    assert_eq!(done.id, read.id);
    assert_eq!(done.status, read.status);
    assert_eq!(done.result, read.result);
    assert_eq!(done.end_timestamp, read.end_timestamp);
    // Later waits and follows are served from the watcher's memory, whole, without reading
    // the execution (the output stream's own status check asks st2 for id and status only).
    let reads = || {
        emu.request_log()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&created.id))
            .filter(|r| !r.query.as_deref().unwrap_or("").contains("include"))
            .count()
    };
    let before = reads();
    let again = w
        .wait_for(&created, Instant::now() + Duration::from_secs(5))
        .await
        .unwrap();
    assert_whole(&again, "waited again");
    assert_eq!(again.result, read.result);
    let events: Vec<_> = tokio::time::timeout(
        Duration::from_secs(5),
        w.follow(&created.id).collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    match events.last() {
        Some(ExecutionEvent::Status(e)) => assert_whole(e, "followed again"),
        other => panic!("a follow of a finished execution ends with it: {other:?}"),
    }
    assert_eq!(reads(), before, "answered from the watcher's memory");
}
