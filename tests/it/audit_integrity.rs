//! An audit log that cannot be skipped or quietly rewritten: every dispatch, re-run and cancel
//! is recorded as accepted before st2 is called and with its outcome after, whether or not the
//! caller stays for the answer, and shutdown waits for the outcomes still to come.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::stack::{app_from_yaml, audited};

/// The audit records in `path`, in order.
fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records once there are at least `n` (the outcome is written by a task of its own).
async fn at_least(path: &Path, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let got = records(path);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} audit records: {:?}", records(path));
}

fn dispatch_body(flow: &str, key: &str, payload: Value) -> Value {
    json!({
        "actionId": key, "tenantId": "t1", "runId": "run-1", "correlationId": "corr-1",
        "flowRef": flow, "payload": payload, "idempotencyKey": key
    })
}

#[tokio::test]
async fn a_caller_that_disconnects_mid_wait_leaves_both_records() {
    let dir = tempfile::tempdir().unwrap();
    let s = audited(&dir).await;
    let path = dir.path().join("audit.jsonl");
    // The caller gives up (and closes its connection) long before the action ends.
    let gave_up = s
        .request(reqwest::Method::POST, "/v1/dispatch?waitMs=10000", "tok-1")
        .json(&dispatch_body(
            "core.local",
            "left-1",
            json!({"cmd": "sleep 0.6; echo done"}),
        ))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller was answered: {gave_up:?}");
    let accepted = records(&path);
    assert_eq!(
        accepted.len(),
        1,
        "accepted before st2 ran it: {accepted:?}"
    );
    assert_eq!(accepted[0]["dispatch"]["phase"], "accepted");
    assert_eq!(accepted[0]["dispatch"]["requestedBy"], "t1");
    let both = at_least(&path, 2).await;
    let outcome = &both[1]["dispatch"];
    assert_eq!(outcome["phase"], "outcome", "{outcome}");
    assert_eq!(outcome["outcome"], "succeeded", "{outcome}");
    assert!(outcome["st2ExecutionId"].is_string(), "{outcome}");
    assert_eq!(both[1]["previousHash"], both[0]["hashSha256"]);
}

#[tokio::test]
async fn cancel_and_rerun_are_recorded_with_who_what_and_redacted_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let s = audited(&dir).await;
    let path = dir.path().join("audit.jsonl");
    let (status, answer) = s
        .post(
            Some("tok-1"),
            "/v1/dispatch?waitMs=100",
            &dispatch_body("core.local", "long-1", json!({"cmd": "sleep 30"})),
        )
        .await;
    assert_eq!(status, 504, "{answer}");
    let id = s.st2_get("executions?limit=1").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = s
        .request(
            reqwest::Method::POST,
            &format!("/v1/executions/{id}/cancel"),
            "tok-1",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, original) = s
        .dispatch(
            Some("tok-1"),
            &dispatch_body(
                "examples.secret",
                "sec-1",
                json!({"user": "ann", "password": "pw-1"}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{original}");
    let original = original["output"]["executionId"].as_str().unwrap();
    let resp = s
        .send_as(
            reqwest::Method::POST,
            &format!("/v1/executions/{original}/rerun"),
            "tok-1",
            &json!({"parameters": {"password": "pw-rerun-SECRET", "user": "bob"}}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let rerun: Value = resp.json().await.unwrap();
    let all = at_least(&path, 8).await;
    let of = |key: &str, on: &str| -> Vec<&Value> {
        all.iter()
            .map(|r| &r["dispatch"])
            .filter(|d| d[key] == json!(on))
            .collect()
    };
    let cancels = of("cancelOf", &id);
    assert_eq!(cancels.len(), 2, "{all:?}");
    assert_eq!(
        (&cancels[0]["phase"], &cancels[1]["phase"]),
        (&json!("accepted"), &json!("outcome"))
    );
    assert_eq!(cancels[1]["outcome"], "canceled");
    assert_eq!(cancels[1]["requestedBy"], "t1");
    let reruns = of("rerunOf", original);
    assert_eq!(reruns.len(), 2, "{all:?}");
    for r in &reruns {
        assert_eq!(
            r["overrides"],
            json!({"password": "[REDACTED]", "user": "bob"}),
            "{r}"
        );
        assert_eq!(r["action"], "examples.secret");
    }
    assert_eq!(reruns[1]["st2ExecutionId"], rerun["executionId"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("pw-rerun-SECRET"));
}

#[tokio::test]
async fn shutdown_waits_for_the_outcome_of_a_dispatch_whose_caller_left() {
    let dir = tempfile::tempdir().unwrap();
    let emu = crate::support::quick_emulator("k").await;
    let path = dir.path().join("audit.jsonl");
    let yaml = format!(
        "st2: {{base_url: '{}', api_key: k}}\ntenants:\n  - {{id: t1, api_token: tok-1}}\n\
         governance: {{audit: {{path: '{}'}}}}\n",
        emu.base_url(),
        path.display()
    );
    let (app, base) = app_from_yaml(&yaml).await;
    let gave_up = reqwest::Client::new()
        .post(format!("{base}/v1/dispatch?waitMs=10000"))
        .bearer_auth("tok-1")
        .json(&dispatch_body(
            "core.local",
            "late-1",
            json!({"cmd": "sleep 0.8"}),
        ))
        .timeout(Duration::from_millis(150))
        .send()
        .await;
    assert!(gave_up.is_err());
    assert_eq!(records(&path).len(), 1);
    app.shutdown(Duration::from_secs(10)).await;
    let after = records(&path);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1]["dispatch"]["outcome"], "succeeded");
}

// ---- keyed records and anchors ----

const AUDIT_KEY: &str = "audit-hmac-key-7d1e";

/// A keyed audit log of `n` dispatch outcomes in `dir`, anchored at its head (anchor file
/// `anchors.jsonl`); its lines.
async fn keyed_log(dir: &Path, n: usize) -> Vec<String> {
    use portarium_st2::core::Mode;
    use portarium_st2::core::governance::audit::{Act, AuditConfig, AuditLog, Decision};
    use portarium_st2::core::portarium::{DispatchRequest, DispatchResult};
    let config = AuditConfig {
        hmac_key: Some(st2_client::Secret::from_value(AUDIT_KEY)),
        anchor_file: Some(dir.join("anchors.jsonl")),
        ..AuditConfig::at(dir.join("audit.jsonl"))
    };
    let log = AuditLog::open(&config).unwrap();
    for i in 0..n {
        let req: DispatchRequest =
            serde_json::from_value(dispatch_body("core.noop", &format!("k{i}"), json!({})))
                .unwrap();
        let result = DispatchResult::Ok {
            output: json!({"executionId": format!("e{i}")}),
        };
        log.record(&Decision {
            request: &req,
            tenant: "t1",
            refused: None,
            result: Some(&result),
            mode: Mode::Wait(Duration::ZERO),
            act: Act::Dispatch,
        })
        .await
        .unwrap();
    }
    let anchor = log.anchor().unwrap().expect("a head to anchor");
    assert_eq!(anchor.sequence, n as u64);
    assert!(
        log.anchor().unwrap().is_none(),
        "an unchanged head is not anchored again"
    );
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Records re-chained as a forger without the key would: sequences renumbered, hashes and
/// links recomputed, the HMAC left as it was (it cannot be recomputed).
fn rechained(lines: &[String]) -> Vec<String> {
    let mut previous: Option<String> = None;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut r: Value = serde_json::from_str(line).unwrap();
            let obj = r.as_object_mut().unwrap();
            obj.remove("hashSha256");
            let mac = obj.remove("hmacSha256");
            obj.remove("previousHash");
            if let Some(p) = &previous {
                obj.insert("previousHash".into(), json!(p));
            }
            r["dispatch"]["sequence"] = json!(i + 1);
            let hash = portarium_st2::core::governance::canonical::sha256_hex(&r).unwrap();
            r["hashSha256"] = json!(hash);
            if let Some(mac) = mac {
                r["hmacSha256"] = mac;
            }
            previous = Some(hash);
            serde_json::to_string(&r).unwrap()
        })
        .collect()
}

/// `audit verify` of `lines` (written to a file in `dir`) with `extra` arguments: its exit
/// code and what it printed.
fn verify(dir: &Path, lines: &[String], extra: &[&str]) -> (Option<i32>, String) {
    let file = dir.join("checked.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
        .args(["audit", "verify", file.to_str().unwrap()])
        .args(extra)
        .env("AUDIT_KEY", AUDIT_KEY)
        .env_remove("PORTARIUM_ST2_CONFIG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[tokio::test]
async fn forgeries_pass_unkeyed_verify_and_are_caught_with_the_key_and_the_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines = keyed_log(d, 6).await;
    let anchors = d.join("anchors.jsonl");
    let keyed = ["--key", "env:AUDIT_KEY"];
    let anchored = ["--anchor", anchors.to_str().unwrap()];
    let both = [keyed.as_slice(), anchored.as_slice()].concat();

    let (code, out) = verify(d, &lines, &both);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("HMAC holds; reaches the anchor at record 6"),
        "{out}"
    );

    // Appending a correctly chained record.
    let mut appended = lines.clone();
    let mut extra: Value = serde_json::from_str(&lines[5]).unwrap();
    extra["summary"] = json!("dispatch of core.noop allowed: succeeded (forged)");
    appended.push(serde_json::to_string(&extra).unwrap());
    let appended = rechained(&appended);
    assert_eq!(
        verify(d, &appended, &[]).0,
        Some(0),
        "unkeyed verify passes"
    );
    let (code, out) = verify(d, &appended, &keyed);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("record 7 (line 7): hmacSha256 does not hold"),
        "{out}"
    );

    // Editing a record and re-chaining everything after it.
    let mut edited = lines.clone();
    edited[1] = edited[1].replace("\"t1\"", "\"t2\"");
    let edited = rechained(&edited);
    assert_eq!(verify(d, &edited, &[]).0, Some(0), "unkeyed verify passes");
    let (code, out) = verify(d, &edited, &keyed);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("record 2 (line 2): hmacSha256 does not hold"),
        "{out}"
    );
    let (code, out) = verify(d, &edited, &anchored);
    assert_eq!(code, Some(1), "the anchor catches it without the key");
    assert!(out.contains("the log up to it was rewritten"), "{out}");

    // Cutting the head and re-chaining the rest.
    let cut_head = rechained(&lines[2..]);
    assert_eq!(
        verify(d, &cut_head, &[]).0,
        Some(0),
        "unkeyed verify passes"
    );
    let (code, out) = verify(d, &cut_head, &keyed);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("record 1 (line 1): hmacSha256 does not hold"),
        "{out}"
    );
    let (code, out) = verify(d, &cut_head, &anchored);
    assert_eq!(code, Some(1), "{out}");

    // Cutting the tail leaves a valid, correctly keyed chain: only the anchor catches it.
    let cut_tail = lines[..4].to_vec();
    assert_eq!(verify(d, &cut_tail, &keyed).0, Some(0));
    let (code, out) = verify(d, &cut_tail, &both);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("the log ends at record 4 but the anchor")
            && out.contains("cut from the tail"),
        "{out}"
    );
    // The anchor from the log line does the same.
    let anchor: Value = serde_json::from_str(
        std::fs::read_to_string(&anchors)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    let head = format!("6:{}", anchor["headHash"].as_str().unwrap());
    let (code, out) = verify(d, &cut_tail, &["--anchor-head", &head]);
    assert_eq!(code, Some(1), "{out}");

    // A forged anchor (written without the key) is refused.
    let mut forged = anchor.clone();
    forged["sequence"] = json!(4);
    forged["headHash"] = json!(serde_json::from_str::<Value>(&lines[3]).unwrap()["hashSha256"]);
    std::fs::write(&anchors, serde_json::to_string(&forged).unwrap() + "\n").unwrap();
    let (code, out) = verify(d, &cut_tail, &both);
    assert_eq!(code, Some(1));
    assert!(out.contains("does not hold under the key"), "{out}");
    // And the adapter refuses to continue a log whose records do not hold under its key.
    std::fs::write(d.join("audit.jsonl"), edited.join("\n") + "\n").unwrap();
    let reopened = portarium_st2::core::governance::audit::AuditLog::open(
        &portarium_st2::core::governance::audit::AuditConfig {
            hmac_key: Some(st2_client::Secret::from_value(AUDIT_KEY)),
            ..portarium_st2::core::governance::audit::AuditConfig::at(d.join("audit.jsonl"))
        },
    );
    assert!(reopened.is_err());
}

#[tokio::test]
async fn serve_anchors_the_head_at_shutdown_in_the_anchor_file() {
    let dir = tempfile::tempdir().unwrap();
    let emu = crate::support::quick_emulator("k").await;
    let anchors = dir.path().join("anchors.jsonl");
    let yaml = format!(
        "st2: {{base_url: '{}', api_key: k}}\ntenants:\n  - {{id: t1, api_token: tok-1}}\n\
         governance: {{audit: {{path: '{}', hmac_key: '{AUDIT_KEY}', anchor_file: '{}', \
         anchor_interval: 1h}}}}\n",
        emu.base_url(),
        dir.path().join("audit.jsonl").display(),
        anchors.display()
    );
    let (app, base) = app_from_yaml(&yaml).await;
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/dispatch"))
        .bearer_auth("tok-1")
        .json(&dispatch_body("core.noop", "a-1", json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    app.shutdown(Duration::from_secs(5)).await;
    let written = std::fs::read_to_string(&anchors).unwrap();
    let last: Value = serde_json::from_str(written.lines().last().unwrap()).unwrap();
    assert_eq!(last["sequence"], 2, "{written}");
    let lines: Vec<String> = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let keyed = ["--key", AUDIT_KEY, "--anchor", anchors.to_str().unwrap()];
    let (code, out) = verify(dir.path(), &lines, &keyed);
    assert_eq!(code, Some(0), "{out}");
}
