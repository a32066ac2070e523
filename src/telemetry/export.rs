//! Our own small OTLP metrics exporter: an `ExportMetricsServiceRequest` built by
//! [`super::normalize`] goes out over OTLP/HTTP (protobuf) or OTLP/gRPC.
//!
//! Only failures the OTLP spec calls retryable are retried — HTTP 429, 502, 503, 504 and
//! transport errors; gRPC UNAVAILABLE and its kin — under the shared [`st2_basics::Retry`]:
//! the backoff, or the server's `Retry-After` when it sends one. A wait longer than the
//! configured ceiling gives up at once rather than stalling the scrape loop.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::transport::Channel;

use st2_basics::{GiveUp, RetryPolicy};

use super::config::{OtlpSettings, Protocol, SignalSettings, TlsFiles};

/// Why an export did not land.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The collector refused the data; sending it again would not help.
    #[error(
        "the OTLP collector at {endpoint} refused the metrics ({detail}); check the endpoint path and headers (OTEL_EXPORTER_OTLP_*)"
    )]
    Refused {
        /// Where.
        endpoint: String,
        /// Status and body text.
        detail: String,
    },
    /// Every attempt failed with a retryable error.
    #[error(
        "the OTLP collector at {endpoint} did not accept the metrics after {attempts} attempts (last: {last}); check that it runs and is reachable"
    )]
    GaveUp {
        /// Where.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The collector asked for a pause beyond `otlp.backoff.max`.
    #[error(
        "the OTLP collector at {endpoint} asked to wait {wait:?}, longer than telemetry.otlp.backoff.max; this batch is dropped"
    )]
    TooLongToWait {
        /// Where.
        endpoint: String,
        /// What it asked for.
        wait: Duration,
    },
    /// The endpoint or its TLS files cannot be used.
    #[error(
        "the OTLP metrics endpoint {endpoint} cannot be used: {reason}; check telemetry.otlp and OTEL_EXPORTER_OTLP_[METRICS_]*"
    )]
    Endpoint {
        /// Where.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// What a successful export reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Attempts it took.
    pub attempts: u32,
    /// Points the collector said it rejected (OTLP partial success).
    pub rejected_points: i64,
}

/// One attempt's failure.
struct Failure {
    retryable: bool,
    retry_after: Option<Duration>,
    detail: String,
}

/// Sends metrics to one collector; cheap to clone.
#[derive(Clone)]
pub struct MetricsExporter {
    settings: SignalSettings,
    max_attempts: u32,
    backoff: st2_basics::BackoffConfig,
    http: reqwest::Client,
    grpc: Option<MetricsServiceClient<Channel>>,
}

impl MetricsExporter {
    /// An exporter for the metrics signal of `settings` (gRPC connects lazily, on the first
    /// export); an error when `settings` has no metrics endpoint.
    pub fn new(settings: OtlpSettings) -> Result<Self, ExportError> {
        let Some(signal) = settings.metrics else {
            return Err(ExportError::Endpoint {
                endpoint: "(none)".into(),
                reason: "no metrics endpoint is configured".into(),
            });
        };
        let endpoint = signal.endpoint.to_string();
        let unusable = |reason: String| ExportError::Endpoint {
            endpoint: endpoint.clone(),
            reason,
        };
        let grpc = match signal.protocol {
            Protocol::HttpProtobuf => None,
            Protocol::Grpc => {
                let mut channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| unusable(e.to_string()))?
                    .timeout(signal.timeout)
                    .connect_timeout(signal.timeout);
                if signal.endpoint.scheme() == "https" {
                    channel = channel
                        .tls_config(tonic_tls(&signal.tls))
                        .map_err(|e| unusable(e.to_string()))?;
                }
                let channel = channel.connect_lazy();
                let mut client = MetricsServiceClient::new(channel);
                if signal.gzip {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                Some(client)
            }
        };
        let (roots, identity) = reqwest_tls(&signal.tls).map_err(&unusable)?;
        let mut http = reqwest::Client::builder()
            .timeout(signal.timeout)
            .redirect(reqwest::redirect::Policy::none());
        for root in roots {
            http = http.add_root_certificate(root);
        }
        if let Some(identity) = identity {
            http = http.identity(identity);
        }
        let http = http.build().map_err(|e| unusable(e.to_string()))?;
        Ok(Self {
            settings: signal,
            max_attempts: settings.max_attempts,
            backoff: settings.backoff,
            http,
            grpc,
        })
    }

    /// Where the metrics go.
    pub fn endpoint(&self) -> &str {
        self.settings.endpoint.as_str()
    }

    /// Sends `request`, retrying what may pass.
    pub async fn export(
        &self,
        request: &ExportMetricsServiceRequest,
    ) -> Result<Exported, ExportError> {
        let endpoint = self.endpoint().to_string();
        let mut retry = RetryPolicy::new(self.backoff.clone())
            .max_attempts(self.max_attempts)
            .start();
        loop {
            let outcome = match &self.grpc {
                Some(client) => self.grpc_once(client.clone(), request.clone()).await,
                None => self.http_once(request).await,
            };
            let failure = match outcome {
                Ok(response) => {
                    let rejected_points = response
                        .partial_success
                        .map_or(0, |p| p.rejected_data_points);
                    if rejected_points > 0 {
                        tracing::warn!(rejected_points, %endpoint, "the OTLP collector rejected some points");
                    }
                    return Ok(Exported {
                        attempts: retry.attempts(),
                        rejected_points,
                    });
                }
                Err(f) => f,
            };
            if !failure.retryable {
                return Err(ExportError::Refused {
                    endpoint,
                    detail: failure.detail,
                });
            }
            let wait = match retry.after_failure(failure.retry_after) {
                Ok(wait) => wait,
                Err(GiveUp::WaitTooLong(wait)) => {
                    return Err(ExportError::TooLongToWait { endpoint, wait });
                }
                Err(_) => {
                    return Err(ExportError::GaveUp {
                        endpoint,
                        attempts: retry.attempts(),
                        last: failure.detail,
                    });
                }
            };
            tracing::debug!(attempt = retry.attempts(), ?wait, detail = %failure.detail, "OTLP export will be retried");
            tokio::time::sleep(wait).await;
        }
    }

    async fn http_once(
        &self,
        request: &ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Failure> {
        let mut body = request.encode_to_vec();
        let mut builder = self
            .http
            .post(self.settings.endpoint.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
        if self.settings.gzip {
            body = gzip(&body);
            builder = builder.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        for (k, v) in &self.settings.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let reply = builder.body(body).send().await.map_err(|e| Failure {
            retryable: true,
            retry_after: None,
            detail: format!("transport error: {e}"),
        })?;
        let status = reply.status();
        let retry_after = st2_client::retry_after(reply.headers());
        let bytes = reply.bytes().await.map_err(|e| Failure {
            retryable: true,
            retry_after: None,
            detail: format!("answer cut off: {e}"),
        })?;
        if status.is_success() {
            // An empty or undecodable success body still means the data was accepted.
            return Ok(ExportMetricsServiceResponse::decode(bytes).unwrap_or_default());
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        Err(Failure {
            retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
            retry_after,
            detail: format!("HTTP {status}: {text}"),
        })
    }

    async fn grpc_once(
        &self,
        mut client: MetricsServiceClient<Channel>,
        request: ExportMetricsServiceRequest,
    ) -> Result<ExportMetricsServiceResponse, Failure> {
        let mut req = tonic::Request::new(request);
        req.set_timeout(self.settings.timeout);
        for (k, v) in &self.settings.headers {
            if let (Ok(key), Ok(value)) = (
                tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes()),
                v.parse(),
            ) {
                req.metadata_mut().insert(key, value);
            }
        }
        match client.export(req).await {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) => {
                use tonic::Code;
                let retryable = matches!(
                    status.code(),
                    Code::Cancelled
                        | Code::DeadlineExceeded
                        | Code::Aborted
                        | Code::OutOfRange
                        | Code::Unavailable
                        | Code::DataLoss
                );
                Err(Failure {
                    retryable,
                    retry_after: None,
                    detail: format!("gRPC {:?}: {}", status.code(), status.message()),
                })
            }
        }
    }
}

/// The extra CA certificates and the client identity of `tls`, as reqwest takes them (the
/// async metrics client and the blocking span client alike).
pub(crate) fn reqwest_tls(
    tls: &TlsFiles,
) -> Result<(Vec<reqwest::Certificate>, Option<reqwest::Identity>), String> {
    let roots = match &tls.ca {
        Some(pem) => reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
            format!("the CA certificate (OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE) is not PEM: {e}")
        })?,
        None => Vec::new(),
    };
    let identity = match &tls.identity {
        Some((cert, key)) => Some(
            reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes()).map_err(|e| {
                format!("the client certificate and key (OTEL_EXPORTER_OTLP_[SIGNAL_]CLIENT_*) are not a PEM pair: {e}")
            })?,
        ),
        None => None,
    };
    Ok((roots, identity))
}

/// `tls` for a tonic channel: the system roots, the extra CA and the client identity.
pub(crate) fn tonic_tls(tls: &TlsFiles) -> tonic::transport::ClientTlsConfig {
    use tonic::transport::{Certificate, Identity};
    let mut config = tonic::transport::ClientTlsConfig::new().with_native_roots();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    config
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    encoder.write_all(body).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}
