//! OTLP export configured by the OpenTelemetry SDK's environment variables alone (issue 16):
//! per-signal protocol, headers, timeout and compression, TLS to the collector (CA, client
//! certificate and key), gRPC over https, one signal alone. Each test sends to loopback
//! receivers (OTLP/HTTP on axum, OTLP/gRPC on tonic, with and without TLS) and checks what
//! arrived there.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use portarium_st2::telemetry::export::MetricsExporter;
use portarium_st2::telemetry::{OtlpConfig, OtlpSettings, SignalSettings};
use prost::Message;

use crate::support::tls_file;

/// One export as a receiver saw it.
#[derive(Debug, Clone)]
struct Arrival {
    /// `metrics` or `traces`.
    signal: &'static str,
    /// The HTTP path (`/v1/metrics`), or `grpc`.
    path: String,
    /// Request headers (gRPC: metadata), lower-case names.
    headers: HashMap<String, String>,
    /// Whether the body came gzipped.
    gzip: bool,
    /// Metrics or spans in it.
    items: usize,
}

/// What a receiver got, in arrival order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Arrival>>>);

impl Seen {
    fn all(&self) -> Vec<Arrival> {
        self.0.lock().unwrap().clone()
    }

    fn of(&self, signal: &str) -> Vec<Arrival> {
        self.all()
            .into_iter()
            .filter(|a| a.signal == signal)
            .collect()
    }

    fn push(&self, arrival: Arrival) {
        self.0.lock().unwrap().push(arrival);
    }
}

fn header_map(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

fn metric_count(req: &ExportMetricsServiceRequest) -> usize {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .map(|s| s.metrics.len())
        .sum()
}

/// The OTLP/HTTP receiver: any path; the body is decoded as traces when the path says so.
fn http_receiver(seen: Seen) -> Router {
    Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            let gzip = headers.get("content-encoding").is_some_and(|v| v == "gzip");
            let mut raw = Vec::new();
            if gzip {
                flate2::read::GzDecoder::new(&body[..])
                    .read_to_end(&mut raw)
                    .unwrap();
            } else {
                raw = body.to_vec();
            }
            let path = uri.path().to_string();
            let (signal, items, answer) = if path.contains("traces") {
                let req = ExportTraceServiceRequest::decode(&raw[..]).unwrap();
                let answer = ExportTraceServiceResponse::default().encode_to_vec();
                ("traces", span_count(&req), answer)
            } else {
                let req = ExportMetricsServiceRequest::decode(&raw[..]).unwrap();
                let answer = ExportMetricsServiceResponse::default().encode_to_vec();
                ("metrics", metric_count(&req), answer)
            };
            seen.push(Arrival {
                signal,
                path,
                headers: header_map(&headers),
                gzip,
                items,
            });
            ([("content-type", "application/x-protobuf")], answer).into_response()
        }
    })
}

/// How a test receiver takes connections.
#[derive(Clone, Copy)]
enum Tls {
    /// Plain TCP.
    Off,
    /// The test server certificate (`server.pem`, issued by `ca.pem`).
    Server,
    /// As `Server`, and clients must present a certificate issued by `client-ca.pem`.
    Mutual,
}

/// Serves the OTLP/HTTP receiver on a loopback port; its base URL.
async fn start_http(seen: &Seen, tls: Tls) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = http_receiver(seen.clone());
    let (cert, key) = (tls_file("server.pem"), tls_file("server.key"));
    let acceptor = match tls {
        Tls::Off => {
            tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
            return format!("http://{addr}");
        }
        Tls::Server => crate::support::tls_server::acceptor(&cert, &key),
        Tls::Mutual => crate::support::tls_server::acceptor_requiring_clients(
            &cert,
            &key,
            &tls_file("client-ca.pem"),
        ),
    };
    tokio::spawn(portarium_st2::server::tls::serve_tls(
        listener,
        router,
        acceptor,
        std::future::pending(),
    ));
    format!("https://{addr}")
}

#[tonic::async_trait]
impl TraceService for Seen {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.push(Arrival {
            signal: "traces",
            path: "grpc".into(),
            headers: header_map(&request.metadata().clone().into_headers()),
            gzip: false,
            items: span_count(request.get_ref()),
        });
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Seen {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.push(Arrival {
            signal: "metrics",
            path: "grpc".into(),
            headers: header_map(&request.metadata().clone().into_headers()),
            gzip: false,
            items: metric_count(request.get_ref()),
        });
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves OTLP/gRPC (traces and metrics) on a loopback port; its base URL.
async fn start_grpc(seen: &Seen, tls: Tls) -> String {
    use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let read = |name: &str| std::fs::read(tls_file(name)).unwrap();
    let mut server = Server::builder();
    let scheme = match tls {
        Tls::Off => "http",
        Tls::Server | Tls::Mutual => {
            let mut config = ServerTlsConfig::new()
                .identity(Identity::from_pem(read("server.pem"), read("server.key")));
            if matches!(tls, Tls::Mutual) {
                config = config.client_ca_root(Certificate::from_pem(read("client-ca.pem")));
            }
            server = server.tls_config(config).unwrap();
            "https"
        }
    };
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let router = server
        .add_service(TraceServiceServer::new(seen.clone()))
        .add_service(MetricsServiceServer::new(seen.clone()));
    tokio::spawn(router.serve_with_incoming(incoming));
    format!("{scheme}://{addr}")
}

/// The settings `vars` amount to, with one attempt per export.
fn resolve(vars: &[(&str, String)]) -> OtlpSettings {
    let map: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    OtlpConfig {
        max_attempts: 1,
        ..Default::default()
    }
    .resolve(|k| map.get(k).cloned())
    .unwrap()
    .expect("an endpoint is set")
}

fn path(name: &str) -> String {
    tls_file(name).to_str().unwrap().to_string()
}

/// Exports one metric; `Err` with the exporter's message when it did not land.
async fn send_metrics(settings: &OtlpSettings) -> Result<(), String> {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "probe".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let exporter = MetricsExporter::new(settings.clone()).map_err(|e| e.to_string())?;
    exporter
        .export(&request)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Ends one span through the adapter's span pipeline (with a tenant, as the exporter only
/// sends spans that have one) and flushes it.
async fn send_span(traces: &SignalSettings) {
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    let provider = portarium_st2::telemetry::spans::tracer_provider(traces).unwrap();
    let mut span = provider.tracer("otlp-env-test").start("probe");
    span.set_attribute(opentelemetry::KeyValue::new("tenant.id", "t1"));
    span.end();
    tokio::task::spawn_blocking(move || {
        let _ = provider.force_flush();
        let _ = provider.shutdown();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_protocol_grpc_sends_spans_over_grpc_while_metrics_stay_on_http() {
    let (http_seen, grpc_seen) = (Seen::default(), Seen::default());
    let http = start_http(&http_seen, Tls::Off).await;
    let grpc = start_grpc(&grpc_seen, Tls::Off).await;
    let settings = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", http.clone()),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", grpc),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc".into()),
    ]);
    send_metrics(&settings).await.unwrap();
    send_span(settings.traces.as_ref().unwrap()).await;
    let spans = grpc_seen.of("traces");
    assert!(
        spans.len() == 1 && spans[0].items == 1,
        "one span over gRPC: {spans:?}"
    );
    let metrics = http_seen.all();
    assert!(
        metrics.len() == 1 && metrics[0].path == "/v1/metrics" && metrics[0].items == 1,
        "{metrics:?}"
    );

    // And the other way round: metrics alone over gRPC, with their own headers there too.
    let settings = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", http),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", grpc_url(&settings)),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc".into()),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-metrics=g".into()),
    ]);
    assert_eq!(
        settings.traces.as_ref().unwrap().protocol,
        portarium_st2::telemetry::Protocol::HttpProtobuf
    );
    send_metrics(&settings).await.unwrap();
    let over_grpc = grpc_seen.of("metrics");
    assert!(
        over_grpc.len() == 1
            && over_grpc[0].headers.get("x-metrics").map(String::as_str) == Some("g"),
        "{over_grpc:?}"
    );
    assert_eq!(http_seen.of("metrics").len(), 1, "nothing more over HTTP");
}

/// The gRPC collector `settings` send spans to.
fn grpc_url(settings: &OtlpSettings) -> String {
    settings
        .traces
        .as_ref()
        .unwrap()
        .endpoint
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_signal_headers_and_compression_reach_the_collector() {
    let seen = Seen::default();
    let base = start_http(&seen, Tls::Off).await;
    let settings = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=g".into()),
        (
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            "x-metrics=m%20v".into(),
        ),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "none".into()),
        ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip".into()),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-traces=t".into()),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip".into()),
    ]);
    send_metrics(&settings).await.unwrap();
    send_span(settings.traces.as_ref().unwrap()).await;
    let metrics = &seen.of("metrics")[0];
    assert_eq!(metrics.path, "/v1/metrics");
    assert_eq!(
        metrics.headers.get("x-metrics").map(String::as_str),
        Some("m v")
    );
    assert!(!metrics.headers.contains_key("x-generic"), "{metrics:?}");
    assert!(
        metrics.gzip,
        "METRICS_COMPRESSION=gzip over COMPRESSION=none"
    );
    let traces = &seen.of("traces")[0];
    assert_eq!(traces.path, "/v1/traces");
    assert_eq!(
        traces.headers.get("x-traces").map(String::as_str),
        Some("t")
    );
    assert!(traces.gzip && traces.items == 1, "{traces:?}");

    // Without per-signal values, the generic ones apply to both.
    let generic = resolve(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            settings
                .metrics
                .as_ref()
                .unwrap()
                .endpoint
                .origin()
                .ascii_serialization(),
        ),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-generic=g".into()),
    ]);
    send_metrics(&generic).await.unwrap();
    let last = seen.of("metrics").pop().unwrap();
    assert_eq!(last.headers.get("x-generic").map(String::as_str), Some("g"));
    assert!(!last.gzip);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_signal_timeout_bounds_each_export() {
    // A collector that accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let settings = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000".into()),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "300".into()),
    ]);
    assert_eq!(
        settings.traces.as_ref().unwrap().timeout,
        Duration::from_secs(30)
    );
    let started = Instant::now();
    let err = send_metrics(&settings).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "{took:?}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_for_one_signal_only_exports_that_signal() {
    let seen = Seen::default();
    let base = start_http(&seen, Tls::Off).await;
    let settings = resolve(&[(
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        format!("{base}/custom/metrics"),
    )]);
    assert!(settings.traces.is_none(), "no span export: {settings:?}");
    send_metrics(&settings).await.unwrap();
    let all = seen.all();
    assert!(
        all.len() == 1 && all[0].path == "/custom/metrics",
        "the per-signal URL is used as is: {all:?}"
    );
    let traces_only = resolve(&[(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        format!("{base}/custom/traces"),
    )]);
    assert!(traces_only.metrics.is_none());
    send_span(traces_only.traces.as_ref().unwrap()).await;
    assert_eq!(seen.of("traces")[0].path, "/custom/traces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_collector_is_trusted_through_the_certificate_variables() {
    let seen = Seen::default();
    let base = start_http(&seen, Tls::Server).await;
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", base.clone());
    // Its CA is not a system root: without the variable the handshake fails.
    let err = send_metrics(&resolve(std::slice::from_ref(&endpoint)))
        .await
        .unwrap_err();
    assert!(seen.all().is_empty(), "{err}");
    assert!(err.contains("transport error"), "{err}");
    let settings = resolve(&[
        endpoint.clone(),
        ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", path("ca.pem")),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path("ca.pem")),
    ]);
    send_metrics(&settings).await.unwrap();
    send_span(settings.traces.as_ref().unwrap()).await;
    assert_eq!(seen.of("metrics").len(), 1);
    assert_eq!(seen.of("traces").len(), 1, "spans over https too");

    // gRPC over https: the generic certificate variable covers both signals.
    let grpc_seen = Seen::default();
    let grpc = start_grpc(&grpc_seen, Tls::Server).await;
    let settings = resolve(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path("ca.pem")),
    ]);
    send_metrics(&settings).await.unwrap();
    send_span(settings.traces.as_ref().unwrap()).await;
    assert_eq!(grpc_seen.of("metrics").len(), 1, "{:?}", grpc_seen.all());
    assert_eq!(grpc_seen.of("traces").len(), 1, "{:?}", grpc_seen.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_asking_for_mutual_tls_gets_the_client_certificate() {
    let seen = Seen::default();
    let base = start_http(&seen, Tls::Mutual).await;
    let trust = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", path("ca.pem")),
    ];
    let err = send_metrics(&resolve(&trust)).await.unwrap_err();
    assert!(
        seen.all().is_empty(),
        "no client certificate, no export: {err}"
    );
    let mut with_client = trust.to_vec();
    with_client.push(("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", path("client.pem")));
    with_client.push(("OTEL_EXPORTER_OTLP_CLIENT_KEY", path("client.key")));
    let settings = resolve(&with_client);
    send_metrics(&settings).await.unwrap();
    send_span(settings.traces.as_ref().unwrap()).await;
    assert_eq!((seen.of("metrics").len(), seen.of("traces").len()), (1, 1));

    // Over gRPC, with the traces-only variables.
    let grpc_seen = Seen::default();
    let grpc = start_grpc(&grpc_seen, Tls::Mutual).await;
    let settings = resolve(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", grpc),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc".into()),
        ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path("ca.pem")),
        (
            "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
            path("client.pem"),
        ),
        ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", path("client.key")),
    ]);
    send_span(settings.traces.as_ref().unwrap()).await;
    assert_eq!(grpc_seen.of("traces").len(), 1, "{:?}", grpc_seen.all());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_with_grpc_traces_to_an_https_collector() {
    use std::io::{BufRead, BufReader};
    let grpc_seen = Seen::default();
    let grpc = start_grpc(&grpc_seen, Tls::Server).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
        .args(["serve", "--emulator"])
        .env("PORTARIUM_ST2_LISTEN", "127.0.0.1:0")
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &grpc)
        .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
        .env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path("ca.pem"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("PORTARIUM_ST2_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let listening = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("listening on"))
    })
    .await
    .unwrap();
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        listening && still_running,
        "serve refused the settings: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metric_export_interval_variable_paces_the_exports_of_serve() {
    let seen = Seen::default();
    let base = start_http(&seen, Tls::Off).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
        .args(["serve", "--emulator"])
        .env("PORTARIUM_ST2_LISTEN", "127.0.0.1:0")
        .env(
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            format!("{base}/v1/metrics"),
        )
        .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("PORTARIUM_ST2_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // With the default 15 s period a second export could not come within this bound.
    let deadline = Instant::now() + Duration::from_secs(8);
    while seen.of("metrics").len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let exports = seen.of("metrics");
    assert!(exports.len() >= 2, "{exports:?}");
    assert!(seen.of("traces").is_empty(), "no traces endpoint, no spans");
}
