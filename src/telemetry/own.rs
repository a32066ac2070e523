//! The adapter's own telemetry, in Portarium's conventions so its dashboards and collector
//! rules apply: a span per dispatch continuing the caller's W3C trace, the
//! `portarium.action.*` metrics, in-flight executions, stream reconnects and scrape health.
//!
//! Metrics live in one small registry ([`metrics`]) read two ways: as Prometheus text for
//! `GET /metrics` and as OTLP for the exporter. (The SDK's metric pipeline would need a
//! second copy for the text form; the registry is the one source for both.)

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum,
    metric, number_data_point,
};
use tracing::Instrument as _;
use tracing::field::Empty;

use st2_client::stream::{ExecutionWatcher, StatsHandle};

use crate::core::portarium::{DispatchRequest, ErrorKind, TraceContext};
use crate::core::{DispatchError, Dispatched, Mode};

/// What an instrument is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Instrument {
    Counter,
    UpDown,
    Histogram(&'static [f64]),
}

/// One metric the adapter reports.
#[derive(Debug)]
struct Def {
    name: &'static str,
    kind: Instrument,
    unit: &'static str,
    help: &'static str,
}

/// Bounds of `portarium.action.duration.ms`, in milliseconds.
const DURATION_BOUNDS_MS: &[f64] = &[
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0,
    60_000.0, 300_000.0,
];

/// Our metrics, by id (the `M_*` constants index this).
const DEFS: &[Def] = &[
    Def {
        name: "portarium.action.succeeded",
        kind: Instrument::Counter,
        unit: "{action}",
        help: "Dispatches whose st2 execution succeeded.",
    },
    Def {
        name: "portarium.action.failed",
        kind: Instrument::Counter,
        unit: "{action}",
        help: "Dispatches that failed, by Portarium errorKind.",
    },
    Def {
        name: "portarium.action.duration.ms",
        kind: Instrument::Histogram(DURATION_BOUNDS_MS),
        unit: "ms",
        help: "Dispatch time from request to answer.",
    },
    Def {
        name: "portarium.st2.executions.in_flight",
        kind: Instrument::UpDown,
        unit: "{execution}",
        help: "Dispatches waiting on st2 right now.",
    },
    Def {
        name: "portarium.st2.stream.reconnects",
        kind: Instrument::Counter,
        unit: "{reconnect}",
        help: "Times the st2 event stream was reconnected.",
    },
    Def {
        name: "portarium.st2.scrapes",
        kind: Instrument::Counter,
        unit: "{scrape}",
        help: "Scrapes of st2 metrics targets, by outcome.",
    },
    Def {
        name: "portarium.st2.scrape.rejected_lines",
        kind: Instrument::Counter,
        unit: "{line}",
        help: "Exposition lines that could not be parsed.",
    },
    Def {
        name: "portarium.st2.scrape.series",
        kind: Instrument::UpDown,
        unit: "{series}",
        help: "Series kept per scrape target.",
    },
    Def {
        name: "portarium.st2.scrape.dropped_series",
        kind: Instrument::Counter,
        unit: "{series}",
        help: "Series dropped or folded into overflow by the caps.",
    },
    Def {
        name: "portarium.st2.exports",
        kind: Instrument::Counter,
        unit: "{export}",
        help: "OTLP metric exports, by outcome.",
    },
    Def {
        name: "portarium.st2.stream.refused_catchups",
        kind: Instrument::Counter,
        unit: "{list}",
        help: "Catch-up lists after a reconnect that st2 refused (re-anchored, never repeated).",
    },
    Def {
        name: "portarium.st2.up",
        kind: Instrument::UpDown,
        unit: "1",
        help: "1 when st2 answered the last readiness probe with our credentials accepted, else 0.",
    },
    Def {
        name: "portarium.st2.build_info",
        kind: Instrument::UpDown,
        unit: "1",
        help: "Always 1; the labels name the running build (version, revision).",
    },
    Def {
        name: "portarium.st2.events.checkpoint_resets",
        kind: Instrument::Counter,
        unit: "{start}",
        help: "Lifecycle reporting that began from now for want of a usable checkpoint, by reason (missing, unreadable).",
    },
    Def {
        name: "portarium.st2.events.reconciled_executions",
        kind: Instrument::Counter,
        unit: "{execution}",
        help: "Executions read from st2 to report what happened while no replica reported.",
    },
    Def {
        name: "portarium.st2.events.lease_held",
        kind: Instrument::UpDown,
        unit: "1",
        help: "1 while this replica holds the lifecycle lease and reports, else 0.",
    },
];

const M_SUCCEEDED: usize = 0;
const M_FAILED: usize = 1;
const M_DURATION: usize = 2;
const M_IN_FLIGHT: usize = 3;
const M_RECONNECTS: usize = 4;
/// Scrape outcome counter.
pub(crate) const M_SCRAPES: usize = 5;
/// Rejected-lines counter.
pub(crate) const M_REJECTED: usize = 6;
/// Kept-series gauge.
pub(crate) const M_SERIES: usize = 7;
/// Dropped-series counter.
pub(crate) const M_DROPPED: usize = 8;
/// Export outcome counter.
pub(crate) const M_EXPORTS: usize = 9;
const M_REFUSED_CATCHUPS: usize = 10;
const M_ST2_UP: usize = 11;
const M_BUILD_INFO: usize = 12;
const M_CHECKPOINT_RESETS: usize = 13;
const M_RECONCILED: usize = 14;
const M_LEASE_HELD: usize = 15;

/// Metrics without labels, and so with one series known from the start: present at 0 before
/// their first event, as Prometheus conventions ask (a rate over a missing series is empty,
/// not 0).
const AT_ZERO_FROM_START: [usize; 4] =
    [M_IN_FLIGHT, M_RECONNECTS, M_REFUSED_CATCHUPS, M_RECONCILED];

/// The reasons [`checkpoint_reset`] counts, each present at 0 from the start.
const CHECKPOINT_RESET_REASONS: [&str; 2] = ["missing", "unreadable"];

/// `pack.version` when the version is not known (no pack gate, or it refused the pack before
/// reading it): Portarium's own default for an unknown pack version.
pub const UNKNOWN_PACK_VERSION: &str = "0.0.0";

/// Attribute Portarium's pack observability spec puts on every pack span and metric: the
/// adapter's telemetry holds no tenant, principal or correlation id, nor parameter values.
pub const PII_SAFE: &str = "telemetry.pii_safe";

/// Label sets per metric before new ones fold into the overflow series.
const MAX_LABEL_SETS: usize = 1_000;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Cell {
    Number(f64),
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// The adapter's metrics.
#[derive(Debug)]
pub struct Registry {
    start_ns: u64,
    cells: Mutex<BTreeMap<(usize, Labels), Cell>>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(now_ns()));

/// The process-wide registry.
pub fn metrics() -> &'static Registry {
    &REGISTRY
}

/// Records the outcome of a readiness probe of st2.
pub fn st2_up(up: bool) {
    metrics().set(M_ST2_UP, Vec::new(), if up { 1.0 } else { 0.0 });
}

/// Counts a start of lifecycle reporting without a usable checkpoint.
pub fn checkpoint_reset(reason: &'static str) {
    metrics().add(
        M_CHECKPOINT_RESETS,
        vec![("reason", reason.to_string())],
        1.0,
    );
}

/// Counts executions a lifecycle reconciliation read.
pub fn reconciled(executions: u64) {
    metrics().add(M_RECONCILED, Vec::new(), executions as f64);
}

/// Records whether this replica holds the lifecycle lease.
pub fn lease_held(held: bool) {
    metrics().set(M_LEASE_HELD, Vec::new(), if held { 1.0 } else { 0.0 });
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Registry {
    /// A registry counting from `start_ns`, with the build info and the unlabelled metrics
    /// already at their first value.
    fn new(start_ns: u64) -> Self {
        let registry = Self {
            start_ns,
            cells: Mutex::new(BTreeMap::new()),
        };
        for id in AT_ZERO_FROM_START {
            registry.declare(id, Vec::new());
        }
        for reason in CHECKPOINT_RESET_REASONS {
            registry.declare(M_CHECKPOINT_RESETS, vec![("reason", reason.to_string())]);
        }
        registry.set(
            M_BUILD_INFO,
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("revision", env!("PORTARIUM_BUILD_COMMIT").to_string()),
            ],
            1.0,
        );
        registry
    }

    /// Makes the series `labels` of metric `id` present (at 0) before its first event.
    pub(crate) fn declare(&self, id: usize, labels: Labels) {
        self.update(id, labels, |_| {});
    }

    fn update(&self, id: usize, mut labels: Labels, change: impl FnOnce(&mut Cell)) {
        labels.sort();
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        let present = cells.contains_key(&(id, labels.clone()));
        let labels = if !present
            && cells.range((id, Vec::new())..(id + 1, Vec::new())).count() >= MAX_LABEL_SETS
        {
            vec![("otel.metric.overflow", "true".to_string())]
        } else {
            labels
        };
        let cell = cells
            .entry((id, labels))
            .or_insert_with(|| match DEFS[id].kind {
                Instrument::Histogram(bounds) => Cell::Histogram {
                    counts: vec![0; bounds.len() + 1],
                    sum: 0.0,
                    count: 0,
                },
                _ => Cell::Number(0.0),
            });
        change(cell);
    }

    /// Adds `by` to a counter or up-down counter.
    pub(crate) fn add(&self, id: usize, labels: Labels, by: f64) {
        self.update(id, labels, |c| {
            if let Cell::Number(v) = c {
                *v += by;
            }
        });
    }

    /// Sets an up-down counter to `value`.
    pub(crate) fn set(&self, id: usize, labels: Labels, value: f64) {
        self.update(id, labels, |c| *c = Cell::Number(value));
    }

    fn observe(&self, id: usize, labels: Labels, value: f64) {
        let Instrument::Histogram(bounds) = DEFS[id].kind else {
            return;
        };
        self.update(id, labels, |c| {
            if let Cell::Histogram { counts, sum, count } = c {
                let i = bounds
                    .iter()
                    .position(|b| value <= *b)
                    .unwrap_or(bounds.len());
                counts[i] += 1;
                *sum += value;
                *count += 1;
            }
        });
    }

    /// Prometheus text (format 0.0.4): dots become `_`, counters get `_total`.
    pub fn prometheus_text(&self) -> String {
        collect_streams(self);
        let cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (id, def) in DEFS.iter().enumerate() {
            let name = def.name.replace('.', "_");
            let (kind, sample) = match def.kind {
                Instrument::Counter => ("counter", format!("{name}_total")),
                Instrument::UpDown => ("gauge", name.clone()),
                Instrument::Histogram(_) => ("histogram", name.clone()),
            };
            out.push_str(&format!(
                "# HELP {sample} {}\n# TYPE {sample} {kind}\n",
                def.help
            ));
            for ((_, labels), cell) in cells.range((id, Vec::new())..(id + 1, Vec::new())) {
                match cell {
                    Cell::Number(v) => {
                        out.push_str(&format!("{sample}{} {v}\n", label_text(labels, None)))
                    }
                    Cell::Histogram { counts, sum, count } => {
                        let Instrument::Histogram(bounds) = def.kind else {
                            continue;
                        };
                        let mut cumulative = 0;
                        for (i, c) in counts.iter().enumerate() {
                            cumulative += c;
                            let le = bounds.get(i).map_or("+Inf".to_string(), |b| b.to_string());
                            out.push_str(&format!(
                                "{name}_bucket{} {cumulative}\n",
                                label_text(labels, Some(&le))
                            ));
                        }
                        out.push_str(&format!(
                            "{name}_sum{} {sum}\n{name}_count{} {count}\n",
                            label_text(labels, None),
                            label_text(labels, None)
                        ));
                    }
                }
            }
        }
        out.push_str(&super::process::prometheus_text());
        out
    }

    /// The registry as OTLP metrics (cumulative since the process started).
    pub fn otlp_metrics(&self) -> Vec<Metric> {
        collect_streams(self);
        let cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        let now = now_ns();
        DEFS.iter()
            .enumerate()
            .filter_map(|(id, def)| {
                let series: Vec<_> = cells
                    .range((id, Vec::new())..(id + 1, Vec::new()))
                    .collect();
                if series.is_empty() {
                    return None;
                }
                let attrs = |labels: &Labels| -> Vec<KeyValue> {
                    labels
                        .iter()
                        .map(|(k, v)| match *k {
                            // A boolean, as Portarium writes it; Prometheus labels are text.
                            PII_SAFE => super::normalize::bool_attribute(k, v == "true"),
                            _ => string_attribute(k, v),
                        })
                        .collect()
                };
                let number = |labels: &Labels, v: f64, start: u64| NumberDataPoint {
                    attributes: attrs(labels),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    ..Default::default()
                };
                let cumulative = AggregationTemporality::Cumulative as i32;
                let data = match def.kind {
                    Instrument::Counter => metric::Data::Sum(Sum {
                        data_points: series
                            .iter()
                            .filter_map(|((_, l), c)| match c {
                                Cell::Number(v) => Some(number(l, *v, self.start_ns)),
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: cumulative,
                        is_monotonic: true,
                    }),
                    Instrument::UpDown => metric::Data::Gauge(Gauge {
                        data_points: series
                            .iter()
                            .filter_map(|((_, l), c)| match c {
                                Cell::Number(v) => Some(number(l, *v, 0)),
                                _ => None,
                            })
                            .collect(),
                    }),
                    Instrument::Histogram(bounds) => metric::Data::Histogram(Histogram {
                        data_points: series
                            .iter()
                            .filter_map(|((_, l), c)| match c {
                                Cell::Histogram { counts, sum, count } => {
                                    Some(HistogramDataPoint {
                                        attributes: attrs(l),
                                        start_time_unix_nano: self.start_ns,
                                        time_unix_nano: now,
                                        count: *count,
                                        sum: Some(*sum),
                                        bucket_counts: counts.clone(),
                                        explicit_bounds: bounds.to_vec(),
                                        ..Default::default()
                                    })
                                }
                                _ => None,
                            })
                            .collect(),
                        aggregation_temporality: cumulative,
                    }),
                };
                Some(Metric {
                    name: def.name.to_string(),
                    description: def.help.to_string(),
                    unit: def.unit.to_string(),
                    data: Some(data),
                    ..Default::default()
                })
            })
            .collect()
    }
}

/// `GET /metrics`: the registry as Prometheus text. Unauthenticated like `/healthz`: it
/// holds counts per st2 pack and action, no tenant, correlation or parameter values.
pub async fn prometheus_route() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().prometheus_text(),
    )
}

/// `{a="b",c="d"}` with `.` in label names turned into `_` and values escaped.
fn label_text(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", k.replace('.', "_"), escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A string attribute.
pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// Action refs seen in dispatches: they let the scraper read escaped names back exactly.
static LEARNED_REFS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// How many refs are remembered; beyond, new ones are not (the scraper falls back).
const MAX_LEARNED_REFS: usize = 10_000;

fn learn_ref(action_ref: &str) {
    let mut refs = LEARNED_REFS.lock().unwrap_or_else(PoisonError::into_inner);
    if refs.len() < MAX_LEARNED_REFS && !refs.iter().any(|r| r == action_ref) {
        refs.push(action_ref.to_string());
    }
}

/// The action refs dispatched so far.
pub fn learned_refs() -> Vec<String> {
    LEARNED_REFS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// The st2 stream watchers whose reconnects and refused catch-ups the stream metrics report.
static STREAMS: Mutex<Vec<StatsHandle>> = Mutex::new(Vec::new());

/// Reports the reconnects of `watchers` from now on (their counters are read at each
/// collection, so the metric has a point, 0 included, from the start).
pub fn watch_streams(watchers: &[ExecutionWatcher]) {
    let mut streams = STREAMS.lock().unwrap_or_else(PoisonError::into_inner);
    streams.retain(|h| h.stats().is_some());
    streams.extend(watchers.iter().map(ExecutionWatcher::stats_handle));
}

/// Copies the watchers' counters into the registry before it is read.
fn collect_streams(registry: &Registry) {
    let streams = STREAMS.lock().unwrap_or_else(PoisonError::into_inner);
    if streams.is_empty() {
        return;
    }
    let (reconnects, refused) = streams
        .iter()
        .filter_map(StatsHandle::stats)
        .fold((0, 0), |(r, c), s| {
            (r + s.reconnects, c + s.refused_catchups)
        });
    registry.set(M_RECONNECTS, Vec::new(), reconnects as f64);
    registry.set(M_REFUSED_CATCHUPS, Vec::new(), refused as f64);
}

/// The pack and operation a dispatch is about, as Portarium's attributes name them.
fn pack_and_operation(req: &DispatchRequest) -> (String, String) {
    let op = req.flow_ref.trim();
    match op.split_once('.') {
        Some((pack, _)) if !pack.is_empty() => (pack.to_string(), op.to_string()),
        // Portarium's default for an action without a pack.
        _ => ("core.unscoped".to_string(), op.to_string()),
    }
}

/// Counts one dispatch in flight until dropped, however the dispatch ends (a request the
/// caller abandoned included).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics().add(M_IN_FLIGHT, Vec::new(), 1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics().add(M_IN_FLIGHT, Vec::new(), -1.0);
    }
}

/// Runs one dispatch inside its span, continuing the caller's trace, and records Portarium's
/// action metrics for the dispatches that wait for an outcome (a dry run or a start has
/// none). Tenant and correlation ids are not span attributes: `tenant.id` rides along only to
/// be moved onto the resource by the span exporter. `pack_version` tells, once the dispatch
/// ran, the pack's installed version if it is known without an st2 call.
pub async fn observe_dispatch(
    req: &DispatchRequest,
    mode: Mode,
    run: impl Future<Output = Result<Dispatched, DispatchError>>,
    pack_version: impl Fn(&str) -> Option<String>,
) -> Result<Dispatched, DispatchError> {
    let (pack, operation) = pack_and_operation(req);
    // The request span around the dispatch belongs to the tenant too: without it the root of
    // the trace would not be exported (spans::TenantSpans).
    tracing::Span::current().record(super::spans::TENANT_ATTRIBUTE, req.tenant_id.as_str());
    let span = match mode {
        Mode::DryRun => {
            tracing::info_span!("workflow.action.validate", otel.kind = "server", otel.status_code = Empty, action.id = %req.action_id, action.operation = %operation, pack.id = %pack, pack.version = Empty, telemetry.pii_safe = true, action.outcome = Empty, errorKind = Empty, tenant.id = %req.tenant_id)
        }
        Mode::Start => {
            tracing::info_span!("workflow.action.start", otel.kind = "server", otel.status_code = Empty, action.id = %req.action_id, action.operation = %operation, pack.id = %pack, pack.version = Empty, telemetry.pii_safe = true, action.outcome = Empty, errorKind = Empty, st2.execution.id = Empty, st2.execution.status = Empty, tenant.id = %req.tenant_id)
        }
        Mode::Wait(_) => {
            tracing::info_span!("workflow.action.execute", otel.kind = "server", otel.status_code = Empty, action.id = %req.action_id, action.operation = %operation, pack.id = %pack, pack.version = Empty, telemetry.pii_safe = true, action.outcome = Empty, errorKind = Empty, st2.execution.id = Empty, st2.execution.status = Empty, tenant.id = %req.tenant_id)
        }
    };
    if let Some(trace) = &req.trace {
        continue_trace(&span, trace);
    }
    let waits = matches!(mode, Mode::Wait(_));
    let _in_flight = waits.then(InFlight::enter);
    let started = Instant::now();
    let result = run.instrument(span.clone()).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let version = pack_version(&pack).unwrap_or_else(|| UNKNOWN_PACK_VERSION.to_string());
    span.record("pack.version", version.as_str());
    let labels: Labels = vec![
        ("action.operation", operation),
        ("pack.id", pack),
        ("pack.version", version),
        (PII_SAFE, "true".to_string()),
    ];
    if result.as_ref().err().map(|e| e.kind) != Some(ErrorKind::FlowNotFound) {
        learn_ref(req.flow_ref.trim());
    }
    match &result {
        Ok(done) => {
            span.record("action.outcome", "succeeded");
            if let Some(id) = done.output.get("executionId").and_then(|v| v.as_str()) {
                span.record("st2.execution.id", id);
            }
            if let Some(status) = done.output.get("status").and_then(|v| v.as_str()) {
                span.record("st2.execution.status", status);
            }
        }
        Err(e) => {
            span.record("action.outcome", "exception");
            span.record("errorKind", e.kind.to_string());
            span.record("otel.status_code", "ERROR");
            // At info, so a failed dispatch shows in the default log; inside the span, so the
            // line carries the execution id when st2 started one.
            span.in_scope(|| {
                tracing::info!(errorKind = %e.kind, error = %e.message, "dispatch failed");
            });
        }
    }
    if waits {
        let outcome = match &result {
            Ok(_) => {
                metrics().add(M_SUCCEEDED, labels.clone(), 1.0);
                "succeeded"
            }
            Err(e) => {
                let mut failed = labels.clone();
                failed.push(("errorKind", e.kind.to_string()));
                metrics().add(M_FAILED, failed, 1.0);
                "exception"
            }
        };
        let mut timed = labels;
        timed.push(("action.outcome", outcome.to_string()));
        metrics().observe(M_DURATION, timed, elapsed_ms);
    }
    result
}

/// Makes `span` a child of the caller's remote span.
pub fn continue_trace(span: &tracing::Span, trace: &TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let tp = &trace.traceparent;
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(&tp[3..35]),
        SpanId::from_hex(&tp[36..52]),
        u8::from_str_radix(&tp[53..55], 16),
    ) else {
        return;
    };
    let state = trace
        .tracestate
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
    // Without an OpenTelemetry layer there is nothing to attach to; that is not an error.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::parse::{Value, parse};

    fn fresh() -> Registry {
        Registry::new(1)
    }

    #[test]
    fn the_text_page_parses_back_with_escaped_values_and_joined_histograms() {
        let r = fresh();
        r.add(
            M_FAILED,
            vec![("pack.id", "p\"q".into()), ("errorKind", "Timeout".into())],
            2.0,
        );
        r.observe(M_DURATION, vec![("pack.id", "p".into())], 7.0);
        r.observe(M_DURATION, vec![("pack.id", "p".into())], 70_000.0);
        let page = parse(&r.prometheus_text());
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        let failed = page
            .families
            .iter()
            .find(|f| f.name == "portarium_action_failed_total")
            .unwrap();
        assert_eq!(
            failed.series[0].labels,
            [
                ("errorKind".to_string(), "Timeout".to_string()),
                ("pack_id".into(), "p\"q".into())
            ]
        );
        let duration = page
            .families
            .iter()
            .find(|f| f.name == "portarium_action_duration_ms")
            .unwrap();
        let Value::Histogram {
            count,
            sum,
            buckets,
        } = &duration.series[0].value
        else {
            panic!("{duration:?}")
        };
        assert_eq!((*count, *sum), (2.0, Some(70_007.0)));
        assert_eq!(
            buckets.iter().find(|(le, _)| *le == 10.0),
            Some(&(10.0, 1.0))
        );
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2.0)));
    }

    #[test]
    fn label_sets_past_the_cap_fold_into_overflow() {
        let r = fresh();
        for i in 0..MAX_LABEL_SETS + 5 {
            r.add(
                M_SUCCEEDED,
                vec![("action.operation", format!("p.a{i}"))],
                1.0,
            );
        }
        let text = r.prometheus_text();
        assert_eq!(
            text.matches("portarium_action_succeeded_total{").count(),
            MAX_LABEL_SETS + 1
        );
        assert!(
            text.contains("portarium_action_succeeded_total{otel_metric_overflow=\"true\"} 5"),
            "overflow line missing"
        );
    }
}
