//! Parsed pages → OpenTelemetry metric data model (as OTLP protobuf messages).
//!
//! Counters become monotonic cumulative Sums, gauges and untyped samples Gauges, summaries
//! Summaries and histograms Histograms, as the OTel Prometheus compatibility spec says. Each
//! series keeps a small state (start time, last value) so that a counter reset (the source
//! restarted) starts a new interval instead of going negative, and a series that vanished
//! gets one point flagged "no recorded value" before its state is evicted. All state is
//! bounded; what does not fit is counted in [`Stats`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum, Summary, SummaryDataPoint, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};

use super::parse::{Exposition, Family, Kind, Series, Value};
use super::st2::{self, KnownRefs, Role};

/// The attribute marking the series that collects everything past the cardinality cap.
pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";

/// Bounds on per-series state.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Series kept across all metrics of one target; new ones beyond are dropped.
    pub max_series: usize,
    /// Series per metric; new ones beyond go to the overflow series.
    pub max_series_per_metric: usize,
    /// How long a vanished series' state is kept (it may come back with the same start).
    pub stale_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_series: 50_000,
            max_series_per_metric: 2_000,
            stale_ttl: Duration::from_secs(300),
        }
    }
}

/// What normalization had to give up or repair, since the normalizer was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Series folded into an overflow series (per scrape).
    pub overflowed: u64,
    /// Series dropped: state full, a type clash, or a value no OTel point can carry.
    pub dropped: u64,
    /// Series whose state was evicted after staying away past the TTL.
    pub evicted: u64,
    /// Counter resets seen (each started a new interval).
    pub resets: u64,
    /// Series currently kept.
    pub series: u64,
}

/// The OTel instrument kind a metric becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Sum,
    Gauge,
    Summary,
    Histogram,
}

/// Name, unit and description of one output metric.
#[derive(Debug, Clone)]
struct Meta {
    shape: Shape,
    unit: String,
    description: String,
}

// Observations are parse::Value: what a series carries, merged across overflowed series.
impl Value {
    /// The values whose decrease means the source restarted.
    fn totals(&self) -> (f64, f64) {
        match self {
            Value::Number(v) => (*v, 0.0),
            Value::Summary { count, sum, .. } => (*count, *sum),
            Value::Histogram { count, sum, .. } => (*count, sum.unwrap_or(0.0)),
        }
    }

    /// Adds `other` into `self` (overflow); false when they cannot be added.
    fn merge(&mut self, other: Value, shape: Shape) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => {
                *a = if shape == Shape::Gauge { b } else { *a + b };
                true
            }
            (
                Value::Summary {
                    count,
                    sum,
                    quantiles,
                },
                Value::Summary {
                    count: c, sum: s, ..
                },
            ) => {
                *count += c;
                *sum += s;
                // Quantiles of different series cannot be combined.
                quantiles.clear();
                true
            }
            (
                Value::Histogram {
                    count,
                    sum,
                    buckets,
                },
                Value::Histogram {
                    count: c,
                    sum: s,
                    buckets: b,
                },
            ) if buckets.len() == b.len() && buckets.iter().zip(&b).all(|(x, y)| x.0 == y.0) => {
                *count += c;
                *sum = sum.zip(s).map(|(x, y)| x + y);
                for (x, y) in buckets.iter_mut().zip(b) {
                    x.1 += y.1;
                }
                true
            }
            _ => false,
        }
    }
}

/// A series' state between scrapes.
#[derive(Debug, Clone)]
struct State {
    metric: String,
    attributes: Vec<KeyValue>,
    start_ns: u64,
    totals: (f64, f64),
    last_seen_ns: u64,
    stale: bool,
}

/// How one family name reads: the role it arrived as, its OTel name, the attributes the name
/// itself carries.
type Reading = (Role, String, Vec<(String, String)>);

/// Turns one target's successive pages into OTLP metrics; keep one per scrape target.
#[derive(Debug)]
pub struct Normalizer {
    limits: Limits,
    prefix: Option<String>,
    refs: KnownRefs,
    metas: HashMap<String, Meta>,
    /// Family name → (role, OTel name, attributes the name carries): recognising st2's key
    /// patterns once per family, not once per scrape.
    names: HashMap<String, Reading>,
    states: HashMap<String, State>,
    per_metric: HashMap<String, usize>,
    stats: Stats,
    /// The source's `process_start_time_seconds` last seen; a later one means it restarted.
    source_start_ns: Option<u64>,
}

/// This scrape's series by key, in page order (a repeated series: the last one wins).
#[derive(Default)]
struct Batch {
    index: HashMap<String, usize>,
    items: Vec<(String, Pending)>,
}

impl Batch {
    fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Pending> {
        let i = *self.index.get(key)?;
        Some(&mut self.items[i].1)
    }

    fn insert(&mut self, key: String, p: Pending) {
        match self.index.get(&key) {
            Some(&i) => self.items[i].1 = p,
            None => {
                self.index.insert(key.clone(), self.items.len());
                self.items.push((key, p));
            }
        }
    }
}

/// A series observed in this scrape, before state is applied.
struct Pending {
    metric: String,
    attributes: Vec<KeyValue>,
    obs: Value,
    time_ns: u64,
    created_ns: Option<u64>,
}

impl Normalizer {
    /// A normalizer with `limits`; `prefix` is st2's `[metrics] prefix`, if one is set.
    pub fn new(limits: Limits, prefix: Option<String>) -> Self {
        Self {
            limits,
            prefix,
            refs: KnownRefs::default(),
            metas: HashMap::new(),
            names: HashMap::new(),
            states: HashMap::new(),
            per_metric: HashMap::new(),
            stats: Stats::default(),
            source_start_ns: None,
        }
    }

    /// Teaches the normalizer refs st2 has, so escaped names are read back exactly.
    pub fn learn_refs<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, refs: I) {
        let known = self.refs.len();
        self.refs.extend(refs);
        if self.refs.len() != known {
            // Names read before may now read back differently.
            self.names.clear();
        }
    }

    /// Counters of what was dropped, folded or evicted.
    pub fn stats(&self) -> Stats {
        Stats {
            series: self.states.len() as u64,
            ..self.stats
        }
    }

    /// Normalizes one scrape taken at `now_ns`. A failed scrape is an empty page: every
    /// series then goes stale.
    pub fn normalize(&mut self, page: &Exposition, now_ns: u64) -> Vec<Metric> {
        let source_start_ns = page
            .families
            .iter()
            .find(|f| f.name == "process_start_time_seconds")
            .and_then(|f| f.series.first())
            .and_then(|s| match s.value {
                Value::Number(v) if v > 0.0 => Some(secs_to_ns(v)),
                _ => None,
            })
            .filter(|&ns| ns <= now_ns);
        // A restarted source may climb back to or past its old totals before the next scrape,
        // so a falling total alone misses the reset; a later start time does not.
        let restarted_ns = match (self.source_start_ns, source_start_ns) {
            (Some(old), Some(new)) if new > old => Some(new),
            _ => None,
        };
        if source_start_ns.is_some() {
            self.source_start_ns = source_start_ns;
        }
        let mut pending = Batch::default();
        let mut admitted = (0, HashMap::new());
        for family in &page.families {
            self.observe(family, now_ns, &mut pending, &mut admitted);
        }
        let mut points: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        for (key, p) in pending.items {
            let shape = self.metas[&p.metric].shape;
            let state = match self.states.get_mut(&key) {
                Some(s) => s,
                None => {
                    let start_ns = p.created_ns.or(source_start_ns).unwrap_or(p.time_ns);
                    *self.per_metric.entry(p.metric.clone()).or_default() += 1;
                    self.states.entry(key).or_insert(State {
                        metric: p.metric.clone(),
                        attributes: p.attributes.clone(),
                        start_ns,
                        totals: p.obs.totals(),
                        last_seen_ns: p.time_ns,
                        stale: false,
                    })
                }
            };
            if shape != Shape::Gauge {
                let totals = p.obs.totals();
                let fell = totals.0 < state.totals.0 || totals.1 < state.totals.1;
                if fell || restarted_ns.is_some_and(|r| state.start_ns < r) {
                    // Somewhere after the last point the source started again from zero.
                    state.start_ns = p
                        .created_ns
                        .or(source_start_ns)
                        .filter(|&s| s > state.last_seen_ns)
                        .unwrap_or(state.last_seen_ns + 1);
                    self.stats.resets += 1;
                }
                state.totals = totals;
            }
            state.last_seen_ns = p.time_ns.max(state.last_seen_ns);
            state.stale = false;
            let start = if shape == Shape::Gauge {
                0
            } else {
                state.start_ns
            };
            points.entry(p.metric).or_default().push(Point {
                attributes: p.attributes,
                start_ns: start,
                time_ns: p.time_ns,
                obs: Some(p.obs),
            });
        }
        self.expire(now_ns, &mut points);
        points
            .into_iter()
            .map(|(name, pts)| self.metric(name, pts))
            .collect()
    }

    /// Flags series missing from this scrape once, and forgets them after the TTL.
    fn expire(&mut self, now_ns: u64, points: &mut BTreeMap<String, Vec<Point>>) {
        let ttl = self.limits.stale_ttl.as_nanos() as u64;
        let mut evict = Vec::new();
        for (key, s) in &mut self.states {
            if s.last_seen_ns >= now_ns {
                continue;
            }
            if !s.stale {
                s.stale = true;
                let shape = self.metas[&s.metric].shape;
                points.entry(s.metric.clone()).or_default().push(Point {
                    attributes: s.attributes.clone(),
                    start_ns: if shape == Shape::Gauge { 0 } else { s.start_ns },
                    time_ns: now_ns,
                    obs: None,
                });
            } else if now_ns.saturating_sub(s.last_seen_ns) >= ttl {
                evict.push(key.clone());
            }
        }
        for key in evict {
            if let Some(s) = self.states.remove(&key)
                && let Some(n) = self.per_metric.get_mut(&s.metric)
            {
                *n -= 1;
            }
            self.stats.evicted += 1;
        }
    }

    /// Reads one family's series into `pending`, applying names, attributes and caps;
    /// `admitted` counts the series new in this scrape, in all and per metric.
    fn observe(
        &mut self,
        family: &Family,
        now_ns: u64,
        pending: &mut Batch,
        admitted: &mut (usize, HashMap<String, usize>),
    ) {
        let (role, shape) = match family.kind {
            Kind::Counter => (Role::Counter, Shape::Sum),
            Kind::Gauge | Kind::Untyped => (Role::Gauge, Shape::Gauge),
            Kind::Summary => (Role::Timer, Shape::Summary),
            Kind::Histogram => (Role::Timer, Shape::Histogram),
        };
        let cached = self
            .names
            .get(&family.name)
            .filter(|c| c.0 == role && self.metas.contains_key(&c.1))
            .map(|c| (c.1.clone(), c.2.clone()));
        let (name, fixed) = match cached {
            Some(hit) => hit,
            None => {
                let (name, meta, fixed) = self.name_of(family, role, shape);
                if self.names.len() >= self.limits.max_series {
                    self.names.clear();
                }
                self.names
                    .insert(family.name.clone(), (role, name.clone(), fixed.clone()));
                self.metas.entry(name.clone()).or_insert(meta);
                (name, fixed)
            }
        };
        if self.metas[&name].shape != shape {
            self.stats.dropped += family.series.len() as u64;
            return;
        }
        for series in &family.series {
            let Some(obs) = observation(series) else {
                self.stats.dropped += 1;
                continue;
            };
            let mut attributes: Vec<KeyValue> = fixed
                .iter()
                .chain(series.labels.iter())
                .map(|(k, v)| attribute(k, v))
                .collect();
            attributes.sort_by(|a, b| a.key.cmp(&b.key));
            let mut key = series_key(&name, &attributes);
            if !self.states.contains_key(&key) && !pending.contains_key(&key) {
                let new_here = admitted.1.get(&name).copied().unwrap_or(0);
                let in_metric = self.per_metric.get(&name).copied().unwrap_or(0) + new_here;
                if in_metric >= self.limits.max_series_per_metric {
                    attributes = vec![bool_attribute(OVERFLOW_ATTRIBUTE, true)];
                    key = series_key(&name, &attributes);
                    self.stats.overflowed += 1;
                    if let Some(p) = pending.get_mut(&key) {
                        if !p.obs.merge(obs, shape) {
                            self.stats.dropped += 1;
                        }
                        continue;
                    }
                }
                if !self.states.contains_key(&key) {
                    if self.states.len() + admitted.0 >= self.limits.max_series {
                        self.stats.dropped += 1;
                        continue;
                    }
                    *admitted.1.entry(name.clone()).or_default() += 1;
                    admitted.0 += 1;
                }
            }
            let time_ns = series
                .timestamp_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .map_or(now_ns, |ms| ms * 1_000_000);
            pending.insert(
                key,
                Pending {
                    metric: name.clone(),
                    attributes,
                    obs,
                    time_ns,
                    created_ns: series.created.map(secs_to_ns),
                },
            );
        }
    }

    /// The OTel name, its description and the attributes the name itself carries.
    fn name_of(
        &self,
        family: &Family,
        role: Role,
        shape: Shape,
    ) -> (String, Meta, Vec<(String, String)>) {
        let (descriptor, fixed) = match st2::descriptor(&family.name) {
            Some(d) => (Some(d), Vec::new()),
            None => match st2::recognise_unmapped(
                &family.name,
                role,
                self.prefix.as_deref(),
                &self.refs,
            ) {
                Some(r) => (st2::descriptor(r.mapped), r.labels),
                None => (None, Vec::new()),
            },
        };
        match descriptor {
            Some(d) => (
                d.otel.to_string(),
                Meta {
                    shape,
                    unit: d.unit.to_string(),
                    description: d.description.to_string(),
                },
                fixed,
            ),
            // Not st2's: the spec's default is to keep the name unaltered.
            None => (
                family.name.clone(),
                Meta {
                    shape,
                    unit: family.unit.clone().unwrap_or_default(),
                    description: family.help.clone().unwrap_or_default(),
                },
                fixed,
            ),
        }
    }

    fn metric(&self, name: String, points: Vec<Point>) -> Metric {
        let meta = &self.metas[&name];
        let cumulative = AggregationTemporality::Cumulative as i32;
        let data = match meta.shape {
            Shape::Sum => metric::Data::Sum(Sum {
                data_points: points.into_iter().map(Point::number).collect(),
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
            Shape::Gauge => metric::Data::Gauge(Gauge {
                data_points: points.into_iter().map(Point::number).collect(),
            }),
            Shape::Summary => metric::Data::Summary(Summary {
                data_points: points.into_iter().map(Point::summary).collect(),
            }),
            Shape::Histogram => metric::Data::Histogram(Histogram {
                data_points: points.into_iter().map(Point::histogram).collect(),
                aggregation_temporality: cumulative,
            }),
        };
        Metric {
            name,
            description: meta.description.clone(),
            unit: meta.unit.clone(),
            metadata: Vec::new(),
            data: Some(data),
        }
    }
}

/// One output point; `obs` is `None` for the "no recorded value" point of a vanished series.
struct Point {
    attributes: Vec<KeyValue>,
    start_ns: u64,
    time_ns: u64,
    obs: Option<Value>,
}

const NO_VALUE: u32 = DataPointFlags::NoRecordedValueMask as u32;

impl Point {
    fn flags(&self) -> u32 {
        if self.obs.is_none() { NO_VALUE } else { 0 }
    }

    fn number(self) -> NumberDataPoint {
        let value = match self.obs {
            Some(Value::Number(v)) => v,
            _ => 0.0,
        };
        NumberDataPoint {
            flags: self.flags(),
            attributes: self.attributes,
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.time_ns,
            exemplars: Vec::new(),
            value: Some(number_data_point::Value::AsDouble(value)),
        }
    }

    fn summary(self) -> SummaryDataPoint {
        let flags = self.flags();
        let (count, sum, quantiles) = match self.obs {
            Some(Value::Summary {
                count,
                sum,
                quantiles,
            }) => (count, sum, quantiles),
            _ => (0.0, 0.0, Vec::new()),
        };
        SummaryDataPoint {
            attributes: self.attributes,
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.time_ns,
            count: count as u64,
            sum,
            quantile_values: quantiles
                .into_iter()
                .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                .collect(),
            flags,
        }
    }

    fn histogram(self) -> HistogramDataPoint {
        let flags = self.flags();
        let (count, sum, buckets) = match self.obs {
            Some(Value::Histogram {
                count,
                sum,
                buckets,
            }) => (count, sum, buckets),
            _ => (0.0, None, Vec::new()),
        };
        // Prometheus buckets are cumulative with an implicit +Inf; OTLP wants per-bucket
        // counts with one more bucket than bounds.
        let finite: Vec<(f64, f64)> = buckets
            .into_iter()
            .filter(|(le, _)| le.is_finite())
            .collect();
        let mut bucket_counts = Vec::with_capacity(finite.len() + 1);
        let mut below = 0.0;
        for (_, cumulative) in &finite {
            bucket_counts.push((cumulative - below).max(0.0) as u64);
            below = *cumulative;
        }
        bucket_counts.push((count - below).max(0.0) as u64);
        HistogramDataPoint {
            attributes: self.attributes,
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.time_ns,
            count: count as u64,
            sum,
            bucket_counts,
            explicit_bounds: finite.into_iter().map(|(le, _)| le).collect(),
            exemplars: Vec::new(),
            flags,
            min: None,
            max: None,
        }
    }
}

/// The observation a series carries, or `None` for one no OTel point can hold.
fn observation(series: &Series) -> Option<Value> {
    match &series.value {
        Value::Number(v) if v.is_nan() => None,
        other => Some(other.clone()),
    }
}

/// The OTel attribute for a label: mapping-file label names are renamed, status codes are
/// integers, request paths have ids folded.
fn attribute(label: &str, value: &str) -> KeyValue {
    let key = st2::attribute_name(label);
    let value = match key {
        "http.response.status_code" => match value.parse::<i64>() {
            Ok(code) => any_value::Value::IntValue(code),
            Err(_) => any_value::Value::StringValue(value.to_string()),
        },
        "st2.request.path" => any_value::Value::StringValue(st2::fold_ids(value)),
        _ => any_value::Value::StringValue(value.to_string()),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A boolean attribute.
pub(crate) fn bool_attribute(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::BoolValue(value)),
        }),
        ..Default::default()
    }
}

/// The text of an attribute value, for keys and tables.
pub fn value_text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn series_key(metric: &str, attributes: &[KeyValue]) -> String {
    use std::fmt::Write as _;
    let mut key = String::with_capacity(metric.len() + 32 * attributes.len());
    key.push_str(metric);
    for kv in attributes {
        key.push('\u{1f}');
        key.push_str(&kv.key);
        key.push('=');
        let _ = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => write!(key, "{s}"),
            Some(any_value::Value::IntValue(i)) => write!(key, "{i}"),
            Some(any_value::Value::BoolValue(b)) => write!(key, "{b}"),
            _ => write!(key, "{}", value_text(kv)),
        };
    }
    key
}

fn secs_to_ns(secs: f64) -> u64 {
    (secs * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::parse::parse;

    const SEC: u64 = 1_000_000_000;

    fn run(n: &mut Normalizer, text: &str, at: u64) -> Vec<Metric> {
        n.normalize(&parse(text), at * SEC)
    }

    fn sum_points(metrics: &[Metric], name: &str) -> Vec<NumberDataPoint> {
        match metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.data.clone())
        {
            Some(metric::Data::Sum(s)) => {
                assert!(s.is_monotonic);
                assert_eq!(
                    s.aggregation_temporality,
                    AggregationTemporality::Cumulative as i32
                );
                s.data_points
            }
            other => panic!("{name} is not a Sum: {other:?}"),
        }
    }

    fn value(p: &NumberDataPoint) -> f64 {
        match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            _ => f64::NAN,
        }
    }

    #[test]
    fn a_counter_reset_starts_a_new_interval_instead_of_going_negative() {
        let mut n = Normalizer::new(Limits::default(), None);
        let text = |v: u32| {
            format!(
                "# TYPE st2_action_core_local_executions counter\nst2_action_core_local_executions {v}\n"
            )
        };
        let first = sum_points(&run(&mut n, &text(5), 100), "st2.action.executions");
        assert_eq!(
            (value(&first[0]), first[0].start_time_unix_nano),
            (5.0, 100 * SEC)
        );
        let second = sum_points(&run(&mut n, &text(7), 110), "st2.action.executions");
        assert_eq!(
            (value(&second[0]), second[0].start_time_unix_nano),
            (7.0, 100 * SEC)
        );
        let reset = sum_points(&run(&mut n, &text(2), 120), "st2.action.executions");
        assert_eq!(value(&reset[0]), 2.0);
        assert!(
            reset[0].start_time_unix_nano > 110 * SEC && reset[0].start_time_unix_nano <= 120 * SEC
        );
        assert_eq!(n.stats().resets, 1);
    }

    #[test]
    fn the_sources_process_start_dates_first_points_and_resets() {
        let mut n = Normalizer::new(Limits::default(), None);
        let page = |start: u32, v: u32| {
            format!("process_start_time_seconds {start}\n# TYPE c counter\nc {v}\n")
        };
        let p = sum_points(&run(&mut n, &page(50, 3), 100), "c");
        assert_eq!(p[0].start_time_unix_nano, 50 * SEC);
        let p = sum_points(&run(&mut n, &page(105, 1), 110), "c");
        assert_eq!(p[0].start_time_unix_nano, 105 * SEC);
        // Back at or above the old total: only the new start time tells.
        let p = sum_points(&run(&mut n, &page(115, 4), 120), "c");
        assert_eq!(p[0].start_time_unix_nano, 115 * SEC);
        let p = sum_points(&run(&mut n, &page(115, 5), 130), "c");
        assert_eq!(p[0].start_time_unix_nano, 115 * SEC);
        assert_eq!(n.stats().resets, 2);
    }

    #[test]
    fn a_vanished_series_is_flagged_once_then_evicted_after_the_ttl() {
        let limits = Limits {
            stale_ttl: Duration::from_secs(30),
            ..Limits::default()
        };
        let mut n = Normalizer::new(limits, None);
        run(&mut n, "# TYPE g gauge\ng{a=\"1\"} 4\ng{a=\"2\"} 5\n", 100);
        let after = run(&mut n, "# TYPE g gauge\ng{a=\"1\"} 4\n", 110);
        let Some(metric::Data::Gauge(g)) = after[0].data.clone() else {
            panic!()
        };
        let flagged: Vec<u32> = g.data_points.iter().map(|p| p.flags).collect();
        assert_eq!(flagged, [0, NO_VALUE]);
        let again = run(&mut n, "# TYPE g gauge\ng{a=\"1\"} 4\n", 120);
        let Some(metric::Data::Gauge(g)) = again[0].data.clone() else {
            panic!()
        };
        assert_eq!(g.data_points.len(), 1, "flagged only once");
        assert_eq!(n.stats().series, 2);
        run(&mut n, "# TYPE g gauge\ng{a=\"1\"} 4\n", 141);
        assert_eq!((n.stats().series, n.stats().evicted), (1, 1));
    }

    #[test]
    fn series_past_the_cap_fold_into_the_overflow_series() {
        let limits = Limits {
            max_series_per_metric: 2,
            max_series: 3,
            ..Limits::default()
        };
        let mut n = Normalizer::new(limits, None);
        let mut text = String::from("# TYPE c counter\n");
        for i in 0..5 {
            text.push_str(&format!("c{{k=\"{i}\"}} 1\n"));
        }
        text.push_str("# TYPE d counter\nd{k=\"x\"} 1\nd{k=\"y\"} 1\n");
        let out = run(&mut n, &text, 100);
        let c = sum_points(&out, "c");
        assert_eq!(c.len(), 3);
        let overflow = c
            .iter()
            .find(|p| p.attributes[0].key == OVERFLOW_ATTRIBUTE)
            .unwrap();
        assert_eq!(value(overflow), 3.0);
        // The whole-target cap (3) is then reached: `d` gets nothing.
        assert!(out.iter().all(|m| m.name != "d"));
        assert_eq!(n.stats().overflowed, 3);
        assert_eq!(n.stats().dropped, 2);
    }

    #[test]
    fn summaries_stay_summaries_and_histograms_get_per_bucket_counts() {
        let mut n = Normalizer::new(Limits::default(), None);
        let out = run(
            &mut n,
            concat!(
                "# TYPE st2_action_executions_update_status summary\n",
                "st2_action_executions_update_status{quantile=\"0.5\"} 0.01\n",
                "st2_action_executions_update_status_sum 0.5\nst2_action_executions_update_status_count 41\n",
                "# TYPE st2_action_execution_duration_seconds histogram\n",
                "st2_action_execution_duration_seconds_bucket{action_ref=\"core.local\",le=\"0.5\"} 2\n",
                "st2_action_execution_duration_seconds_bucket{action_ref=\"core.local\",le=\"1\"} 5\n",
                "st2_action_execution_duration_seconds_bucket{action_ref=\"core.local\",le=\"+Inf\"} 6\n",
                "st2_action_execution_duration_seconds_sum{action_ref=\"core.local\"} 4.5\n",
                "st2_action_execution_duration_seconds_count{action_ref=\"core.local\"} 6\n",
            ),
            100,
        );
        let summary = out
            .iter()
            .find(|m| m.name == "st2.action.execution.operation.duration")
            .unwrap();
        assert_eq!(summary.unit, "s");
        let Some(metric::Data::Summary(s)) = summary.data.clone() else {
            panic!()
        };
        assert_eq!((s.data_points[0].count, s.data_points[0].sum), (41, 0.5));
        assert_eq!(value_text(&s.data_points[0].attributes[0]), "update_status");
        let hist = out
            .iter()
            .find(|m| m.name == "st2.action.execution.duration")
            .unwrap();
        let Some(metric::Data::Histogram(h)) = hist.data.clone() else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(
            (p.explicit_bounds.clone(), p.bucket_counts.clone()),
            (vec![0.5, 1.0], vec![2, 3, 1])
        );
        assert_eq!((p.count, p.sum), (6, Some(4.5)));
        assert_eq!(
            (p.attributes[0].key.as_str(), value_text(&p.attributes[0])),
            ("st2.action.ref", "core.local".into())
        );
    }

    #[test]
    fn refs_learned_later_change_how_escaped_names_read() {
        let mut n = Normalizer::new(Limits::default(), None);
        let page = "# TYPE st2_action_examples_orquesta_sequential_executions counter\nst2_action_examples_orquesta_sequential_executions 1\n";
        let refs = |out: &[Metric]| -> Vec<String> {
            sum_points(out, "st2.action.executions")
                .iter()
                .filter(|p| p.flags == 0)
                .map(|p| value_text(&p.attributes[0]))
                .collect()
        };
        assert_eq!(
            refs(&run(&mut n, page, 100)),
            ["examples_orquesta_sequential"]
        );
        n.learn_refs(["examples.orquesta-sequential"]);
        assert_eq!(
            refs(&run(&mut n, page, 110)),
            ["examples.orquesta-sequential"]
        );
    }

    #[test]
    fn mapped_labels_become_attributes_with_integer_status_codes() {
        let mut n = Normalizer::new(Limits::default(), None);
        let out = run(
            &mut n,
            "# TYPE st2_http_responses_total counter\nst2_http_responses_total{service=\"api\",code=\"201\"} 3\n",
            100,
        );
        let p = &sum_points(&out, "st2.http.server.responses")[0];
        let keys: Vec<&str> = p.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["http.response.status_code", "st2.service"]);
        assert_eq!(
            p.attributes[0].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(201))
        );
    }
}

#[cfg(test)]
mod st2_names {
    use super::*;
    use crate::telemetry::parse::parse;

    #[test]
    fn every_mapped_st2_metric_is_named_under_st2() {
        // st2's request timer lacks the attributes OTel's stable http.server.request.duration
        // requires, so it must not take that name.
        let mut n = Normalizer::new(Limits::default(), None);
        let out = n.normalize(
            &parse(
                "# TYPE st2_http_request_duration_seconds histogram\n\
                 st2_http_request_duration_seconds_bucket{service=\"api\",le=\"+Inf\"} 2\n\
                 st2_http_request_duration_seconds_sum{service=\"api\"} 0.5\n\
                 st2_http_request_duration_seconds_count{service=\"api\"} 2\n",
            ),
            1_000_000_000,
        );
        let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["st2.http.server.request.duration"]);
        for def in crate::telemetry::st2::DESCRIPTORS {
            assert!(
                def.otel.starts_with("st2."),
                "{} is not under st2.",
                def.otel
            );
        }
    }
}
