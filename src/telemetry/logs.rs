//! Log lines as Portarium writes its own (45ck/Portarium docs/runbooks/observability.md):
//! newline-delimited JSON with `level` (`info`, ...), `time` (Unix epoch milliseconds), `name`,
//! `msg` and, while a span is active, the OpenTelemetry `traceId` and `spanId`, so one Loki
//! query (`| json | traceId="..."`) finds a dispatch's lines in both services. The fields of
//! the enclosing spans and of the event sit at the top level, as Portarium's child loggers put
//! `workspaceId`; `target` names the module and `span` the innermost span.

use std::fmt;
use std::io::IsTerminal as _;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The `name` of every line: the logger, as Portarium names its own (`control-plane`).
pub const LOGGER_NAME: &str = "portarium-st2";

/// Whether log lines may carry ANSI colour codes: only on a terminal, and not when
/// `NO_COLOR` is set (no-color.org), so a pipe or a file gets plain text.
pub fn ansi_wanted(stream_is_terminal: bool, no_color: Option<&str>) -> bool {
    stream_is_terminal && no_color.is_none_or(str::is_empty)
}

/// [`ansi_wanted`] for stdout, where the log lines go, and this process's `NO_COLOR`.
pub fn ansi_on_stdout() -> bool {
    ansi_wanted(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    )
}

/// The JSON line format; pair it with `fmt_fields(JsonFields::new())`, whose span fields
/// it reads back.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortariumJson;

impl<S, N> FormatEvent<S, N> for PortariumJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let spans: Vec<_> = ctx.event_scope().map(|s| s.collect()).unwrap_or_default();
        // Outermost first, so an inner span's field wins over an outer one of the same name.
        for span in spans.iter().rev() {
            let extensions = span.extensions();
            if let Some(Ok(Value::Object(fields))) = extensions
                .get::<FormattedFields<N>>()
                .map(|f| serde_json::from_str::<Value>(f))
            {
                line.extend(fields);
            }
        }
        event.record(&mut EventFields(&mut line));
        if let Some(span) = spans.first() {
            line.insert("span".into(), span.name().into());
        }
        // The innermost span the OpenTelemetry layer knows (it sees only the adapter's own);
        // no extension lock is held here, as `get_otel_context` may need to take one.
        let ids = tracing::dispatcher::get_default(|dispatch| {
            spans.iter().find_map(|span| {
                let cx = tracing_opentelemetry::get_otel_context(&span.id(), dispatch)?;
                let otel = cx.span();
                let sc = otel.span_context();
                sc.is_valid()
                    .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
            })
        });
        if let Some((trace_id, span_id)) = ids {
            line.insert("traceId".into(), trace_id.into());
            line.insert("spanId".into(), span_id.into());
        }
        let meta = event.metadata();
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        line.insert(
            "level".into(),
            meta.level().as_str().to_ascii_lowercase().into(),
        );
        line.insert("time".into(), millis.into());
        line.insert("name".into(), LOGGER_NAME.into());
        line.insert("target".into(), meta.target().into());
        if !line.contains_key("msg") {
            line.insert("msg".into(), "".into());
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields as JSON values; its message becomes `msg`.
struct EventFields<'a>(&'a mut Map<String, Value>);

impl EventFields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            // tracing-log's bookkeeping of where a `log` record came from.
            n if n.starts_with("log.") => return,
            n => n,
        };
        self.0.insert(name.to_string(), value);
    }
}

impl Visit for EventFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::ansi_wanted;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(ansi_wanted(true, None));
        assert!(ansi_wanted(true, Some("")), "an empty NO_COLOR is unset");
        assert!(!ansi_wanted(true, Some("1")));
        assert!(!ansi_wanted(false, None));
    }
}
