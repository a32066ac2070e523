//! The ecosystem's conventions (issue 16): shell completions and a man page from the clap
//! model, logs and /metrics as Portarium's and Prometheus's tools read them.

use std::process::Command;

use crate::support::succeeded;

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");

fn generated(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    succeeded(&out, &args.join(" "))
}

/// What bash's programmable completion offers for the words typed so far (last one partial).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("portarium-st2.bash");
    std::fs::write(&file, script).unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={}\n\
         COMP_LINE='{}'\n\
         _portarium__st2 portarium-st2 '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--norc", "-c", &program])
        .output()
        .unwrap();
    succeeded(&out, "bash completion")
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completion_offers_the_commands_and_their_options() {
    let script = generated(&["completions", "bash"]);
    let mut offered = bash_completes(&script, &["portarium-st2", "co"]);
    offered.sort();
    assert_eq!(offered, ["completions", "config"], "{offered:?}");
    let offered = bash_completes(&script, &["portarium-st2", "run", "--"]);
    for want in ["--config", "--follow", "--wait-secs"] {
        assert!(offered.iter().any(|o| o == want), "{want}: {offered:?}");
    }
    let offered = bash_completes(&script, &["portarium-st2", "completions", "z"]);
    assert_eq!(offered, ["zsh"], "shell names complete too");
}

#[test]
fn completions_exist_for_every_shell_clap_knows() {
    for (shell, marker) in [
        ("zsh", "#compdef portarium-st2"),
        ("fish", "complete -c portarium-st2"),
        ("elvish", "edit:completion:arg-completer[portarium-st2]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = generated(&["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("wait-secs"), "{shell} knows run's options");
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("possible values: bash"), "{stderr}");
}

#[test]
fn manpage_renders_every_command_and_option() {
    let roff = generated(&["manpage"]);
    assert!(roff.contains("\n.TH portarium-st2 1 "), "{roff}");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("portarium-st2.1");
    std::fs::write(&page, &roff).unwrap();
    // man itself formats it, so a roff error would show as missing text.
    let out = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "200")
        .output()
        .unwrap();
    let text = succeeded(&out, "man -l");
    for want in [
        "portarium-st2 - Run Portarium action dispatches",
        "PORTARIUM-ST2 SERVE",
        "PORTARIUM-ST2 RUN",
        "portarium-st2 run [-c|--config] [-f|--follow] [--wait-secs]",
        "PORTARIUM-ST2 CONFIG CHECK",
        "PORTARIUM-ST2 TELEMETRY SCRAPE",
        "PORTARIUM-ST2 COMPLETIONS",
        "--emulator",
        "PORTARIUM_ST2_CONFIG",
    ] {
        assert!(text.contains(want), "{want} missing from:\n{text}");
    }
}

/// A config serving `emulator` for tenant t1 (token `tok-1`) with `log` as its log section.
fn serve_config(dir: &std::path::Path, emulator: &str, log: &str) -> std::path::PathBuf {
    let config = dir.join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:0\nlog: {log}\nst2: {{base_url: '{emulator}', api_key: {}}}\n\
             tenants:\n  - {{id: t1, api_token: tok-1}}\n",
            crate::support::stack::KEY
        ),
    )
    .unwrap();
    config
}

async fn emulator() -> st2_emulator::Emulator {
    st2_emulator::Emulator::start(st2_emulator::EmulatorOptions {
        api_key: crate::support::stack::KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_callers_trace_id_with_portariums_field_names() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let served =
        crate::security::serve(&serve_config(dir.path(), &emu.base_url(), "{format: json}"));
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/dispatch", served.base))
        .bearer_auth("tok-1")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({
            "actionId": "act-1", "tenantId": "t1", "runId": "run-1", "correlationId": "corr-1",
            "flowRef": "examples.fail", "payload": {}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    let logs = served.logs.lock().unwrap().clone();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        assert_eq!(line["name"], "portarium-st2", "{line}");
        assert!(
            line["time"].as_u64().is_some_and(|t| t > 1_600_000_000_000),
            "{line}"
        );
        assert!(
            ["trace", "debug", "info", "warn", "error"].contains(&line["level"].as_str().unwrap()),
            "{line}"
        );
        assert!(
            line["msg"].is_string() && line.get("fields").is_none(),
            "{line}"
        );
    }
    let failed = lines
        .iter()
        .find(|l| l["msg"] == "dispatch failed")
        .unwrap_or_else(|| panic!("no failed dispatch logged:\n{logs}"));
    assert_eq!(failed["traceId"], trace_id, "{failed}");
    let span_id = failed["spanId"].as_str().unwrap_or_default();
    assert!(
        span_id.len() == 16
            && span_id.bytes().all(|b| b.is_ascii_hexdigit())
            && span_id != "00f067aa0ba902b7",
        "the adapter's own span, a child of the caller's: {failed}"
    );
    assert_eq!(failed["errorKind"], "RemoteError", "{failed}");
    // The listening line is outside any request: no span, so no ids.
    let listening = lines
        .iter()
        .find(|l| l["msg"].as_str().unwrap().contains("listening on"))
        .unwrap();
    assert!(listening.get("traceId").is_none(), "{listening}");
}

#[test]
fn text_logs_have_no_colour_codes_in_a_pipe() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args(["serve", "--emulator"])
        .env("PORTARIUM_ST2_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("PORTARIUM_ST2_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.contains("listening on") && seen.contains(" INFO "),
        "{seen}"
    );
    assert!(!seen.contains('\u{1b}'), "ANSI codes in a pipe: {seen:?}");
}
