//! Security controls of the adapter: bearer tokens on every route but the probes, secrets
//! kept out of everything the process writes, and st2's certificate verified without a
//! silent downgrade.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portarium_st2::config::Config;
use serde_json::{Value, json};

use crate::support::{SendJson, tls_file};
use st2_emulator::{Emulator, EmulatorOptions};

use crate::support::adapter::AdapterProcess;
use crate::support::stack::{Stack, app_from_yaml};

const KEY: &str = "sec-key";

/// The emulator and the adapter before it, tenant t1 calling with `right-token`; `yaml` adds
/// top-level sections.
async fn stack(yaml: &str) -> Stack {
    Stack::builder()
        .st2("retry: {max_retries: 0}")
        .tenant("t1", "right-token")
        .yaml(yaml)
        .start()
        .await
}

/// An HTTPS client trusting the test CA, presenting `identity` (cert and key files) if given.
pub(crate) fn https_client(identity: Option<(&str, &str)>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(tls_file("ca.pem")).unwrap()).unwrap();
    let mut builder = reqwest::Client::builder().add_root_certificate(ca);
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(tls_file(cert)).unwrap();
        pem.extend(std::fs::read(tls_file(key)).unwrap());
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_the_configured_ca_signed() {
    let server_yaml = format!(
        "server: {{tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}}}\n",
        tls_file("server.pem").display(),
        tls_file("server.key").display(),
        tls_file("client-ca.pem").display()
    );
    let s = stack(&server_yaml).await;
    let base = &s.base;
    let trusted = https_client(Some(("client.pem", "client.key")));
    let resp = trusted.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = trusted
        .post(format!("{base}/v1/dispatch"))
        .json(&dispatch_body("core.echo", json!({"message": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        401,
        "a client certificate is no bearer token"
    );
    let resp = trusted
        .post(format!("{base}/v1/dispatch"))
        .bearer_auth("right-token")
        .json(&dispatch_body("core.echo", json!({"message": "over mTLS"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    for (who, client) in [
        ("no certificate", https_client(None)),
        (
            "a certificate from another CA",
            https_client(Some(("rogue.pem", "rogue.key"))),
        ),
    ] {
        let refused = client.get(format!("{base}/healthz")).send().await;
        assert!(refused.is_err(), "{who}: {refused:?}");
    }
    let plain = reqwest::get(base.replacen("https", "http", 1) + "/healthz").await;
    assert!(
        plain.map(|r| r.status().as_u16() != 200).unwrap_or(true),
        "no plain HTTP"
    );
}

#[test]
fn listener_tls_problems_name_the_field() {
    let yaml = format!(
        "st2: {{base_url: 'https://st2.example.com', api_key: k}}\n\
         server: {{tls: {{cert_file: '{}', key_file: /nonexistent/key.pem}}}}\n",
        tls_file("server.pem").display()
    );
    let err = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap_err();
    assert!(
        err.to_string()
            .contains("server.tls.key_file: /nonexistent/key.pem"),
        "{err}"
    );
    let yaml = format!(
        "st2: {{base_url: 'https://st2.example.com', api_key: k}}\n\
         server: {{tls: {{cert_file: '{}', key_file: '{}'}}}}\n",
        tls_file("ca.pem").display(),
        tls_file("server.key").display()
    );
    let err = Config::from_yaml(&yaml, "test", std::iter::empty()).unwrap_err();
    assert!(
        err.to_string()
            .contains("server.tls.key_file: does not match cert_file"),
        "{err}"
    );
}

fn dispatch_body(flow_ref: &str, payload: Value) -> Value {
    json!({"actionId": "a1", "tenantId": "t1", "runId": "r1", "correlationId": "c1",
           "flowRef": flow_ref, "payload": payload})
}

#[tokio::test]
async fn no_or_wrong_token_is_401_on_every_authenticated_route() {
    let s = stack("").await;
    let base = &s.base;
    let http = reqwest::Client::new();
    let routes = [
        ("POST", "/v1/dispatch"),
        ("POST", "/api/v1/flows/core.echo/run"),
        ("POST", "/tools/invoke"),
        ("GET", "/v1/executions/5f0000000000000000000001"),
        ("POST", "/v1/executions/5f0000000000000000000001/cancel"),
        ("POST", "/v1/executions/5f0000000000000000000001/pause"),
        ("POST", "/v1/executions/5f0000000000000000000001/resume"),
        ("POST", "/v1/executions/5f0000000000000000000001/rerun"),
        ("GET", "/v1/executions/5f0000000000000000000001/output"),
        ("POST", "/v1/invoke"),
        ("GET", "/v1/invoke/inv-1/status"),
        ("GET", "/v1/invoke/inv-1/stream"),
    ];
    let credentials: [Option<&str>; 4] = [
        None,
        Some("Bearer wrong-token"),
        Some("Bearer right-token-and-more"),
        Some("Basic right-token"),
    ];
    for (method, path) in routes {
        for credential in credentials {
            let mut req = http
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .header("tenantId", "t1")
                .header("runId", "r1")
                .header("correlationId", "c1")
                .json(&dispatch_body("core.echo", json!({"message": "x"})));
            if let Some(c) = credential {
                req = req.header("authorization", c);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(
                resp.status().as_u16(),
                401,
                "{method} {path} with {credential:?}"
            );
        }
    }
    // The stream watcher's own connection is the adapter's, not a caller's.
    let reached: Vec<_> = s
        .emu
        .request_log()
        .into_iter()
        .filter(|r| !r.path.starts_with("/stream/"))
        .collect();
    assert!(
        reached.is_empty(),
        "an unauthenticated call reaches nothing in st2: {reached:?}"
    );
    // Probes and the API description are open: load balancers and kubelets carry no token,
    // and neither reveals tenant data.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let status = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "{path}");
    }
}

/// A TLS listener presenting the test server certificate (signed by a CA the adapter is not
/// told about); counts handshakes that completed.
async fn untrusted_tls() -> (String, Arc<AtomicUsize>) {
    let acceptor =
        crate::support::tls_server::acceptor(&tls_file("server.pem"), &tls_file("server.key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let completed = Arc::new(AtomicUsize::new(0));
    let count = completed.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if acceptor.accept(tcp).await.is_ok() {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (url, completed)
}

#[tokio::test]
async fn an_untrusted_st2_certificate_fails_dispatch_and_readiness() {
    let (url, completed) = untrusted_tls().await;
    // st2 here is a TLS stand-in, not the emulator the stack starts.
    let yaml = format!(
        "listen: 127.0.0.1:0\nst2: {{base_url: '{url}', api_key: k, retry: {{max_retries: 0}}}}\n\
         tenants:\n  - {{id: t1, api_token: right-token}}\n"
    );
    let (_app, base) = app_from_yaml(&yaml).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/v1/dispatch"))
        .bearer_auth("right-token")
        .json(&dispatch_body("core.echo", json!({"message": "x"})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 502);
    let result: Value = resp.json().await.unwrap();
    assert_eq!(result["ok"], false);
    let message = result["message"].as_str().unwrap();
    assert!(message.contains("UnknownIssuer"), "says why: {message}");
    let ready: Value = http.get(format!("{base}/readyz")).send_json().await;
    assert_eq!(
        ready["st2"]["reachable"], false,
        "st2 reported down behind a refused certificate: {ready}"
    );
    assert_eq!(
        completed.load(Ordering::SeqCst),
        0,
        "no handshake completed, so nothing was sent"
    );
}

/// `portarium-st2 serve` on `config` at trace level, so the leak checks see every log line.
pub(crate) async fn serve(config: &std::path::Path) -> AdapterProcess {
    AdapterProcess::start_logging(config, "trace").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_parameter_never_appears_in_logs_errors_or_the_audit_log() {
    // The built-in catalogue plus an action whose failure quotes its parameters on stderr.
    let catalogue = crate::support::catalogue_with(
        "actions:
          - {pack: examples, name: login, runner_type: local-shell-cmd,
             parameters: {user: {type: string, required: true}, pin: {type: string, secret: true},
                          ssn: {type: string}},
             behaviour: {kind: shell, stderr: 'login {{user}} pin {{pin}} ssn {{ssn}} refused', return_code: 1}}",
    );
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        catalogue,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nlog: {{format: json}}\nst2: {{base_url: '{}', api_key: {KEY}}}\n\
             tenants:\n  - {{id: t1, api_token: right-token}}\n\
             governance: {{redact_keys: [SSN], audit: {{path: '{}'}}}}\n",
            emu.base_url(),
            audit.display()
        ),
    )
    .unwrap();
    let served = serve(&config).await;
    let http = reqwest::Client::new();
    let mut answers = String::new();
    // The schema marks `password` and `pin` secret; `ssn` is a configured key; `api_token`
    // looks like a credential. Each carries a value that must never be written anywhere.
    let cases = [
        (
            "examples.secret",
            json!({"user": "ann", "password": "pw-7f3a-SECRET"}),
        ),
        (
            "examples.secret",
            json!({"user": "ann", "password": "pw-7f3a-SECRET", "api_token": "tok-99-SECRET"}),
        ),
        (
            "examples.login",
            json!({"user": "ann", "pin": "pin-5521-SECRET", "ssn": "ssn-0042-SECRET"}),
        ),
    ];
    for (flow_ref, payload) in cases {
        let resp = http
            .post(format!("{}/v1/dispatch", served.base))
            .bearer_auth("right-token")
            .json(&dispatch_body(flow_ref, payload))
            .send()
            .await
            .unwrap();
        answers.push_str(&resp.text().await.unwrap());
        answers.push('\n');
    }
    assert!(answers.contains("\"ok\":true"), "{answers}");
    assert!(
        answers.contains("failed: exit code 1; login ann pin [REDACTED] ssn [REDACTED] refused"),
        "st2's stderr is quoted with the secret replaced: {answers}"
    );
    let logs = served.log().join("\n");
    assert!(
        logs.contains("st2 answered"),
        "debug logs were captured: {logs}"
    );
    let audit_text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(
        audit_text.lines().count(),
        6,
        "accepted and outcome of each"
    );
    for secret in [
        "pw-7f3a-SECRET",
        "tok-99-SECRET",
        "pin-5521-SECRET",
        "ssn-0042-SECRET",
    ] {
        assert!(!answers.contains(secret), "{secret} in answers: {answers}");
        assert!(!logs.contains(secret), "{secret} in logs");
        assert!(!audit_text.contains(secret), "{secret} in the audit log");
    }
}
