//! Span export for the adapter's own traces: the OpenTelemetry SDK with opentelemetry-otlp
//! (blocking HTTP client or gRPC — the async reqwest client panics in the SDK's export
//! thread), and a router that moves `tenant.id` from the span onto the resource.
//!
//! Portarium's collector hashes the resource attribute `tenant.id` and routes on it; a
//! tenant id must never be a span attribute. Each configured tenant therefore gets its own
//! exporter whose resource carries `tenant.id`, built up front (a gRPC channel needs the
//! tokio runtime that exists then, not the SDK's export thread).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::registry::LookupSpan;

use super::config::{OtlpSettings, Protocol};

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

/// One OTLP exporter per tenant, and one for spans without a known tenant.
struct TenantRouter {
    by_tenant: HashMap<String, Arc<opentelemetry_otlp::SpanExporter>>,
    fallback: Arc<opentelemetry_otlp::SpanExporter>,
}

impl fmt::Debug for TenantRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantRouter")
            .field("tenants", &self.by_tenant.len())
            .finish()
    }
}

impl SpanExporter for TenantRouter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let mut groups: HashMap<Option<String>, Vec<SpanData>> = HashMap::new();
        for mut span in batch {
            let tenant = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == TENANT_ATTRIBUTE)
                .map(|i| span.attributes.remove(i).value.to_string());
            groups.entry(tenant).or_default().push(span);
        }
        let sends: Vec<_> = groups
            .into_iter()
            .map(|(tenant, spans)| {
                let exporter = tenant
                    .and_then(|t| self.by_tenant.get(&t).cloned())
                    .unwrap_or_else(|| self.fallback.clone());
                (exporter, spans)
            })
            .collect();
        async move {
            let mut failures = Vec::new();
            for (exporter, spans) in sends {
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
        for e in self.by_tenant.values().chain([&self.fallback]) {
            e.shutdown_with_timeout(timeout)?;
        }
        Ok(())
    }
}

/// The adapter's resource: `service.name` from `OTEL_SERVICE_NAME` (default
/// `portarium-st2`), `OTEL_RESOURCE_ATTRIBUTES`, and a `service.instance.id` per process.
pub fn adapter_resource() -> Resource {
    let mut builder = Resource::builder().with_attribute(KeyValue::new(
        "service.instance.id",
        instance_id().to_string(),
    ));
    if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
        builder = builder.with_service_name("portarium-st2");
    }
    builder.build()
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
    settings: &OtlpSettings,
    resource: &Resource,
) -> Result<opentelemetry_otlp::SpanExporter, SpanSetupError> {
    let endpoint = settings.traces_endpoint.to_string();
    let headers: HashMap<String, String> = settings.headers.iter().cloned().collect();
    let built = match settings.protocol {
        Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_timeout(settings.timeout)
            .with_headers(headers)
            .build(),
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
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(settings.timeout)
                .with_metadata(metadata)
                .build()
        }
    };
    let mut exporter = built.map_err(|e| SpanSetupError {
        endpoint,
        reason: e.to_string(),
    })?;
    exporter.set_resource(resource);
    Ok(exporter)
}

/// A tracer provider exporting to `settings`, one resource per tenant in `tenants`.
/// Call from inside the tokio runtime; shut it down with
/// `tokio::task::spawn_blocking(move || provider.shutdown())`.
pub fn tracer_provider(
    settings: &OtlpSettings,
    tenants: impl IntoIterator<Item = String>,
) -> Result<SdkTracerProvider, SpanSetupError> {
    let base = adapter_resource();
    let mut by_tenant = HashMap::new();
    for tenant in tenants {
        let resource = Resource::builder_empty()
            .with_attributes(
                base.iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_attribute(KeyValue::new(TENANT_ATTRIBUTE, tenant.clone()))
            .build();
        by_tenant.insert(tenant, Arc::new(build_exporter(settings, &resource)?));
    }
    let router = TenantRouter {
        by_tenant,
        fallback: Arc::new(build_exporter(settings, &base)?),
    };
    Ok(SdkTracerProvider::builder()
        .with_resource(base)
        .with_batch_exporter(router)
        .build())
}

/// The tracing layer sending spans to `provider`.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("portarium-st2"))
}
