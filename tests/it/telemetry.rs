//! Telemetry end to end on 127.0.0.1: dispatches through the adapter against the st2
//! emulator, its `/metrics` page scraped and normalized, and a real OTLP receiver in this
//! process decoding what arrives with the OTLP protobuf definitions.

use crate::support::SendJson;
use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, metric, number_data_point,
};
use portarium_st2::config::Config;
use portarium_st2::telemetry::export::{ExportError, MetricsExporter};
use portarium_st2::telemetry::scrape::Target;
use portarium_st2::telemetry::{
    OtlpSettings, Protocol, SignalSettings, Telemetry, TelemetryConfig,
};
use prost::Message;
use serde_json::json;
use st2_emulator::{Emulator, EmulatorOptions};
use url::Url;

/// Answers a receiver gives before accepting: status and `Retry-After`.
type Script = Arc<Mutex<VecDeque<(u16, Option<&'static str>)>>>;

/// An OTLP/HTTP receiver: decodes metrics and traces; answers from a script first.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub(crate) traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    script: Script,
    hits: Arc<AtomicUsize>,
}

fn body_bytes(headers: &HeaderMap, body: &Bytes) -> Vec<u8> {
    if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    }
}

impl Receiver {
    pub(crate) async fn start() -> (Self, Url) {
        let r = Receiver::default();
        let app = Router::new()
            .route("/v1/metrics", post(receive_metrics))
            .route("/v1/traces", post(receive_traces))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    fn scripted(&self) -> Option<Response> {
        let (status, retry_after) = self.script.lock().unwrap().pop_front()?;
        let mut resp = (StatusCode::from_u16(status).unwrap(), "scripted").into_response();
        if let Some(ra) = retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        Some(resp)
    }
}

async fn receive_metrics(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    r.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(resp) = r.scripted() {
        return resp;
    }
    let req = ExportMetricsServiceRequest::decode(&body_bytes(&headers, &body)[..]).unwrap();
    r.metrics.lock().unwrap().push(req);
    ExportMetricsServiceResponse::default()
        .encode_to_vec()
        .into_response()
}

async fn receive_traces(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let req = ExportTraceServiceRequest::decode(&body_bytes(&headers, &body)[..]).unwrap();
    r.traces.lock().unwrap().push(req);
    StatusCode::OK.into_response()
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

pub(crate) fn attr(kvs: &[KeyValue], key: &str) -> Option<String> {
    kvs.iter().find(|kv| kv.key == key).map(text)
}

pub(crate) fn number(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

/// The scraped st2 metrics of the newest export, by name.
pub(crate) fn st2_metrics(r: &Receiver) -> Vec<Metric> {
    let all = r.metrics.lock().unwrap();
    let Some(last) = all.last() else {
        return Vec::new();
    };
    last.resource_metrics
        .iter()
        .filter(|rm| {
            rm.resource.as_ref().is_some_and(|res| {
                attr(&res.attributes, "service.name").as_deref() == Some("stackstorm")
            })
        })
        .flat_map(|rm| rm.scope_metrics.iter().flat_map(|s| s.metrics.clone()))
        .collect()
}

/// The cumulative monotonic sum point of `name` whose attribute `key` is `value`.
pub(crate) fn sum_point(
    metrics: &[Metric],
    name: &str,
    key: &str,
    value: &str,
) -> Option<(NumberDataPoint, String)> {
    let m = metrics.iter().find(|m| m.name == name)?;
    let Some(metric::Data::Sum(sum)) = &m.data else {
        panic!("{name} is not a Sum")
    };
    assert!(sum.is_monotonic, "{name}");
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let p = sum
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, key).as_deref() == Some(value))?;
    Some((p.clone(), m.unit.clone()))
}

/// `core.local`, `core.echo` and `examples.fail` again, in a pack no other test dispatches to.
const METERED: &str = "
packs:
  - {ref: metered, description: Metered copies., version: 3.10dev, author: tests, email: t@example.com}
actions:
  - {pack: metered, name: local, runner_type: local-shell-cmd,
     parameters: {cmd: {type: string, required: true}}, behaviour: {kind: shell}}
  - {pack: metered, name: echo, runner_type: local-shell-cmd,
     parameters: {message: {type: string, required: true}}, behaviour: {kind: shell, stdout: '{{message}}'}}
  - {pack: metered, name: fail, runner_type: local-shell-cmd,
     behaviour: {kind: shell, stderr: boom, return_code: 1}}
";

// A trace no other module sends, so this test finds its own spans.
const TRACE_ID: &str = "5eed7e1e5eed7e1e5eed7e1e5eed7e1e";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatches_reach_the_collector_as_st2_counters_and_continued_spans() {
    // The adapter's own metrics and the span layer are process-wide and other modules of this
    // test binary dispatch too: this test's actions are in a pack of its own, and its spans are
    // told apart by their trace.
    let emu = Emulator::start(EmulatorOptions {
        catalogue: crate::support::catalogue_with(METERED),
        ..Default::default()
    })
    .await
    .unwrap();
    let (receiver, collector) = Receiver::start().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nst2: {{base_url: '{}', api_key: emulator-api-key}}\n\
         tenants:\n  - {{id: acme, api_token: acme-token}}\n\
         telemetry:\n  targets: ['{}/metrics']\n  interval_ms: 1000\n  timeout_ms: 1000\n  \
         otlp: {{endpoint: '{collector}', protocol: http/protobuf}}\n",
        emu.base_url(),
        emu.base_url()
    );
    let config = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap();
    let telemetry = Telemetry::start(&config.telemetry).unwrap();
    {
        use tracing_subscriber::prelude::*;
        let layer = portarium_st2::telemetry::spans::layer(telemetry.provider().unwrap());
        // The process-wide subscriber, set here alone in the test binary (tracing's own call,
        // which leaves the `log` bridge to whoever sets it).
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .expect("no other test sets the global subscriber");
    }
    let base = crate::support::stack::serve_dispatch_routes(&config).await;
    let http = reqwest::Client::new();
    let runs = [
        ("metered.local", json!({"cmd": "echo hi"}), 3),
        ("metered.echo", json!({"message": "hi"}), 2),
        ("metered.fail", json!({}), 1),
    ];
    let mut n = 0;
    for (flow_ref, payload, times) in &runs {
        for _ in 0..*times {
            n += 1;
            let resp = http
                .post(format!("{base}/v1/dispatch"))
                .bearer_auth("acme-token")
                .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
                .json(
                    &json!({"actionId": format!("a{n}"), "tenantId": "acme", "runId": "r1",
                    "correlationId": "corr-secret", "flowRef": flow_ref, "payload": payload}),
                )
                .send()
                .await
                .unwrap();
            let expected = if *flow_ref == "metered.fail" {
                502
            } else {
                200
            };
            assert_eq!(resp.status().as_u16(), expected, "{flow_ref}");
        }
    }
    // The scrape loop exports every second; wait for an export that has seen every run.
    let deadline = Instant::now() + Duration::from_secs(15);
    let metrics = loop {
        let m = st2_metrics(&receiver);
        let seen = sum_point(
            &m,
            "st2.action.executions",
            "st2.action.ref",
            "metered.fail",
        )
        .is_some();
        if seen {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no export with every run arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (flow_ref, _, times) in &runs {
        let (p, unit) = sum_point(
            &metrics,
            "st2.action.executions",
            "st2.action.ref",
            flow_ref,
        )
        .unwrap();
        assert_eq!(
            (number(&p), unit.as_str()),
            (f64::from(*times), "{execution}"),
            "{flow_ref}"
        );
        assert!(p.start_time_unix_nano > 0 && p.start_time_unix_nano <= p.time_unix_nano);
        assert_eq!(
            p.attributes.len(),
            1,
            "only the action ref: {:?}",
            p.attributes
        );
    }
    for (status, count) in [("requested", 6.0), ("succeeded", 5.0), ("failed", 1.0)] {
        let (p, _) = sum_point(
            &metrics,
            "st2.action.execution.status.entries",
            "st2.execution.status",
            status,
        )
        .unwrap();
        assert_eq!(number(&p), count, "{status}");
    }
    // Start times come from the source's process start, so every export agrees on them.
    let start_gauge = metrics
        .iter()
        .find(|m| m.name == "process_start_time_seconds")
        .and_then(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => Some(number(&g.data_points[0])),
            _ => None,
        })
        .unwrap();
    let (p, _) = sum_point(
        &metrics,
        "st2.action.executions",
        "st2.action.ref",
        "metered.local",
    )
    .unwrap();
    assert_eq!(p.start_time_unix_nano, (start_gauge * 1e9) as u64);
    let resource = receiver
        .metrics
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .resource_metrics[0]
        .resource
        .clone()
        .unwrap();
    let port = emu.addr().port().to_string();
    assert_eq!(
        attr(&resource.attributes, "service.instance.id"),
        Some(format!("127.0.0.1:{port}"))
    );
    assert_eq!(attr(&resource.attributes, "server.port"), Some(port));

    // The adapter's own metrics, in Portarium's names, by OTLP and by GET /metrics.
    let own: Vec<Metric> = receiver
        .metrics
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .resource_metrics
        .iter()
        .filter(|rm| {
            rm.resource.as_ref().is_some_and(|r| {
                attr(&r.attributes, "service.name").as_deref() == Some("portarium-st2")
            })
        })
        .flat_map(|rm| rm.scope_metrics.iter().flat_map(|s| s.metrics.clone()))
        .collect();
    let (p, _) = sum_point(
        &own,
        "portarium.action.succeeded",
        "action.operation",
        "metered.local",
    )
    .unwrap();
    assert_eq!(
        (number(&p), attr(&p.attributes, "pack.id").as_deref()),
        (3.0, Some("metered"))
    );
    // Portarium's pack observability attributes; pii_safe is a boolean over OTLP.
    assert_eq!(
        attr(&p.attributes, "pack.version").as_deref(),
        Some("0.0.0")
    );
    assert!(p.attributes.iter().any(|kv| kv.key == "telemetry.pii_safe"
        && matches!(
            kv.value.as_ref().and_then(|v| v.value.as_ref()),
            Some(any_value::Value::BoolValue(true))
        )));
    let page = http.get(format!("{base}/metrics")).send_text().await;
    assert!(page.contains("portarium_action_failed_total{action_operation=\"metered.fail\",errorKind=\"RemoteError\",pack_id=\"metered\",pack_version=\"0.0.0\",telemetry_pii_safe=\"true\"} 1"), "{page}");
    assert!(
        page.contains("portarium_action_duration_ms_bucket{"),
        "{page}"
    );
    assert!(
        !page.contains("acme") && !page.contains("corr-secret"),
        "{page}"
    );

    telemetry.shutdown().await;
    let traces = receiver.traces.lock().unwrap().clone();
    let spans: Vec<_> = traces
        .iter()
        .flat_map(|t| t.resource_spans.iter())
        .flat_map(|rs| {
            let res = rs.resource.clone().unwrap_or_default();
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans.iter().map({
                    let res = res.clone();
                    move |s| (res.clone(), s.clone())
                })
            })
        })
        .filter(|(_, s)| s.name == "workflow.action.execute" && hex(&s.trace_id) == TRACE_ID)
        .collect();
    assert_eq!(spans.len(), n, "one span per dispatch");
    for (res, span) in &spans {
        assert_eq!(hex(&span.parent_span_id), PARENT_ID);
        assert_eq!(attr(&res.attributes, "tenant.id").as_deref(), Some("acme"));
        for kv in &span.attributes {
            let v = text(kv);
            assert!(
                kv.key != "tenant.id" && v != "acme" && v != "corr-secret" && v != "echo hi",
                "{kv:?}"
            );
        }
        // Portarium's pack observability spec: no pack gate here, so the version is unknown.
        assert_eq!(
            attr(&span.attributes, "pack.version").as_deref(),
            Some("0.0.0")
        );
        assert!(
            span.attributes
                .iter()
                .any(|kv| kv.key == "telemetry.pii_safe"
                    && kv.value.as_ref().and_then(|v| v.value.clone())
                        == Some(
                            opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(
                                true
                            )
                        )),
            "{:?}",
            span.attributes
        );
        let op = attr(&span.attributes, "action.operation").unwrap();
        let execution = attr(&span.attributes, "st2.execution.id").unwrap();
        assert_eq!(execution.len(), 24, "{execution}");
        if op == "metered.fail" {
            assert_eq!(
                attr(&span.attributes, "errorKind").as_deref(),
                Some("RemoteError")
            );
            assert_eq!(
                attr(&span.attributes, "action.outcome").as_deref(),
                Some("exception")
            );
            assert_eq!(
                attr(&span.attributes, "st2.execution.status").as_deref(),
                Some("failed")
            );
        } else {
            assert_eq!(
                attr(&span.attributes, "action.outcome").as_deref(),
                Some("succeeded")
            );
            assert_eq!(
                attr(&span.attributes, "st2.execution.status").as_deref(),
                Some("succeeded")
            );
            assert_eq!(
                attr(&span.attributes, "pack.id").as_deref(),
                Some("metered")
            );
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Prometheus-text endpoint serving whatever the test puts in it (status 200 unless set).
async fn page_server() -> (Arc<Mutex<(u16, String)>>, Url) {
    let page = Arc::new(Mutex::new((200, String::new())));
    let shared = page.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let page = shared.clone();
            async move {
                let (status, body) = page.lock().unwrap().clone();
                (StatusCode::from_u16(status).unwrap(), body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!(
        "http://{}/metrics",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (page, url)
}

#[tokio::test]
async fn a_counter_reset_in_the_source_starts_a_new_interval_and_a_lost_target_goes_stale() {
    let (page, url) = page_server().await;
    let config = TelemetryConfig::default();
    let mut target = Target::new(url.clone(), &config);
    let client = portarium_st2::telemetry::scrape::client(Duration::from_secs(2));
    let mut scrape = async |count: u32| {
        page.lock().unwrap().1 = format!(
            "# TYPE st2_action_core_local_executions counter\nst2_action_core_local_executions {count}\n"
        );
        let (rm, error) = target.scrape(&client, 1 << 20).await;
        assert!(error.is_none());
        let metrics = rm.scope_metrics[0].metrics.clone();
        sum_point(
            &metrics,
            "st2.action.executions",
            "st2.action.ref",
            "core.local",
        )
        .unwrap()
        .0
    };
    let first = scrape(5).await;
    let second = scrape(9).await;
    assert_eq!(second.start_time_unix_nano, first.start_time_unix_nano);
    assert_eq!(number(&second), 9.0);
    let after_reset = scrape(2).await;
    assert_eq!(
        number(&after_reset),
        2.0,
        "the new value, not a jump or a negative"
    );
    assert!(after_reset.start_time_unix_nano > second.time_unix_nano);
    assert!(after_reset.start_time_unix_nano <= after_reset.time_unix_nano);
    let later = scrape(4).await;
    assert_eq!(later.start_time_unix_nano, after_reset.start_time_unix_nano);

    // The target answers 503: the scrape fails and the series is flagged, keeping its start.
    page.lock().unwrap().0 = 503;
    let (rm, error) = target.scrape(&client, 1 << 20).await;
    assert!(error.unwrap().to_string().contains("503"));
    let (p, _) = sum_point(
        &rm.scope_metrics[0].metrics,
        "st2.action.executions",
        "st2.action.ref",
        "core.local",
    )
    .unwrap();
    assert_eq!(
        (p.flags & 1, p.start_time_unix_nano),
        (1, after_reset.start_time_unix_nano)
    );
}

#[tokio::test]
async fn scrapes_undo_gzip_and_refuse_oversized_pages() {
    use axum::http::header;
    let text = "# TYPE st2_api_request_total counter\nst2_api_request_total 12\n".to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    let zipped = gz.finish().unwrap();
    let big = "x".repeat(5000);
    let app = Router::new()
        .route(
            "/gz",
            get(move || async move { ([(header::CONTENT_ENCODING, "gzip")], zipped) }),
        )
        .route("/big", get(move || async move { big }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = portarium_st2::telemetry::scrape::client(Duration::from_secs(2));
    let got = portarium_st2::telemetry::scrape::fetch(
        &client,
        &Url::parse(&format!("{base}/gz")).unwrap(),
        4096,
    )
    .await
    .unwrap();
    assert_eq!(got, text);
    let err = portarium_st2::telemetry::scrape::fetch(
        &client,
        &Url::parse(&format!("{base}/big")).unwrap(),
        4096,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("max_body_bytes"), "{err}");
}

fn settings(endpoint: Url, protocol: Protocol) -> OtlpSettings {
    let signal = SignalSettings {
        endpoint,
        protocol,
        headers: vec![("x-api-key".into(), "k".into())],
        timeout: Duration::from_secs(2),
        gzip: true,
        tls: Default::default(),
    };
    OtlpSettings {
        metrics: Some(signal.clone()),
        traces: Some(signal),
        max_attempts: 3,
        backoff: st2_basics::BackoffConfig::new(Duration::from_millis(10), Duration::from_secs(5)),
    }
}

fn one_metric_request() -> ExportMetricsServiceRequest {
    let mut page = portarium_st2::telemetry::normalize::Normalizer::new(Default::default(), None);
    let metrics = page.normalize(
        &portarium_st2::telemetry::parse::parse("# TYPE c counter\nc 1\n"),
        1,
    );
    ExportMetricsServiceRequest {
        resource_metrics: vec![opentelemetry_proto::tonic::metrics::v1::ResourceMetrics {
            scope_metrics: vec![portarium_st2::telemetry::scrape::scope_metrics(metrics)],
            ..Default::default()
        }],
    }
}

#[tokio::test]
async fn export_retries_only_what_may_pass_and_honours_retry_after() {
    let (receiver, base) = Receiver::start().await;
    let url = base.join("/v1/metrics").unwrap();
    let exporter = MetricsExporter::new(settings(url, Protocol::HttpProtobuf)).unwrap();
    let request = one_metric_request();

    receiver.script.lock().unwrap().extend([(429, Some("1"))]);
    let started = Instant::now();
    let done = exporter.export(&request).await.unwrap();
    assert_eq!(done.attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    assert_eq!(
        receiver.metrics.lock().unwrap().last().unwrap(),
        &request,
        "gzip undone, same message"
    );

    receiver.hits.store(0, Ordering::SeqCst);
    receiver.script.lock().unwrap().extend([(400, None)]);
    assert!(matches!(
        exporter.export(&request).await,
        Err(ExportError::Refused { .. })
    ));
    assert_eq!(
        receiver.hits.load(Ordering::SeqCst),
        1,
        "400 is not retried"
    );

    receiver.hits.store(0, Ordering::SeqCst);
    receiver
        .script
        .lock()
        .unwrap()
        .extend([(503, None), (502, None), (504, None)]);
    let err = exporter.export(&request).await.unwrap_err();
    assert!(
        matches!(err, ExportError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(receiver.hits.load(Ordering::SeqCst), 3);

    receiver.hits.store(0, Ordering::SeqCst);
    receiver
        .script
        .lock()
        .unwrap()
        .extend([(503, Some("3600"))]);
    assert!(matches!(
        exporter.export(&request).await,
        Err(ExportError::TooLongToWait { .. })
    ));
    assert_eq!(receiver.hits.load(Ordering::SeqCst), 1);
    receiver.script.lock().unwrap().clear();

    // Nothing listening: a transport error, retried, then given up.
    let dead = Url::parse(&format!(
        "http://127.0.0.1:{}/v1/metrics",
        crate::support::free_port()
    ))
    .unwrap();
    let err = MetricsExporter::new(settings(dead, Protocol::HttpProtobuf))
        .unwrap()
        .export(&request)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ExportError::GaveUp { attempts: 3, .. }),
        "{err}"
    );
}

mod grpc {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
        MetricsService, MetricsServiceServer,
    };

    /// Requests received, with their `x-api-key` metadata.
    type Received = Arc<Mutex<Vec<(ExportMetricsServiceRequest, Option<String>)>>>;

    #[derive(Clone, Default)]
    struct Collector {
        received: Received,
        unavailable_first: Arc<AtomicUsize>,
    }

    #[tonic::async_trait]
    impl MetricsService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportMetricsServiceRequest>,
        ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
            if self.unavailable_first.fetch_sub(1, Ordering::SeqCst) > 0 {
                return Err(tonic::Status::unavailable("warming up"));
            }
            let key = request
                .metadata()
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            self.received
                .lock()
                .unwrap()
                .push((request.into_inner(), key));
            Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
        }
    }

    #[tokio::test]
    async fn grpc_export_delivers_and_retries_unavailable() {
        let collector = Collector::default();
        collector.unavailable_first.store(1, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = MetricsServiceServer::new(collector.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream_of(listener)),
        );
        let exporter = MetricsExporter::new(settings(
            Url::parse(&format!("http://{addr}")).unwrap(),
            Protocol::Grpc,
        ))
        .unwrap();
        let request = one_metric_request();
        let done = exporter.export(&request).await.unwrap();
        assert_eq!(done.attempts, 2);
        let received = collector.received.lock().unwrap().clone();
        assert_eq!(received, vec![(request, Some("k".to_string()))]);
    }

    fn tokio_stream_of(
        listener: tokio::net::TcpListener,
    ) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
        futures_util::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await.map(|(s, _)| s);
            Some((accepted, l))
        })
    }
}
