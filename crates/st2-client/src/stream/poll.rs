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
        let round = async {
            match next_round {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
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
