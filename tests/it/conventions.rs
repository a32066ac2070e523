//! The ecosystem's conventions (issue 16): shell completions and a man page from the clap
//! model, logs and /metrics as Portarium's and Prometheus's tools read them.

use std::process::Command;

use crate::support::{SendJson, succeeded};

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
        "portarium-st2 run [-c|--config] [-j|--json] [-f|--follow] [--wait-secs]",
        "PORTARIUM-ST2 EXECUTION RE-RUN",
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
pub(crate) fn serve_config(dir: &std::path::Path, emulator: &str, log: &str) -> std::path::PathBuf {
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

/// A dispatch of `flow_ref` with `payload` for tenant t1.
fn dispatch_body(flow_ref: &str, payload: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "actionId": "act-1", "tenantId": "t1", "runId": "run-1", "correlationId": "corr-1",
        "flowRef": flow_ref, "payload": payload
    })
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
        crate::security::serve(&serve_config(dir.path(), &emu.base_url(), "{format: json}")).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/dispatch", served.base))
        .bearer_auth("tok-1")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&dispatch_body("examples.fail", serde_json::json!({})))
        .send_json()
        .await;
    assert_eq!(answer["ok"], false, "{answer}");
    let logs = served.log().join("\n");
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

/// `page` as Prometheus's own Python client parses it (bench/prom_parse.py `--dump`, in the
/// pinned virtualenv): family name → {type, samples: [[name, labels, value]]}.
fn prometheus_parsed(page: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, page).unwrap();
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/prom-parse.sh"))
        .arg("--dump")
        .arg(&file)
        .output()
        .unwrap();
    serde_json::from_str(&succeeded(&out, "prometheus_client on /metrics")).unwrap()
}

/// The samples named `sample` in `family`.
fn samples<'a>(
    families: &'a serde_json::Value,
    family: &str,
    kind: &str,
    sample: &str,
) -> Vec<&'a serde_json::Value> {
    let f = &families[family];
    assert_eq!(f["type"], kind, "{family}: {f}");
    f["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == sample)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_follows_prometheus_conventions_as_its_parser_reads_it() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("packs.yaml");
    std::fs::write(
        &policy,
        "packs:\n  - {ref: core, versions: '>=1.0, <2', license: 'MIT OR Apache-2.0', reviewer: r, reviewedAt: 2026-11-01}\n",
    )
    .unwrap();
    let log = format!(
        "{{format: json}}\ngovernance: {{packs_policy: '{}'}}",
        policy.display()
    );
    let served = crate::security::serve(&serve_config(dir.path(), &emu.base_url(), &log)).await;
    let http = reqwest::Client::new();
    let page = |http: reqwest::Client, base: String| async move {
        http.get(format!("{base}/metrics")).send_text().await
    };

    // Before any dispatch: the process, the build and every unlabelled metric at 0.
    let fresh = prometheus_parsed(&page(http.clone(), served.base.clone()).await);
    for (family, kind, sample) in [
        (
            "process_cpu_seconds",
            "counter",
            "process_cpu_seconds_total",
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "process_resident_memory_bytes",
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "process_virtual_memory_bytes",
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "process_start_time_seconds",
        ),
        ("process_open_fds", "gauge", "process_open_fds"),
        ("process_max_fds", "gauge", "process_max_fds"),
    ] {
        let s = samples(&fresh, family, kind, sample);
        assert!(
            s.len() == 1 && s[0][2].as_f64().unwrap() > 0.0,
            "{family}: {s:?}"
        );
    }
    for (family, kind, sample) in [
        (
            "portarium_st2_stream_reconnects",
            "counter",
            "portarium_st2_stream_reconnects_total",
        ),
        (
            "portarium_st2_stream_refused_catchups",
            "counter",
            "portarium_st2_stream_refused_catchups_total",
        ),
        (
            "portarium_st2_executions_in_flight",
            "gauge",
            "portarium_st2_executions_in_flight",
        ),
    ] {
        let s = samples(&fresh, family, kind, sample);
        assert!(s.len() == 1 && s[0][2] == 0.0, "{family} at 0: {s:?}");
    }
    let info = samples(
        &fresh,
        "portarium_st2_build_info",
        "gauge",
        "portarium_st2_build_info",
    );
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0][1]["version"], env!("CARGO_PKG_VERSION"));
    assert!(!info[0][1]["revision"].as_str().unwrap().is_empty());
    assert_eq!(info[0][2], 1.0);

    // A dispatch: the action metrics carry the pack's installed version (read by the pack
    // gate, no extra st2 call) and Portarium's telemetry.pii_safe.
    let answer: serde_json::Value = http
        .post(format!("{}/v1/dispatch", served.base))
        .bearer_auth("tok-1")
        .json(&dispatch_body(
            "core.local",
            serde_json::json!({"cmd": "echo hi"}),
        ))
        .send_json()
        .await;
    assert_eq!(answer["ok"], true, "{answer}");
    let after = prometheus_parsed(&page(http.clone(), served.base.clone()).await);
    let ok = samples(
        &after,
        "portarium_action_succeeded",
        "counter",
        "portarium_action_succeeded_total",
    );
    assert_eq!(ok.len(), 1, "{ok:?}");
    let labels = &ok[0][1];
    assert_eq!(labels["pack_id"], "core", "{labels}");
    assert_eq!(labels["pack_version"], "1.0.1", "{labels}");
    assert_eq!(labels["telemetry_pii_safe"], "true", "{labels}");
    let buckets = samples(
        &after,
        "portarium_action_duration_ms",
        "histogram",
        "portarium_action_duration_ms_bucket",
    );
    assert!(
        buckets.iter().all(|b| b[1]["pack_version"] == "1.0.1"),
        "{buckets:?}"
    );
}
