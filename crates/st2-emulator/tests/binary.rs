//! The `st2-emulator` binary starts, prints its one ready line and serves the API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn binary_prints_ready_line_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_st2-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "bin-key",
            "--user",
            "alice:pw",
            "--step-ms",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("ready line within 20 s");
    let base = line
        .trim_end()
        .strip_prefix("st2-emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (with_key, login) = rt.block_on(async {
        let http = reqwest::Client::new();
        let with_key = http
            .get(format!("{base}/api/v1/actions/core.noop"))
            .header("St2-Api-Key", "bin-key")
            .send()
            .await
            .expect("request");
        let login = http
            .post(format!("{base}/auth/v1/tokens"))
            .basic_auth("alice", Some("pw"))
            .send()
            .await
            .expect("request");
        (with_key.status().as_u16(), login.status().as_u16())
    });
    child.kill().expect("kill the emulator we started");
    child.wait().expect("reap");
    assert_eq!((with_key, login), (200, 201));
}

#[test]
fn help_describes_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_st2-emulator"))
        .arg("--help")
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--api-key",
        "--catalogue",
        "--user",
        "--step-ms",
        "--heartbeat-secs",
    ] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
