//! Telemetry, laid out as a pipeline: [`scrape`] polls st2's metrics (Prometheus text from a
//! statsd exporter), [`parse`] reads the page, [`normalize`] turns it into the OpenTelemetry
//! metric model with st2's keys as attributes ([`st2`] knows the keys), and [`export`] sends
//! it over OTLP. [`own`] is the adapter's own telemetry (a span per dispatch, Portarium's
//! action metrics, `GET /metrics`); [`spans`] exports its spans and [`logs`]
//! writes log lines as Portarium's own.

pub mod config;
pub mod export;
pub mod logs;
pub mod normalize;
pub mod own;
pub mod parse;
pub mod process;
pub mod scrape;
pub mod spans;
pub mod st2;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::sync::watch;
use url::Url;

pub use config::{OtlpConfig, OtlpSettings, Protocol, SignalSettings, TelemetryConfig, TlsFiles};
pub use own::{observe_dispatch, watch_streams};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP settings (config or `OTEL_*`) are unusable.
    #[error(transparent)]
    Settings(#[from] config::SettingsError),
    /// The metrics exporter could not be built.
    #[error(transparent)]
    Export(#[from] export::ExportError),
    /// The span exporter could not be built.
    #[error(transparent)]
    Spans(#[from] spans::SpanSetupError),
}

/// Running telemetry: the tracer provider (when OTLP is configured) and the scrape loop.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Telemetry {
    /// Starts what `config` asks for: span export and the scrape/export loop when an OTLP
    /// endpoint is configured (here or in `OTEL_EXPORTER_OTLP_*`), scraping when targets are.
    /// Call inside the tokio runtime.
    pub fn start(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        let env = |k: &str| std::env::var(k).ok();
        let config = &config.with_env_interval(env)?;
        let settings = config.otlp.resolve(env)?;
        let provider = match settings.as_ref().and_then(|s| s.traces.as_ref()) {
            Some(traces) => Some(spans::tracer_provider(traces)?),
            None => None,
        };
        let exporter = settings
            .filter(|s| s.metrics.is_some())
            .map(export::MetricsExporter::new)
            .transpose()?;
        let (stop, mut stopped) = watch::channel(false);
        let task = (exporter.is_some() || !config.targets.is_empty()).then(|| {
            let targets = config
                .targets
                .iter()
                .map(|u| {
                    let mut t = scrape::Target::new(u.clone(), config);
                    t.learn_refs(&config.known_refs);
                    t
                })
                .collect();
            tokio::spawn(scrape::run(config.clone(), targets, exporter, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        });
        Ok(Self {
            provider,
            stop,
            task,
        })
    }

    /// The tracer provider, for the tracing layer ([`spans::layer`]); `None` when spans
    /// are not exported.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Stops the loop and flushes spans.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some(provider) = self.provider.take() {
            // The SDK's shutdown blocks until the last batch is out.
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// `portarium-st2 telemetry scrape --once`: scrapes each of `urls` once (or each interval
/// until `stop` resolves) and writes the normalized metrics as a table.
pub async fn scrape_to_table(
    config: &TelemetryConfig,
    urls: &[Url],
    once: bool,
    out: &mut impl std::io::Write,
    stop: impl Future<Output = ()>,
) -> Result<(), scrape::ScrapeError> {
    let client = scrape::client(config.timeout());
    let mut targets: Vec<scrape::Target> = urls
        .iter()
        .map(|u| {
            let mut t = scrape::Target::new(u.clone(), config);
            t.learn_refs(&config.known_refs);
            t
        })
        .collect();
    tokio::pin!(stop);
    loop {
        for t in &mut targets {
            let (resource_metrics, error) = t.scrape(&client, config.max_body_bytes).await;
            if let Some(e) = error {
                return Err(e);
            }
            let metrics: Vec<_> = resource_metrics
                .scope_metrics
                .into_iter()
                .flat_map(|s| s.metrics)
                .collect();
            let _ = writeln!(out, "# {} ({} metrics)", t.url(), metrics.len());
            let _ = write!(out, "{}", scrape::table(&metrics));
        }
        if once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(config.interval()) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}
