//! The `telemetry:` configuration section, and how the standard `OTEL_*` variables fill
//! whatever it leaves out.

use std::collections::BTreeMap;
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
    /// Time between two scrapes of a target.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
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

/// OTLP settings with the environment applied: what the exporters use.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpSettings {
    /// Where metrics go (full URL for HTTP, the server for gRPC).
    pub metrics_endpoint: Url,
    /// Where spans go.
    pub traces_endpoint: Url,
    /// Transport.
    pub protocol: Protocol,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Whether bodies are gzipped.
    pub gzip: bool,
    /// Attempts per export.
    pub max_attempts: u32,
    /// Pauses between attempts.
    pub backoff: BackoffConfig,
}

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
            interval_ms: default_interval(),
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
        if self.interval_ms < 1_000 {
            bad(
                "interval_ms",
                format!(
                    "{} is below 1000; scrape at most once a second",
                    self.interval_ms
                ),
            );
        }
        if self.timeout_ms == 0 || self.timeout_ms > self.interval_ms {
            bad(
                "timeout_ms",
                format!(
                    "{} must be between 1 and telemetry.interval_ms ({})",
                    self.timeout_ms, self.interval_ms
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

    /// Scrape period.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
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
        let url = |(name, v): (&'static str, String)| {
            Url::parse(v.trim()).map_err(|e| SettingsError::Env {
                var: name,
                value: v.clone(),
                reason: format!("not a URL ({e}); write e.g. http://collector:4318"),
            })
        };
        let protocol = match (self.protocol, var("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            (Some(p), _) => p,
            (None, None) => Protocol::HttpProtobuf,
            (None, Some((_, v))) if v == "http/protobuf" => Protocol::HttpProtobuf,
            (None, Some((_, v))) if v == "grpc" => Protocol::Grpc,
            (None, Some((name, v))) => {
                return Err(SettingsError::Env {
                    var: name,
                    value: v,
                    reason: "use http/protobuf or grpc (http/json is not supported)".into(),
                });
            }
        };
        let base = match &self.endpoint {
            Some(u) => Some(u.clone()),
            None => var("OTEL_EXPORTER_OTLP_ENDPOINT").map(url).transpose()?,
        };
        // A per-signal variable is used as is; the generic one gets the signal's path (HTTP).
        let signal = |specific: &'static str, path: &str| -> Result<Option<Url>, SettingsError> {
            if self.endpoint.is_none()
                && let Some(v) = var(specific)
            {
                return url(v).map(Some);
            }
            Ok(base.as_ref().map(|b| match protocol {
                Protocol::Grpc => b.clone(),
                Protocol::HttpProtobuf => {
                    let mut u = b.clone();
                    let joined = format!("{}/{path}", b.path().trim_end_matches('/'));
                    u.set_path(&joined);
                    u
                }
            }))
        };
        let metrics = signal("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "v1/metrics")?;
        let traces = signal("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "v1/traces")?;
        let (Some(metrics_endpoint), Some(traces_endpoint)) = (metrics.clone(), traces.clone())
        else {
            return match metrics.or(traces) {
                // Only one signal configured: both go there only if given; the other is off.
                Some(_) => Err(SettingsError::Env {
                    var: "OTEL_EXPORTER_OTLP_ENDPOINT",
                    value: String::new(),
                    reason: "set it (or telemetry.otlp.endpoint) when only one per-signal endpoint is given".into(),
                }),
                None => Ok(None),
            };
        };
        let mut headers: Vec<(String, String)> = match var("OTEL_EXPORTER_OTLP_HEADERS") {
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
        let timeout_ms = match (self.timeout_ms, var("OTEL_EXPORTER_OTLP_TIMEOUT")) {
            (Some(t), _) => t,
            (None, Some((name, v))) => v.trim().parse().map_err(|_| SettingsError::Env {
                var: name,
                value: v.clone(),
                reason: "must be a whole number of milliseconds".into(),
            })?,
            (None, None) => 10_000,
        };
        let gzip = match (self.compression, var("OTEL_EXPORTER_OTLP_COMPRESSION")) {
            (Some(c), _) => c == Compression::Gzip,
            (None, Some((_, v))) if v == "gzip" => true,
            (None, Some((_, v))) if v == "none" => false,
            (None, Some((name, v))) => {
                return Err(SettingsError::Env {
                    var: name,
                    value: v,
                    reason: "use gzip or none".into(),
                });
            }
            (None, None) => false,
        };
        Ok(Some(OtlpSettings {
            metrics_endpoint,
            traces_endpoint,
            protocol,
            headers,
            timeout: Duration::from_millis(timeout_ms),
            gzip,
            max_attempts: self.max_attempts.max(1),
            backoff: self.backoff.clone(),
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
            s.headers,
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
        assert_eq!(
            s.metrics_endpoint.as_str(),
            "http://collector:4318/base/v1/metrics"
        );
        assert_eq!(s.traces_endpoint.as_str(), "http://traces:4318/custom");
        assert_eq!(
            s.headers,
            [
                ("api-key".to_string(), "a b".to_string()),
                ("x".into(), "1".into())
            ]
        );
        assert_eq!(
            (s.timeout, s.gzip, s.protocol),
            (Duration::from_millis(2500), true, Protocol::HttpProtobuf)
        );
        let grpc = OtlpConfig::default()
            .resolve(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (grpc.metrics_endpoint.as_str(), grpc.protocol),
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
        assert_eq!(s.metrics_endpoint.as_str(), "http://mine:4318/v1/metrics");
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
}
