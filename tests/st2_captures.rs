//! Every response recorded from a real st2 decodes with the client's models, keeping what
//! st2 sent: decoded values equal the raw JSON's, and re-encoding keeps every top-level key.

mod support;

use portarium_st2::st2::models::{
    Action, ActionParameters, Execution, ExecutionStatus, Fault, LiveAction, Pack, Token,
};
use serde_json::Value;
use support::{capture, reference, reference_text};

/// Decodes `raw` as an Execution and checks it against the raw JSON.
fn check_execution(origin: &str, raw: &Value) -> Execution {
    let exec: Execution = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("{origin}: does not decode as Execution: {e}"));
    assert_eq!(Some(exec.id.as_str()), raw["id"].as_str(), "{origin}: id");
    if let Some(status) = raw["status"].as_str() {
        let decoded = exec.status.as_ref().expect("status decoded");
        assert_eq!(decoded.as_str(), status, "{origin}: status");
        assert!(
            !matches!(decoded, ExecutionStatus::Unknown(_)),
            "{origin}: {status} is a known status"
        );
    }
    assert_eq!(
        exec.action_ref(),
        raw["action"]["ref"].as_str(),
        "{origin}: action ref"
    );
    assert_eq!(
        exec.parent.as_deref(),
        raw["parent"].as_str(),
        "{origin}: parent"
    );
    assert_eq!(
        exec.log.len(),
        raw["log"].as_array().map_or(0, Vec::len),
        "{origin}: log"
    );
    assert_eq!(exec.result.as_ref(), raw.get("result"), "{origin}: result");
    if let Some(liveaction) = raw["liveaction"]["id"].as_str() {
        assert_ne!(
            liveaction, exec.id,
            "{origin}: liveaction id differs from execution id"
        );
    }
    let back = serde_json::to_value(&exec).unwrap();
    let keys = |v: &Value| {
        v.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        keys(&back),
        keys(raw),
        "{origin}: re-encoding keeps every key"
    );
    exec
}

#[test]
fn recorded_execution_bodies_decode() {
    let dir = reference().join("captures");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with("execution-") && name.ends_with(".json") {
            let raw: Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(&name)).unwrap()).unwrap();
            check_execution(&name, &raw);
            seen += 1;
        }
    }
    assert!(
        seen >= 13,
        "expected the 13 recorded execution bodies, found {seen}"
    );
}

#[test]
fn recorded_execution_answers_decode() {
    for name in [
        "execution-get-core-local-succeeded.http",
        "execution-get-include-attrs.http",
        "execution-post-core-local.http",
        "execution-put-pausing.http",
        "execution-put-resuming.http",
        "execution-rerun.http",
        "execution-delete-cancel.http",
    ] {
        let c = capture(name);
        assert!(c.status == 200 || c.status == 201, "{name}: {}", c.status);
        let raw: Value = serde_json::from_str(&c.body).unwrap();
        check_execution(name, &raw);
    }
    let rerun: Execution = serde_json::from_str(&capture("execution-rerun.http").body).unwrap();
    assert!(
        rerun.context_at("re-run.ref").is_some(),
        "re-run context names the original"
    );
}

#[test]
fn recorded_execution_lists_decode_with_pagination_headers() {
    for name in [
        "executions-list.http",
        "executions-list-exclude-result.http",
        "executions-list-filter-action-status.http",
        "executions-list-include-attrs.http",
        "executions-list-with-apikey.http",
        "executions-list-children-of-orquesta.http",
        "execution-children-orquesta.http",
    ] {
        let c = capture(name);
        let raw: Value = serde_json::from_str(&c.body).unwrap();
        let items = raw.as_array().unwrap_or_else(|| panic!("{name}: a list"));
        for (i, item) in items.iter().enumerate() {
            check_execution(&format!("{name}[{i}]"), item);
        }
        if name.starts_with("executions-list") {
            let total = c.headers.iter().find(|(k, _)| k == "x-total-count");
            assert!(total.is_some(), "{name}: X-Total-Count");
        }
    }
}

#[test]
fn recorded_errors_decode_as_faults() {
    for (name, status) in [
        ("api-no-token.http", 401),
        ("api-bad-token.http", 401),
        ("auth-token-bad-password.http", 401),
        ("execution-get-badid.http", 404),
        ("execution-get-missing.http", 404),
        ("execution-post-missing-action.http", 400),
        ("execution-post-missing-required-param.http", 400),
        ("execution-post-bad-param-type.http", 400),
        ("action-get-missing.http", 404),
    ] {
        let c = capture(name);
        assert_eq!(c.status, status, "{name}");
        let fault: Fault = serde_json::from_str(&c.body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let raw: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(
            Some(fault.faultstring.as_str()),
            raw["faultstring"].as_str(),
            "{name}"
        );
    }
}

#[test]
fn recorded_actions_packs_and_tokens_decode() {
    let c = capture("action-get-core-local.http");
    let action: Action = serde_json::from_str(&c.body).unwrap();
    let raw: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(action.r#ref.as_deref(), raw["ref"].as_str());
    assert_eq!(action.runner_type.as_deref(), raw["runner_type"].as_str());

    let list: Vec<Action> = serde_json::from_str(&capture("actions-list-core.http").body).unwrap();
    assert!(!list.is_empty());

    let c = capture("action-view-parameters.http");
    let params: ActionParameters = serde_json::from_str(&c.body).unwrap();
    let raw: Value = serde_json::from_str(&c.body).unwrap();
    for (name, spec) in &params.parameters {
        let raw_spec = &raw["parameters"][name];
        assert_eq!(
            spec.required,
            raw_spec["required"].as_bool().unwrap_or(false),
            "{name}.required"
        );
        assert_eq!(
            spec.secret,
            raw_spec["secret"].as_bool().unwrap_or(false),
            "{name}.secret"
        );
        assert_eq!(
            spec.immutable,
            raw_spec["immutable"].as_bool().unwrap_or(false),
            "{name}.immutable"
        );
        assert_eq!(
            spec.default.as_ref(),
            raw_spec.get("default"),
            "{name}.default"
        );
    }
    assert_eq!(
        params.parameters.len(),
        raw["parameters"].as_object().unwrap().len()
    );

    let c = capture("packs-list.http");
    let packs: Vec<Pack> = serde_json::from_str(&c.body).unwrap();
    let raw: Value = serde_json::from_str(&c.body).unwrap();
    for (pack, raw) in packs.iter().zip(raw.as_array().unwrap()) {
        assert_eq!(Some(pack.r#ref.as_str()), raw["ref"].as_str());
        assert_eq!(pack.version.as_deref(), raw["version"].as_str());
    }

    for name in ["auth-token-post.http", "auth-token-ttl.http"] {
        let c = capture(name);
        let token: Token = serde_json::from_str(&c.body).unwrap();
        let raw: Value = serde_json::from_str(&c.body).unwrap();
        assert_eq!(Some(token.user.as_str()), raw["user"].as_str());
        assert!(
            !format!("{token:?}").contains(&token.token),
            "{name}: Debug hides the token"
        );
    }
}

#[test]
fn official_client_fixtures_decode() {
    for name in [
        "execution.json",
        "execution_unicode.json",
        "execution_with_schema.json",
        "execution_with_stack_trace.json",
    ] {
        let raw: Value =
            serde_json::from_str(&reference_text(&format!("st2client/tests/fixtures/{name}")))
                .unwrap();
        check_execution(name, &raw);
    }
}

#[test]
fn recorded_stream_events_decode() {
    let dir = reference().join("captures");
    let (mut executions, mut liveactions) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".sse") {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        for frame in text.split("\n\n") {
            let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
            let (Some(event), Some(data)) = (event, data) else {
                continue;
            };
            if event.starts_with("st2.execution__") {
                check_execution(
                    &format!("{name} {event}"),
                    &serde_json::from_str(data).unwrap(),
                );
                executions += 1;
            } else if event.starts_with("st2.liveaction__") {
                let raw: Value = serde_json::from_str(data).unwrap();
                let la: LiveAction = serde_json::from_str(data).unwrap();
                assert_eq!(
                    la.status.as_ref().map(|s| s.as_str()),
                    raw["status"].as_str()
                );
                if let Some(Value::String(encoded)) = raw.get("result") {
                    // st2 sends the liveaction result as a JSON string; decoding gives its value.
                    assert_eq!(
                        la.result_value(),
                        Some(serde_json::from_str::<Value>(encoded).unwrap())
                    );
                }
                liveactions += 1;
            }
        }
    }
    assert_eq!(
        (executions, liveactions),
        (33, 30),
        "every recorded execution and liveaction event"
    );
}

#[test]
fn every_st2_status_round_trips_and_the_terminal_set_is_st2s() {
    // The 14 values of st2common/constants/action.py, as the reference lists them.
    let defined = [
        "requested",
        "scheduled",
        "delayed",
        "running",
        "succeeded",
        "failed",
        "timeout",
        "abandoned",
        "canceling",
        "canceled",
        "pending",
        "pausing",
        "paused",
        "resuming",
    ];
    for s in defined {
        let status: ExecutionStatus = serde_json::from_value(Value::String(s.into())).unwrap();
        assert!(
            !matches!(status, ExecutionStatus::Unknown(_)),
            "{s} is known"
        );
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            Value::String(s.into())
        );
    }
    assert_eq!(ExecutionStatus::ALL.len(), defined.len());
    let terminal: Vec<&str> = ExecutionStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        terminal,
        ["succeeded", "failed", "timeout", "abandoned", "canceled"]
    );
    let future: ExecutionStatus =
        serde_json::from_value(Value::String("teleported".into())).unwrap();
    assert_eq!(future, ExecutionStatus::Unknown("teleported".into()));
    assert!(!future.is_terminal());
    assert_eq!(serde_json::to_value(&future).unwrap(), "teleported");
}
