//! Defects found against real peers (issue 18): each test drives the real peer (the binary, a
//! nats-server, the emulator over HTTP, TLS clients, an OTLP receiver) the way it was found.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");

/// Runs the binary under a 256 MB address-space cap and a 10 s deadline, so a runaway loop
/// fails the test instead of the machine.
fn run_bounded(args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"ulimit -v 262144; exec "$@""#)
        .arg("sh")
        .arg(BIN)
        .args(args)
        .env_remove("PORTARIUM_ST2_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portarium-st2 {args:?} still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

#[test]
fn manifest_check_stops_at_a_yaml_syntax_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "schemaVersion: [1\n").unwrap();
    let (code, stderr) = run_bounded(&["manifest", "check", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.matches("not valid YAML").count(), 1, "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
}
