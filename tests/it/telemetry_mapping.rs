//! `deploy/statsd-exporter/statsd-mapping.yml` parses, covers every st2 key pattern for every
//! statsd type st2 sends under it, and yields exactly the names and labels the normalizer reads
//! back from an unmapped exporter — so mapped and unmapped deployments normalize to the same metrics.
//!
//! The file is applied here the way statsd_exporter applies it: rules in order, first match
//! wins, `match_metric_type` filters, a glob `*` matches one dot-free segment, regex rules
//! are regexes, `$n` in labels takes the n-th capture.

use std::collections::{BTreeMap, BTreeSet};

use portarium_st2::telemetry::st2::{self, KnownRefs, Role};
use regex::Regex;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    defaults: Defaults,
    mappings: Vec<Mapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    observer_type: String,
    histogram_options: HistogramOptions,
    glob_disable_ordering: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramOptions {
    buckets: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mapping {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    match_type: Option<String>,
    #[serde(default)]
    match_metric_type: Option<String>,
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn load() -> MappingFile {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/statsd-exporter/statsd-mapping.yml"
    ))
    .unwrap();
    serde_norway::from_str(&text).expect("the mapping file parses")
}

impl Mapping {
    fn regex(&self) -> Regex {
        match self.match_type.as_deref() {
            Some("regex") => Regex::new(&self.pattern).unwrap(),
            None | Some("glob") => {
                let parts: Vec<String> = self.pattern.split('*').map(regex::escape).collect();
                Regex::new(&format!("^{}$", parts.join("([^.]+)"))).unwrap()
            }
            Some(other) => panic!("unknown match_type {other}"),
        }
    }

    fn applies_to(&self, role: Role) -> bool {
        match (self.match_metric_type.as_deref(), role) {
            (None, _) => true,
            (Some("counter"), Role::Counter)
            | (Some("observer"), Role::Timer)
            | (Some("gauge"), Role::Gauge) => true,
            (Some("counter" | "observer" | "gauge"), _) => false,
            (Some(other), _) => panic!("unknown match_metric_type {other}"),
        }
    }
}

/// What statsd_exporter makes of one statsd key of one type.
fn apply(file: &MappingFile, key: &str, role: Role) -> Option<(String, Vec<(String, String)>)> {
    file.mappings
        .iter()
        .filter(|m| m.applies_to(role))
        .find_map(|m| {
            let caps = m.regex().captures(key)?;
            let mut labels: Vec<(String, String)> = m
                .labels
                .iter()
                .map(|(k, v)| {
                    let mut value = v.clone();
                    for i in (1..caps.len()).rev() {
                        value =
                            value.replace(&format!("${i}"), caps.get(i).map_or("", |c| c.as_str()));
                    }
                    (k.clone(), value)
                })
                .collect();
            labels.sort();
            Some((m.name.clone(), labels))
        })
}

/// One concrete key per st2 key pattern (st2-api.md §9.3), with refs that an escaped name
/// cannot tell apart on its own.
const EXAMPLES: &[&str] = &[
    "st2.action.executions",
    "st2.action.executions.process.scheduled",
    "st2.action.executions.process.canceling",
    "st2.action.executions.update_status",
    "st2.action.executions.calculate_result_size",
    "st2.action.executions.succeeded",
    "st2.action.executions.requested",
    "st2.action.core.local.executions",
    "st2.action.examples.orquesta-sequential.executions",
    "st2.rule.processed",
    "st2.rule.matched",
    "st2.rule.examples.sample_rule_with_webhook.matched",
    "st2.trigger.core.st2.IntervalTimer.processed",
    "st2.api.request.total",
    "st2.auth.request.method.POST",
    "st2.api.request.path._v1_executions",
    "st2.stream.request",
    "st2.api.request",
    "st2.api.response.status.201",
    "st2.stream.connections",
    "st2.scheduler.handle_execution",
    "st2.orquesta.workflow.executions",
    "st2.orquesta.action.executions",
    "st2.notifier.notify_trigger.post",
    "st2.notifier.transform_message",
    "st2.amqp.publish.update",
    "st2.amqp.pool_publisher.publish_with_retries.st2.execution",
    "st2.st2.register.actions",
];

fn refs() -> KnownRefs {
    let mut refs = KnownRefs::default();
    refs.extend([
        "examples.orquesta-sequential",
        "examples.sample_rule_with_webhook",
        "core.st2.IntervalTimer",
    ]);
    refs
}

#[test]
fn the_mapping_file_parses_with_histogram_timers() {
    let file = load();
    assert_eq!(file.defaults.observer_type, "histogram");
    assert!(
        !file.defaults.glob_disable_ordering,
        "rules must apply in order"
    );
    assert!(
        file.defaults
            .histogram_options
            .buckets
            .windows(2)
            .all(|w| w[0] < w[1])
    );
    let name = Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").unwrap();
    for m in &file.mappings {
        assert!(name.is_match(&m.name), "{}", m.name);
        m.regex();
        assert!(
            st2::descriptor(&m.name).is_some(),
            "{} has no OTel descriptor",
            m.name
        );
    }
}

#[test]
fn mapped_and_unmapped_exporters_normalize_alike_for_every_key_pattern() {
    let file = load();
    let refs = refs();
    let mut covered: BTreeSet<(&str, String)> = BTreeSet::new();
    for key in EXAMPLES {
        let mut matched_any = false;
        for role in [Role::Counter, Role::Timer, Role::Gauge] {
            let unmapped = st2::recognise_unmapped(&st2::escape(key), role, None, &refs);
            let mapped = apply(&file, key, role);
            match (&unmapped, mapped) {
                (Some(u), Some((name, labels))) => {
                    assert_eq!(
                        (u.mapped, &u.labels),
                        (name.as_str(), &labels),
                        "{key} as {role:?}"
                    );
                    covered.insert((u.pattern, format!("{role:?}")));
                    matched_any = true;
                }
                (None, None) => {}
                (u, m) => {
                    panic!("{key} as {role:?}: unmapped reads {u:?}, the mapping file gives {m:?}")
                }
            }
        }
        assert!(matched_any, "{key} matches nothing");
    }
    for (pattern, roles) in st2::key_patterns() {
        for role in roles {
            assert!(
                covered.contains(&(pattern, format!("{role:?}"))),
                "no example covers {pattern} as {role:?}"
            );
        }
    }
}

/// Every key a real st2 sent (`captures/statsd-metric-names.txt`, recorded with no
/// `[metrics] prefix`) is mapped, and mapped alike when st2 sends it with `prefix = st2`
/// (`st2.st2.<key>`): a deployment that sets the prefix loses no metric.
#[test]
fn real_st2_keys_map_alike_with_and_without_the_st2_prefix() {
    if crate::support::missing() {
        return;
    }
    let names = std::fs::read_to_string(
        crate::support::reference_dir().join("captures/statsd-metric-names.txt"),
    )
    .unwrap();
    let file = load();
    let mut mapped = 0;
    for line in names.lines().filter(|l| !l.trim().is_empty()) {
        // `  <count> <key> |<type>`
        let mut fields = line.split_whitespace().skip(1);
        let (Some(key), Some(kind)) = (fields.next(), fields.next()) else {
            panic!("unexpected line {line:?}");
        };
        let role = match kind {
            "|c" => Role::Counter,
            "|ms" => Role::Timer,
            "|g" => Role::Gauge,
            other => panic!("{key}: unknown statsd type {other}"),
        };
        let plain = apply(&file, key, role);
        let prefixed_key = format!("st2.st2.{}", key.strip_prefix("st2.").unwrap());
        let prefixed = apply(&file, &prefixed_key, role);
        assert!(plain.is_some(), "{key} {kind} is not mapped");
        assert_eq!(
            plain, prefixed,
            "{key} {kind} maps differently with prefix = st2"
        );
        mapped += 1;
    }
    assert!(mapped >= 90, "only {mapped} keys read from the capture");
}
