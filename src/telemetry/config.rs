//! The `telemetry:` configuration section, and how the standard `OTEL_*` variables fill
//! whatever it leaves out.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use st2_basics::{BackoffConfig, FieldError};

/// Fields of earlier versions that moved, relative to `telemetry.`: `(old path, new path and
/// form)`. A config still using one is refused with a message naming the new field.
pub const RENAMED: &[(&str, &str)] = &[
    (
        "otlp.initial_backoff_ms",
        "otlp.backoff.initial (a duration such as 500ms)",
    ),
    (
        "otlp.max_backoff_ms",
        "otlp.backoff.max (a duration such as 30s)",
    ),
];

/// The `telemetry:` section: what to scrape, how to normalize it, where to export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Prometheus-text endpoints to scrape (statsd_exporter's `/metrics` in front of st2): a
    /// list, or one comma-separated string (so `PORTARIUM_ST2_TELEMETRY__TARGETS` can set it).
    #[serde(default, deserialize_with = "urls")]
    pub targets: Vec<Url>,
    /// Time between two scrapes of a target and between two metric exports; unset:
    /// `OTEL_METRIC_EXPORT_INTERVAL`, else 15000.
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Whole-request deadline of one scrape.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Largest page accepted (after gzip is undone); larger pages fail the scrape.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// st2 action, rule and trigger refs to read escaped names back exactly (an unmapped
    /// exporter turns `my_pack.do-it` into `my_pack_do_it`); see docs/telemetry.md.
    #[serde(default)]
    pub known_refs: Vec<String>,
    /// st2's `[metrics] prefix`, when the cluster sets one.
    #[serde(default)]
    pub st2_prefix: Option<String>,
    /// `service.name` of the scraped st2 cluster's resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Series kept per target, all metrics together.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Series per metric before new ones fold into `otel.metric.overflow=true`.
    #[serde(default = "default_max_series_per_metric")]
    pub max_series_per_metric: usize,
    /// How long a vanished series' state is kept.
    #[serde(default = "default_stale_ttl")]
    pub stale_ttl_secs: u64,
    /// Where metrics and spans go.
    #[serde(default)]
    pub otlp: OtlpConfig,
}

/// OTLP export settings; each unset field falls back to its `OTEL_EXPORTER_OTLP_*` variable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Collector base URL (`/v1/metrics`, `/v1/traces` are appended for HTTP);
    /// unset and no `OTEL_EXPORTER_OTLP_ENDPOINT`: nothing is exported.
    #[serde(default)]
    pub endpoint: Option<Url>,
    /// `http/protobuf` or `grpc` (`OTEL_EXPORTER_OTLP_PROTOCOL`, default `http/protobuf`).
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Extra request headers, e.g. an auth token (`OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Deadline of one export request (`OTEL_EXPORTER_OTLP_TIMEOUT`, default 10000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// `gzip` or `none` (`OTEL_EXPORTER_OTLP_COMPRESSION`, default none).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Attempts per export, first included, for retryable failures.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Pauses between attempts; `backoff.max` also caps a `Retry-After` (a longer one gives up).
    #[serde(default = "default_backoff")]
    pub backoff: BackoffConfig,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/gRPC.
    #[serde(rename = "grpc")]
    Grpc,
}

/// Request body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip.
    Gzip,
    /// None.
    None,
}

/// OTLP settings with the environment applied: what the exporters use. A signal whose
/// endpoint is configured nowhere is not exported (the spec allows one signal alone).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// Where and how metrics go.
    pub metrics: Option<SignalSettings>,
    /// Where and how spans go.
    pub traces: Option<SignalSettings>,
    /// Attempts per export.
    pub max_attempts: u32,
    /// Pauses between attempts.
    pub backoff: BackoffConfig,
}

/// One signal's export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalSettings {
    /// Full URL for HTTP, the server for gRPC.
    pub endpoint: Url,
    /// Transport.
    pub protocol: Protocol,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Whether bodies are gzipped.
    pub gzip: bool,
    /// TLS material beyond the system roots.
    pub tls: TlsFiles,
}

/// The PEM files of `OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE`, `..._CLIENT_CERTIFICATE` and
/// `..._CLIENT_KEY`, read at start.
#[derive(Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// CA certificate(s) trusted for the collector, besides the system roots.
    pub ca: Option<String>,
    /// Client certificate chain and private key, for a collector asking for mutual TLS.
    pub identity: Option<(String, String)>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never reaches a log line.
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

/// The environment variables of one signal (`None`: the generic ones).
struct SignalVars {
    endpoint: &'static str,
    protocol: &'static str,
    headers: &'static str,
    timeout: &'static str,
    compression: &'static str,
    certificate: &'static str,
    client_certificate: &'static str,
    client_key: &'static str,
    /// Path appended to the generic endpoint for OTLP/HTTP.
    path: &'static str,
}

const GENERIC: SignalVars = SignalVars {
    endpoint: "OTEL_EXPORTER_OTLP_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_TIMEOUT",
    compression: "OTEL_EXPORTER_OTLP_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    path: "",
};

const METRICS: SignalVars = SignalVars {
    endpoint: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    compression: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
    path: "v1/metrics",
};

const TRACES: SignalVars = SignalVars {
    endpoint: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    protocol: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    headers: "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    timeout: "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    compression: "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    certificate: "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    client_certificate: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    client_key: "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    path: "v1/traces",
};

/// A list of URLs, or one string of comma-separated URLs.
fn urls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Url>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Urls {
        List(Vec<Url>),
        Text(String),
    }
    match Urls::deserialize(d)? {
        Urls::List(list) => Ok(list),
        Urls::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| Url::parse(t).map_err(|e| serde::de::Error::custom(format!("{t:?}: {e}"))))
            .collect(),
    }
}

fn default_interval() -> u64 {
    15_000
}
fn default_timeout() -> u64 {
    5_000
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}
fn default_service_name() -> String {
    "stackstorm".into()
}
fn default_max_series() -> usize {
    50_000
}
fn default_max_series_per_metric() -> usize {
    2_000
}
fn default_stale_ttl() -> u64 {
    300
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(500), Duration::from_secs(30))
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            interval_ms: None,
            timeout_ms: default_timeout(),
            max_body_bytes: default_max_body(),
            known_refs: Vec::new(),
            st2_prefix: None,
            service_name: default_service_name(),
            max_series: default_max_series(),
            max_series_per_metric: default_max_series_per_metric(),
            stale_ttl_secs: default_stale_ttl(),
            otlp: OtlpConfig::default(),
        }
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            timeout_ms: None,
            compression: None,
            max_attempts: default_attempts(),
            backoff: default_backoff(),
        }
    }
}

impl TelemetryConfig {
    /// Adds one entry to `errors` per broken rule.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        self.otlp.backoff.validate("telemetry.otlp.backoff", errors);
        let mut bad = |field: &str, reason: String| {
            errors.push(FieldError {
                field: format!("telemetry.{field}"),
                reason,
            })
        };
        for (i, t) in self.targets.iter().enumerate() {
            if !matches!(t.scheme(), "http" | "https") {
                bad(
                    &format!("targets[{i}]"),
                    format!("{t} must be an http or https URL"),
                );
            }
        }
        let interval_ms = self.interval().as_millis();
        if interval_ms < 1_000 {
            bad(
                "interval_ms",
                format!("{interval_ms} is below 1000; scrape at most once a second"),
            );
        }
        if self.timeout_ms == 0 || u128::from(self.timeout_ms) > interval_ms {
            bad(
                "timeout_ms",
                format!(
                    "{} must be between 1 and telemetry.interval_ms ({interval_ms})",
                    self.timeout_ms
                ),
            );
        }
        if self.max_body_bytes < 1024 {
            bad(
                "max_body_bytes",
                format!(
                    "{} is below 1024; no exposition page fits",
                    self.max_body_bytes
                ),
            );
        }
        if self.max_series == 0 || self.max_series_per_metric == 0 {
            bad(
                "max_series",
                "max_series and max_series_per_metric must be at least 1".into(),
            );
        }
        if self.service_name.trim().is_empty() {
            bad("service_name", "must not be empty".into());
        }
        if let Some(e) = &self.otlp.endpoint
            && !matches!(e.scheme(), "http" | "https")
        {
            bad("otlp.endpoint", format!("{e} must be an http or https URL"));
        }
        if self.otlp.max_attempts == 0 {
            bad(
                "otlp.max_attempts",
                "must be at least 1 (the first attempt counts)".into(),
            );
        }
    }

    /// Scrape and export period.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms.unwrap_or_else(default_interval))
    }

    /// This config with `OTEL_METRIC_EXPORT_INTERVAL` (read through `env`) as its period
    /// when `interval_ms` is unset; the variable must be a whole number of milliseconds of
    /// at least 1000. A scrape timeout longer than that period is cut to it, as the spec's
    /// export timeout may not exceed the interval either.
    pub fn with_env_interval(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        const VAR: &str = "OTEL_METRIC_EXPORT_INTERVAL";
        let mut out = self.clone();
        if self.interval_ms.is_none()
            && let Some(v) = env(VAR).filter(|v| !v.trim().is_empty())
        {
            let ms = v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms >= 1_000)
                .ok_or_else(|| SettingsError::Env {
                    var: VAR,
                    value: v.clone(),
                    reason: "must be a whole number of milliseconds, at least 1000".into(),
                })?;
            out.interval_ms = Some(ms);
            out.timeout_ms = self.timeout_ms.min(ms);
        }
        Ok(out)
    }

    /// Scrape deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Why the OTLP settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A variable holds something unusable.
    #[error("{var}={value:?}: {reason}")]
    Env {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What to write instead.
        reason: String,
    },
}

impl OtlpConfig {
    /// The settings in force, reading `OTEL_EXPORTER_OTLP_*` through `env` for what the
    /// config leaves unset; `None` when no endpoint is configured anywhere or
    /// `OTEL_SDK_DISABLED=true` (export is off).
    pub fn resolve(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpSettings>, SettingsError> {
        let var = |name: &'static str| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        };
        // The SDK-wide switch: export nothing, whatever else is configured.
        if var("OTEL_SDK_DISABLED").is_some_and(|(_, v)| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let metrics = self.signal(&var, &METRICS)?;
        let traces = self.signal(&var, &TRACES)?;
        if metrics.is_none() && traces.is_none() {
            return Ok(None);
        }
        Ok(Some(OtlpSettings {
            metrics,
            traces,
            max_attempts: self.max_attempts.max(1),
            backoff: self.backoff.clone(),
        }))
    }

    /// One signal's settings: the config's field, else the signal's variable, else the
    /// generic one, else the spec's default; `None` when no endpoint applies to it.
    fn signal(
        &self,
        var: &dyn Fn(&'static str) -> Option<(&'static str, String)>,
        s: &SignalVars,
    ) -> Result<Option<SignalSettings>, SettingsError> {
        let either = |own: &'static str, generic: &'static str| var(own).or_else(|| var(generic));
        let protocol = match (self.protocol, either(s.protocol, GENERIC.protocol)) {
            (Some(p), _) => p,
            (None, None) => Protocol::HttpProtobuf,
            (None, Some((_, v))) if v.trim() == "http/protobuf" => Protocol::HttpProtobuf,
            (None, Some((_, v))) if v.trim() == "grpc" => Protocol::Grpc,
            (None, Some((name, v))) => {
                return Err(SettingsError::Env {
                    var: name,
                    value: v,
                    reason: "use http/protobuf or grpc (http/json is not supported)".into(),
                });
            }
        };
        let url = |(name, v): (&'static str, String)| {
            Url::parse(v.trim()).map_err(|e| SettingsError::Env {
                var: name,
                value: v.clone(),
                reason: format!("not a URL ({e}); write e.g. http://collector:4318"),
            })
        };
        // A per-signal endpoint is used as is; the generic one gets the signal's path (HTTP).
        let generic = match &self.endpoint {
            Some(u) => Some(u.clone()),
            None => var(GENERIC.endpoint).map(url).transpose()?,
        };
        let own = match &self.endpoint {
            Some(_) => None,
            None => var(s.endpoint).map(url).transpose()?,
        };
        let endpoint = match (own, generic) {
            (Some(u), _) => u,
            (None, Some(b)) if protocol == Protocol::Grpc => b,
            (None, Some(b)) => {
                let mut u = b.clone();
                u.set_path(&format!("{}/{}", b.path().trim_end_matches('/'), s.path));
                u
            }
            (None, None) => return Ok(None),
        };
        let mut headers: Vec<(String, String)> = match either(s.headers, GENERIC.headers) {
            Some((name, v)) if self.headers.is_empty() => {
                check_pairs(&v).map_err(|reason| SettingsError::Env {
                    var: name,
                    // Header values are often credentials.
                    value: "(not shown)".into(),
                    reason,
                })?;
                parse_pairs(&v)
            }
            _ => Vec::new(),
        };
        headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        let timeout_ms = match (self.timeout_ms, either(s.timeout, GENERIC.timeout)) {
            (Some(t), _) => t,
            (None, Some((name, v))) => v.trim().parse().map_err(|_| SettingsError::Env {
                var: name,
                value: v.clone(),
                reason: "must be a whole number of milliseconds".into(),
            })?,
            (None, None) => 10_000,
        };
        let gzip = match (self.compression, either(s.compression, GENERIC.compression)) {
            (Some(c), _) => c == Compression::Gzip,
            (None, Some((_, v))) if v.trim() == "gzip" => true,
            (None, Some((_, v))) if v.trim() == "none" => false,
            (None, Some((name, v))) => {
                return Err(SettingsError::Env {
                    var: name,
                    value: v,
                    reason: "use gzip or none".into(),
                });
            }
            (None, None) => false,
        };
        let pem = |(name, path): (&'static str, String)| {
            st2_basics::files::read_text(Path::new(path.trim()), st2_basics::files::MAX_TEXT_FILE)
                .map_err(|e| SettingsError::Env {
                    var: name,
                    value: path.clone(),
                    reason: format!("cannot read the PEM file ({e})"),
                })
        };
        let ca = either(s.certificate, GENERIC.certificate)
            .map(pem)
            .transpose()?;
        let cert = either(s.client_certificate, GENERIC.client_certificate);
        let key = either(s.client_key, GENERIC.client_key);
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((pem(c)?, pem(k)?)),
            (None, None) => None,
            (Some((name, v)), None) | (None, Some((name, v))) => {
                return Err(SettingsError::Env {
                    var: name,
                    value: v,
                    reason: "set the client certificate and the client key together (OTEL_EXPORTER_OTLP_[SIGNAL_]CLIENT_CERTIFICATE and _CLIENT_KEY)".into(),
                });
            }
        };
        Ok(Some(SignalSettings {
            endpoint,
            protocol,
            headers,
            timeout: Duration::from_millis(timeout_ms),
            gzip,
            tls: TlsFiles { ca, identity },
        }))
    }
}

/// Why `text` is not a `k1=v1,k2=v2` list of header names and values, naming the entry
/// (by position: the values may be secrets).
fn check_pairs(text: &str) -> Result<(), String> {
    for (i, pair) in text.split(',').enumerate() {
        let key = pair.split_once('=').map(|(k, _)| k.trim());
        let valid = key.is_some_and(|k| {
            !k.is_empty() && axum::http::HeaderName::from_bytes(k.as_bytes()).is_ok()
        });
        if !valid {
            return Err(format!(
                "entry {} is not name=value; write comma-separated name=value pairs with percent-encoded values",
                i + 1
            ));
        }
    }
    Ok(())
}

/// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage form `OTEL_*` lists use).
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                url::form_urlencoded::parse(
                    format!("x={}", s.trim().replace('+', "%2B")).as_bytes(),
                )
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
            };
            (k.trim().to_string(), decode(v))
        })
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_malformed_headers_variable_is_refused_without_echoing_it() {
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        for bad in ["api-key", "api-key=s3cret,oops", "bad name=1"] {
            let e = OtlpConfig::default()
                .resolve(env(&[base[0], ("OTEL_EXPORTER_OTLP_HEADERS", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("OTEL_EXPORTER_OTLP_HEADERS="), "{e}");
            assert!(
                e.contains("is not name=value") && !e.contains("s3cret"),
                "{e}"
            );
        }
        let ok = [base[0], ("OTEL_EXPORTER_OTLP_HEADERS", "a=1, b=x%3Dy")];
        let s = OtlpConfig::default().resolve(env(&ok)).unwrap().unwrap();
        assert_eq!(
            s.metrics.unwrap().headers,
            [("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
    }

    #[test]
    fn nothing_configured_or_the_sdk_disabled_means_no_export() {
        assert_eq!(OtlpConfig::default().resolve(env(&[])).unwrap(), None);
        let disabled = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ]);
        assert_eq!(OtlpConfig::default().resolve(disabled).unwrap(), None);
    }

    #[test]
    fn targets_come_as_a_list_or_as_comma_separated_text() {
        let config = |yaml: &str| serde_norway::from_str::<TelemetryConfig>(yaml);
        let list = config("targets: ['http://a:9102/metrics', 'http://b:9102/metrics']").unwrap();
        let text = config("targets: 'http://a:9102/metrics, http://b:9102/metrics'").unwrap();
        assert_eq!(list.targets, text.targets);
        assert_eq!(text.targets.len(), 2);
        // As an environment override, naming the field and the variable when it is wrong.
        let load = |value: &str| {
            crate::config::Config::from_yaml(
                "st2: {base_url: 'http://127.0.0.1:9101', api_key: k}",
                "test",
                [(
                    "PORTARIUM_ST2_TELEMETRY__TARGETS".to_string(),
                    value.to_string(),
                )],
            )
        };
        let loaded = load("http://a:9102/metrics,http://b:9102/metrics").unwrap();
        assert_eq!(loaded.telemetry.targets, list.targets);
        let err = load("http://a:9102/metrics, not a url")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("telemetry.targets") && err.contains("not a url"),
            "{err}"
        );
    }

    #[test]
    fn standard_variables_fill_the_gaps() {
        let s = OtlpConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/base/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://traces:4318/custom",
                ),
            ]))
            .unwrap()
            .unwrap();
        let (m, t) = (s.metrics.unwrap(), s.traces.unwrap());
        assert_eq!(m.endpoint.as_str(), "http://collector:4318/base/v1/metrics");
        assert_eq!(t.endpoint.as_str(), "http://traces:4318/custom");
        assert_eq!(
            m.headers,
            [
                ("api-key".to_string(), "a b".to_string()),
                ("x".into(), "1".into())
            ]
        );
        assert_eq!(
            (m.timeout, m.gzip, m.protocol),
            (Duration::from_millis(2500), true, Protocol::HttpProtobuf)
        );
        let grpc = OtlpConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]))
            .unwrap()
            .unwrap()
            .metrics
            .unwrap();
        assert_eq!(
            (grpc.endpoint.as_str(), grpc.protocol),
            ("http://c:4317/", Protocol::Grpc)
        );
    }

    #[test]
    fn the_config_wins_over_the_environment_and_bad_values_are_named() {
        let config = OtlpConfig {
            endpoint: Some(Url::parse("http://mine:4318").unwrap()),
            protocol: Some(Protocol::HttpProtobuf),
            ..Default::default()
        };
        let s = config
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://theirs:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(
            s.metrics.unwrap().endpoint.as_str(),
            "http://mine:4318/v1/metrics"
        );
        let err = OtlpConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ]))
            .unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
    }

    #[test]
    fn each_signal_takes_its_own_variables_over_the_generic_ones() {
        let s = OtlpConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "g=1"),
                ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "m=2"),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
                ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
            ]))
            .unwrap()
            .unwrap();
        let (m, t) = (s.metrics.unwrap(), s.traces.unwrap());
        assert_eq!(
            (
                m.protocol,
                m.endpoint.as_str(),
                t.protocol,
                t.endpoint.as_str()
            ),
            (
                Protocol::HttpProtobuf,
                "http://c:4318/v1/metrics",
                Protocol::Grpc,
                "http://t:4317/"
            )
        );
        assert_eq!(m.headers, [("m".to_string(), "2".to_string())]);
        assert_eq!(t.headers, [("g".to_string(), "1".to_string())]);
        assert_eq!(
            (m.timeout, t.timeout),
            (Duration::from_millis(3000), Duration::from_millis(700))
        );
        assert_eq!((m.gzip, t.gzip), (true, false));
    }

    #[test]
    fn one_signal_alone_is_exported_alone() {
        let s = OtlpConfig::default()
            .resolve(env(&[(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://m:4318/x",
            )]))
            .unwrap()
            .unwrap();
        assert_eq!(s.metrics.unwrap().endpoint.as_str(), "http://m:4318/x");
        assert_eq!(s.traces, None);
        let s = OtlpConfig::default()
            .resolve(env(&[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://t:4318/y",
            )]))
            .unwrap()
            .unwrap();
        assert_eq!((s.metrics, s.traces.is_some()), (None, true));
    }

    #[test]
    fn tls_files_are_read_at_start_and_a_half_pair_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let ca = ca.to_str().unwrap();
        let base = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318");
        let s = OtlpConfig::default()
            .resolve(env(&[base, ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", ca)]))
            .unwrap()
            .unwrap();
        assert!(s.metrics.unwrap().tls.ca.is_some());
        assert_eq!(s.traces.unwrap().tls, TlsFiles::default());
        let err = OtlpConfig::default()
            .resolve(env(&[base, ("OTEL_EXPORTER_OTLP_CLIENT_KEY", ca)]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("OTEL_EXPORTER_OTLP_CLIENT_KEY="), "{err}");
        let err = OtlpConfig::default()
            .resolve(env(&[
                base,
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent.pem"),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the PEM file"), "{err}");
    }

    #[test]
    fn the_metric_export_interval_variable_sets_the_period_when_the_config_does_not() {
        let config = TelemetryConfig::default();
        let with = |v: &str| config.with_env_interval(env(&[("OTEL_METRIC_EXPORT_INTERVAL", v)]));
        assert_eq!(with("30000").unwrap().interval(), Duration::from_secs(30));
        assert_eq!(
            config.interval(),
            Duration::from_secs(15),
            "the spec's default is 60 s; ours 15 s"
        );
        for bad in ["500", "soon", "-1"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.starts_with("OTEL_METRIC_EXPORT_INTERVAL="),
                "{bad}: {err}"
            );
        }
        // The default 5 s scrape timeout is cut to a shorter period.
        let fast = with("1000").unwrap();
        assert_eq!((fast.interval_ms, fast.timeout_ms), (Some(1_000), 1_000));
        let mut errors = Vec::new();
        fast.validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let explicit = TelemetryConfig {
            interval_ms: Some(2_000),
            ..Default::default()
        };
        let kept = explicit
            .with_env_interval(env(&[("OTEL_METRIC_EXPORT_INTERVAL", "30000")]))
            .unwrap();
        assert_eq!(kept.interval(), Duration::from_secs(2), "the config wins");
    }
}
