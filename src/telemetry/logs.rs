//! Log lines as Portarium writes its own (45ck/Portarium docs/runbooks/observability.md):
//! newline-delimited JSON with `level` (`info`, ...), `time` (Unix epoch milliseconds), `name`,
//! `msg` and, while a span is active, the OpenTelemetry `traceId` and `spanId`, so one Loki
//! query (`| json | traceId="..."`) finds a dispatch's lines in both services. The fields of
//! the enclosing spans and of the event sit at the top level, as Portarium's child loggers put
//! `workspaceId`; `target` names the module and `span` the innermost span.
//!
//! A span's fields are kept as JSON values in its extensions from its creation (and updated
//! when recorded), so a line copies them rather than parsing text for every span of every line.

use std::fmt;
use std::io::IsTerminal as _;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::Context;
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

/// The JSON log layer: newline-delimited JSON lines, as the module documentation says, to
/// `writer` (stdout in the service).
pub fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    SpanFields.and_then(
        tracing_subscriber::fmt::layer()
            .fmt_fields(NoSpanText)
            .event_format(PortariumJson)
            .with_writer(writer),
    )
}

/// The JSON line format; it reads the span fields [`SpanFields`] keeps, so it is built by
/// [`json_layer`] with it.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortariumJson;

/// Keeps every span's fields as JSON values in its extensions, from its creation and on
/// every `record`.
#[derive(Debug, Default, Clone, Copy)]
struct SpanFields;

/// The fields [`SpanFields`] keeps for one span.
struct SpanValues(Map<String, Value>);

impl<S> Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut values = Map::new();
        attrs.record(&mut Fields::of_span(&mut values));
        span.extensions_mut().insert(SpanValues(values));
    }

    fn on_record(&self, id: &Id, record: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(SpanValues(values)) = span.extensions_mut().get_mut::<SpanValues>() {
            record.record(&mut Fields::of_span(values));
        }
    }
}

/// The fmt layer's own text of span fields: none, since [`SpanFields`] keeps them as values.
#[derive(Debug, Default, Clone, Copy)]
struct NoSpanText;

impl<'w> FormatFields<'w> for NoSpanText {
    fn format_fields<R: RecordFields>(&self, _: Writer<'w>, _: R) -> fmt::Result {
        Ok(())
    }
}

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
            if let Some(SpanValues(fields)) = span.extensions().get::<SpanValues>() {
                line.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        event.record(&mut Fields::of_event(&mut line));
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

/// Fields as JSON values: an event's (its message becomes `msg`) or a span's (named as
/// tracing-subscriber's JSON fields named them: as written, less a raw identifier's `r#`).
struct Fields<'a> {
    into: &'a mut Map<String, Value>,
    span: bool,
}

impl<'a> Fields<'a> {
    fn of_event(into: &'a mut Map<String, Value>) -> Self {
        Self { into, span: false }
    }

    fn of_span(into: &'a mut Map<String, Value>) -> Self {
        Self { into, span: true }
    }

    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" if !self.span => "msg",
            // tracing-log's bookkeeping of where a `log` record came from.
            n if n.starts_with("log.") => return,
            n if self.span => n.strip_prefix("r#").unwrap_or(n),
            n => n,
        };
        self.into.insert(name.to_string(), value);
    }
}

impl Visit for Fields<'_> {
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
    use super::*;
    use serde_json::json;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::prelude::*;

    /// Lines written, shared with the test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_sit_at_the_top_level_the_innermost_and_the_latest_winning() {
        let out = Lines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::registry().with(json_layer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!(
                "request",
                workspaceId = "ws-1",
                runId = tracing::field::Empty,
                r#type = ?"dispatch"
            );
            let _outer = outer.enter();
            outer.record("runId", "run-1");
            let inner = tracing::info_span!("st2", workspaceId = "ws-2", attempt = 1u64);
            let _inner = inner.enter();
            inner.record("attempt", 2u64);
            tracing::info!(attempt = 3u64, "called st2");
            drop(_inner);
            tracing::warn!("back out");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let (called, back) = (&lines[0], &lines[1]);
        assert_eq!(called["msg"], "called st2");
        assert_eq!(called["span"], "st2");
        assert_eq!(
            called["workspaceId"], "ws-2",
            "the inner span wins: {called}"
        );
        assert_eq!(
            called["runId"], "run-1",
            "recorded after creation: {called}"
        );
        assert_eq!(
            called["type"], "\"dispatch\"",
            "a raw name loses its r#: {called}"
        );
        assert_eq!(called["attempt"], 3, "the event's own field wins: {called}");
        assert_eq!(
            (&called["level"], &called["name"]),
            (&json!("info"), &json!(LOGGER_NAME))
        );
        assert_eq!(back["workspaceId"], "ws-1", "{back}");
        assert_eq!(
            (&back["span"], back.get("attempt")),
            (&json!("request"), None)
        );
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(ansi_wanted(true, None));
        assert!(ansi_wanted(true, Some("")), "an empty NO_COLOR is unset");
        assert!(!ansi_wanted(true, Some("1")));
        assert!(!ansi_wanted(false, None));
    }
}
