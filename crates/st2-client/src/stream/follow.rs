//! [`Follow`]: the one way an execution is followed — its statuses from the watcher (stream
//! events, reconciliations, the poll loop) and its output from st2's per-execution output
//! stream, merged into one sequence in execution order.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use super::hub::{Hub, Registration, WaitError};
use super::output::OutputStream;
use crate::models::OutputChunk;
use crate::{Execution, ExecutionStatus, St2Error};

/// Longest a follow lasts, whatever happens; callers bound it further with their deadline.
pub const MAX_FOLLOW: Duration = Duration::from_secs(24 * 3600);
/// After the terminal status is seen, how long output still on its way is waited for before
/// the terminal status is reported anyway (st2 has then sent no `EOF` through reopenings).
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(10);

/// One snapshot of an execution as the watcher holds it: whole (read over REST), or, for a
/// stream event, only its head (id, status, times, log, result) with the text it came as,
/// decoded whole the first time somebody needs it. A dispatch's wait needs only heads, and
/// building st2's whole document (its action and runner type above all) was most of the
/// stream's cost.
#[derive(Debug)]
pub(super) struct Snapshot {
    head: Arc<Execution>,
    /// The JSON text of a head-only snapshot.
    text: Option<String>,
    whole: OnceLock<Arc<Execution>>,
}

impl Snapshot {
    /// A snapshot read whole.
    pub fn whole(execution: Arc<Execution>) -> Self {
        Self {
            head: execution,
            text: None,
            whole: OnceLock::new(),
        }
    }

    /// A snapshot of which only `head` was read from `text`.
    pub fn head_of(head: Execution, text: String) -> Self {
        Self {
            head: Arc::new(head),
            text: Some(text),
            whole: OnceLock::new(),
        }
    }

    /// Id, status, times, log and result; the rest may be empty (see
    /// [`Snapshot::execution`]).
    pub fn head(&self) -> &Arc<Execution> {
        &self.head
    }

    /// The whole execution when it is already decoded, else its head: what a caller that
    /// needs no more than the head gets without a decode.
    fn head_or_whole(&self) -> Arc<Execution> {
        self.whole.get().unwrap_or(&self.head).clone()
    }

    /// Whether the snapshot shows a terminal status.
    pub fn is_terminal(&self) -> bool {
        self.head.is_terminal()
    }

    /// The whole execution, decoded from its text at the first call. A text whose head read
    /// but whose whole does not (a field of the wrong type) gives the head, logged: the
    /// status it showed still counts.
    pub fn execution(&self) -> Arc<Execution> {
        let Some(text) = &self.text else {
            return self.head.clone();
        };
        self.whole
            .get_or_init(|| match serde_json::from_str(text) {
                Ok(e) => Arc::new(e),
                Err(error) => {
                    tracing::warn!(execution = %self.head.id, %error, "an st2 stream event holds a valid status but not a valid execution; only its id, status and times are known");
                    self.head.clone()
                }
            })
            .clone()
    }
}

/// How much of each status snapshot a follow hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Statuses {
    /// Every one whole: a follow's caller sees them all.
    Whole,
    /// Only the terminal one whole: a wait reads nothing but the status of those before it.
    TerminalWhole,
    /// Heads only (id, status, times, log, result), whole when already decoded: a wait
    /// whose caller needs no more.
    Heads,
}

/// What the followers of one execution have seen, newest only.
#[derive(Debug, Clone)]
pub(super) enum Seen {
    Nothing,
    Snapshot(Arc<Snapshot>),
    Gone,
    Failed(Arc<St2Error>),
}

impl Seen {
    /// Whether nothing after this can change the answer.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Snapshot(e) => e.is_terminal(),
            Self::Gone | Self::Failed(_) => true,
            Self::Nothing => false,
        }
    }
}

/// One thing that happened to a followed execution.
#[derive(Debug, Clone)]
pub enum ExecutionEvent {
    /// It reached a status not reported before; the snapshot that showed it.
    Status(Arc<Execution>),
    /// A piece of its output, in st2's order, each exactly once.
    Output(OutputChunk),
    /// st2 answered 404: it never existed or was deleted. The last event.
    Gone,
    /// Reading it failed for a reason following will not cure (credentials, ...). The last
    /// event.
    Failed(Arc<St2Error>),
}

/// The events of one execution, from [`super::ExecutionWatcher::follow`].
///
/// Order: the first status is reported before any output, and output waits until a status
/// past `requested`/`scheduled`/`delayed` was reported (st2 writes output only once it
/// runs) — unless the first status seen is already terminal (the execution had ended when
/// followed). Output comes before the terminal status; the terminal status (or `Gone`, or
/// `Failed`) is the last event and the stream then ends. A status is reported once, never
/// going back from a running status to a waiting one; statuses that changed faster than
/// they were observed are reported as the newest.
///
/// Bounds: the follow ends after [`MAX_FOLLOW`]; output is buffered 256 chunks ahead of a
/// slow reader (st2 is then read no faster); after the terminal status, output is waited for
/// at most [`OUTPUT_DRAIN`]; the output connection gives up after 10 fruitless reopenings
/// in a row (the statuses still arrive). Dropping it closes its output connection and,
/// with the last follow of the execution, stops its reads.
pub struct Follow {
    id: String,
    events: Pin<Box<dyn Stream<Item = ExecutionEvent> + Send>>,
}

impl Stream for Follow {
    type Item = ExecutionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ExecutionEvent>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl Follow {
    /// Follows `id`, seeded with `known` (just read or created), with or without output.
    /// Nothing happens until it is first polled.
    pub(super) fn new(
        hub: Arc<Hub>,
        id: &str,
        known: Option<Arc<Execution>>,
        output: bool,
        statuses: Statuses,
    ) -> Self {
        let start = Start {
            hub,
            id: id.to_string(),
            known,
            output,
            statuses,
        };
        let events =
            futures_util::stream::unfold(Step::Start(Box::new(start)), |step| async move {
                let mut following = match step {
                    Step::Start(start) => Box::new(start.begin()),
                    Step::Following(f) => f,
                    Step::Ended => return None,
                };
                match following.next().await {
                    Some(event) => {
                        let next = if following.ended {
                            Step::Ended
                        } else {
                            Step::Following(following)
                        };
                        Some((event, next))
                    }
                    None => None,
                }
            });
        Self {
            id: id.to_string(),
            events: Box::pin(events),
        }
    }

    /// Consumes the events up to the terminal status, handing each output chunk to
    /// `on_output`; `WaitError` when the deadline, `Gone` or a lasting failure comes first.
    pub async fn until_terminal(
        self,
        deadline: Instant,
        on_output: impl FnMut(OutputChunk),
    ) -> Result<Execution, WaitError> {
        self.until_terminal_shared(deadline, on_output)
            .await
            .map(Arc::unwrap_or_clone)
    }

    /// [`Follow::until_terminal`], the execution shared with the watcher's cache, not copied.
    pub(super) async fn until_terminal_shared(
        mut self,
        deadline: Instant,
        mut on_output: impl FnMut(OutputChunk),
    ) -> Result<Arc<Execution>, WaitError> {
        let mut last_status: Option<ExecutionStatus> = None;
        loop {
            let event = tokio::time::timeout_at(deadline, self.next()).await;
            match event {
                Ok(Some(ExecutionEvent::Status(e))) if e.is_terminal() => return Ok(e),
                Ok(Some(ExecutionEvent::Status(e))) => {
                    last_status = e.status.clone().or(last_status);
                }
                Ok(Some(ExecutionEvent::Output(chunk))) => on_output(chunk),
                Ok(Some(ExecutionEvent::Gone)) => {
                    return Err(WaitError::Gone { id: self.id });
                }
                Ok(Some(ExecutionEvent::Failed(source))) => {
                    return Err(WaitError::St2 {
                        id: self.id,
                        source,
                    });
                }
                Ok(None) | Err(_) => {
                    return Err(WaitError::Deadline {
                        id: self.id,
                        last_status,
                    });
                }
            }
        }
    }
}

/// The unfold's state: not started yet, following, or done.
enum Step {
    Start(Box<Start>),
    Following(Box<Following>),
    Ended,
}

/// What a follow needs before its first poll.
struct Start {
    hub: Arc<Hub>,
    id: String,
    known: Option<Arc<Execution>>,
    output: bool,
    statuses: Statuses,
}

impl Start {
    /// Registers with the watcher and opens the output stream.
    fn begin(self) -> Following {
        let registration = self.hub.register(&self.id, self.known.as_ref());
        let output = self.output.then(|| {
            OutputStream::new(self.hub.client.clone(), registration.seen.clone(), &self.id)
        });
        Following {
            registration,
            statuses: self.statuses,
            output,
            shown: None,
            terminal: None,
            until: Instant::now() + MAX_FOLLOW,
            ended: false,
        }
    }
}

/// A follow under way.
struct Following {
    registration: Registration,
    statuses: Statuses,
    output: Option<OutputStream>,
    /// The last status reported.
    shown: Option<ExecutionStatus>,
    /// The terminal snapshot, held back until the output ended or `OUTPUT_DRAIN` passed.
    terminal: Option<(Arc<Execution>, Instant)>,
    until: Instant,
    ended: bool,
}

impl Following {
    async fn next(&mut self) -> Option<ExecutionEvent> {
        loop {
            if let Some((done, drain_until)) = &self.terminal
                && (self.output.is_none() || Instant::now() >= *drain_until)
            {
                let done = done.clone();
                self.ended = true;
                return Some(ExecutionEvent::Status(done));
            }
            let output_open = self.terminal.is_some() || self.shown.as_ref().is_some_and(running);
            let drain_until = self.terminal.as_ref().map(|(_, at)| *at);
            let chunk = async {
                match &mut self.output {
                    Some(out) if output_open => out.next().await,
                    _ => std::future::pending().await,
                }
            };
            let drain = st2_basics::sleep_until_some(drain_until);
            let seen = &mut self.registration.seen;
            // Statuses first: one that arrived with a chunk was st2's earlier change.
            let step = tokio::select! {
                biased;
                changed = seen.changed(), if self.terminal.is_none() => match changed {
                    Ok(()) => Woke::Seen(seen.borrow_and_update().clone()),
                    // The hub is held by the registration: the entry cannot go away.
                    Err(_) => Woke::End,
                },
                chunk = chunk => Woke::Chunk(chunk),
                () = drain => Woke::Drained,
                () = tokio::time::sleep_until(self.until) => Woke::End,
            };
            match step {
                Woke::Seen(Seen::Nothing) => {}
                Woke::Seen(Seen::Gone) => return self.last(ExecutionEvent::Gone),
                Woke::Seen(Seen::Failed(e)) => return self.last(ExecutionEvent::Failed(e)),
                Woke::Seen(Seen::Snapshot(e)) if e.is_terminal() => {
                    let e = match self.statuses {
                        Statuses::Heads => e.head_or_whole(),
                        Statuses::Whole | Statuses::TerminalWhole => e.execution(),
                    };
                    self.terminal = Some((e, Instant::now() + OUTPUT_DRAIN));
                }
                Woke::Seen(Seen::Snapshot(e)) => {
                    if let Some(status) = e.head().status.clone().filter(|s| self.is_news(s)) {
                        self.shown = Some(status);
                        let e = match self.statuses {
                            Statuses::Whole => e.execution(),
                            Statuses::TerminalWhole | Statuses::Heads => e.head_or_whole(),
                        };
                        return Some(ExecutionEvent::Status(e));
                    }
                }
                Woke::Chunk(Some(chunk)) => return Some(ExecutionEvent::Output(chunk)),
                Woke::Chunk(None) | Woke::Drained => self.output = None,
                Woke::End => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    /// Whether `status` is worth reporting: new, and not back from running to waiting (an
    /// older snapshot read after a newer event).
    fn is_news(&self, status: &ExecutionStatus) -> bool {
        match &self.shown {
            None => true,
            Some(shown) => shown != status && (running(status) || !running(shown)),
        }
    }

    fn last(&mut self, event: ExecutionEvent) -> Option<ExecutionEvent> {
        self.ended = true;
        Some(event)
    }
}

/// What one wake-up of a follow brought.
enum Woke {
    Seen(Seen),
    Chunk(Option<OutputChunk>),
    Drained,
    End,
}

/// Whether st2 has started running it (it may have output).
fn running(status: &ExecutionStatus) -> bool {
    !matches!(
        status,
        ExecutionStatus::Requested | ExecutionStatus::Scheduled | ExecutionStatus::Delayed
    )
}
