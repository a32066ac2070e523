//! `/stream/v1/stream` (the event stream) and `/stream/v1/executions/{id}/output` (one
//! execution's output, ending with `EOF`), with st2's exact SSE framing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream;
use tokio::sync::{broadcast, watch};

use super::executions::find;
use super::{ApiError, Params};
use crate::faults::StreamControl;
use crate::model::{Event, Status};
use crate::state::Shared;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/stream/v1/stream", get(events))
        .route("/stream/v1/executions/{id}/output", get(output))
}

/// st2's `DEFAULT_EVENTS_WHITELIST`.
const DEFAULT_EVENTS: &[&str] = &[
    "st2.announcement__*",
    "st2.execution__create",
    "st2.execution__update",
    "st2.execution__delete",
    "st2.liveaction__create",
    "st2.liveaction__update",
    "st2.liveaction__delete",
];

/// The frame that ends an output stream (the data is literally two single quotes).
const EOF_FRAME: &str = "event: EOF\ndata: ''\n\n";

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[seq]`, `[!seq]`.
fn fnmatch(name: &str, pattern: &str) -> bool {
    fn go(n: &[char], p: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&n[i..], &p[1..])),
            Some('?') => !n.is_empty() && go(&n[1..], &p[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                    return n.first() == Some(&'[') && go(&n[1..], &p[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let (negate, set) = match p[1] {
                    '!' => (true, &p[2..close]),
                    _ => (false, &p[1..close]),
                };
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&n[1..], &p[close + 1..])
            }
            Some(&ch) => n.first() == Some(&ch) && go(&n[1..], &p[1..]),
        }
    }
    let n: Vec<char> = name.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    go(&n, &p)
}

fn sse_response(body: Body) -> Response {
    (
        StatusCode::OK,
        [
            ("X-Accel-Buffering", "no"),
            (CACHE_CONTROL.as_str(), "no-cache"),
            (CONTENT_TYPE.as_str(), "text/event-stream; charset=UTF-8"),
        ],
        body,
    )
        .into_response()
}

/// What every open stream watches besides its events.
struct Signals {
    control: watch::Receiver<StreamControl>,
    cut_generation: u64,
    shutdown: watch::Receiver<bool>,
}

enum Wake {
    Event(Arc<Event>),
    Idle,
    Cut,
    End,
}

impl Signals {
    fn new(sh: &Shared) -> Signals {
        let control = sh.faults.stream_control();
        let cut_generation = control.borrow().cut;
        Signals {
            control,
            cut_generation,
            shutdown: sh.shutdown_signal(),
        }
    }

    fn silenced(&self) -> bool {
        self.control.borrow().silenced
    }

    /// Wait for the next event, an idle period, a cut or the end.
    async fn next(
        &mut self,
        rx: &mut broadcast::Receiver<Arc<Event>>,
        idle: Option<Duration>,
    ) -> Wake {
        loop {
            let idle_timer = async {
                match idle {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => return Wake::Event(ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Wake::End,
                },
                _ = idle_timer => return Wake::Idle,
                changed = self.control.changed() => {
                    if changed.is_err() || self.control.borrow().cut != self.cut_generation {
                        return Wake::Cut;
                    }
                }
                _ = self.shutdown.changed() => return Wake::End,
            }
        }
    }
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "stream cut by the emulator's fault switch",
    )
}

struct Filters {
    events: Vec<String>,
    action_refs: Vec<String>,
    execution_ids: Vec<String>,
    end_event: Option<String>,
    end_execution_id: Option<String>,
}

impl Filters {
    /// st2's listener: does this event end the stream, and does it pass the filters?
    fn judge(&self, ev: &Event) -> (bool, bool) {
        let stop = self.end_event.as_deref() == Some(ev.name.as_str())
            && ev.status.is_some_and(Status::is_completed)
            && self.end_execution_id.is_some()
            && ev.body_id == self.end_execution_id;
        let include = self.events.iter().any(|g| fnmatch(&ev.name, g))
            && (self.action_refs.is_empty()
                || ev
                    .action_ref
                    .as_ref()
                    .is_some_and(|r| self.action_refs.contains(r)))
            && (self.execution_ids.is_empty()
                || ev
                    .execution_id
                    .as_ref()
                    .is_some_and(|i| self.execution_ids.contains(i)));
        (stop, include)
    }
}

struct EventStream {
    rx: broadcast::Receiver<Arc<Event>>,
    signals: Signals,
    filters: Filters,
    heartbeat: Duration,
    greeted: bool,
    done: bool,
}

async fn events(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let mut events = params.list("events");
    if events.is_empty() {
        events = DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect();
    }
    let state = EventStream {
        rx: sh.subscribe(),
        signals: Signals::new(&sh),
        filters: Filters {
            events,
            action_refs: params.list("action_refs"),
            execution_ids: params.list("execution_ids"),
            end_event: params.nonempty("end_event").map(str::to_string),
            end_execution_id: params.nonempty("end_execution_id").map(str::to_string),
        },
        heartbeat: sh.config.heartbeat,
        greeted: false,
        done: false,
    };
    let body = stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.greeted {
            st.greeted = true;
            // st2 pre-fills each connection's queue with an empty item: one `\n` on connect.
            if !st.signals.silenced() {
                return Some((Ok(Bytes::from_static(b"\n")), st));
            }
        }
        loop {
            match st.signals.next(&mut st.rx, Some(st.heartbeat)).await {
                Wake::Event(ev) => {
                    let (stop, include) = st.filters.judge(&ev);
                    st.done = stop;
                    if include && !st.signals.silenced() {
                        return Some((Ok(Bytes::from(ev.frame())), st));
                    }
                    if stop {
                        return None;
                    }
                }
                Wake::Idle if !st.signals.silenced() => {
                    return Some((Ok(Bytes::from_static(b"\n")), st));
                }
                Wake::Idle => {}
                Wake::Cut => {
                    st.done = true;
                    return Some((Err(cut_error()), st));
                }
                Wake::End => return None,
            }
        }
    });
    Ok(sse_response(Body::from_stream(body)))
}

/// st2's `CLOSE_STREAM_LIVEACTION_STATES`.
fn closes_output(s: Status) -> bool {
    s.is_completed() || matches!(s, Status::Pausing | Status::Resuming)
}

struct OutputStream {
    rx: broadcast::Receiver<Arc<Event>>,
    signals: Signals,
    execution_id: String,
    output_type: String,
    backlog: Option<String>,
    done: bool,
}

async fn output(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let output_type = params.nonempty("output_type").unwrap_or("all").to_string();
    // Subscribe before reading the stored output so nothing falls between the two.
    let rx = sh.subscribe();
    let e = find(&sh, &id)?;
    let mut backlog: String = sh
        .store()
        .outputs
        .iter()
        .filter(|o| {
            o.execution_id == e.id && (output_type == "all" || o.output_type == output_type)
        })
        .map(|o| format!("event: st2.execution.output__create\ndata: {}\n\n", o.api()))
        .collect();
    let closed = sh.status(&e.id).is_some_and(closes_output);
    if closed {
        backlog.push_str(EOF_FRAME);
    }
    let state = OutputStream {
        rx,
        signals: Signals::new(&sh),
        execution_id: e.id,
        output_type,
        backlog: Some(backlog).filter(|b| !b.is_empty()),
        done: closed,
    };
    let body = stream::unfold(state, |mut st| async move {
        if let Some(b) = st.backlog.take() {
            return Some((Ok(Bytes::from(b)), st));
        }
        if st.done {
            return None;
        }
        loop {
            // No heartbeats on this endpoint: idle periods write nothing.
            match st.signals.next(&mut st.rx, None).await {
                Wake::Event(ev) if ev.execution_id.as_deref() == Some(st.execution_id.as_str()) => {
                    if ev.name == "st2.execution.output__create" {
                        let wanted = st.output_type == "all"
                            || ev.output_type.as_deref() == Some(st.output_type.as_str());
                        if wanted && !st.signals.silenced() {
                            return Some((Ok(Bytes::from(ev.frame())), st));
                        }
                    } else if ev.name == "st2.execution__update"
                        && ev.status.is_some_and(closes_output)
                    {
                        st.done = true;
                        return Some((Ok(Bytes::from_static(EOF_FRAME.as_bytes())), st));
                    }
                }
                Wake::Event(_) | Wake::Idle => {}
                Wake::Cut => {
                    st.done = true;
                    return Some((Err(cut_error()), st));
                }
                Wake::End => return None,
            }
        }
    });
    Ok(sse_response(Body::from_stream(body)))
}

#[cfg(test)]
mod tests {
    use super::fnmatch;

    #[test]
    fn fnmatch_globs_like_python() {
        assert!(fnmatch("st2.execution__update", "st2.execution__*"));
        assert!(fnmatch("st2.announcement__chatops", "st2.announcement__*"));
        assert!(!fnmatch("st2.execution.output__create", "st2.execution__*"));
        assert!(fnmatch("st2.execution.output__create", "st2.execution*"));
        assert!(fnmatch("abc", "a?c") && fnmatch("abc", "a[a-c]c") && !fnmatch("abc", "a[!b]c"));
    }
}
