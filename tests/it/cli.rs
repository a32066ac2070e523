//! The `portarium-st2` binary as a user runs it.

use crate::support::SendJson;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");

#[test]
fn config_check_accepts_a_good_file_and_names_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "st2:\n  base_url: http://127.0.0.1:9101\n  api_key: env:PST2_CLI_KEY\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&good)
        .env("PST2_CLI_KEY", "k")
        .output()
        .unwrap();
    let stdout = crate::support::succeeded(&out, "config check");
    assert!(
        stdout.contains("st2 api:    http://127.0.0.1:9101/api/v1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("API key (env PST2_CLI_KEY)") && !stdout.contains(": k\n"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "st2:\n  base_url: ftp://h\n  request_timeout_ms: 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["st2.base_url:", "st2.api_key:", "st2.request_timeout:"] {
        assert!(stderr.contains(field), "{field} missing: {stderr}");
    }
}

#[test]
fn serve_with_the_emulator_dispatches_and_stops_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["serve", "--emulator"])
        .env("PORTARIUM_ST2_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        assert!(Instant::now() < deadline, "no ready line within 30 s");
        let line = lines.next().expect("serve printed its ready line").unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/v1/dispatch"))
            .bearer_auth("demo-token")
            .json(&serde_json::json!({
                "actionId": "a1", "tenantId": "demo", "runId": "r1", "correlationId": "c1",
                "flowRef": "core.echo", "payload": {"message": "from the binary"}
            }))
            .send_json()
            .await
    });
    assert_eq!(
        result["output"]["result"]["stdout"], "from the binary",
        "{result}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let stopped = lines.any(|l| l.is_ok_and(|l| l.contains("portarium-st2 stopped")));
    assert!(stopped, "graceful stop is logged");
    assert!(child.wait().unwrap().success(), "SIGTERM is a clean exit");
}

#[test]
fn run_starts_an_action_follows_its_output_and_exits_by_outcome() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt
        .block_on(st2_emulator::Emulator::start(
            st2_emulator::EmulatorOptions {
                api_key: "cli-key".into(),
                ..Default::default()
            },
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::st2_config_file(dir.path(), &emu, "env:PST2_RUN_KEY");
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("PST2_RUN_KEY", "cli-key")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, _) = run(&["--follow", "examples.output", "lines=3", "interval_ms=20"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("line 1\nline 2\nline 3\n"), "{stdout}");
    assert!(stdout.contains("\nstatus: succeeded"), "{stdout}");

    let (code, stdout, _) = run(&["examples.fail"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("boom"), "{stdout}");

    let (code, _, stderr) = run(&["core.local", "timeout=abc", "oops"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not key=value"), "{stderr}");
    let (code, _, stderr) = run(&["core.local", "timeout=abc"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("cmd: is required") && stderr.contains("timeout: must be integer"),
        "{stderr}"
    );
    let (code, _, _) = run(&["core.nope"]);
    assert_eq!(code, Some(2), "an unknown action is the user's mistake");

    let (code, _, stderr) = run(&["--wait-secs", "0", "core.local", "cmd=sleep 5"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("keeps running"), "{stderr}");
    rt.block_on(emu.shutdown());
}

#[test]
fn the_demo_runs_every_scenario_to_its_expected_result() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let stdout = crate::support::succeeded(&out, "demo");
    // Each scenario names its flow, the st2 execution (or that none was made) and the
    // Portarium result it ended in.
    for (flow, result) in [
        (
            "core.echo payload={\"message\"",
            "Portarium result: ok (expected ok)",
        ),
        (
            "examples.fail",
            "Portarium result: RemoteError (expected RemoteError)",
        ),
        (
            "\"timeout\":1",
            "Portarium result: Timeout (expected Timeout)",
        ),
        ("waitMs=300", "Portarium result: Timeout (expected Timeout)"),
        (
            "examples.orquesta-sequential",
            "Portarium result: ok (expected ok)",
        ),
        (
            "\"colour\"",
            "Portarium result: RemoteError (expected RemoteError)",
        ),
        (
            "https://evil.example",
            "Portarium result: FlowNotFound (expected FlowNotFound)",
        ),
        ("chatops.post_message", "pack chatops refused: unreviewed"),
        (
            "POST /v1/events",
            "st2 rule fired: 1 execution(s) for 2 deliveries (expected 1)",
        ),
    ] {
        let block = stdout
            .split("\n[")
            .find(|b| b.contains(flow))
            .unwrap_or_else(|| panic!("no scenario with {flow}:\n{stdout}"));
        assert!(block.contains(result), "{flow}: {block}");
        assert!(
            block.contains("st2 execution"),
            "{flow} names its st2 execution: {block}"
        );
    }
    assert!(
        stdout.contains("└ task execution"),
        "workflow tasks shown: {stdout}"
    );
    assert!(
        stdout.contains("ActionDispatched"),
        "lifecycle events shown: {stdout}"
    );
    assert!(
        stdout.contains("portarium_action_succeeded_total{"),
        "telemetry shown: {stdout}"
    );
    assert!(
        stdout.contains("9 scenarios, 9 as expected, 0 not"),
        "{stdout}"
    );
}

#[test]
fn the_readme_keeps_two_commands_and_ci_runs_its_test_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README opens with a sh block");
    let commands: Vec<&str> = block
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(
        commands,
        ["cargo run -- demo", "scripts/test.sh"],
        "{block}"
    );
    let ci = std::fs::read_to_string(format!("{root}/.ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == commands[1]),
        ".ci/run calls the README's test command:\n{ci}"
    );
    let script = std::fs::metadata(format!("{root}/{}", commands[1])).unwrap();
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&script.permissions()) & 0o111 != 0,
        "the test script is executable"
    );
}
