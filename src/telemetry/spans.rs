//! Span export for the adapter's own traces: the OpenTelemetry SDK with opentelemetry-otlp
//! (blocking HTTP client or gRPC — the async reqwest client panics in the SDK's export
//! thread), and a router that moves `tenant.id` from the span onto the resource.
//!
//! Portarium's collector hashes the resource attribute `tenant.id` and routes on it; a
//! tenant id must never be a span attribute. The dispatch span carries it only as far as
//! the exporter, which groups spans by tenant and sends each group under a resource with
//! `tenant.id`.
//!
//! What is exported (docs/telemetry.md, "Span export rules"): only spans and events of the
//! adapter's own crates at INFO or above, without source locations, and only spans that
//! belong to a tenant. A child span inherits its parent's tenant when it starts, so a whole
//! dispatch trace lands under one tenant; background work (stream consumer, reconciliation,
//! sinks, scrape) belongs to no tenant and is never exported.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{Span as _, SpanId, TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use super::config::{Protocol, SignalSettings};

/// The span attribute that carries the tenant as far as the exporter, never further.
pub const TENANT_ATTRIBUTE: &str = "tenant.id";

/// Why span export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot set up OTLP span export to {endpoint}: {reason}; check telemetry.otlp / OTEL_EXPORTER_OTLP_*"
)]
pub struct SpanSetupError {
    endpoint: String,
    reason: String,
}

/// Moves each span's tenant onto the resource: spans are grouped by tenant and each group is
/// exported with the adapter's resource plus `tenant.id`. One exporter serves every tenant
/// (the SDK exports one batch at a time, so setting the resource per group is race-free).
struct TenantRouter {
    exporter: Arc<tokio::sync::Mutex<opentelemetry_otlp::SpanExporter>>,
    base: Resource,
}

impl fmt::Debug for TenantRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantRouter").finish_non_exhaustive()
    }
}

impl SpanExporter for TenantRouter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        // `TenantSpans` lets only spans with a tenant through; any other is dropped here too,
        // since a span without `tenant.id` cannot be routed.
        let mut groups: HashMap<String, Vec<SpanData>> = HashMap::new();
        for mut span in batch {
            let tenant = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == TENANT_ATTRIBUTE)
                .map(|i| span.attributes.remove(i).value.to_string());
            if let Some(tenant) = tenant {
                groups.entry(tenant).or_default().push(span);
            }
        }
        let sends: Vec<(Resource, Vec<SpanData>)> = groups
            .into_iter()
            .map(|(tenant, spans)| (with_tenant(&self.base, tenant), spans))
            .collect();
        let exporter = self.exporter.clone();
        async move {
            let mut exporter = exporter.lock().await;
            let mut failures = Vec::new();
            for (resource, spans) in sends {
                exporter.set_resource(&resource);
                if let Err(e) = exporter.export(spans).await {
                    failures.push(e.to_string());
                }
            }
            if failures.is_empty() {
                Ok(())
            } else {
                Err(OTelSdkError::InternalFailure(failures.join("; ")))
            }
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        // The SDK calls this from its own (non-async) thread.
        self.exporter.blocking_lock().shutdown_with_timeout(timeout)
    }
}

/// `base` plus `tenant.id`.
fn with_tenant(base: &Resource, tenant: String) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            base.iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attribute(KeyValue::new(TENANT_ATTRIBUTE, tenant))
        .build()
}

/// Gives each span its parent's tenant when it starts and passes on only spans that have
/// one. Keyed by span id, not trace id: callers reuse one trace for several tenants.
#[derive(Debug)]
struct TenantSpans {
    inner: BatchSpanProcessor,
    open: Mutex<HashMap<SpanId, Value>>,
}

impl SpanProcessor for TenantSpans {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        let own = span.exported_data().and_then(|d| {
            d.attributes
                .into_iter()
                .find(|kv| kv.key.as_str() == TENANT_ATTRIBUTE)
                .map(|kv| kv.value)
        });
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let tenant = own.or_else(|| {
            let parent = open.get(&cx.span().span_context().span_id())?.clone();
            span.set_attribute(KeyValue::new(TENANT_ATTRIBUTE, parent.clone()));
            Some(parent)
        });
        if let Some(tenant) = tenant {
            open.insert(span.span_context().span_id(), tenant);
        }
        drop(open);
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&span.span_context.span_id());
        if span
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == TENANT_ATTRIBUTE)
        {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The adapter's resource: `service.name` from `OTEL_SERVICE_NAME` (default
/// `portarium-st2`), `OTEL_RESOURCE_ATTRIBUTES`, and a `service.instance.id` per process.
pub fn adapter_resource() -> Resource {
    let mut builder = Resource::builder().with_attribute(KeyValue::new(
        "service.instance.id",
        instance_id().to_string(),
    ));
    let env = |name| std::env::var(name).ok();
    if !service_named(env("OTEL_SERVICE_NAME"), env("OTEL_RESOURCE_ATTRIBUTES")) {
        builder = builder.with_service_name("portarium-st2");
    }
    builder.build()
}

/// Whether the environment names the service: `OTEL_SERVICE_NAME`, else a `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` (the SDK's resource detectors read both).
fn service_named(service_name: Option<String>, resource_attributes: Option<String>) -> bool {
    service_name.is_some_and(|v| !v.trim().is_empty())
        || resource_attributes.is_some_and(|a| {
            super::config::parse_pairs(&a)
                .iter()
                .any(|(k, v)| k == "service.name" && !v.trim().is_empty())
        })
}

/// This process's `service.instance.id`.
pub fn instance_id() -> &'static str {
    static ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::iter::repeat_with(|| fastrand::u8(..))
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    &ID
}

fn build_exporter(
    settings: &SignalSettings,
    resource: &Resource,
) -> Result<opentelemetry_otlp::SpanExporter, SpanSetupError> {
    let endpoint = settings.endpoint.to_string();
    let setup = |reason: String| SpanSetupError {
        endpoint: endpoint.clone(),
        reason,
    };
    let headers: HashMap<String, String> = settings.headers.iter().cloned().collect();
    let compression = settings
        .gzip
        .then_some(opentelemetry_otlp::Compression::Gzip);
    let built = match settings.protocol {
        Protocol::HttpProtobuf => {
            let client = blocking_client(settings).map_err(&setup)?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.timeout)
                .with_headers(headers);
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            builder.build()
        }
        Protocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &headers {
                if let (Ok(key), Ok(value)) = (
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                    v.parse(),
                ) {
                    metadata.insert(key, value);
                }
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata);
            if settings.endpoint.scheme() == "https" {
                builder = builder.with_tls_config(super::export::tonic_tls(&settings.tls));
            }
            if let Some(c) = compression {
                builder = builder.with_compression(c);
            }
            builder.build()
        }
    };
    let mut exporter = built.map_err(|e| SpanSetupError {
        endpoint,
        reason: e.to_string(),
    })?;
    exporter.set_resource(resource);
    Ok(exporter)
}

/// The SDK's HTTP span export runs on its own thread with a blocking client; this one carries
/// the timeout and the TLS files. Built on a thread of its own: a blocking client holds a
/// runtime, which may be neither built nor dropped inside the async one.
fn blocking_client(settings: &SignalSettings) -> Result<reqwest::blocking::Client, String> {
    let (roots, identity) = super::export::reqwest_tls(&settings.tls)?;
    let timeout = settings.timeout;
    std::thread::spawn(move || {
        let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
        for root in roots {
            builder = builder.add_root_certificate(root);
        }
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        builder.build().map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "building the HTTP client panicked".to_string())?
}

/// A tracer provider exporting to `settings`. Call from inside the tokio runtime (a gRPC
/// channel needs it); shut it down with `tokio::task::spawn_blocking(move || provider.shutdown())`.
pub fn tracer_provider(settings: &SignalSettings) -> Result<SdkTracerProvider, SpanSetupError> {
    let base = adapter_resource();
    let router = TenantRouter {
        exporter: Arc::new(tokio::sync::Mutex::new(build_exporter(settings, &base)?)),
        base: base.clone(),
    };
    Ok(SdkTracerProvider::builder()
        .with_resource(base)
        .with_span_processor(TenantSpans {
            inner: BatchSpanProcessor::builder(router).build(),
            open: Mutex::default(),
        })
        .build())
}

/// The tracing layer sending spans to `provider`: the adapter's own spans and events at INFO
/// or above, without source locations (they name the build machine's paths).
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("portarium-st2"))
        .with_location(false)
        .with_filter(own_spans())
}

/// The layer that only gives the adapter's spans their OpenTelemetry ids (for the log lines'
/// `traceId`/`spanId`) when no span is exported. It skips what only an exported span shows:
/// busy/idle times and thread attributes (a clock read on every poll of an instrumented
/// future) and activating the span as the current OpenTelemetry context on each enter, which
/// nothing here reads (logs take the ids from the span itself).
pub fn ids_only_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("portarium-st2"))
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_context_activation(false)
        .with_filter(own_spans())
}

/// The adapter's own spans and events at INFO or above.
fn own_spans() -> Targets {
    Targets::new()
        .with_target("portarium_st2", LevelFilter::INFO)
        .with_target("st2_client", LevelFilter::INFO)
}

#[cfg(test)]
mod service_name_tests {
    use super::service_named;

    #[test]
    fn resource_attributes_name_the_service_when_otel_service_name_is_unset() {
        let some = |s: &str| Some(s.to_string());
        assert!(service_named(
            None,
            some("team=x,service.name=billing-adapter")
        ));
        assert!(service_named(some("a"), None));
        assert!(!service_named(some(" "), some("team=x")));
        assert!(!service_named(None, some("service.name=")));
    }
}
