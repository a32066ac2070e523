//! The `events:` configuration section: lifecycle events out, the sinks they go to, and the
//! Portarium event classes accepted in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use std::time::Duration;

use st2_basics::{BackoffConfig, FieldError, RetryPolicy};
use st2_client::secret::Secret;

/// `events:` — everything about Portarium events; all off unless configured.
#[derive(Debug, Clone, Deserialize)]
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
    /// At shutdown, how long the sinks may take to deliver what is still queued; what is
    /// left is reported again from st2 at the next start (the checkpoint).
    #[serde(default = "default_shutdown_grace", with = "st2_basics::duration")]
    pub shutdown_grace: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            lifecycle: LifecycleConfig::default(),
            http: None,
            nats: None,
            inbound: InboundConfig::default(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
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
    /// Names this adapter deployment in its st2 datastore keys
    /// (`portarium-st2.<deployment>.lifecycle.checkpoint` and `.lease`); replicas of one
    /// deployment share it, two deployments on one st2 must differ. 1 to 64 of `A-Za-z0-9_-`.
    #[serde(default = "default_deployment")]
    pub deployment: String,
    /// How far reporting got, kept in st2's datastore across restarts.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Which replica reports, when several run.
    #[serde(default)]
    pub lease: LeaseConfig,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        Self {
            source: default_source(),
            governed_packs: Vec::new(),
            governed_tenant: None,
            completed_ttl_ms: default_completed_ttl(),
            max_tracked: default_max_tracked(),
            deployment: default_deployment(),
            checkpoint: CheckpointConfig::default(),
            lease: LeaseConfig::default(),
        }
    }
}

impl LifecycleConfig {
    /// The datastore key holding the checkpoint.
    pub fn checkpoint_key(&self) -> String {
        format!("portarium-st2.{}.lifecycle.checkpoint", self.deployment)
    }

    /// The datastore key holding the lease.
    pub fn lease_key(&self) -> String {
        format!("portarium-st2.{}.lifecycle.lease", self.deployment)
    }
}

/// `events.lifecycle.checkpoint`: st2's watermark and the executions in flight, written to
/// st2's datastore so a restart reports what happened while the adapter was down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Keep and use the checkpoint (when a sink is configured).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Least time between two writes of the key.
    #[serde(default = "default_checkpoint_interval", with = "st2_basics::duration")]
    pub interval: Duration,
    /// A reconciliation lists executions started this long before the watermark, for
    /// events that were still travelling when the checkpoint was written.
    #[serde(default = "default_reconcile_margin", with = "st2_basics::duration")]
    pub reconcile_margin: Duration,
    /// Pages of 100 executions a reconciliation lists at most; beyond, it logs what it left.
    #[serde(default = "default_reconcile_pages")]
    pub reconcile_max_pages: usize,
    /// Most in-flight executions named in the key; beyond, the watermark moves back to the
    /// oldest one left out, so the listing covers it instead.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_checkpoint_interval(),
            reconcile_margin: default_reconcile_margin(),
            reconcile_max_pages: default_reconcile_pages(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

/// `events.lifecycle.lease`: a datastore key with a TTL naming the one replica that reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Report only while holding the lease; off, every replica reports everything.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Lifetime of the lease; its holder renews it every third of this. A replica that
    /// dies is replaced after at most this long (whole seconds, at least 3).
    #[serde(default = "default_lease_ttl", with = "st2_basics::duration")]
    pub ttl: Duration,
    /// This replica's name in the lease; default `$HOSTNAME` (a pod's name), else random.
    /// 1 to 128 of `A-Za-z0-9._-`.
    #[serde(default)]
    pub replica: Option<String>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl: default_lease_ttl(),
            replica: None,
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
    /// Server, e.g. `nats://127.0.0.1:4222` or `tls://...` (literal, `env:NAME` or
    /// `file:PATH`, since a URL may carry credentials).
    pub url: Secret,
    /// A `.creds` file (JWT and NKey seed) from the NATS account's operator.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// An NKey seed (`SU...`; literal, `env:NAME` or `file:PATH`).
    #[serde(default)]
    pub nkey: Option<Secret>,
    /// User name, with `password`.
    #[serde(default)]
    pub user: Option<String>,
    /// Password of `user`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS to the server: CA and, for mutual TLS, a client certificate and key.
    #[serde(default)]
    pub tls: Option<NatsTlsConfig>,
    /// Limits set on the stream when the adapter creates it.
    #[serde(default)]
    pub stream_limits: StreamLimits,
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

/// `events.nats.tls`: PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTlsConfig {
    /// CA bundle the server's certificate must chain to; the system roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (with `key_file`) for servers that verify clients.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `events.nats.stream_limits`: what a stream the adapter creates keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamLimits {
    /// Messages older than this are removed.
    #[serde(default = "default_max_age", with = "st2_basics::duration")]
    pub max_age: Duration,
    /// Largest size of the stream; the oldest messages go first.
    #[serde(default = "default_stream_max_bytes")]
    pub max_bytes: u64,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a republished event: the window
    /// of exactly-once publishing.
    #[serde(default = "default_duplicate_window", with = "st2_basics::duration")]
    pub duplicate_window: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: default_stream_max_bytes(),
            duplicate_window: default_duplicate_window(),
        }
    }
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

/// Whether `s` is 1 to `max` ASCII letters, digits or characters of `extra`.
fn is_name(s: &str, max: usize, extra: &str) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

impl NatsSinkConfig {
    /// The sink to the server at `url` with every other setting at its default.
    pub fn to(url: &str) -> Self {
        Self {
            url: Secret::from_value(url),
            credentials_file: None,
            nkey: None,
            user: None,
            password: None,
            tls: None,
            stream_limits: StreamLimits::default(),
            stream: default_sink_stream(),
            subject_prefix: default_subject_prefix(),
            ack_timeout_ms: default_ack_timeout(),
            delivery: DeliveryConfig::default(),
        }
    }

    /// Reports the credential and TLS settings that cannot work together.
    fn validate(&self, bad: &mut impl FnMut(String, String)) {
        let methods = [
            self.credentials_file.is_some(),
            self.nkey.is_some(),
            self.user.is_some() || self.password.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() > 1 {
            bad(
                "events.nats".into(),
                "give one of credentials_file, nkey, or user with password".into(),
            );
        }
        if self.user.is_some() != self.password.is_some() {
            bad(
                "events.nats.password".into(),
                "user and password go together; give both or neither".into(),
            );
        }
        if let Some(t) = &self.tls
            && t.cert_file.is_some() != t.key_file.is_some()
        {
            bad(
                "events.nats.tls.key_file".into(),
                "cert_file and key_file go together; give both or neither".into(),
            );
        }
        let l = &self.stream_limits;
        if l.duplicate_window.is_zero() || l.duplicate_window > l.max_age {
            bad(
                "events.nats.stream_limits.duplicate_window".into(),
                "must be more than 0 and at most max_age".into(),
            );
        }
        if l.max_bytes == 0 || l.max_bytes > i64::MAX as u64 {
            bad(
                "events.nats.stream_limits.max_bytes".into(),
                "must be at least 1 byte".into(),
            );
        }
    }
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
        if !is_name(&l.deployment, 64, "_-") {
            bad(
                "events.lifecycle.deployment".into(),
                format!("{:?} must be 1 to 64 of A-Za-z0-9_-", l.deployment),
            );
        }
        if let Some(r) = &l.lease.replica
            && !is_name(r, 128, "._-")
        {
            bad(
                "events.lifecycle.lease.replica".into(),
                format!("{r:?} must be 1 to 128 of A-Za-z0-9._-"),
            );
        }
        if l.lease.ttl < Duration::from_secs(3) {
            bad(
                "events.lifecycle.lease.ttl".into(),
                "must be at least 3s (st2 keeps TTLs in whole seconds; it is renewed every third)"
                    .into(),
            );
        }
        let c = &l.checkpoint;
        if c.interval.is_zero() {
            bad(
                "events.lifecycle.checkpoint.interval".into(),
                "must be more than 0 (e.g. 5s)".into(),
            );
        }
        for (field, n) in [
            ("reconcile_max_pages", c.reconcile_max_pages),
            ("max_in_flight", c.max_in_flight),
        ] {
            if n == 0 {
                bad(
                    format!("events.lifecycle.checkpoint.{field}"),
                    "must be at least 1".into(),
                );
            }
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
            n.validate(&mut bad);
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

fn default_true() -> bool {
    true
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
fn default_deployment() -> String {
    "default".into()
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_reconcile_margin() -> Duration {
    Duration::from_secs(30)
}
fn default_reconcile_pages() -> usize {
    200
}
fn default_max_in_flight() -> usize {
    10_000
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(15)
}
fn default_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_stream_max_bytes() -> u64 {
    1 << 30
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
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
