//! The stream connection loop: open `/stream/v1/stream`, reconcile over REST, read events
//! until the connection is lost or falls silent, back off, repeat.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::DATE;
use st2_basics::Backoff;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::sync::watch;

use super::follow::Snapshot;
use super::hub::{ConnectionState, Counters, Hub};
use super::parse::{SseEvent, SseParser};
use crate::client::ApiRequest;
use crate::models::{ExecutionHead, st2_time};
use crate::{Execution, Page, St2Error};

/// The events asked for. Execution events are the source of truth (st2-api.md §7.2):
/// liveaction events repeat them under the liveaction id with `result` as a string, and
/// output is followed per execution (see `output.rs`), so neither is requested here.
pub(super) const EVENTS: &str = "st2.execution__create,st2.execution__update";

/// How far before the last known st2 time a reconciliation lists from: covers events that
/// were in flight when the connection broke and the whole seconds of st2's `Date`.
const RECONCILE_MARGIN: Duration = Duration::from_secs(5);
/// Pages of 100 read per reconciliation list; beyond that it logs what it left out.
const RECONCILE_PAGES: usize = 50;
/// Executions re-read at once by a reconciliation.
const RECONCILE_PARALLEL: usize = 8;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("st2 refused the stream: {0}")]
    Refused(St2Error),
    #[error("reconciling after connecting failed: {0}")]
    Reconcile(St2Error),
    #[error("no bytes, not even a keep-alive, for {0:?}; reconnecting")]
    Silent(Duration),
    #[error("st2 closed the stream")]
    Ended,
    #[error("the stream broke: {0}")]
    Broken(String),
    #[error("{0}")]
    Parse(#[from] super::parse::ParseError),
    #[error("shut down")]
    Shutdown,
}

/// Runs until `stop` turns true or every watcher handle is gone.
pub(super) async fn run(hub: Arc<Hub>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(hub.cfg.backoff.clone());
    loop {
        hub.set_state(ConnectionState::Connecting);
        let lost = tokio::select! {
            lost = session(&hub, &mut backoff) => lost,
            _ = stop.wait_for(|s| *s) => Lost::Shutdown,
        };
        hub.lost();
        if matches!(lost, Lost::Shutdown) {
            break;
        }
        match &lost {
            Lost::Refused(_) => Counters::bump(&hub.counters.failed_connects, 1),
            Lost::Silent(_) => Counters::bump(&hub.counters.silences, 1),
            _ => {}
        }
        let pause = backoff.next_delay();
        tracing::warn!(reason = %lost, retry_in_ms = pause.as_millis() as u64, "st2 stream connection lost");
        hub.set_state(ConnectionState::Backoff);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    hub.set_state(ConnectionState::Stopped);
}

/// One connection, from opening to losing it.
async fn session(hub: &Hub, backoff: &mut Backoff) -> Lost {
    let req = ApiRequest::get(["stream"]).query("events", EVENTS);
    let mut response = match hub.client.open_stream(req).await {
        Ok(r) => r,
        Err(e) => return Lost::Refused(e),
    };
    let opened = response
        .headers()
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date);
    Counters::bump(&hub.counters.connects, 1);
    // Events queue in the connection while this runs; they are read right after.
    if let Err(e) = reconcile(hub, hub.reconcile_from()).await {
        return Lost::Reconcile(e);
    }
    hub.reconciled(opened);
    hub.set_state(ConnectionState::Connected);
    // Staying connected for the backoff's healthy period resets it to its first step.
    backoff.healthy();
    tracing::info!("st2 stream connected");
    let silence = hub.cfg.silence_timeout;
    let mut parser = SseParser::default();
    loop {
        let chunk = match tokio::time::timeout(silence, response.chunk()).await {
            Err(_) => return Lost::Silent(silence),
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return Lost::Ended,
            Ok(Err(e)) => return Lost::Broken(e.without_url().to_string()),
        };
        match parser.push(&chunk) {
            Ok(events) => events.into_iter().for_each(|ev| take(hub, ev)),
            Err(e) => return e.into(),
        }
    }
}

/// Hands one stream event to the hub.
fn take(hub: &Hub, ev: SseEvent) {
    if !matches!(
        ev.event.as_str(),
        "st2.execution__create" | "st2.execution__update"
    ) {
        return;
    }
    Counters::bump(&hub.counters.events, 1);
    let len = ev.data.len();
    match decode(ev.data) {
        Ok(snapshot) => hub.streamed(snapshot, len),
        Err(e) => {
            Counters::bump(&hub.counters.undecodable, 1);
            tracing::warn!(event = %ev.event, error = %e, "st2 stream event is not an execution; skipped");
        }
    }
}

/// An event's execution: its head, the rest kept as text until somebody needs it whole.
fn decode(text: String) -> serde_json::Result<Snapshot> {
    let ExecutionHead(head) = serde_json::from_str(&text)?;
    Ok(Snapshot::head_of(head, text))
}

/// Catches up on what the stream could not deliver: executions started since `since` (st2's
/// `timestamp_gt` filters on the start time), then every execution still in flight or waited
/// on that the list did not return, each read again.
async fn reconcile(hub: &Hub, since: Option<OffsetDateTime>) -> Result<(), St2Error> {
    Counters::bump(&hub.counters.reconciliations, 1);
    let mut listed = HashSet::new();
    if let Some(since) = since {
        let Some(page) = started_since(hub, since - RECONCILE_MARGIN).await? else {
            return reread_unsettled(hub, listed).await;
        };
        if page.has_more() {
            tracing::warn!(
                total = page.total_count,
                read = page.items.len(),
                "more executions started while the stream was down than one reconciliation reads; the rest are seen when they next change"
            );
        }
        Counters::bump(&hub.counters.reconciled_executions, page.items.len() as u64);
        for e in page.items {
            listed.insert(e.id.clone());
            hub.observe(e);
        }
    }
    reread_unsettled(hub, listed).await
}

/// Executions started after `from`. A time st2 refuses (400) is never sent again unchanged:
/// the list is asked once more from the whole second before it (a second earlier when `from`
/// already is a whole second, as times taken from st2's `Date` are), and when st2 refuses that too
/// the list is left out (`None`), so the connection goes on and the next catch-up starts from
/// its newer open time instead of looping on the same refusal.
async fn started_since(
    hub: &Hub,
    from: OffsetDateTime,
) -> Result<Option<Page<Execution>>, St2Error> {
    let list = |t: OffsetDateTime| {
        hub.client
            .executions()
            .list()
            .started_after(t)
            .limit(100)
            .all(RECONCILE_PAGES)
    };
    let faultstring = match list(from).await {
        Err(St2Error::BadRequest { faultstring, .. }) => faultstring,
        other => return other.map(Some),
    };
    Counters::bump(&hub.counters.refused_catchups, 1);
    let anchor = whole_second_before(from);
    tracing::warn!(
        from = %st2_time(from),
        anchor = %st2_time(anchor),
        reason = %faultstring,
        "st2 refused the catch-up list after a reconnect; listing again from the whole second"
    );
    match list(anchor).await {
        Err(St2Error::BadRequest { faultstring, .. }) => {
            Counters::bump(&hub.counters.refused_catchups, 1);
            tracing::warn!(
                from = %st2_time(anchor),
                reason = %faultstring,
                "st2 refused the catch-up list again; executions started while the stream was down are seen when they next change or are waited on"
            );
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// The latest whole second strictly before `t`.
fn whole_second_before(t: OffsetDateTime) -> OffsetDateTime {
    match t.nanosecond() {
        0 => t - time::Duration::SECOND,
        n => t - time::Duration::nanoseconds(i64::from(n)),
    }
}

/// Reads again every execution in flight or waited on that `listed` does not hold.
async fn reread_unsettled(hub: &Hub, listed: HashSet<String>) -> Result<(), St2Error> {
    let ids: Vec<String> = hub
        .unsettled()
        .into_iter()
        .filter(|id| !listed.contains(id))
        .collect();
    Counters::bump(&hub.counters.reconciled_executions, ids.len() as u64);
    let mut reads = futures_util::stream::iter(ids)
        .map(|id| async move { (hub.client.executions().get(&id).send().await, id) })
        .buffer_unordered(RECONCILE_PARALLEL);
    while let Some((read, id)) = reads.next().await {
        match read {
            Ok(e) => hub.observe(e),
            Err(St2Error::NotFound { .. }) => hub.gone(&id),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An HTTP `Date` (IMF-fixdate, `Wed, 25 Nov 2026 02:43:16 GMT`).
fn http_date(text: &str) -> Option<OffsetDateTime> {
    let format = format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(text, format)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_as_utc() {
        let t = http_date("Wed, 25 Nov 2026 02:43:16 GMT").unwrap();
        assert_eq!(t.unix_timestamp(), 1_795_574_596);
        assert!(http_date("yesterday").is_none());
    }

    #[test]
    fn the_anchor_after_a_refusal_always_differs_from_the_refused_time() {
        let whole = http_date("Wed, 25 Nov 2026 02:43:16 GMT").unwrap();
        assert_eq!(whole_second_before(whole), whole - time::Duration::SECOND);
        let fraction = whole + time::Duration::milliseconds(810);
        assert_eq!(whole_second_before(fraction), whole);
    }
}
