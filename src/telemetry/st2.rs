//! st2's metric keys: which OpenTelemetry metric each one becomes, read either from the
//! labelled names our statsd_exporter mapping (`deploy/statsd-exporter/statsd-mapping.yml`)
//! produces or from the escaped names an unmapped exporter produces
//! (`st2.action.core.local.executions` → `st2_action_core_local_executions`).
//!
//! Both roads meet in one table ([`DESCRIPTORS`]): an unmapped name is first rewritten to the
//! mapped name and labels the mapping file would have produced, so there is one mapping to
//! document and test. The full table is in docs/telemetry.md.

use std::collections::HashMap;

/// How a metric is read, once its name is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The name the mapping file gives it (Prometheus side).
    pub mapped: &'static str,
    /// The OpenTelemetry name.
    pub otel: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// One-line description.
    pub description: &'static str,
}

const fn d(
    mapped: &'static str,
    otel: &'static str,
    unit: &'static str,
    description: &'static str,
) -> Descriptor {
    Descriptor {
        mapped,
        otel,
        unit,
        description,
    }
}

/// Every st2 metric we know, by its mapped Prometheus name.
pub const DESCRIPTORS: &[Descriptor] = &[
    d(
        "st2_actionrunner_executions_total",
        "st2.actionrunner.executions",
        "{execution}",
        "Runs handled by action runners (st2 counts each run twice: container dispatch and runner.run).",
    ),
    d(
        "st2_actionrunner_execution_duration_seconds",
        "st2.actionrunner.execution.duration",
        "s",
        "Time action runners spent per run phase.",
    ),
    d(
        "st2_action_executions_total",
        "st2.action.executions",
        "{execution}",
        "Runs per action.",
    ),
    d(
        "st2_action_execution_duration_seconds",
        "st2.action.execution.duration",
        "s",
        "Run time per action.",
    ),
    d(
        "st2_action_executions_processed_total",
        "st2.action.executions.processed",
        "{execution}",
        "Executions dispatched to a runner, by requested status (scheduled, canceling, pausing, resuming).",
    ),
    d(
        "st2_action_execution_process_duration_seconds",
        "st2.action.execution.process.duration",
        "s",
        "Runner dispatch time, by requested status.",
    ),
    d(
        "st2_action_execution_status_entries_total",
        "st2.action.execution.status.entries",
        "{execution}",
        "Executions entering each status (st2's decrements are dropped by statsd_exporter).",
    ),
    d(
        "st2_action_execution_operation_duration_seconds",
        "st2.action.execution.operation.duration",
        "s",
        "Time of execution bookkeeping (update_status, update_liveaction_db, update_execution_db, calculate_result_size).",
    ),
    d(
        "st2_rule_evaluations_total",
        "st2.rule.evaluations",
        "{trigger_instance}",
        "Trigger instances the rules engine processed.",
    ),
    d(
        "st2_rule_evaluation_duration_seconds",
        "st2.rule.evaluation.duration",
        "s",
        "Rules-engine time per trigger instance.",
    ),
    d(
        "st2_rulesengine_matches_total",
        "st2.rulesengine.matches",
        "{match}",
        "Rule matches, all rules.",
    ),
    d(
        "st2_rule_matches_total",
        "st2.rule.matches",
        "{match}",
        "Rule matches per rule.",
    ),
    d(
        "st2_trigger_instances_processed_total",
        "st2.trigger.instances.processed",
        "{trigger_instance}",
        "Trigger instances processed per trigger.",
    ),
    d(
        "st2_trigger_processing_duration_seconds",
        "st2.trigger.processing.duration",
        "s",
        "Processing time per trigger.",
    ),
    d(
        "st2_http_requests_total",
        "st2.http.server.requests",
        "{request}",
        "Requests per st2 service.",
    ),
    d(
        "st2_http_requests_started_total",
        "st2.http.server.requests.started",
        "{request}",
        "Requests whose handling began (stream: connections opened).",
    ),
    d(
        "st2_http_request_duration_seconds",
        // Not OTel's stable `http.server.request.duration`: st2's timer has none of the
        // attributes that metric requires (method, scheme, route, status), and its stream
        // timer measures connection lifetimes, not requests.
        "st2.http.server.request.duration",
        "s",
        "Request time per st2 service (stream: connection lifetime).",
    ),
    d(
        "st2_http_requests_by_method_total",
        "st2.http.server.requests.by_method",
        "{request}",
        "Requests per st2 service and method.",
    ),
    d(
        "st2_http_requests_by_path_total",
        "st2.http.server.requests.by_path",
        "{request}",
        "Requests per st2 service and path (ids folded into {id}).",
    ),
    d(
        "st2_http_responses_total",
        "st2.http.server.responses",
        "{response}",
        "Responses per st2 service and status code.",
    ),
    d(
        "st2_stream_connections",
        "st2.stream.connection.count",
        "{connection}",
        "Open st2stream connections.",
    ),
    d(
        "st2_scheduler_executions_handled_total",
        "st2.scheduler.executions.handled",
        "{execution}",
        "Executions the scheduler handled.",
    ),
    d(
        "st2_scheduler_handle_execution_duration_seconds",
        "st2.scheduler.handle_execution.duration",
        "s",
        "Scheduler time per execution.",
    ),
    d(
        "st2_orquesta_executions_total",
        "st2.orquesta.executions",
        "{execution}",
        "Orquesta workflow and task executions handled by the workflow engine.",
    ),
    d(
        "st2_orquesta_execution_duration_seconds",
        "st2.orquesta.execution.duration",
        "s",
        "Workflow-engine handling time.",
    ),
    d(
        "st2_notifier_operations_total",
        "st2.notifier.operations",
        "{operation}",
        "Notifier operations.",
    ),
    d(
        "st2_notifier_operation_duration_seconds",
        "st2.notifier.operation.duration",
        "s",
        "Notifier operation time.",
    ),
    d(
        "st2_amqp_publish_duration_seconds",
        "st2.amqp.publish.duration",
        "s",
        "Message-bus publish time per operation.",
    ),
    d(
        "st2_amqp_publish_with_retries_duration_seconds",
        "st2.amqp.publish_with_retries.duration",
        "s",
        "Pooled publish time per exchange.",
    ),
    d(
        "st2_register_duration_seconds",
        "st2.register.duration",
        "s",
        "Content registration time per content type.",
    ),
];

/// Mapping-file label names and the OTel attribute each becomes.
pub const LABELS: &[(&str, &str)] = &[
    ("action_ref", "st2.action.ref"),
    ("rule_ref", "st2.rule.ref"),
    ("trigger_ref", "st2.trigger.ref"),
    ("status", "st2.execution.status"),
    ("service", "st2.service"),
    ("method", "http.request.method"),
    ("path", "st2.request.path"),
    ("code", "http.response.status_code"),
    ("operation", "st2.operation"),
    ("workflow_kind", "st2.orquesta.kind"),
    ("exchange", "messaging.destination.name"),
    ("content", "st2.content.type"),
];

/// The descriptor for a mapped name.
pub fn descriptor(mapped: &str) -> Option<&'static Descriptor> {
    DESCRIPTORS.iter().find(|d| d.mapped == mapped)
}

/// The OTel attribute for a mapping-file label (unknown labels keep their name).
pub fn attribute_name(label: &str) -> &str {
    LABELS
        .iter()
        .find(|(l, _)| *l == label)
        .map_or(label, |(_, a)| a)
}

/// statsd_exporter's escaping of a statsd key into a metric name (pkg/mapper/escape.go).
pub fn escape(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// What a captured key segment may be, and how it is restored from its escaped form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cap {
    /// `api`, `auth` or `stream`.
    Service,
    /// An execution status word.
    Status,
    /// An HTTP method.
    Method,
    /// An HTTP status code.
    Code,
    /// A path as st2 writes it (`/` already `_`).
    Path,
    /// An action ref (pack.name).
    ActionRef,
    /// A rule ref.
    RuleRef,
    /// A trigger ref (may hold several dots).
    TriggerRef,
    /// One of the given dotted words.
    OneOf(&'static [&'static str]),
    /// A message-bus exchange name.
    Exchange,
}

/// One piece of a key pattern.
#[derive(Debug, Clone, Copy)]
enum Tok {
    Lit(&'static str),
    Cap(Cap),
}

/// A st2 key pattern: what the counter and the timer under it are mapped to.
struct Rule {
    /// The dotted key after `st2.` with captures, for docs and tests.
    key: &'static str,
    tokens: &'static [Tok],
    /// (mapped counter name, label name of each capture) — `None` where st2 sends no counter.
    counter: Option<(&'static str, &'static [&'static str])>,
    timer: Option<(&'static str, &'static [&'static str])>,
    gauge: Option<&'static str>,
    fixed: &'static [(&'static str, &'static str)],
}

use Cap::*;
use Tok::{Cap as C, Lit as L};

const STATUSES: &[&str] = &[
    "requested",
    "scheduled",
    "delayed",
    "running",
    "succeeded",
    "failed",
    "timeout",
    "abandoned",
    "canceling",
    "canceled",
    "pausing",
    "paused",
    "resuming",
    "pending",
];
const BOOKKEEPING: &[&str] = &[
    "update_status",
    "update_liveaction_db",
    "update_execution_db",
    "calculate_result_size",
];
const NOTIFIER_OPS: &[&str] = &[
    "action.executions",
    "apply_post_run_policies",
    "notify_trigger.post",
    "notify_trigger.dispatch",
    "generic_trigger.post",
    "generic_trigger.dispatch",
    "transform_message",
    "transform_data",
];
const EXCHANGES: &[&str] = &[
    "st2.execution",
    "st2.execution.output",
    "st2.liveaction",
    "st2.liveaction.status",
    "st2.actionexecutionstate",
    "st2.workflow",
    "st2.workflow.status",
    "st2.trigger",
    "st2.trigger_instances_dispatch",
    "st2.sensor",
    "st2.announcement",
    "st2.actionalias",
];
const CONTENT: &[&str] = &[
    "triggers", "sensors", "runners", "actions", "rules", "aliases", "policies", "configs",
];
const SERVICES: &[&str] = &["api", "auth", "stream"];

/// Every st2 key pattern (st2-api.md §9.3), most specific first.
const RULES: &[Rule] = &[
    Rule {
        key: "action.executions",
        tokens: &[L("action.executions")],
        counter: Some(("st2_actionrunner_executions_total", &[])),
        timer: Some(("st2_actionrunner_execution_duration_seconds", &[])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "action.executions.process.<status>",
        tokens: &[L("action.executions.process."), C(Status)],
        counter: Some(("st2_action_executions_processed_total", &["status"])),
        timer: Some(("st2_action_execution_process_duration_seconds", &["status"])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "action.executions.<operation>",
        tokens: &[L("action.executions."), C(OneOf(BOOKKEEPING))],
        counter: None,
        timer: Some((
            "st2_action_execution_operation_duration_seconds",
            &["operation"],
        )),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "action.executions.<status>",
        tokens: &[L("action.executions."), C(Status)],
        counter: Some(("st2_action_execution_status_entries_total", &["status"])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "action.<action ref>.executions",
        tokens: &[L("action."), C(ActionRef), L(".executions")],
        counter: Some(("st2_action_executions_total", &["action_ref"])),
        timer: Some(("st2_action_execution_duration_seconds", &["action_ref"])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "rule.processed",
        tokens: &[L("rule.processed")],
        counter: Some(("st2_rule_evaluations_total", &[])),
        timer: Some(("st2_rule_evaluation_duration_seconds", &[])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "rule.matched",
        tokens: &[L("rule.matched")],
        counter: Some(("st2_rulesengine_matches_total", &[])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "rule.<rule ref>.matched",
        tokens: &[L("rule."), C(RuleRef), L(".matched")],
        counter: Some(("st2_rule_matches_total", &["rule_ref"])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "trigger.<trigger ref>.processed",
        tokens: &[L("trigger."), C(TriggerRef), L(".processed")],
        counter: Some(("st2_trigger_instances_processed_total", &["trigger_ref"])),
        timer: Some(("st2_trigger_processing_duration_seconds", &["trigger_ref"])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "<service>.request.total",
        tokens: &[C(Service), L(".request.total")],
        counter: Some(("st2_http_requests_total", &["service"])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "<service>.request.method.<method>",
        tokens: &[C(Service), L(".request.method."), C(Method)],
        counter: Some(("st2_http_requests_by_method_total", &["service", "method"])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "<service>.request.path.<path>",
        tokens: &[C(Service), L(".request.path."), C(Path)],
        counter: Some(("st2_http_requests_by_path_total", &["service", "path"])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "<service>.request",
        tokens: &[C(Service), L(".request")],
        counter: Some(("st2_http_requests_started_total", &["service"])),
        timer: Some(("st2_http_request_duration_seconds", &["service"])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "<service>.response.status.<code>",
        tokens: &[C(Service), L(".response.status."), C(Code)],
        counter: Some(("st2_http_responses_total", &["service", "code"])),
        timer: None,
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "stream.connections",
        tokens: &[L("stream.connections")],
        counter: None,
        timer: None,
        gauge: Some("st2_stream_connections"),
        fixed: &[],
    },
    Rule {
        key: "scheduler.handle_execution",
        tokens: &[L("scheduler.handle_execution")],
        counter: Some(("st2_scheduler_executions_handled_total", &[])),
        timer: Some(("st2_scheduler_handle_execution_duration_seconds", &[])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "orquesta.workflow.executions",
        tokens: &[L("orquesta.workflow.executions")],
        counter: Some(("st2_orquesta_executions_total", &[])),
        timer: Some(("st2_orquesta_execution_duration_seconds", &[])),
        gauge: None,
        fixed: &[("workflow_kind", "workflow")],
    },
    Rule {
        key: "orquesta.action.executions",
        tokens: &[L("orquesta.action.executions")],
        counter: Some(("st2_orquesta_executions_total", &[])),
        timer: Some(("st2_orquesta_execution_duration_seconds", &[])),
        gauge: None,
        fixed: &[("workflow_kind", "action")],
    },
    Rule {
        key: "notifier.<operation>",
        tokens: &[L("notifier."), C(OneOf(NOTIFIER_OPS))],
        counter: Some(("st2_notifier_operations_total", &["operation"])),
        timer: Some(("st2_notifier_operation_duration_seconds", &["operation"])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "amqp.publish.<operation>",
        tokens: &[
            L("amqp.publish."),
            C(OneOf(&["create", "update", "delete", "state"])),
        ],
        counter: None,
        timer: Some(("st2_amqp_publish_duration_seconds", &["operation"])),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "amqp.pool_publisher.publish_with_retries.<exchange>",
        tokens: &[L("amqp.pool_publisher.publish_with_retries."), C(Exchange)],
        counter: None,
        timer: Some((
            "st2_amqp_publish_with_retries_duration_seconds",
            &["exchange"],
        )),
        gauge: None,
        fixed: &[],
    },
    Rule {
        key: "st2.register.<content>",
        tokens: &[L("st2.register."), C(OneOf(CONTENT))],
        counter: None,
        timer: Some(("st2_register_duration_seconds", &["content"])),
        gauge: None,
        fixed: &[],
    },
];

/// The statsd type a metric arrived as (after the exporter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `|c` → counter.
    Counter,
    /// `|ms` → summary or histogram.
    Timer,
    /// `|g` → gauge.
    Gauge,
}

/// A recognised st2 metric: its mapped name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    /// The st2 key pattern it matched (as [`key_patterns`] lists them).
    pub pattern: &'static str,
    /// The mapped name (a key of [`DESCRIPTORS`]).
    pub mapped: &'static str,
    /// Mapping-file labels, values restored.
    pub labels: Vec<(String, String)>,
}

/// Refs st2 knows, so escaped names (`examples_orquesta_sequential`) are read back
/// correctly (`examples.orquesta-sequential`): escaping loses `.` and `-`.
#[derive(Debug, Clone, Default)]
pub struct KnownRefs {
    by_escaped: HashMap<String, String>,
}

impl KnownRefs {
    /// Learns `refs` (action, rule or trigger refs).
    pub fn extend<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, refs: I) {
        for r in refs {
            let r = r.as_ref();
            self.by_escaped.insert(escape(r), r.to_string());
        }
    }

    /// How many refs are known.
    pub fn len(&self) -> usize {
        self.by_escaped.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.by_escaped.is_empty()
    }

    /// The dotted ref an escaped one stands for: a known ref, else the single `_` read as
    /// the pack separator, else the escaped text unchanged (never a guess that could be wrong
    /// in a way that looks right).
    fn restore(&self, escaped: &str) -> String {
        if let Some(r) = self.by_escaped.get(escaped) {
            return r.clone();
        }
        if escaped.matches('_').count() == 1 {
            return escaped.replacen('_', ".", 1);
        }
        escaped.to_string()
    }
}

/// The key after `st2.` and the configured prefix, or `None` for a name that is not st2's.
fn strip_prefix<'a>(name: &'a str, prefix: Option<&str>) -> Option<&'a str> {
    let rest = name.strip_prefix("st2_")?;
    match prefix {
        Some(p) => rest.strip_prefix(&escape(p))?.strip_prefix('_'),
        None => Some(rest),
    }
}

/// Recognises an escaped (unmapped) statsd_exporter name.
pub fn recognise_unmapped(
    name: &str,
    role: Role,
    prefix: Option<&str>,
    refs: &KnownRefs,
) -> Option<Recognised> {
    let key = strip_prefix(name, prefix)?;
    RULES.iter().find_map(|rule| {
        let (mapped, label_names) = match role {
            Role::Counter => rule.counter?,
            Role::Timer => rule.timer?,
            Role::Gauge => (rule.gauge?, &[][..]),
        };
        let captures = match_tokens(rule.tokens, key, refs)?;
        let mut labels: Vec<(String, String)> = label_names
            .iter()
            .zip(captures)
            .map(|(l, v)| (l.to_string(), v))
            .collect();
        labels.extend(
            rule.fixed
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        labels.sort();
        Some(Recognised {
            pattern: rule.key,
            mapped,
            labels,
        })
    })
}

/// Matches escaped `text` against a pattern; captures come back restored.
fn match_tokens(tokens: &[Tok], text: &str, refs: &KnownRefs) -> Option<Vec<String>> {
    let Some((first, rest)) = tokens.split_first() else {
        return text.is_empty().then(Vec::new);
    };
    match *first {
        L(lit) => {
            let tail = text.get(lit.len()..)?;
            escaped_eq(&text.as_bytes()[..lit.len()], lit).then_some(())?;
            match_tokens(rest, tail, refs)
        }
        C(cap) => {
            // Try every split point: the capture is the text before the next literal.
            let ends: Vec<usize> = match rest.first() {
                None => vec![text.len()],
                Some(L(lit)) => text
                    .as_bytes()
                    .windows(lit.len())
                    .enumerate()
                    .filter(|(_, w)| escaped_eq(w, lit))
                    .map(|(i, _)| i)
                    .collect(),
                Some(C(..)) => return None,
            };
            ends.into_iter().filter(|&end| end > 0).find_map(|end| {
                let value = restore(cap, &text[..end], refs)?;
                let mut tail = match_tokens(rest, &text[end..], refs)?;
                tail.insert(0, value);
                Some(tail)
            })
        }
    }
}

/// Whether `bytes` is `lit` as statsd_exporter escapes it (without allocating: this runs
/// for every rule on every unmapped family of every scrape).
fn escaped_eq(bytes: &[u8], lit: &str) -> bool {
    bytes.len() == lit.len()
        && bytes.iter().zip(lit.bytes()).all(|(&b, l)| {
            b == if l.is_ascii_alphanumeric() || l == b'_' {
                l
            } else {
                b'_'
            }
        })
}

/// The original value of an escaped capture, or `None` when it cannot be one of `cap`.
fn restore(cap: Cap, escaped: &str, refs: &KnownRefs) -> Option<String> {
    let word = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    match cap {
        Service => SERVICES.contains(&escaped).then(|| escaped.to_string()),
        Status => STATUSES.contains(&escaped).then(|| escaped.to_string()),
        Method => (word(escaped) && escaped.bytes().all(|b| b.is_ascii_uppercase()))
            .then(|| escaped.to_string()),
        Code => (escaped.len() == 3 && escaped.bytes().all(|b| b.is_ascii_digit()))
            .then(|| escaped.to_string()),
        Path => Some(fold_ids(escaped)),
        ActionRef | RuleRef | TriggerRef => Some(refs.restore(escaped)),
        OneOf(words) => words
            .iter()
            .find(|w| escape(w) == escaped)
            .map(|w| w.to_string()),
        Exchange => Some(
            EXCHANGES
                .iter()
                .find(|x| escape(x) == escaped)
                .map_or_else(|| escaped.to_string(), |x| x.to_string()),
        ),
    }
}

/// st2 puts execution ids into request paths (`_v1_executions_<24 hex>`); they become
/// `{id}` so one path is one series.
pub fn fold_ids(path: &str) -> String {
    path.split('_')
        .map(|seg| {
            if seg.len() == 24 && seg.bytes().all(|b| b.is_ascii_hexdigit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// Every st2 key pattern with the statsd types st2 sends under it, for docs and tests.
pub fn key_patterns() -> impl Iterator<Item = (&'static str, Vec<Role>)> {
    RULES.iter().map(|r| {
        let roles = [
            (r.counter.is_some(), Role::Counter),
            (r.timer.is_some(), Role::Timer),
            (r.gauge.is_some(), Role::Gauge),
        ]
        .into_iter()
        .filter_map(|(has, role)| has.then_some(role))
        .collect();
        (r.key, roles)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, role: Role, refs: &KnownRefs) -> Option<(String, Vec<(String, String)>)> {
        recognise_unmapped(name, role, None, refs).map(|r| (r.mapped.to_string(), r.labels))
    }

    fn l(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unmapped_names_become_labelled_metrics() {
        let refs = KnownRefs::default();
        let cases = [
            (
                "st2_action_executions",
                Role::Counter,
                "st2_actionrunner_executions_total",
                l(&[]),
            ),
            (
                "st2_action_core_local_executions",
                Role::Counter,
                "st2_action_executions_total",
                l(&[("action_ref", "core.local")]),
            ),
            (
                "st2_action_executions_process_scheduled",
                Role::Counter,
                "st2_action_executions_processed_total",
                l(&[("status", "scheduled")]),
            ),
            (
                "st2_action_executions_succeeded",
                Role::Counter,
                "st2_action_execution_status_entries_total",
                l(&[("status", "succeeded")]),
            ),
            (
                "st2_action_executions_update_status",
                Role::Timer,
                "st2_action_execution_operation_duration_seconds",
                l(&[("operation", "update_status")]),
            ),
            (
                "st2_api_request_method_GET",
                Role::Counter,
                "st2_http_requests_by_method_total",
                l(&[("method", "GET"), ("service", "api")]),
            ),
            (
                "st2_api_request_path__v1_executions_6b064c380b87881fc7ec3bd8",
                Role::Counter,
                "st2_http_requests_by_path_total",
                l(&[("path", "_v1_executions_{id}"), ("service", "api")]),
            ),
            (
                "st2_api_request_total",
                Role::Counter,
                "st2_http_requests_total",
                l(&[("service", "api")]),
            ),
            (
                "st2_api_request",
                Role::Counter,
                "st2_http_requests_started_total",
                l(&[("service", "api")]),
            ),
            (
                "st2_stream_response_status_200",
                Role::Counter,
                "st2_http_responses_total",
                l(&[("code", "200"), ("service", "stream")]),
            ),
            (
                "st2_stream_connections",
                Role::Gauge,
                "st2_stream_connections",
                l(&[]),
            ),
            (
                "st2_amqp_pool_publisher_publish_with_retries_st2_execution",
                Role::Timer,
                "st2_amqp_publish_with_retries_duration_seconds",
                l(&[("exchange", "st2.execution")]),
            ),
            (
                "st2_notifier_notify_trigger_post",
                Role::Counter,
                "st2_notifier_operations_total",
                l(&[("operation", "notify_trigger.post")]),
            ),
            (
                "st2_orquesta_workflow_executions",
                Role::Counter,
                "st2_orquesta_executions_total",
                l(&[("workflow_kind", "workflow")]),
            ),
            (
                "st2_st2_register_actions",
                Role::Timer,
                "st2_register_duration_seconds",
                l(&[("content", "actions")]),
            ),
        ];
        for (name, role, mapped, labels) in cases {
            assert_eq!(
                rec(name, role, &refs),
                Some((mapped.to_string(), labels)),
                "{name}"
            );
        }
        assert_eq!(rec("go_goroutines", Role::Gauge, &refs), None);
        // `action.executions.update_status` is only ever a timer.
        assert_eq!(
            rec("st2_action_executions_update_status", Role::Counter, &refs),
            None
        );
    }

    #[test]
    fn dotted_refs_come_back_from_known_refs_only_when_ambiguous() {
        let mut refs = KnownRefs::default();
        let name = "st2_action_examples_orquesta_sequential_executions";
        assert_eq!(
            rec(name, Role::Counter, &refs).unwrap().1,
            l(&[("action_ref", "examples_orquesta_sequential")])
        );
        refs.extend(["examples.orquesta-sequential", "my_pack.do_it"]);
        assert_eq!(
            rec(name, Role::Counter, &refs).unwrap().1,
            l(&[("action_ref", "examples.orquesta-sequential")])
        );
        assert_eq!(
            rec("st2_action_my_pack_do_it_executions", Role::Counter, &refs)
                .unwrap()
                .1,
            l(&[("action_ref", "my_pack.do_it")])
        );
        assert_eq!(
            rec(
                "st2_rule_examples_sample_rule_matched",
                Role::Counter,
                &refs
            )
            .unwrap()
            .1,
            l(&[("rule_ref", "examples_sample_rule")])
        );
    }

    #[test]
    fn a_configured_prefix_is_skipped() {
        let refs = KnownRefs::default();
        let r = recognise_unmapped(
            "st2_node1_action_core_echo_executions",
            Role::Counter,
            Some("node1"),
            &refs,
        );
        assert_eq!(r.unwrap().labels, l(&[("action_ref", "core.echo")]));
        assert_eq!(
            recognise_unmapped(
                "st2_action_core_echo_executions",
                Role::Counter,
                Some("node1"),
                &refs
            ),
            None
        );
    }

    #[test]
    fn every_mapped_name_in_the_rules_has_a_descriptor() {
        for r in RULES {
            for name in [r.counter.map(|c| c.0), r.timer.map(|t| t.0), r.gauge]
                .into_iter()
                .flatten()
            {
                assert!(descriptor(name).is_some(), "{} -> {name}", r.key);
            }
        }
    }
}
