//! Governance against the st2 emulator: the manifest check, the reviewed-packs gate (refusing
//! before st2 is asked to run anything), tenants' allowed actions, `packs audit` and the
//! tamper-evident audit log with `audit verify`, through the real binary where it is a CLI.

use std::path::{Path, PathBuf};
use std::process::Output;

use portarium_st2::core::governance::manifest;
use serde_json::{Value, json};
use st2_emulator::{Emulator, EmulatorOptions, RequestRecord};

use crate::support::stack::Stack;

const KEY: &str = "gov-key";
const BIN: &str = env!("CARGO_BIN_EXE_portarium-st2");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// A policy reviewing `core` (the emulator reports 1.0.1, as st2 does) with the given range and license.
fn policy(core_versions: &str, core_license: &str) -> String {
    format!(
        "packs:\n  - {{ref: core, versions: '{core_versions}', license: {core_license}, reviewer: ann, reviewedAt: 2026-11-20}}\n"
    )
}

/// The emulator, and the adapter before it governed by the packs policy `policy_yaml`, with
/// its audit log in `dir`; `tenant_extra` adds entries to tenant t1's flow mapping.
struct Governed {
    stack: Stack,
    dir: tempfile::TempDir,
}

async fn governed(policy_yaml: &str, tenant_extra: &str) -> Governed {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("packs.yaml");
    std::fs::write(&policy_path, policy_yaml).unwrap();
    let stack = Stack::builder()
        .tenant_with("t1", "tok1", tenant_extra)
        .yaml(&format!(
            "governance: {{packs_policy: '{}', audit: {{path: '{}'}}}}",
            policy_path.display(),
            dir.path().join("audit.jsonl").display()
        ))
        .start()
        .await;
    Governed { stack, dir }
}

impl Governed {
    async fn dispatch(&self, flow_ref: &str, payload: Value) -> (u16, Value) {
        let body = json!({"actionId": "a1", "tenantId": "t1", "runId": "r1",
            "correlationId": "c1", "flowRef": flow_ref, "payload": payload});
        self.stack.dispatch(Some("tok1"), &body).await
    }

    /// st2 requests the dispatch made; the stream watcher's own connection is not one.
    fn requests(&self) -> Vec<RequestRecord> {
        let mut log = self.stack.emu.request_log();
        log.retain(|r| !r.path.starts_with("/stream/"));
        log
    }

    fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn only_pack_lookups(log: &[RequestRecord]) -> Vec<String> {
    log.iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|r| r != "GET /api/v1/packs/core")
        .collect()
}

#[tokio::test]
async fn an_unreviewed_pack_is_refused_without_any_st2_request() {
    let g = governed(&policy(">=1.0, <2", "Apache-2.0"), "").await;
    let (status, result) = g.dispatch("examples.fail", json!({})).await;
    assert_eq!(status, 404, "{result}");
    assert_eq!(result["errorKind"], "FlowNotFound");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.starts_with("pack examples refused: unreviewed"),
        "{message}"
    );
    assert!(g.requests().is_empty(), "{:?}", g.requests());
    let audit = g.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["dispatch"]["verdict"], "refused");
    assert_eq!(audit[0]["dispatch"]["pack"], "examples");
    assert_eq!(audit[0]["workspaceId"], "t1");
}

#[tokio::test]
async fn a_drifted_version_is_refused_after_only_the_version_lookup() {
    let g = governed(&policy(">=2, <3", "Apache-2.0"), "").await;
    let (status, result) = g.dispatch("core.echo", json!({"message": "x"})).await;
    assert_eq!(status, 404, "{result}");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("pack core refused: version drift: st2 has 1.0.1 installed but the review covers >=2, <3"),
        "{message}"
    );
    let log = g.requests();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(only_pack_lookups(&log).is_empty(), "{log:?}");
}

#[tokio::test]
async fn a_disallowed_license_is_refused_without_any_st2_request() {
    let g = governed(&policy("*", "AGPL-3.0-only"), "").await;
    let (status, result) = g.dispatch("core.echo", json!({"message": "x"})).await;
    assert_eq!(status, 404, "{result}");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains("pack core refused: license not allowed: AGPL-3.0-only"),
        "{message}"
    );
    assert!(g.requests().is_empty(), "{:?}", g.requests());
}

#[tokio::test]
async fn an_approved_pack_runs_and_its_version_is_read_once_per_cache_period() {
    let g = governed(&policy(">=1.0, <2", "Apache-2.0"), "").await;
    for _ in 0..2 {
        let (status, result) = g.dispatch("core.echo", json!({"message": "hi"})).await;
        assert_eq!(status, 200, "{result}");
    }
    let lookups = g
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/packs/core")
        .count();
    assert_eq!(lookups, 1, "cached for governance.pack_cache_ttl_ms");
    // Each dispatch: `accepted` before st2 is called, then its outcome.
    let audit = g.audit();
    assert_eq!(audit[0]["dispatch"]["phase"], "accepted");
    assert_eq!(audit[1]["dispatch"]["verdict"], "allowed");
    assert_eq!(audit[1]["dispatch"]["outcome"], "succeeded");
    assert!(audit[1]["dispatch"]["st2ExecutionId"].is_string());
    assert_eq!(audit[1]["previousHash"], audit[0]["hashSha256"]);
}

#[tokio::test]
async fn a_tenant_runs_only_its_allowed_actions() {
    let g = governed(
        &policy("*", "Apache-2.0"),
        "allowed_actions: ['core.e*', 'core.noop']",
    )
    .await;
    let (status, _) = g.dispatch("core.echo", json!({"message": "hi"})).await;
    assert_eq!(status, 200);
    let before = g.requests().len();
    let (status, result) = g.dispatch("core.local", json!({"cmd": "true"})).await;
    assert_eq!(status, 401, "{result}");
    assert_eq!(
        result["message"],
        "tenant t1 may not run core.local: it is not in the tenant's allowed_actions"
    );
    assert_eq!(g.requests().len(), before, "nothing reached st2");
}

// ---- manifest ----

fn repo_manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(REPO).join("adapter-manifest.yaml")).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn violations(docs: &[Value]) -> Vec<String> {
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    match manifest::check(&text.join("---\n"), Path::new(REPO)) {
        Ok(_) => Vec::new(),
        Err(v) => v.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_repository_manifest_passes() {
    assert_eq!(violations(&repo_manifest()), Vec::<String>::new());
}

#[test]
fn each_missing_required_field_is_named_with_its_path() {
    let fields: [&[&str]; 13] = [
        &["schemaVersion"],
        &["adapterId"],
        &["workspaceId"],
        &["providerSlug"],
        &["portFamily"],
        &["enabled"],
        &["capabilityMatrix"],
        &["executionPolicy"],
        &["executionPolicy", "tenantIsolationMode"],
        &["executionPolicy", "egressAllowlist"],
        &["executionPolicy", "credentialScope"],
        &["executionPolicy", "sandboxVerified"],
        &["executionPolicy", "sandboxAvailable"],
    ];
    for path in fields {
        let mut docs = repo_manifest();
        let (last, parents) = path.split_last().unwrap();
        let mut at = &mut docs[1];
        for p in parents {
            at = &mut at[*p];
        }
        at.as_object_mut().unwrap().remove(*last);
        let got = violations(&docs);
        let want = format!("[1].{}: required field is missing", path.join("."));
        assert!(got.contains(&want), "{want} not in {got:?}");
    }
    let mut docs = repo_manifest();
    docs[0]["capabilityMatrix"][3]
        .as_object_mut()
        .unwrap()
        .remove("requiresAuth");
    assert!(
        violations(&docs)
            .contains(&"[0].capabilityMatrix[3].requiresAuth: required field is missing".into())
    );
    docs[0].as_object_mut().unwrap().remove("x-st2");
    assert!(violations(&docs).contains(&"[0].x-st2: required field is missing".into()));
}

#[test]
fn egress_must_be_https_and_policy_values_fixed() {
    let mut docs = repo_manifest();
    docs[1]["executionPolicy"]["egressAllowlist"][0] = json!("http://st2.example.internal/api");
    docs[1]["executionPolicy"]["egressAllowlist"][2] = json!("not a url");
    docs[0]["executionPolicy"]["sandboxVerified"] = json!(false);
    docs[0]["executionPolicy"]["tenantIsolationMode"] = json!("Shared");
    let got = violations(&docs);
    for want in [
        "[1].executionPolicy.egressAllowlist[0]: http:// not allowed, use https",
        "[1].executionPolicy.egressAllowlist[2]: \"not a url\" is not a URL; write https://host/path",
        "[0].executionPolicy.sandboxVerified: must be true; Portarium refuses to register an unverified sandbox",
        "[0].executionPolicy.tenantIsolationMode: must be \"PerTenantWorker\" (the only value Portarium accepts), not \"Shared\"",
    ] {
        assert!(got.contains(&want.to_string()), "{want} not in {got:#?}");
    }
    assert_eq!(got.len(), 4, "{got:#?}");
    docs[1]["executionPolicy"]["egressAllowlist"] = json!([]);
    assert!(violations(&docs).contains(
        &"[1].executionPolicy.egressAllowlist: must be a non-empty list of https:// URLs".into()
    ));
}

#[test]
fn an_incomplete_or_wrong_capability_matrix_is_named() {
    let mut docs = repo_manifest();
    let matrix = docs[0]["capabilityMatrix"].as_array_mut().unwrap();
    matrix.retain(|c| c["capability"] != "sr:read" && c["capability"] != "change:approve");
    docs[1]["capabilityMatrix"][0]["capability"] = json!("invoice:read");
    docs[1]["capabilityMatrix"][2]["outputKind"] = json!("Asset");
    let got = violations(&docs);
    for want in [
        "[0].capabilityMatrix: incomplete for ItsmItOps: missing change:approve, sr:read",
        "[0].x-st2.operationMap.change:approve: maps a capability the capabilityMatrix does not claim",
        "[1].capabilityMatrix[0].operation: must equal capability \"invoice:read\"",
        "[1].capabilityMatrix[2].outputKind: incident:read returns Ticket in Portarium's port taxonomy, not Asset",
    ] {
        assert!(got.contains(&want.to_string()), "{want} not in {got:#?}");
    }
}

#[test]
fn the_st2_section_maps_every_capability_to_a_reviewed_pack() {
    let mut docs = repo_manifest();
    docs[0]["x-st2"]["operationMap"]["sr:read"] = json!("unreviewed.list");
    docs[0]["x-st2"]["operationMap"]
        .as_object_mut()
        .unwrap()
        .remove("cmdb:read");
    docs[1]["x-st2"]["eventClasses"][0] = json!("com.portarium.run.ActionDispatched.v1");
    let got = violations(&docs);
    for want in [
        "[0].x-st2.operationMap.sr:read: unreviewed.list: pack unreviewed is unreviewed: no review recorded in the packs policy; review it (docs/governance.md) before use",
        "[0].x-st2.operationMap: no st2 action for cmdb:read",
    ] {
        assert!(got.contains(&want.to_string()), "{want} not in {got:#?}");
    }
    assert!(
        got.iter()
            .any(|v| v.starts_with("[1].x-st2.eventClasses[0]: ")),
        "{got:#?}"
    );
}

fn run(args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("PORTARIUM_ST2_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn manifest_check_prints_every_violation_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = repo_manifest();
    docs[1]["executionPolicy"]["egressAllowlist"][0] = json!("http://st2.example.internal/api");
    docs[0].as_object_mut().unwrap().remove("providerSlug");
    for doc in &mut docs {
        doc["x-st2"]["packsPolicy"] = json!(Path::new(REPO).join("packs-policy.yaml"));
    }
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_norway::to_string(d).unwrap())
        .collect();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, text.join("---\n")).unwrap();
    let out = run(&["manifest", "check", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("[0].providerSlug: required field is missing\n"));
    assert!(
        stderr.contains("[1].executionPolicy.egressAllowlist[0]: http:// not allowed, use https\n")
    );
    assert!(stderr.contains("2 violation(s)"), "{stderr}");

    let repo = Path::new(REPO).join("adapter-manifest.yaml");
    let out = run(&["manifest", "check", repo.to_str().unwrap()]);
    crate::support::succeeded(&out, "manifest check");
}

// ---- packs audit ----

#[tokio::test]
async fn packs_audit_lists_every_installed_pack_and_fails_on_a_governed_one() {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::st2_config_file(dir.path(), &emu, KEY);
    let audit = |policy_text: String, strict: bool| {
        let policy_file = dir.path().join("p.yaml");
        std::fs::write(&policy_file, policy_text).unwrap();
        let mut args = vec![
            "packs".to_string(),
            "audit".into(),
            "--config".into(),
            config.display().to_string(),
            "--policy".into(),
            policy_file.display().to_string(),
        ];
        if strict {
            args.push("--strict".into());
        }
        async move {
            let out = tokio::process::Command::new(BIN)
                .args(&args)
                .env_remove("PORTARIUM_ST2_CONFIG")
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        }
    };
    let (code, stdout) = audit(policy(">=1.0, <2", "Apache-2.0"), false).await;
    assert_eq!(code, Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("core ") && lines[0].ends_with("approved"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("examples ") && lines[1].contains("unreviewed"));

    let (code, _) = audit(policy(">=1.0, <2", "Apache-2.0"), true).await;
    assert_eq!(code, Some(1), "--strict fails on the unreviewed pack");
    let (code, stdout) = audit(policy(">=1.0, <1.0.1", "Apache-2.0"), false).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("version drift  FAIL"), "{stdout}");
    let (code, stdout) = audit(policy("*", "GPL-2.0-only"), false).await;
    assert_eq!(code, Some(1));
    assert!(stdout.contains("license not allowed  FAIL"), "{stdout}");
}

// ---- audit verify ----

#[tokio::test]
async fn audit_verify_names_the_first_changed_removed_or_reordered_record() {
    let g = governed(&policy(">=1.0, <2", "Apache-2.0"), "").await;
    for flow in ["core.echo", "examples.fail", "core.echo", "core.noop"] {
        g.dispatch(flow, json!({"message": "m"})).await;
    }
    let path = g.audit_path();
    let out = run(&["audit", "verify", path.to_str().unwrap()]);
    let stdout = crate::support::succeeded(&out, "audit verify");
    // The refused dispatch has one record, the others two (accepted, then outcome).
    assert!(stdout.contains("chain intact, 7 record(s)"), "{stdout}");
    let original: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let verify = |lines: Vec<String>| {
        let file = g.dir.path().join("tampered.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let out = run(&["audit", "verify", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).to_string()
    };

    let mut changed = original.clone();
    changed[2] = changed[2].replace("\"refused\"", "\"allowed\"");
    assert_ne!(changed[2], original[2], "the refusal is in record 3");
    let err = verify(changed);
    assert!(err.contains("record 3 (line 3): content changed"), "{err}");

    let mut removed = original.clone();
    removed.remove(2);
    let err = verify(removed);
    assert!(err.contains("record 3 (line 3): chain broken"), "{err}");

    let mut reordered = original.clone();
    reordered.swap(1, 2);
    let err = verify(reordered);
    assert!(err.contains("record 2 (line 2): chain broken"), "{err}");

    // A restarted adapter continues the chain instead of starting a new one.
    let config = portarium_st2::core::governance::audit::AuditConfig::at(path.clone());
    assert!(portarium_st2::core::governance::audit::AuditLog::open(&config).is_ok());
    std::fs::write(&path, original[1..].join("\n")).unwrap();
    let err = portarium_st2::core::governance::audit::AuditLog::open(&config).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not verify (record 1 (line 1): chain broken"),
        "{err}"
    );
}
