//! The `events:` configuration section: lifecycle events out, the sinks they go to, and the
//! Portarium event classes accepted in.

use std::collections::BTreeMap;

use serde::Deserialize;
use url::Url;

use std::time::Duration;

use st2_basics::{BackoffConfig, FieldError, RetryPolicy};
use st2_client::secret::Secret;

/// `events:` — everything about Portarium events; all off unless configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Which executions produce lifecycle events and how they are tracked.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// HTTP sink (CloudEvents structured mode); off when absent.
    #[serde(default)]
    pub http: Option<HttpSinkConfig>,
    /// NATS JetStream sink; off when absent.
    #[serde(default)]
    pub nats: Option<NatsSinkConfig>,
    /// `POST /v1/events`: the declared event classes and their st2 triggers.
    #[serde(default)]
    pub inbound: InboundConfig,
}

/// Fields of earlier versions that moved, relative to `events.`: `(old path, new path and
/// form)`. A config still using one is refused with a message naming the new field.
pub const RENAMED: &[(&str, &str)] = &[
    (
        "http.delivery.initial_backoff_ms",
        "http.delivery.backoff.initial (a duration such as 200ms)",
    ),
    (
        "http.delivery.max_backoff_ms",
        "http.delivery.backoff.max (a duration such as 30s)",
    ),
    (
        "nats.delivery.initial_backoff_ms",
        "nats.delivery.backoff.initial (a duration such as 200ms)",
    ),
    (
        "nats.delivery.max_backoff_ms",
        "nats.delivery.backoff.max (a duration such as 30s)",
    ),
    (
        "inbound.nats.initial_backoff_ms",
        "inbound.nats.backoff.initial (a duration such as 200ms)",
    ),
    (
        "inbound.nats.max_backoff_ms",
        "inbound.nats.backoff.max (a duration such as 30s)",
    ),
];

/// `events.lifecycle`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// CloudEvent `source` of every lifecycle event.
    #[serde(default = "default_source")]
    pub source: String,
    /// Packs whose every execution is reported, not only those the adapter started.
    #[serde(default)]
    pub governed_packs: Vec<String>,
    /// Tenant (`tenantid`) of governed-pack executions the adapter did not start.
    #[serde(default)]
    pub governed_tenant: Option<String>,
    /// How long a completed execution is remembered to suppress late duplicates.
    #[serde(default = "default_completed_ttl")]
    pub completed_ttl_ms: u64,
    /// Most executions remembered at once; completed ones are forgotten first.
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            source: default_source(),
            governed_packs: Vec::new(),
            governed_tenant: None,
            completed_ttl_ms: default_completed_ttl(),
            max_tracked: default_max_tracked(),
        }
    }
}

/// Queueing and retrying, the same for both sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Events waiting for the sink; when full, the producer waits.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Pauses between attempts (a longer `Retry-After` is honoured up to `backoff.max`).
    #[serde(default = "default_backoff")]
    pub backoff: BackoffConfig,
    /// An event still undelivered after this long is dropped, logged and counted.
    #[serde(
        default = "default_give_up",
        alias = "give_up_after_ms",
        with = "st2_basics::duration"
    )]
    pub give_up_after: Duration,
}

impl DeliveryConfig {
    /// The retry policy of one event: `backoff`, until `give_up_after`.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy::new(self.backoff.clone()).give_up_after(self.give_up_after)
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            queue_size: default_queue_size(),
            backoff: default_backoff(),
            give_up_after: default_give_up(),
        }
    }
}

/// `events.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where events are POSTed.
    pub url: Url,
    /// Sent as `Authorization: Bearer <token>` (literal, `env:NAME` or `file:PATH`).
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Extra request headers (values may be secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Deadline of one POST, answer included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Queue and retry.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

/// `events.nats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// JetStream stream holding the subjects; created when missing.
    #[serde(default = "default_sink_stream")]
    pub stream: String,
    /// Subject prefix; the event type without `com.portarium.` follows it.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// How long to wait for JetStream's publish ack.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout_ms: u64,
    /// Queue and retry.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

/// `events.inbound`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {
    /// Event types accepted, each mapped to an st2 trigger.
    #[serde(default)]
    pub classes: Vec<EventClass>,
    /// Largest event body accepted unless a class says otherwise.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// How long an event id is remembered to drop redeliveries.
    #[serde(default = "default_dedupe_window")]
    pub dedupe_window_ms: u64,
    /// Most event ids remembered at once; the oldest go first.
    #[serde(default = "default_dedupe_max")]
    pub dedupe_max_ids: usize,
    /// Also take events from Portarium's JetStream stream; off when absent.
    #[serde(default)]
    pub nats: Option<InboundNatsConfig>,
}

/// `events.inbound.nats`: a durable JetStream consumer on Portarium's event subjects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundNatsConfig {
    /// Server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Stream Portarium publishes to.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Durable consumer name; it remembers what was acknowledged across restarts.
    #[serde(default = "default_durable")]
    pub durable: String,
    /// Subjects taken (events of undeclared classes are acknowledged and logged).
    #[serde(default = "default_filter")]
    pub filter_subject: String,
    /// Reconnect pauses; `backoff.max` is also the redelivery delay after st2 refused a
    /// trigger.
    #[serde(default = "default_backoff")]
    pub backoff: BackoffConfig,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            classes: Vec::new(),
            max_bytes: default_max_bytes(),
            dedupe_window_ms: default_dedupe_window(),
            dedupe_max_ids: default_dedupe_max(),
            nats: None,
        }
    }
}

/// One declared event class: a Portarium event type and the st2 trigger it fires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventClass {
    /// The CloudEvent `type`, e.g. `com.portarium.run.RunStarted`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// st2 trigger type ref, fired through `/api/v1/webhooks/st2`.
    #[serde(default)]
    pub trigger: Option<String>,
    /// Name of a custom st2 webhook (`/api/v1/webhooks/<name>`), instead of `trigger`.
    #[serde(default)]
    pub webhook: Option<String>,
    /// JSON Schema `data` must satisfy (any keyword of its draft; no remote `$ref`).
    #[serde(default)]
    pub schema: Option<super::schema::EventSchema>,
    /// Largest body for this class, instead of `inbound.max_bytes`.
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

impl EventsConfig {
    /// Adds every problem with this section to `errors`.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let backoffs = [
            (
                "events.http.delivery.backoff",
                self.http.as_ref().map(|h| &h.delivery.backoff),
            ),
            (
                "events.nats.delivery.backoff",
                self.nats.as_ref().map(|n| &n.delivery.backoff),
            ),
            (
                "events.inbound.nats.backoff",
                self.inbound.nats.as_ref().map(|n| &n.backoff),
            ),
        ];
        for (path, backoff) in backoffs {
            if let Some(b) = backoff {
                b.validate(path, errors);
            }
        }
        let mut bad = |field: String, reason: String| errors.push(FieldError { field, reason });
        let l = &self.lifecycle;
        if !l.governed_packs.is_empty() && l.governed_tenant.is_none() {
            bad(
                "events.lifecycle.governed_tenant".into(),
                "required with governed_packs: the tenant their events belong to".into(),
            );
        }
        if l.max_tracked == 0 {
            bad(
                "events.lifecycle.max_tracked".into(),
                "must be at least 1".into(),
            );
        }
        let deliveries = [
            (
                "events.http.delivery",
                self.http.as_ref().map(|h| &h.delivery),
            ),
            (
                "events.nats.delivery",
                self.nats.as_ref().map(|n| &n.delivery),
            ),
        ];
        for (field, d) in deliveries {
            let Some(d) = d else { continue };
            if d.queue_size == 0 {
                bad(format!("{field}.queue_size"), "must be at least 1".into());
            }
        }
        if let Some(h) = &self.http
            && !matches!(h.url.scheme(), "http" | "https")
        {
            bad(
                "events.http.url".into(),
                format!("{} must be an http or https URL", h.url),
            );
        }
        if let Some(n) = &self.nats {
            if n.stream.is_empty() || n.stream.contains(['.', '*', '>', ' ']) {
                bad(
                    "events.nats.stream".into(),
                    format!(
                        "{:?} is not a JetStream stream name (no dots, wildcards or spaces)",
                        n.stream
                    ),
                );
            }
            if n.subject_prefix.is_empty() || n.subject_prefix.contains(['*', '>', ' ']) {
                bad(
                    "events.nats.subject_prefix".into(),
                    format!("{:?} must be a plain subject", n.subject_prefix),
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.inbound.classes.iter().enumerate() {
            let field = |name: &str| format!("events.inbound.classes[{i}].{name}");
            if !c.event_type.starts_with(super::cloudevent::TYPE_PREFIX) {
                bad(
                    field("type"),
                    format!("{:?} must start with com.portarium.", c.event_type),
                );
            } else if !seen.insert(c.event_type.as_str()) {
                bad(field("type"), format!("{} is declared twice", c.event_type));
            }
            match (&c.trigger, &c.webhook) {
                (Some(t), None) if t.split('.').count() >= 2 => {}
                (Some(t), None) => bad(
                    field("trigger"),
                    format!("{t:?} is not a trigger type ref (pack.name)"),
                ),
                (None, Some(w)) if !w.trim_matches('/').is_empty() && w != "st2" => {}
                (None, Some(w)) => bad(
                    field("webhook"),
                    format!("{w:?} is not a custom webhook name; use `trigger` for the st2 hook"),
                ),
                _ => bad(
                    field("trigger"),
                    "give exactly one of trigger or webhook".into(),
                ),
            }
            if let Some(e) = c.schema.as_ref().and_then(|s| s.problem()) {
                bad(field("schema"), e.to_string());
            }
            if (self.http.is_some() || self.nats.is_some())
                && super::lifecycle::Transition::ALL
                    .iter()
                    .any(|t| t.event_type() == c.event_type)
            {
                let target = c.trigger.as_deref().map_or_else(
                    || format!("webhook {}", c.webhook.as_deref().unwrap_or_default()),
                    |t| format!("trigger {t}"),
                );
                bad(
                    field("type"),
                    format!(
                        "{} is a lifecycle event this adapter emits, and here it fires {target}: \
                         an execution that trigger starts would emit it again, a loop; \
                         declare only Portarium's own event classes",
                        c.event_type
                    ),
                );
            }
        }
    }
}

fn default_source() -> String {
    "portarium.execution-plane.stackstorm".into()
}
fn default_completed_ttl() -> u64 {
    600_000
}
fn default_max_tracked() -> usize {
    10_000
}
fn default_queue_size() -> usize {
    1024
}
fn default_backoff() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(200), Duration::from_secs(30))
}
fn default_give_up() -> Duration {
    Duration::from_secs(3_600)
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_stream() -> String {
    "PORTARIUM_EVENTS".into()
}
fn default_sink_stream() -> String {
    "PORTARIUM_LIFECYCLE".into()
}
// Apart from the inbound default (`portarium.events.>` on PORTARIUM_EVENTS), so the inbound
// consumer never sees what the sink publishes.
fn default_subject_prefix() -> String {
    "portarium.lifecycle".into()
}
fn default_ack_timeout() -> u64 {
    5_000
}
fn default_durable() -> String {
    "portarium-st2-inbound".into()
}
fn default_filter() -> String {
    "portarium.events.>".into()
}
fn default_max_bytes() -> usize {
    65_536
}
fn default_dedupe_window() -> u64 {
    600_000
}
fn default_dedupe_max() -> usize {
    100_000
}
