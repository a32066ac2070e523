//! Span export rules (docs/telemetry.md) checked on what a loopback OTLP receiver decodes:
//! only the adapter's own spans at INFO or above, every one under its dispatch's tenant, no
//! dependency events or source paths, no background work; and `serve` exports nothing when
//! its port is taken.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use portarium_st2::config::Config;
use portarium_st2::telemetry::Telemetry;
use serde_json::json;

use crate::support::stack::Stack;
use crate::telemetry::{Receiver, attr, hex};

const TRACE_ID: &str = "5a115a115a115a115a115a115a115a11";

/// Every span that arrived, with its resource.
fn received(receiver: &Receiver) -> Vec<(Resource, Span)> {
    let traces = receiver.traces.lock().unwrap().clone();
    let mut out = Vec::new();
    for request in traces {
        for rs in request.resource_spans {
            let resource = rs.resource.unwrap_or_default();
            for ss in rs.scope_spans {
                out.extend(ss.spans.into_iter().map(|s| (resource.clone(), s)));
            }
        }
    }
    out
}

// The span layer is set thread-locally (the global subscriber belongs to the telemetry
// module), so the adapter, its background tasks and this client share one thread.
#[tokio::test(flavor = "current_thread")]
async fn exported_spans_are_the_adapters_own_and_each_carries_its_dispatchs_tenant() {
    use tracing_subscriber::prelude::*;
    let (receiver, collector) = Receiver::start().await;
    let telemetry_yaml = format!(
        "st2: {{base_url: 'http://127.0.0.1:9', api_key: k}}\n\
         telemetry:\n  otlp: {{endpoint: '{collector}', protocol: http/protobuf}}\n"
    );
    let config = Config::from_yaml(&telemetry_yaml, "test", std::iter::empty()).unwrap();
    let telemetry = Telemetry::start(&config.telemetry).unwrap();
    // No level filter besides the span layer's own, so dependencies emit TRACE events and
    // spans that the layer has to refuse.
    let subscriber = tracing_subscriber::registry().with(portarium_st2::telemetry::spans::layer(
        telemetry.provider().unwrap(),
    ));
    let _default = crate::support::scoped_subscriber(subscriber);

    let stack = Stack::builder()
        .tenant("acme", "acme-token")
        .tenant("globex", "globex-token")
        .start()
        .await;
    // One caller trace for both tenants: the tenant must follow the span tree, not the trace.
    for (n, (tenant, token)) in [("acme", "acme-token"), ("globex", "globex-token")]
        .into_iter()
        .enumerate()
    {
        let resp = stack
            .request(reqwest::Method::POST, "/v1/dispatch", token)
            .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
            .json(
                &json!({"actionId": format!("s{n}"), "tenantId": tenant, "runId": "r1",
                "correlationId": "c", "flowRef": "core.local", "payload": {"cmd": "echo hi"}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{tenant}");
    }
    // An st2 call outside any dispatch, as the stream consumer and reconciliation make.
    let background = st2_client::St2Client::from_config(
        &Config::from_yaml(
            &format!(
                "st2: {{base_url: '{}', api_key: {}}}\n",
                stack.emu.base_url(),
                crate::support::stack::KEY
            ),
            "test",
            std::iter::empty(),
        )
        .unwrap()
        .st2,
    )
    .unwrap();
    background.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    telemetry.shutdown().await;

    let spans = received(&receiver);
    assert!(!spans.is_empty(), "no span arrived");
    let by_id: HashMap<Vec<u8>, &(Resource, Span)> =
        spans.iter().map(|p| (p.1.span_id.clone(), p)).collect();
    for (resource, span) in &spans {
        let tenant = attr(&resource.attributes, "tenant.id");
        assert!(
            matches!(tenant.as_deref(), Some("acme" | "globex")),
            "{} exported without a tenant: {resource:?}",
            span.name
        );
        assert!(
            ["http.request", "workflow.action.execute", "st2_call"].contains(&span.name.as_str()),
            "not the adapter's own span: {}",
            span.name
        );
        assert_eq!(
            hex(&span.trace_id),
            TRACE_ID,
            "background work was exported"
        );
        assert!(
            span.attributes.iter().all(|kv| kv.key != "tenant.id"),
            "{:?}",
            span.attributes
        );
        for kv in span
            .attributes
            .iter()
            .chain(span.events.iter().flat_map(|e| e.attributes.iter()))
        {
            assert!(!kv.key.starts_with("code."), "source location: {kv:?}");
            let value = format!("{:?}", kv.value);
            assert!(
                !value.contains(".rs") && !value.contains("/src/"),
                "build-machine path: {kv:?}"
            );
        }
        for event in &span.events {
            let target = attr(&event.attributes, "target").unwrap_or_default();
            assert!(
                target.starts_with("portarium_st2") || target.starts_with("st2_client"),
                "dependency event {:?} from {target}",
                event.name
            );
            let level = attr(&event.attributes, "level").unwrap_or_default();
            assert!(
                ["INFO", "WARN", "ERROR"].contains(&level.as_str()),
                "{level} event {:?}",
                event.name
            );
        }
        // A child is under its parent's tenant: one trace is never split across tenants.
        if let Some((parent_resource, parent)) = by_id.get(&span.parent_span_id).copied() {
            assert_eq!(
                attr(&parent_resource.attributes, "tenant.id"),
                tenant,
                "{} under {}",
                span.name,
                parent.name
            );
        }
    }
    for tenant in ["acme", "globex"] {
        let names: Vec<&str> = spans
            .iter()
            .filter(|(r, _)| attr(&r.attributes, "tenant.id").as_deref() == Some(tenant))
            .map(|(_, s)| s.name.as_str())
            .collect();
        for name in ["http.request", "workflow.action.execute", "st2_call"] {
            assert!(names.contains(&name), "{tenant}: no {name} in {names:?}");
        }
    }
    let st2_calls: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "st2_call")
        .collect();
    assert!(
        st2_calls
            .iter()
            .all(|s| by_id.contains_key(&s.parent_span_id)),
        "an st2 call outside a dispatch was exported"
    );
}

#[tokio::test]
async fn serve_that_cannot_bind_exports_nothing() {
    let (receiver, collector) = Receiver::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.yaml");
    // A scrape target and OTLP both configured: the loop would export at its first tick.
    std::fs::write(
        &config,
        format!(
            "listen: {}\nst2: {{base_url: 'http://127.0.0.1:9', api_key: k}}\n\
             telemetry:\n  targets: ['{collector}metrics']\n  interval_ms: 1000\n  timeout_ms: 500\n",
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.as_str())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot listen on"), "{stderr}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.metrics.lock().unwrap().is_empty(),
        "metrics exported"
    );
    assert!(receiver.traces.lock().unwrap().is_empty(), "spans exported");
    drop(taken);
}
