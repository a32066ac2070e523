//! `portarium-st2 telemetry scrape --once` against the st2 emulator's `/metrics` page.

use std::process::Command;

use serde_json::json;
use st2_emulator::{Emulator, EmulatorOptions};

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_once_prints_the_normalized_table() {
    let emu = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let resp = http
            .post(format!("{}/api/v1/executions", emu.base_url()))
            .header("St2-Api-Key", "emulator-api-key")
            .json(&json!({"action": "core.local", "parameters": {"cmd": "true"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    // Both runs reach a completed status in a few emulator steps.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let url = format!("{}/metrics", emu.base_url());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["telemetry", "scrape", "--once", &url])
            .env_remove("PORTARIUM_ST2_CONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = crate::support::succeeded(&out, "telemetry scrape");
    let header = stdout.lines().nth(1).unwrap();
    assert!(
        header.starts_with("METRIC") && header.contains("ATTRIBUTES"),
        "{stdout}"
    );
    let row = |metric: &str, attrs: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{metric} ")) && l.contains(attrs))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
    };
    assert_eq!(
        row("st2.action.executions", "st2.action.ref=core.local").unwrap(),
        [
            "st2.action.executions",
            "sum",
            "{execution}",
            "st2.action.ref=core.local",
            "2"
        ],
        "{stdout}"
    );
    let succeeded = row(
        "st2.action.execution.status.entries",
        "st2.execution.status=succeeded",
    )
    .unwrap();
    assert_eq!(succeeded.last(), Some(&"2"), "{stdout}");
    let posts = row(
        "st2.http.server.requests.by_method",
        "http.request.method=POST",
    )
    .unwrap();
    assert_eq!(posts.last(), Some(&"2"), "{stdout}");
}

#[test]
fn scrape_names_what_is_missing_or_unreachable() {
    let none = Command::new(BIN)
        .args(["telemetry", "scrape", "--once"])
        .env_remove("PORTARIUM_ST2_CONFIG")
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("name an endpoint"));
    let url = format!("http://127.0.0.1:{}/metrics", crate::support::free_port());
    let dead = Command::new(BIN)
        .args(["telemetry", "scrape", "--once", &url])
        .env_remove("PORTARIUM_ST2_CONFIG")
        .output()
        .unwrap();
    assert_eq!(dead.status.code(), Some(4));
    assert!(
        String::from_utf8_lossy(&dead.stderr).contains("cannot read"),
        "{}",
        String::from_utf8_lossy(&dead.stderr)
    );
}
