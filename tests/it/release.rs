//! Running in production (issue 15): readiness that means "can serve", the drain at SIGTERM.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::adapter::AdapterProcess;
use crate::support::{SendJson, quick_emulator, tls_file};

pub(crate) const TOKEN: &str = "release-token";

/// Starts `serve` on a config with `st2_url`, one tenant and `extra` YAML; waits until it listens.
pub(crate) async fn serve(dir: &std::path::Path, st2_url: &str, extra: &str) -> AdapterProcess {
    let config = dir.join("adapter.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\n\
             st2: {{base_url: '{st2_url}', api_key: k, connect_timeout_ms: 300, retry: {{max_retries: 0}}}}\n\
             tenants:\n  - {{id: t1, api_token: {TOKEN}}}\n{extra}"
        ),
    )
    .unwrap();
    AdapterProcess::start(&config).await
}

fn dispatch_body(payload: Value) -> Value {
    json!({
        "actionId": "a1", "tenantId": "t1", "runId": "r1", "correlationId": "c1",
        "flowRef": "core.local", "payload": payload
    })
}

#[tokio::test]
async fn with_st2_down_the_adapter_stays_ready_and_reports_st2_apart() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = format!("127.0.0.1:{}", crate::support::free_port());
    let served = serve(dir.path(), &format!("http://{port}"), "").await;
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{}/readyz", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200, "ready: it can still answer");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["st2"]["reachable"], false, "{body}");
    assert!(body["st2"]["error"].is_string(), "says why: {body}");

    let metrics = http
        .get(format!("{}/metrics", served.base))
        .send_text()
        .await;
    assert!(
        metrics.lines().any(|l| l == "portarium_st2_up 0"),
        "{metrics}"
    );

    let answer = http
        .post(format!("{}/v1/dispatch", served.base))
        .bearer_auth(TOKEN)
        .json(&dispatch_body(json!({"cmd": "true"})))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["errorKind"], "RemoteError", "{status} {answer}");
}

/// Holds a 2 s dispatch in flight, sends SIGTERM, and checks /readyz turns 503 while the
/// dispatch still completes and the process exits well within its 10 s grace.
async fn drains_in_flight_work(served: &mut AdapterProcess, http: &reqwest::Client) {
    let base = served.base.clone();
    let slow = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move {
            http.post(format!("{base}/v1/dispatch"))
                .bearer_auth(TOKEN)
                .json(&dispatch_body(json!({"cmd": "sleep 2"})))
                .send()
                .await
        }
    });
    // The dispatch is in flight once st2 has started it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled = served.sigterm();

    let mut draining = None;
    for _ in 0..50 {
        let resp = http.get(format!("{base}/readyz")).send().await.unwrap();
        if resp.status().as_u16() == 503 {
            draining = Some(resp.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let draining = draining.expect("/readyz turned 503 after SIGTERM");
    assert_eq!(draining["status"], "draining", "{draining}");
    assert!(
        !slow.is_finished(),
        "readiness flipped before the drain ended"
    );

    let answer = slow
        .await
        .unwrap()
        .expect("the dispatch in flight was answered");
    assert_eq!(answer.status().as_u16(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["ok"], true, "{answer}");

    loop {
        if let Some(status) = served.exited() {
            assert!(status.success(), "a drain is a clean exit: {status}");
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(8),
            "exited within the grace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flips_readiness_then_drains_plain_http() {
    let emu = quick_emulator("k").await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(
        dir.path(),
        &emu.base_url(),
        "server: {shutdown_grace: 10s}\n",
    )
    .await;
    assert!(served.base.starts_with("http://"));
    drains_in_flight_work(&mut served, &reqwest::Client::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flips_readiness_then_drains_tls() {
    let emu = quick_emulator("k").await;
    let dir = tempfile::tempdir().unwrap();
    let tls = format!(
        "server:\n  shutdown_grace: 10s\n  tls: {{cert_file: '{}', key_file: '{}'}}\n",
        tls_file("server.pem").display(),
        tls_file("server.key").display()
    );
    let mut served = serve(dir.path(), &emu.base_url(), &tls).await;
    assert!(served.base.starts_with("https://"));
    drains_in_flight_work(&mut served, &crate::security::https_client(None)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_bounds_the_drain() {
    let emu = quick_emulator("k").await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        dir.path(),
        &emu.base_url(),
        "server: {shutdown_grace: 1s}\n",
    )
    .await;
    let slow = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/v1/dispatch", served.base))
            .bearer_auth(TOKEN)
            .json(&dispatch_body(json!({"cmd": "sleep 30"})))
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut served = served;
    let signalled = served.sigterm();
    while served.exited().is_none() {
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "a 1 s grace ends the process soon after"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        slow.await.unwrap().is_err(),
        "the request still open was cut"
    );
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
        .arg("--version")
        .output()
        .unwrap();
    let version = crate::support::succeeded(&out, "--version");
    let prefix = format!("portarium-st2 {} (commit ", env!("CARGO_PKG_VERSION"));
    let stamped = version
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split_once(", built "))
        .map(|(commit, _)| commit)
        .unwrap_or_else(|| panic!("not `{prefix}<commit>, built <date>)`: {version}"));
    // The commit the binary was built from, which need not be HEAD by the time it runs.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    if git(&["rev-parse", "--short", "HEAD"]).is_some() {
        assert!(
            git(&["rev-parse", "--verify", &format!("{stamped}^{{commit}}")]).is_some(),
            "{stamped} is no commit of this repository: {version}"
        );
    } else {
        assert_eq!(stamped, "unknown", "{version}");
    }
    let date = version
        .trim_end()
        .trim_end_matches(')')
        .rsplit(' ')
        .next()
        .unwrap();
    assert!(
        date.len() == 10 && date.chars().filter(|c| *c == '-').count() == 2,
        "a YYYY-MM-DD date: {version}"
    );
}

#[test]
fn the_release_files_are_in_place() {
    let license = repo_file("LICENSE");
    assert!(license.contains("Apache License") && license.contains("Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    let changelog = repo_file("CHANGELOG.md");
    for heading in ["## [Unreleased]", "## [0.1.0]", "keepachangelog.com"] {
        assert!(changelog.contains(heading), "CHANGELOG.md lacks {heading}");
    }
    let dockerfile = repo_file("Dockerfile");
    for label in [
        "title",
        "description",
        "source",
        "licenses",
        "revision",
        "created",
    ] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "Dockerfile lacks the {label} label"
        );
    }
    let ci = repo_file(".ci/run");
    assert!(ci.contains("cargo deny --offline check licenses bans sources"));
    let deny = repo_file("deny.toml");
    assert!(deny.contains("[licenses]") && deny.contains("[bans]") && deny.contains("[sources]"));
    assert!(repo_file("scripts/sbom.sh").contains("cargo cyclonedx"));
    assert!(repo_file("docs/deployment.md").contains("scripts/sbom.sh"));
}

#[test]
fn compose_variables_leave_the_config_prefix_alone_and_pin_st2_3_9() {
    let compose = repo_file("docker-compose.st2.yml");
    // A shell exporting PORTARIUM_ST2_PORT would make config loading refuse "unknown field".
    for (at, _) in compose.match_indices("${") {
        let name: String = compose[at + 2..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        assert!(
            !name.starts_with("PORTARIUM_ST2_"),
            "compose variable {name} collides with the config prefix"
        );
    }
    assert!(compose.contains("${ST2_VERSION:-3.9.0}"));
    assert!(!compose.contains("3.8.1"));
}
