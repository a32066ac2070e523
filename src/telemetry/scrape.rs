//! Polling st2's metrics endpoints: fetch (timeout, gzip, size cap), parse, normalize,
//! export, on an interval, with backoff for a target that keeps failing.

use std::fmt::Write as _;
use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric};
use opentelemetry_proto::tonic::resource::v1::Resource;
use st2_basics::BackoffConfig;
use url::Url;

use super::config::{TelemetryConfig, parse_pairs};
use super::export::MetricsExporter;
use super::normalize::{Limits, Normalizer, value_text};
use super::own::{
    self, M_DROPPED, M_EXPORTS, M_REJECTED, M_SCRAPES, M_SERIES, metrics, now_ns, string_attribute,
};
use super::parse::{Exposition, parse};

/// The instrumentation scope of everything the scraper emits.
pub const SCOPE: &str = "portarium-st2/telemetry";

/// Why one scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No answer in time, or no connection.
    #[error(
        "cannot read {url}: {reason}; check that the statsd exporter runs and telemetry.targets is right"
    )]
    Unreachable {
        /// The target.
        url: String,
        /// What happened.
        reason: String,
    },
    /// A non-200 answer.
    #[error("{url} answered HTTP {status}; point telemetry.targets at the exporter's /metrics")]
    Status {
        /// The target.
        url: String,
        /// Its status.
        status: u16,
    },
    /// The page is larger than allowed.
    #[error(
        "{url} sent more than {limit} bytes; raise telemetry.max_body_bytes or cut the exporter's series (mapping file, ttl)"
    )]
    TooLarge {
        /// The target.
        url: String,
        /// The cap.
        limit: usize,
    },
    /// The page is not text.
    #[error("{url} sent a page that is not UTF-8 text; the Prometheus text format is expected")]
    NotText {
        /// The target.
        url: String,
    },
}

/// A client for scraping: gzip accepted (and undone before the size cap applies).
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .expect("a plain reqwest client always builds")
}

/// Fetches one page, reading at most `max_bytes`.
pub async fn fetch(
    client: &reqwest::Client,
    url: &Url,
    max_bytes: usize,
) -> Result<String, ScrapeError> {
    let unreachable = |e: reqwest::Error| ScrapeError::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    };
    // Plain 0.0.4 text: a stable shape whatever the exporter's OpenMetrics support.
    let reply = client
        .get(url.clone())
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=1,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(unreachable)?;
    if !reply.status().is_success() {
        return Err(ScrapeError::Status {
            url: url.to_string(),
            status: reply.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    let mut chunks = reply.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(unreachable)?;
        if body.len() + chunk.len() > max_bytes {
            return Err(ScrapeError::TooLarge {
                url: url.to_string(),
                limit: max_bytes,
            });
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| ScrapeError::NotText {
        url: url.to_string(),
    })
}

/// One scrape target with its normalizer state.
pub struct Target {
    url: Url,
    normalizer: Normalizer,
    resource: Resource,
    failures: u32,
    next_at: tokio::time::Instant,
}

impl Target {
    /// The `server.address` label of this target's own metrics.
    fn address(&self) -> String {
        self.url.host_str().unwrap_or_default().to_string()
    }

    /// A target at `url` normalized under `config`'s caps and prefix.
    pub fn new(url: Url, config: &TelemetryConfig) -> Self {
        let limits = Limits {
            max_series: config.max_series,
            max_series_per_metric: config.max_series_per_metric,
            stale_ttl: Duration::from_secs(config.stale_ttl_secs),
        };
        let resource = target_resource(&url, config);
        Self {
            url,
            normalizer: Normalizer::new(limits, config.st2_prefix.clone()),
            resource,
            failures: 0,
            next_at: tokio::time::Instant::now(),
        }
    }

    /// The scraped URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Teaches the normalizer st2's refs (see [`Normalizer::learn_refs`]).
    pub fn learn_refs<I: IntoIterator<Item = S>, S: AsRef<str>>(&mut self, refs: I) {
        self.normalizer.learn_refs(refs);
    }

    /// Scrapes once and normalizes; a failed scrape yields the stale markers of every series
    /// and the error. Scrape health is recorded either way.
    pub async fn scrape(
        &mut self,
        client: &reqwest::Client,
        max_bytes: usize,
    ) -> (ResourceMetrics, Option<ScrapeError>) {
        self.normalizer.learn_refs(own::learned_refs());
        let fetched = fetch(client, &self.url, max_bytes).await;
        let now = now_ns();
        let target = vec![("server.address", self.address())];
        let (page, error) = match fetched {
            Ok(text) => (parse(&text), None),
            Err(e) => (Exposition::default(), Some(e)),
        };
        let before = self.normalizer.stats();
        let metrics_out = self.normalizer.normalize(&page, now);
        let after = self.normalizer.stats();
        let outcome = if error.is_some() { "error" } else { "ok" };
        let mut labelled = target.clone();
        labelled.push(("outcome", outcome.to_string()));
        metrics().add(M_SCRAPES, labelled, 1.0);
        metrics().add(M_REJECTED, target.clone(), page.rejected.len() as f64);
        metrics().set(M_SERIES, target.clone(), after.series as f64);
        let dropped =
            (after.dropped + after.overflowed).saturating_sub(before.dropped + before.overflowed);
        metrics().add(M_DROPPED, target, dropped as f64);
        for r in page.rejected.iter().take(3) {
            tracing::debug!(target = %self.url, line = r.line, reason = %r.reason, "metrics line rejected");
        }
        if error.is_some() {
            self.failures += 1;
        } else {
            self.failures = 0;
        }
        (
            ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![scope_metrics(metrics_out)],
                schema_url: String::new(),
            },
            error,
        )
    }
}

/// Metrics under this crate's scope.
pub fn scope_metrics(metrics: Vec<Metric>) -> ScopeMetrics {
    ScopeMetrics {
        scope: Some(InstrumentationScope {
            name: SCOPE.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        }),
        metrics,
        schema_url: String::new(),
    }
}

/// The st2 cluster's resource as seen through one target (the OTel Prometheus rules:
/// `service.instance.id` = host:port, `server.*`, `url.scheme`), plus
/// `OTEL_RESOURCE_ATTRIBUTES` other than `service.*`, which name the adapter.
fn target_resource(url: &Url, config: &TelemetryConfig) -> Resource {
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or_default();
    let mut attributes = vec![
        string_attribute("service.name", &config.service_name),
        string_attribute("service.instance.id", &format!("{host}:{port}")),
        string_attribute("server.address", &host),
        int_attribute("server.port", i64::from(port)),
        string_attribute("url.scheme", url.scheme()),
    ];
    if let Some(prefix) = &config.st2_prefix {
        attributes.push(string_attribute("st2.metrics.prefix", prefix));
    }
    let extra = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
    attributes.extend(
        parse_pairs(&extra)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("service."))
            .map(|(k, v)| string_attribute(&k, &v)),
    );
    Resource {
        attributes,
        ..Default::default()
    }
}

fn int_attribute(key: &str, value: i64) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The adapter's own resource (see [`super::spans::adapter_resource`]) in OTLP form.
fn adapter_resource() -> Resource {
    let attributes = super::spans::adapter_resource()
        .iter()
        .map(|(k, v)| string_attribute(k.as_str(), &v.to_string()))
        .collect();
    Resource {
        attributes,
        ..Default::default()
    }
}

/// The adapter's own metrics under `resource`, its own resource.
pub fn adapter_metrics(resource: &Resource) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(resource.clone()),
        scope_metrics: vec![scope_metrics(own::metrics().otlp_metrics())],
        schema_url: String::new(),
    }
}

/// Scrapes every target on its interval and exports, until `shutdown` resolves. A target
/// that keeps failing is retried after the shared backoff's pauses, from one to 8 intervals.
pub async fn run(
    config: TelemetryConfig,
    mut targets: Vec<Target>,
    exporter: Option<MetricsExporter>,
    shutdown: impl Future<Output = ()>,
) {
    let client = client(config.timeout());
    let interval = config.interval();
    let failing = BackoffConfig::new(interval, interval * 8);
    // Built once: the environment it reads does not change while the process runs.
    let own_resource = adapter_resource();
    // Every counter whose label values are known now is on /metrics at 0 from the start.
    for t in &targets {
        let address = ("server.address", t.address());
        for outcome in ["ok", "error"] {
            metrics().declare(
                M_SCRAPES,
                vec![address.clone(), ("outcome", outcome.to_string())],
            );
        }
        metrics().declare(M_REJECTED, vec![address.clone()]);
        metrics().declare(M_DROPPED, vec![address]);
    }
    if exporter.is_some() {
        for outcome in ["ok", "error"] {
            metrics().declare(M_EXPORTS, vec![("outcome", outcome.to_string())]);
        }
    }
    tokio::pin!(shutdown);
    loop {
        let now = tokio::time::Instant::now();
        let mut batch = Vec::new();
        for t in targets.iter_mut().filter(|t| t.next_at <= now) {
            let (resource_metrics, error) = t.scrape(&client, config.max_body_bytes).await;
            if let Some(e) = error {
                tracing::warn!(failures = t.failures, "{e}");
            }
            // A healthy target keeps its exact interval; only failures are spread out.
            let pause = match t.failures {
                0 => interval,
                n => failing.delay(n),
            };
            t.next_at = now + pause;
            batch.push(resource_metrics);
        }
        if let Some(exporter) = &exporter {
            batch.push(adapter_metrics(&own_resource));
            let request = ExportMetricsServiceRequest {
                resource_metrics: batch,
            };
            let outcome = match exporter.export(&request).await {
                Ok(_) => "ok",
                Err(e) => {
                    tracing::warn!("{e}");
                    "error"
                }
            };
            metrics().add(M_EXPORTS, vec![("outcome", outcome.to_string())], 1.0);
        }
        let next = targets
            .iter()
            .map(|t| t.next_at)
            .min()
            .unwrap_or(now + interval)
            .min(now + interval);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = &mut shutdown => return,
        }
    }
}

/// A readable table of normalized metrics, one line per point, for operators.
pub fn table(metrics: &[Metric]) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    for m in metrics {
        let attrs = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            kvs.iter()
                .map(|kv| format!("{}={}", kv.key, value_text(kv)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let (kind, points): (&str, Vec<(String, String)>) = match &m.data {
            Some(metric::Data::Sum(s)) => (
                "sum",
                s.data_points
                    .iter()
                    .map(|p| (attrs(&p.attributes), number_text(p)))
                    .collect(),
            ),
            Some(metric::Data::Gauge(g)) => (
                "gauge",
                g.data_points
                    .iter()
                    .map(|p| (attrs(&p.attributes), number_text(p)))
                    .collect(),
            ),
            Some(metric::Data::Summary(s)) => (
                "summary",
                s.data_points
                    .iter()
                    .map(|p| {
                        (
                            attrs(&p.attributes),
                            format!("count={} sum={}", p.count, p.sum),
                        )
                    })
                    .collect(),
            ),
            Some(metric::Data::Histogram(h)) => (
                "histogram",
                h.data_points
                    .iter()
                    .map(|p| {
                        (
                            attrs(&p.attributes),
                            format!("count={} sum={}", p.count, p.sum.unwrap_or(0.0)),
                        )
                    })
                    .collect(),
            ),
            _ => ("other", Vec::new()),
        };
        for (a, v) in points {
            rows.push([m.name.clone(), kind.to_string(), m.unit.clone(), a, v]);
        }
    }
    let header = ["METRIC", "KIND", "UNIT", "ATTRIBUTES", "VALUE"].map(String::from);
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .chain([&header])
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in [&header].into_iter().chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn number_text(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> String {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    if p.flags & 1 == 1 {
        return "(no recorded value: series vanished)".into();
    }
    match p.value {
        Some(Value::AsDouble(v)) => v.to_string(),
        Some(Value::AsInt(v)) => v.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counters_of_configured_targets_are_on_the_page_at_zero_from_the_start() {
        // A loopback address no other test scrapes, on a port nothing listens on.
        let url = Url::parse("http://127.0.0.77:9/metrics").unwrap();
        let config = TelemetryConfig::default();
        let targets = vec![Target::new(url, &config)];
        run(config, targets, None, async {}).await;
        let page = metrics().prometheus_text();
        for line in [
            "portarium_st2_scrapes_total{outcome=\"ok\",server_address=\"127.0.0.77\"} 0\n",
            "portarium_st2_scrapes_total{outcome=\"error\",server_address=\"127.0.0.77\"} 1\n",
            "portarium_st2_scrape_dropped_series_total{server_address=\"127.0.0.77\"} 0\n",
        ] {
            assert!(page.contains(line), "{line} missing from:\n{page}");
        }
    }
}
