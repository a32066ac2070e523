//! The sink worker's retry timing on tokio's paused clock: the receiver's `Retry-After`, the
//! backoff ceiling and the give-up time, with no real sleeps.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use st2_basics::BackoffConfig;
use tokio::time::Instant;

use super::{Attempt, spawn};
use crate::events::cloudevent::CloudEvent;
use crate::events::config::DeliveryConfig;

fn delivery(max: Duration, give_up_after: Duration) -> DeliveryConfig {
    DeliveryConfig {
        queue_size: 4,
        backoff: BackoffConfig::new(Duration::from_millis(100), max),
        give_up_after,
    }
}

fn event() -> Arc<CloudEvent> {
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "specversion": "1.0", "id": "ev-1", "source": "test",
            "type": "com.portarium.run.RunStarted", "tenantid": "t1"
        }))
        .unwrap(),
    )
}

/// When each delivery attempt came.
type Seen = Arc<Mutex<Vec<Instant>>>;

/// A sink answering `script` in turn (then accepting), recording when each attempt came.
fn scripted(
    script: Vec<Option<Duration>>,
) -> (
    Seen,
    impl FnMut(Arc<CloudEvent>) -> std::future::Ready<Result<(), Attempt>> + Send + 'static,
) {
    let seen = Seen::default();
    let mut script = VecDeque::from(script);
    let log = seen.clone();
    let deliver = move |_| {
        log.lock().unwrap().push(Instant::now());
        std::future::ready(match script.pop_front() {
            Some(after) => Err(Attempt::Retry {
                reason: "429".into(),
                after,
            }),
            None => Ok(()),
        })
    };
    (seen, deliver)
}

fn gaps(seen: &Mutex<Vec<Instant>>) -> Vec<Duration> {
    seen.lock()
        .unwrap()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect()
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_out_up_to_the_ceiling() {
    let secs = Duration::from_secs;
    let (seen, deliver) = scripted(vec![Some(secs(2)), Some(secs(60))]);
    let (handle, worker) = spawn("test", &delivery(secs(30), secs(3_600)), deliver);
    handle.send(event()).await.unwrap();
    drop(handle);
    worker.await.unwrap();
    // 2 s as asked; 60 s is past the 30 s ceiling, so the event comes back after 30 s rather
    // than being dropped from an ordered queue.
    assert_eq!(gaps(&seen), [secs(2), secs(30)]);
}

#[tokio::test(start_paused = true)]
async fn an_event_undeliverable_past_give_up_after_is_dropped() {
    let (seen, deliver) = scripted(vec![None; 100]);
    let (handle, worker) = spawn(
        "test",
        &delivery(Duration::from_secs(1), Duration::from_secs(10)),
        deliver,
    );
    handle.send(event()).await.unwrap();
    while handle.counts().dropped == 0 {
        assert!(!worker.is_finished());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = seen.lock().unwrap().len();
    let spent: Duration = gaps(&seen).iter().sum();
    assert!(
        spent >= Duration::from_secs(10) && spent < Duration::from_secs(12),
        "{spent:?} over {attempts} attempts"
    );
    assert_eq!(handle.counts().dropped, 1);
    assert_eq!(handle.counts().delivered, 0);
}
