//! One execution's output, followed through st2's per-execution output stream
//! (`/stream/v1/executions/{id}/output`, st2-api.md §7.4).
//!
//! That endpoint first replays every stored chunk, then follows live ones, and ends with an
//! `EOF` frame once the execution completes (or pauses), so it gives the output complete, in
//! st2's order, with no race between "already written" and "live". It sends no keep-alives,
//! so a quiet connection is not a dead one: it is reopened when it breaks, or when the
//! follow has seen the execution end and no `EOF` followed. Each reopening replays
//! everything, so the chunks already delivered are skipped by position.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use st2_basics::{Backoff, BackoffConfig};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::follow::{MAX_FOLLOW, Seen};
use super::parse::SseParser;
use crate::client::ApiRequest;
use crate::models::OutputChunk;
use crate::{St2Client, St2Error};

/// Chunks buffered ahead of a slow reader; the st2 connection waits beyond that.
const BUFFER: usize = 256;
/// After the watcher saw the execution end, how long st2 has to send `EOF` before the
/// connection is reopened to get it.
const EOF_GRACE: Duration = Duration::from_secs(2);
/// Consecutive failed or fruitless connections before following gives up.
const MAX_FAILURES: u32 = 10;
/// Reconnect backoff bounds.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Live output of one execution; ends when the execution ends (or cannot be followed).
/// Dropping it closes the st2 connection.
pub(super) struct OutputStream {
    rx: mpsc::Receiver<OutputChunk>,
    task: JoinHandle<()>,
}

impl OutputStream {
    /// Follows `id`'s output with `client`; `seen` (the follow's view of the execution)
    /// tells when it ended even if st2's `EOF` is lost.
    pub fn new(client: St2Client, seen: watch::Receiver<Seen>, id: &str) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        let task = tokio::spawn(follow(client, seen, id.to_string(), tx));
        Self { rx, task }
    }
}

impl Drop for OutputStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for OutputStream {
    type Item = OutputChunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<OutputChunk>> {
        self.rx.poll_recv(cx)
    }
}

/// How one connection ended.
enum Ended {
    /// st2 sent `EOF`.
    Eof,
    /// It broke, or was abandoned to get a replay.
    Broken,
    /// The reader went away.
    Closed,
}

async fn follow(
    client: St2Client,
    mut seen: watch::Receiver<Seen>,
    id: String,
    tx: mpsc::Sender<OutputChunk>,
) {
    let until = Instant::now() + MAX_FOLLOW;
    let end_seen = async move {
        // A closed channel means the follow is over: as good as an end.
        let _ = seen.wait_for(Seen::is_final).await;
    };
    tokio::pin!(end_seen);
    let mut ended = false;
    let mut delivered: u64 = 0;
    let mut backoff = Backoff::new(BackoffConfig::new(BACKOFF.0, BACKOFF.1));
    while backoff.attempts() < MAX_FAILURES && Instant::now() < until {
        let req =
            ApiRequest::get(["executions", id.as_str(), "output"]).query("output_type", "all");
        let before = delivered;
        let outcome = match client.open_stream(req).await {
            Ok(response) => {
                read(response, &tx, &mut delivered, &mut ended, end_seen.as_mut()).await
            }
            Err(St2Error::NotFound { .. }) => return,
            Err(e) => {
                tracing::debug!(execution = %id, error = %e, "cannot open st2 output stream");
                Ended::Broken
            }
        };
        match outcome {
            Ended::Closed => return,
            Ended::Eof if ended || finished(&client, &id).await => return,
            // st2 also ends the stream when a workflow pauses: it goes on after resuming.
            Ended::Eof | Ended::Broken => {}
        }
        // A connection that delivered something was progress: start the schedule again.
        if delivered > before {
            backoff.reset();
        }
        let pause = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut end_seen, if !ended => ended = true,
        }
    }
    tracing::warn!(execution = %id, "gave up following st2 output after repeated failures");
}

/// Reads one connection, delivering chunks past the first `delivered` ones.
async fn read(
    mut response: reqwest::Response,
    tx: &mpsc::Sender<OutputChunk>,
    delivered: &mut u64,
    ended: &mut bool,
    mut end_seen: Pin<&mut impl Future<Output = ()>>,
) -> Ended {
    let mut parser = SseParser::default();
    let mut position: u64 = 0;
    let mut grace_until: Option<Instant> = (*ended).then(|| Instant::now() + EOF_GRACE);
    loop {
        let grace = st2_basics::sleep_until_some(grace_until);
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = end_seen.as_mut(), if !*ended => {
                *ended = true;
                grace_until = Some(Instant::now() + EOF_GRACE);
                continue;
            }
            _ = grace => return Ended::Broken,
        };
        let bytes = match chunk {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(_) => return Ended::Broken,
        };
        let Ok(events) = parser.push(&bytes) else {
            return Ended::Broken;
        };
        for ev in events {
            match ev.event.as_str() {
                "EOF" => return Ended::Eof,
                "st2.execution.output__create" => {
                    position += 1;
                    if position <= *delivered {
                        continue;
                    }
                    *delivered = position;
                    match serde_json::from_str::<OutputChunk>(&ev.data) {
                        Ok(chunk) => {
                            if tx.send(chunk).await.is_err() {
                                return Ended::Closed;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "st2 output event is not an output chunk; skipped");
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Whether st2 says the execution is over (or gone).
async fn finished(client: &St2Client, id: &str) -> bool {
    match client
        .executions()
        .get(id)
        .include(&["id", "status"])
        .send()
        .await
    {
        Ok(e) => e.is_terminal(),
        Err(St2Error::NotFound { .. }) => true,
        Err(_) => false,
    }
}
