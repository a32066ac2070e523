//! The one poll loop of a watcher: while the stream is down (or disabled) it reads every
//! followed execution once per `fallback_poll`, however many follows or waits share it, and
//! at any time it reads new follows the stream cannot be known to cover.

use std::sync::{Arc, Weak};

use futures_util::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::hub::{ConnectionState, Hub};

/// Executions read at once, so an outage with many follows does not become a burst on st2.
const PARALLEL: usize = 8;

/// Runs until the hub is gone (its last handle and follow dropped).
pub(super) async fn run(
    hub: Weak<Hub>,
    wake: Arc<Notify>,
    mut conn: watch::Receiver<ConnectionState>,
) {
    let mut next_round: Option<Instant> = None;
    loop {
        let down = *conn.borrow_and_update() != ConnectionState::Connected;
        next_round = match (down, next_round) {
            (false, _) => None,
            (true, Some(at)) => Some(at),
            (true, None) => match hub.upgrade() {
                Some(hub) => Some(Instant::now() + hub.cfg.fallback_poll),
                None => return,
            },
        };
        let round = st2_basics::sleep_until_some(next_round);
        let all = tokio::select! {
            _ = wake.notified() => false,
            _ = round => true,
            changed = conn.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let Some(hub) = hub.upgrade() else { return };
        let ids = if all {
            // The urgent ones are among them.
            hub.take_urgent();
            hub.polled()
        } else {
            hub.take_urgent()
        };
        read_all(&hub, ids).await;
        if all {
            next_round = Some(Instant::now() + hub.cfg.fallback_poll);
        }
    }
}

async fn read_all(hub: &Hub, ids: Vec<String>) {
    futures_util::stream::iter(ids)
        .for_each_concurrent(PARALLEL, |id| async move { hub.read(&id).await })
        .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::time::Instant;

    use crate::secret::Secret;
    use crate::stream::{ExecutionWatcher, MAX_FOLLOW, StreamConfig, WaitError};
    use crate::{St2Client, St2Config};

    /// A polling watcher whose every read fails at once (transiently: nothing listens).
    fn refused_watcher(fallback_poll: Duration) -> ExecutionWatcher {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cfg = St2Config::with_api_key(
            format!("http://127.0.0.1:{port}").parse().unwrap(),
            Secret::from_value("k"),
        );
        cfg.retry.max_retries = 0;
        let stream = StreamConfig {
            enabled: false,
            fallback_poll,
            ..StreamConfig::default()
        };
        ExecutionWatcher::start(St2Client::from_config(&cfg).unwrap(), stream)
    }

    #[tokio::test(start_paused = true)]
    async fn one_loop_reads_each_followed_execution_once_per_interval_until_the_deadline() {
        let w = refused_watcher(Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_millis(10_500);
        let waits = ["a", "a", "a", "b", "c"].map(|id| {
            let w = w.clone();
            tokio::spawn(async move { w.wait_terminal(id, deadline).await })
        });
        for wait in waits {
            let waited = wait.await.unwrap();
            assert!(
                matches!(
                    &waited,
                    Err(WaitError::Deadline {
                        last_status: None,
                        ..
                    })
                ),
                "{waited:?}"
            );
        }
        assert!(Instant::now() - deadline < Duration::from_millis(1));
        // Three executions: read once each at once, then once each in each of 10 rounds.
        assert_eq!(w.stats().wait_reads, 3 + 10 * 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_follow_ends_after_its_longest_duration() {
        let w = refused_watcher(Duration::from_secs(3600));
        let began = Instant::now();
        let events = w.follow("a").collect::<Vec<_>>().await;
        assert!(events.is_empty(), "{events:?}");
        assert!(began.elapsed() >= MAX_FOLLOW);
        assert!(began.elapsed() < MAX_FOLLOW + Duration::from_secs(1));
        // Read at once, then hourly; the round due as the follow ends may or may not run.
        assert!((24..=25).contains(&w.stats().wait_reads), "{:?}", w.stats());
    }
}
