//! `portarium-st2 run` and `execution ...` set up as an st2 operator already is: only
//! st2client's `ST2_*` variables, then only a `~/.st2/config`, never a config file of ours.

use std::path::Path;
use std::process::Command;

use crate::support::SendJson;
use serde_json::Value;
use st2_emulator::{Emulator, EmulatorOptions, User};

const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");
const KEY: &str = "habits-key";

/// The binary with nothing of the caller's environment but `vars`, and `home` as HOME (so
/// no real ~/.st2 is read).
fn st2(home: &Path, vars: &[(&str, String)], args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        users: vec![User {
            name: "ann".into(),
            password: "pw-1".into(),
        }],
        ..Default::default()
    })
    .await
    .unwrap()
}

/// An execution of `examples.output` that runs for about `secs` seconds, started through
/// st2's API directly.
async fn long_running(emu: &Emulator, secs: u64) -> String {
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/executions", emu.base_url()))
        .header("St2-Api-Key", KEY)
        .json(&serde_json::json!({"action": "examples.output",
            "parameters": {"lines": secs * 10, "interval_ms": 100}}))
        .send_json()
        .await;
    created["id"].as_str().unwrap().to_string()
}

/// Every command, run with `vars` and `home` as the only configuration.
async fn every_command_works(emu: &Emulator, home: &Path, vars: &[(&str, String)]) {
    let run = |args: &[&str]| st2(home, vars, args);

    let (code, out, err) = run(&["run", "core.local", "cmd=echo habits"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("status: succeeded"), "human form: {out}");
    assert!(out.contains("stdout: habits"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_string();

    let (code, out, err) = run(&["run", "-j", "core.local", "cmd=echo json"]);
    assert_eq!(code, Some(0), "{err}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["result"]["stdout"], "json");

    let (code, out, err) = run(&["execution", "get", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with(&format!("id: {id}\naction.ref: core.local\n")),
        "{out}"
    );
    let (_, out, _) = run(&["execution", "get", "-j", &id]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["id"],
        id.as_str()
    );
    let (code, _, err) = run(&["execution", "get", "000000000000000000000000"]);
    assert_eq!(code, Some(2), "an unknown id: {err}");

    let (code, out, err) = run(&["execution", "list", "-n", "5"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("+--") && out.contains("| id ") && out.contains(&id),
        "{out}"
    );
    let (_, out, _) = run(&["execution", "list", "-j", "--action", "core.local"]);
    let listed: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(listed.iter().any(|e| e["id"] == id.as_str()), "{out}");
    assert!(listed.iter().all(|e| e["action"]["ref"] == "core.local"));

    let (code, out, err) = run(&["execution", "tail", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("Execution {id} has completed (status=succeeded).")),
        "{out}"
    );

    let (code, out, err) = run(&["execution", "re-run", &id, "cmd=echo again"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains(&format!("(re-run of {id})")), "{out}");
    assert!(out.contains("stdout: again"), "the override applies: {out}");

    let running = long_running(emu, 20).await;
    let (code, out, err) = run(&["execution", "cancel", &running]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("examples.output execution with id {running}"))
            && out.contains("cancel"),
        "{out}"
    );
    let (_, out, _) = run(&["execution", "get", "-j", &running]);
    let status = serde_json::from_str::<Value>(&out).unwrap()["status"].clone();
    assert!(status == "canceling" || status == "canceled", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_runs_on_st2_variables_alone() {
    let emu = emulator().await;
    let home = tempfile::tempdir().unwrap();
    let base = emu.base_url();
    // As an operator behind st2's nginx exports them (bench/ and scripts/ do the same).
    let vars = [
        ("ST2_BASE_URL", base.clone()),
        ("ST2_API_URL", format!("{base}/api/v1")),
        ("ST2_AUTH_URL", format!("{base}/auth/v1")),
        ("ST2_STREAM_URL", format!("{base}/stream/v1")),
        ("ST2_API_KEY", KEY.to_string()),
    ];
    every_command_works(&emu, home.path(), &vars).await;

    // A token from `st2 auth`, in ST2_AUTH_TOKEN, in place of the key.
    let token: Value = reqwest::Client::new()
        .post(format!("{base}/auth/v1/tokens"))
        .basic_auth("ann", Some("pw-1"))
        .json(&serde_json::json!({}))
        .send_json()
        .await;
    let mut with_token = vars[..4].to_vec();
    with_token.push(("ST2_AUTH_TOKEN", token["token"].as_str().unwrap().into()));
    let (code, out, err) = st2(home.path(), &with_token, &["execution", "list", "-n", "1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    with_token.pop();
    with_token.push(("ST2_AUTH_TOKEN", "not-a-token".into()));
    let (code, _, err) = st2(home.path(), &with_token, &["execution", "list", "-n", "1"]);
    assert_eq!(code, Some(4), "a refused token: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_runs_on_a_st2_config_file_alone() {
    let emu = emulator().await;
    let home = tempfile::tempdir().unwrap();
    let base = emu.base_url();
    std::fs::create_dir(home.path().join(".st2")).unwrap();
    let rc = |credentials: &str| {
        format!(
            "[general]\nbase_url = {base}\n\n[api]\nurl = {base}/api/v1\n\n[auth]\nurl = {base}/auth/v1\n\n\
             [stream]\nurl: {base}/stream/v1\n\n# st2's own comment style\n[credentials]\n{credentials}\n"
        )
    };
    std::fs::write(
        home.path().join(".st2/config"),
        rc(&format!("api_key = {KEY}")),
    )
    .unwrap();
    every_command_works(&emu, home.path(), &[]).await;

    // User and password, exchanged for a token as st2client does.
    std::fs::write(
        home.path().join(".st2/config"),
        rc("username = ann\npassword = pw-1"),
    )
    .unwrap();
    let (code, out, err) = st2(home.path(), &[], &["execution", "list", "-n", "1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");

    // The file wins over the variables, as in st2client; ST2_CONFIG_FILE names another file.
    let wrong = [("ST2_API_URL", "http://127.0.0.1:1/api/v1".to_string())];
    let (code, _, err) = st2(home.path(), &wrong, &["execution", "list", "-n", "1"]);
    assert_eq!(code, Some(0), "{err}");
    let missing = [("ST2_CONFIG_FILE", "/nonexistent/st2.conf".to_string())];
    let (code, _, err) = st2(home.path(), &missing, &["execution", "list"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("ST2_CONFIG_FILE"), "{err}");

    // Nothing configured at all: the message says what to set.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = st2(empty.path(), &[], &["run", "core.local", "cmd=true"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("ST2_BASE_URL") && err.contains("~/.st2/config"),
        "{err}"
    );
}

#[test]
fn an_auth_token_is_one_way_to_authenticate_and_config_check_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "st2: {base_url: 'http://127.0.0.1:9101', auth_token: env:PST2_HABITS_TOKEN}\n",
    )
    .unwrap();
    let vars = [("PST2_HABITS_TOKEN", "tok".to_string())];
    let (code, out, err) = st2(
        dir.path(),
        &vars,
        &["config", "check", file.to_str().unwrap()],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("auth token (env PST2_HABITS_TOKEN)"), "{out}");
    std::fs::write(
        &file,
        "st2: {base_url: 'http://127.0.0.1:9101', auth_token: t, api_key: k}\n",
    )
    .unwrap();
    let (code, _, err) = st2(
        dir.path(),
        &[],
        &["config", "check", file.to_str().unwrap()],
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("st2.auth_token:"), "{err}");
}
