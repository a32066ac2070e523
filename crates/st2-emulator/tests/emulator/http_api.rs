//! The emulator over real HTTP: auth, executions (create, validation, status progression,
//! cancel, pause/resume, re-run, output), lists, content endpoints, webhooks and errors.

use std::time::Duration;

use crate::support::{assert_fault, log_statuses, start, start_with};
use reqwest::Method;
use serde_json::{Value, json};
use st2_emulator::EmulatorOptions;

#[tokio::test]
async fn auth_messages_tokens_and_cookies_follow_st2() {
    let h = start().await;
    let r = h
        .http
        .get(h.url("/api/v1/executions"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"faultstring": "Unauthorized - One of Token or API key required."})
    );

    let r = h
        .http
        .get(h.url("/api/v1/executions"))
        .header("X-Auth-Token", "nope")
        .send()
        .await
        .expect("request");
    assert_fault(r, 401, "Unauthorized").await;

    let r = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_fault(r, 401, "Invalid or missing credentials").await;

    let r = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("Ch@ngeMe"))
        .json(&json!({"ttl": 86401}))
        .send()
        .await
        .expect("request");
    assert_fault(
        r,
        400,
        "TTL specified 86401 is greater than max allowed 86400.",
    )
    .await;

    let r = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("Ch@ngeMe"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    assert!(r.headers().contains_key("x-api-url"));
    let token: Value = r.json().await.expect("json");
    let expiry = token["expiry"].as_str().expect("expiry");
    assert!(expiry.ends_with('Z') && expiry.len() == 27, "{expiry}");
    assert_eq!(token["user"], "st2admin");
    let value = token["token"].as_str().expect("token").to_string();

    let r = h
        .http
        .get(h.url("/api/v1/actions"))
        .header("X-Auth-Token", &value)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        cookie.starts_with(&format!("auth-token={value}; Max-Age=")),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=lax"));
    let r = h
        .http
        .get(h.url(&format!("/api/v1/actions?x-auth-token={value}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .get(h.url("/api/v1/actions"))
        .header("Cookie", format!("auth-token={value}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert!(
        !r.headers().contains_key("set-cookie"),
        "cookie auth sets no cookie"
    );
    let r = h
        .http
        .get(h.url("/api/v1/actions?st2-api-key=emulator-api-key"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .get(h.url("/api/v1/actions"))
        .header("St2-Api-Key", "wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let msg = r.json::<Value>().await.expect("json")["faultstring"]
        .as_str()
        .expect("msg")
        .to_string();
    assert!(
        msg.starts_with("Unauthorized - ApiKey with key_hash=") && msg.ends_with(" not found."),
        "{msg}"
    );

    h.emu.revoke_tokens();
    let r = h
        .http
        .get(h.url("/api/v1/actions"))
        .header("X-Auth-Token", &value)
        .send()
        .await
        .expect("request");
    assert_fault(r, 401, "Unauthorized").await;
    h.emu.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_for_real() {
    let h = start().await;
    let r = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("Ch@ngeMe"))
        .json(&json!({"ttl": 1}))
        .send()
        .await
        .expect("request");
    let token: Value = r.json().await.expect("json");
    let value = token["token"].as_str().expect("token");
    let ok = h
        .http
        .get(h.url("/api/v1"))
        .header("X-Auth-Token", value)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    // The expiry itself is what is under test, so real time has to pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = h
        .http
        .get(h.url("/api/v1"))
        .header("X-Auth-Token", value)
        .send()
        .await
        .expect("request");
    assert_fault(r, 401, "Unauthorized - Token has expired.").await;
    let (_, v) = h
        .post_json("/auth/v1/tokens/validate", json!({"token": value}))
        .await;
    assert_eq!(v, json!({"valid": false}));
    h.emu.shutdown().await;
}

#[tokio::test]
async fn post_execution_returns_st2_shape_and_progresses() {
    let h = start().await;
    let r = h
        .req(Method::POST, "/api/v1/executions")
        .header("st2-context", r#"{"source": "header"}"#)
        .json(
            &json!({"action": "core.local", "parameters": {"cmd": "echo hi"},
                      "context": {"user": "mallory", "portarium": {"dispatch_id": "abc-123"}}}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 201);
    let e: Value = r.json().await.expect("json");
    assert_eq!(e["status"], "requested");
    let id = e["id"].as_str().expect("id").to_string();
    assert_ne!(e["liveaction"]["id"], e["id"]);
    assert_eq!(e["liveaction"]["callback"], json!({}));
    assert_eq!(e["context"]["user"], "st2admin");
    assert_eq!(e["context"]["pack"], "core");
    assert_eq!(e["context"]["portarium"]["dispatch_id"], "abc-123");
    assert_eq!(e["context"]["source"], "header");
    assert_eq!(
        e["web_url"],
        format!("https://localhost/#/history/{id}/general")
    );
    assert_eq!(log_statuses(&e), vec!["requested"]);
    for absent in [
        "result",
        "end_timestamp",
        "elapsed_seconds",
        "children",
        "result_size",
    ] {
        assert!(
            e.get(absent).is_none(),
            "{absent} must be left out while empty"
        );
    }
    let done = h.wait_status(&id, &["succeeded"]).await;
    assert_eq!(
        log_statuses(&done),
        vec!["requested", "scheduled", "running", "succeeded"]
    );
    assert_eq!(
        done["result"],
        json!({"failed": false, "succeeded": true, "return_code": 0, "stdout": "hi", "stderr": ""})
    );
    assert!(done["elapsed_seconds"].as_f64().expect("elapsed") > 0.0);
    assert_eq!(done["result_size"], 75);
    let (_, last) = h.get_json("/api/v1/executions/last").await;
    assert_eq!(last["id"], id.as_str());

    let noop = h.run("core.noop", json!({})).await;
    assert!(
        noop.get("parameters").is_none(),
        "empty parameters are left out"
    );
    let noop = h
        .wait_status(noop["id"].as_str().expect("id"), &["succeeded"])
        .await;
    assert_eq!(
        noop["result"],
        json!({"failed": false, "succeeded": true, "return_code": 0})
    );

    let (_, trace) = h.get_json(&format!("/api/v1/traces?execution={id}")).await;
    assert_eq!(
        trace[0]["trace_tag"],
        format!(
            "execution-{}",
            e["liveaction"]["id"].as_str().expect("la id")
        )
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn parameter_validation_uses_st2_messages() {
    let h = start().await;
    let cases = [
        (json!({"parameters": {}}), "'action' is a required property"),
        (
            json!({"action": "core.nope"}),
            "Action \"core.nope\" cannot be found.",
        ),
        (
            json!({"action": "core.local", "parameters": {}}),
            "'cmd' is a required property",
        ),
        (
            json!({"action": "core.local", "parameters": {"cmd": "x", "bogus": 1}}),
            "Additional properties are not allowed ('bogus' was unexpected)",
        ),
        (
            json!({"action": "core.local", "parameters": {"cmd": "x", "sudo": true}}),
            "Override of immutable parameter(s) ['sudo'] is unsupported.",
        ),
        (
            json!({"action": "core.local", "parameters": {"cmd": "x", "timeout": "abc"}}),
            "invalid literal for int() with base 10: 'abc'",
        ),
        (
            json!({"action": "examples.disabled"}),
            "Unable to execute. Action \"examples.disabled\" is disabled.",
        ),
    ];
    for (body, message) in cases {
        let (status, v) = h.post_json("/api/v1/executions", body.clone()).await;
        assert_eq!(
            (status, v["faultstring"].as_str()),
            (400, Some(message)),
            "{body}"
        );
    }
    let r = h
        .req(Method::POST, "/api/v1/executions")
        .header("st2-context", "[1]")
        .json(&json!({"action": "core.noop"}))
        .send()
        .await
        .expect("request");
    assert_fault(
        r,
        400,
        "Unable to convert st2-context from the headers into JSON (was <class 'list'>).",
    )
    .await;
    let ok = h
        .run("core.local", json!({"cmd": "echo x", "timeout": "30"}))
        .await;
    assert_eq!(ok["parameters"]["timeout"], 30, "string cast to integer");
    let secret = h
        .run(
            "examples.secret",
            json!({"user": "u", "password": "hunter2"}),
        )
        .await;
    assert_eq!(secret["parameters"]["password"], "********");
    assert_eq!(secret["liveaction"]["parameters"]["password"], "********");
    let id = secret["id"].as_str().expect("id");
    let (_, shown) = h
        .get_json(&format!("/api/v1/executions/{id}?show_secrets=true"))
        .await;
    assert_eq!(shown["parameters"]["password"], "hunter2");
    h.emu.shutdown().await;
}

#[tokio::test]
async fn get_one_handles_ids_and_attribute_filters() {
    let h = start().await;
    for id in ["notanid", "000000000000000000000000"] {
        let (status, v) = h.get_json(&format!("/api/v1/executions/{id}")).await;
        assert_eq!(status, 404);
        assert_eq!(
            v["faultstring"],
            format!("Unable to identify resource with id \"{id}\".")
        );
    }
    let e = h.run("core.echo", json!({"message": "hey"})).await;
    let id = e["id"].as_str().expect("id");
    h.wait_status(id, &["succeeded"]).await;
    let (_, v) = h
        .get_json(&format!(
            "/api/v1/executions/{id}?include_attributes=status,result"
        ))
        .await;
    let mut keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, vec!["id", "result", "status"]);
    let (_, v) = h
        .get_json(&format!(
            "/api/v1/executions/{id}?exclude_attributes=result"
        ))
        .await;
    assert!(v.get("result").is_none() && v.get("action").is_some());
    let (status, v) = h
        .get_json(&format!(
            "/api/v1/executions/{id}?exclude_attributes=action"
        ))
        .await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (
            400,
            Some("Invalid or unsupported exclude attribute specified: action")
        )
    );
    let (_, v) = h
        .get_json(&format!("/api/v1/executions/{id}?max_result_size=10"))
        .await;
    assert!(
        v.get("result").is_none(),
        "result larger than max_result_size is left out"
    );
    let (status, _) = h
        .get_json(&format!("/api/v1/executions/{id}?max_result_size=-1"))
        .await;
    assert_eq!(status, 400);
    let (_, v) = h
        .get_json(&format!("/api/v1/executions/{id}/attribute/status"))
        .await;
    assert_eq!(v, "succeeded");
    let r = h
        .req(Method::GET, &format!("/api/v1/executions/{id}/output"))
        .send()
        .await
        .expect("request");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert_eq!(r.text().await.expect("text"), "hey\n");
    h.emu.shutdown().await;
}

#[tokio::test]
async fn list_filters_sorting_and_pagination() {
    let h = start().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let e = h
            .post_json(
                "/api/v1/executions",
                json!({"action": "core.noop", "context": {"portarium": {"dispatch_id": format!("d-{i}")}}}),
            )
            .await
            .1;
        ids.push(e["id"].as_str().expect("id").to_string());
        // st2 keeps start times to the millisecond (MongoDB): one apart, each is later.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let echo = h.run("core.echo", json!({"message": "m"})).await;
    h.wait_status(echo["id"].as_str().expect("id"), &["succeeded"])
        .await;

    let r = h
        .req(Method::GET, "/api/v1/executions?limit=2")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-total-count"], "4");
    assert_eq!(r.headers()["x-limit"], "2");
    let page: Vec<Value> = r.json().await.expect("json");
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["id"], echo["id"], "newest first");
    let r = h
        .req(Method::GET, "/api/v1/executions")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-limit"], "100");
    let (_, all) = h.get_json("/api/v1/executions?limit=2&offset=3").await;
    assert_eq!(all.as_array().expect("array").len(), 1);
    let (status, v) = h.get_json("/api/v1/executions?limit=0").await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (
            400,
            Some("Limit, \"0\" specified, must be a positive number or -1 for full result set.")
        )
    );
    let (status, _) = h.get_json("/api/v1/executions?limit=500").await;
    assert_eq!(status, 200, "RBAC off: every user is an admin");
    let (status, v) = h.get_json("/api/v1/executions?limit=abc").await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (400, Some("Parameter \"limit\" is not of type integer"))
    );

    let (_, v) = h
        .get_json("/api/v1/executions?action=core.echo&status=succeeded")
        .await;
    assert_eq!(v.as_array().expect("array").len(), 1);
    let (_, v) = h
        .get_json("/api/v1/executions?filter=context.portarium.dispatch_id:d-1")
        .await;
    assert_eq!(v.as_array().expect("array").len(), 1);
    assert_eq!(v[0]["id"], ids[1].as_str());
    let (status, v) = h.get_json("/api/v1/executions?filter=nope.x:1").await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (400, Some("Cannot resolve field \"nope\""))
    );
    let start = h
        .get_json(&format!("/api/v1/executions/{}", ids[0]))
        .await
        .1["start_timestamp"]
        .clone();
    let (_, v) = h
        .get_json(&format!(
            "/api/v1/executions?timestamp_gt={}",
            start.as_str().expect("ts")
        ))
        .await;
    let got: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        got,
        vec![
            ids[1].as_str(),
            ids[2].as_str(),
            echo["id"].as_str().expect("id")
        ],
        "ascending after timestamp_gt"
    );
    let (_, v) = h
        .get_json("/api/v1/executions?user=st2admin&include_attributes=id&limit=-1")
        .await;
    assert_eq!(v.as_array().expect("array").len(), 4);
    h.emu.shutdown().await;
}

#[tokio::test]
async fn cancel_follows_st2_rules() {
    let h = start().await;
    let e = h.run("core.local", json!({"cmd": "sleep 30"})).await;
    let id = e["id"].as_str().expect("id");
    h.wait_status(id, &["running"]).await;
    let r = h
        .req(Method::DELETE, &format!("/api/v1/executions/{id}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "canceling");
    assert_eq!(v["context"]["cancelled_by"], "st2admin");
    assert_eq!(
        v["result"],
        json!({"message": "Action canceled by user.", "user": "st2admin"})
    );
    let done = h.wait_status(id, &["canceled"]).await;
    assert!(done.get("end_timestamp").is_some());

    let delayed = h
        .post_json(
            "/api/v1/executions",
            json!({"action": "core.noop", "delay": 60000}),
        )
        .await
        .1;
    let did = delayed["id"].as_str().expect("id");
    h.wait_status(did, &["delayed"]).await;
    let r = h
        .req(Method::DELETE, &format!("/api/v1/executions/{did}"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.json::<Value>().await.expect("json")["status"],
        "canceled",
        "not running, no parent: straight to canceled"
    );

    let noop = h.run("core.noop", json!({})).await;
    let nid = noop["id"].as_str().expect("id");
    h.wait_status(nid, &["succeeded"]).await;
    let r = h
        .req(Method::DELETE, &format!("/api/v1/executions/{nid}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"faultstring": "Action cannot be canceled. State = succeeded."})
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn timeout_and_failure_statuses() {
    let h = start().await;
    let e = h
        .run("core.local", json!({"cmd": "sleep 5", "timeout": 1}))
        .await;
    let done = h
        .wait_status(
            e["id"].as_str().expect("id"),
            &["timeout", "succeeded", "failed"],
        )
        .await;
    assert_eq!(done["status"], "timeout");
    assert_eq!(done["result"]["return_code"], -9);
    let e = h.run("examples.fail", json!({})).await;
    let done = h
        .wait_status(e["id"].as_str().expect("id"), &["failed", "succeeded"])
        .await;
    assert_eq!(
        done["result"],
        json!({"failed": true, "succeeded": false, "return_code": 1, "stdout": "", "stderr": "boom"})
    );
    let e = h
        .run("core.local", json!({"cmd": "echo oops >&2; exit 3"}))
        .await;
    let done = h
        .wait_status(e["id"].as_str().expect("id"), &["failed", "succeeded"])
        .await;
    assert_eq!(
        (
            done["result"]["return_code"].clone(),
            done["result"]["stderr"].clone()
        ),
        (json!(3), json!("oops"))
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn pause_resume_and_workflow_children() {
    let h = start_with(EmulatorOptions {
        step: Duration::from_millis(30),
        ..EmulatorOptions::default()
    })
    .await;
    let local = h.run("core.local", json!({"cmd": "sleep 30"})).await;
    let lid = local["id"].as_str().expect("id");
    let r = h
        .req(Method::PUT, &format!("/api/v1/executions/{lid}"))
        .json(&json!({"status": "pausing"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["faultstring"],
        format!(
            "Failed updating execution. Unable to pause liveaction \"{}\" because it is not supported by the \"local-shell-cmd\" runner.",
            local["liveaction"]["id"].as_str().expect("la")
        )
    );

    let wf = h
        .run("examples.orquesta-sequential", json!({"name": "Rusty"}))
        .await;
    let id = wf["id"].as_str().expect("id");
    h.wait_status(id, &["running"]).await;
    let r = h
        .req(Method::PUT, &format!("/api/v1/executions/{id}"))
        .json(&json!({"status": "pausing"}))
        .send()
        .await
        .expect("request");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "pausing");
    assert_eq!(v["context"]["paused_by"], "st2admin");
    h.wait_status(id, &["paused"]).await;
    let r = h
        .req(Method::PUT, &format!("/api/v1/executions/{id}"))
        .json(&json!({"status": "resuming"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "resuming");
    let done = h.wait_status(id, &["succeeded", "failed"]).await;
    let statuses = log_statuses(&done);
    assert!(
        statuses
            .windows(3)
            .any(|w| w == ["pausing", "paused", "resuming"]),
        "{statuses:?}"
    );
    assert!(
        done.get("children").is_none(),
        "st2 leaves children off the workflow"
    );

    let (_, children) = h
        .get_json(&format!("/api/v1/executions/{id}/children"))
        .await;
    let children = children.as_array().expect("array");
    assert_eq!(children.len(), 3);
    for (i, c) in children.iter().enumerate() {
        assert_eq!(c["parent"], id);
        assert_eq!(c["context"]["parent"]["execution_id"], id);
        assert_eq!(
            c["context"]["orquesta"]["task_name"],
            format!("task{}", i + 1)
        );
        assert_eq!(
            c["workflow_execution"],
            done["context"]["workflow_execution"]
        );
        assert_eq!(c["action"]["ref"], "core.echo");
    }
    let (_, v) = h.get_json(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(v["liveaction"]["action_is_workflow"], true);

    let wf2 = h.run("examples.orquesta-sequential", json!({})).await;
    let id2 = wf2["id"].as_str().expect("id");
    let done = h.wait_status(id2, &["succeeded"]).await;
    assert_eq!(
        done["result"],
        json!({"output": {"greeting": "Lakshmi, All your base are belong to us!"}})
    );
    let r = h
        .req(Method::PUT, &format!("/api/v1/executions/{id2}"))
        .json(&json!({"status": "pausing"}))
        .send()
        .await
        .expect("request");
    assert_eq!(
        (
            r.status().as_u16(),
            r.json::<Value>().await.expect("json")["faultstring"].clone()
        ),
        (400, json!("Execution is already in completed state."))
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn re_run_merges_parameters_and_joins_the_trace() {
    let h = start().await;
    let e = h
        .post_json(
            "/api/v1/executions",
            json!({"action": "core.local", "parameters": {"cmd": "echo a", "timeout": 5}, "context": {"trace_context": {"trace_tag": "tag-1"}}}),
        )
        .await
        .1;
    let id = e["id"].as_str().expect("id");
    let (status, rerun) = h
        .post_json(
            &format!("/api/v1/executions/{id}/re_run"),
            json!({"parameters": {"cmd": "echo b"}}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(rerun["parameters"], json!({"cmd": "echo b", "timeout": 5}));
    assert_eq!(rerun["context"]["re-run"]["ref"], id);
    let (_, traces) = h.get_json("/api/v1/traces?trace_tag=tag-1").await;
    assert_eq!(traces.as_array().expect("array").len(), 1);
    assert_eq!(rerun["context"]["trace_context"]["id_"], traces[0]["id"]);
    assert_eq!(
        traces[0]["action_executions"]
            .as_array()
            .expect("components")
            .len(),
        2
    );
    let (status, v) = h
        .post_json(
            &format!("/api/v1/executions/{id}/re_run"),
            json!({"tasks": ["t1"], "parameters": {"cmd": "x"}}),
        )
        .await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (
            400,
            Some("Parameters override is not supported when re-running task(s) for a workflow.")
        )
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn content_webhooks_and_errors() {
    let h = start().await;
    let (status, a) = h.get_json("/api/v1/actions/core.local").await;
    assert_eq!(status, 200);
    assert_eq!(a["uid"], "action:core:local");
    let (_, by_id) = h
        .get_json(&format!(
            "/api/v1/actions/{}",
            a["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(by_id["ref"], "core.local");
    let (status, v) = h.get_json("/api/v1/actions/core.doesnotexist").await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (
            404,
            Some("Resource with a reference or id \"core.doesnotexist\" not found")
        )
    );
    let (_, v) = h
        .get_json("/api/v1/actions/views/parameters/core.local")
        .await;
    assert_eq!(
        v["parameters"]["sudo"],
        json!({"default": false, "description": "The command will be executed with sudo.", "immutable": true, "type": "boolean"})
    );
    assert_eq!(v["parameters"]["cmd"]["required"], true);
    let (_, v) = h.get_json("/api/v1/runnertypes/orquesta").await;
    assert_eq!(v["output_key"], "output");
    let r = h
        .req(Method::GET, "/api/v1/packs?limit=1")
        .send()
        .await
        .expect("request");
    assert_eq!(r.headers()["x-total-count"], "2");
    let (_, v) = h.get_json("/api/v1/packs/core").await;
    assert_eq!(v["uid"], "pack:core");

    // The `st2` hook fires only trigger types that exist, as on st2.
    let (status, _) = h
        .post_json(
            "/api/v1/triggertypes",
            json!({"pack": "mypack", "name": "t"}),
        )
        .await;
    assert_eq!(status, 201);
    let r = h
        .req(Method::POST, "/api/v1/webhooks/st2")
        .header("St2-Trace-Tag", "wh-1")
        .json(&json!({"trigger": "mypack.t", "payload": {"a": 1}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"trigger": "mypack.t", "payload": {"a": 1}})
    );
    let (_, v) = h.get_json("/api/v1/traces?trace_tag=wh-1").await;
    assert_eq!(v[0]["trigger_instances"][0]["ref"], "mypack.t");
    let (status, v) = h
        .post_json("/api/v1/webhooks/st2", json!({"payload": {}}))
        .await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (400, Some("Trigger not specified."))
    );
    let (status, v) = h.post_json("/api/v1/webhooks/st2", json!([1])).await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (400, Some("Webhook body needs to be an object, got: array"))
    );
    let (status, v) = h.post_json("/api/v1/webhooks/custom", json!({})).await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (404, Some("Webhook custom not registered with st2"))
    );

    let r = h
        .http
        .get(h.url("/api/v1/nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404, "routing comes before auth");
    assert_eq!(
        r.json::<Value>().await.expect("json"),
        json!({"faultstring": "The resource could not be found."})
    );
    let r = h
        .req(Method::PATCH, "/api/v1/executions")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    let r = h
        .http
        .request(Method::OPTIONS, h.url("/api/v1/executions"))
        .header("Origin", "http://ui.example")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://ui.example"
    );
    let r = h
        .req(Method::GET, "/api/v1/")
        .header("X-Request-ID", "req-42")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "trailing slash is accepted");
    assert_eq!(r.headers()["x-request-id"], "req-42");
    assert_eq!(
        r.headers()["access-control-expose-headers"],
        "Content-Type,X-Limit,X-Total-Count,X-Request-ID"
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn canceling_a_workflow_cancels_its_running_task() {
    let h = start_with(EmulatorOptions {
        step: Duration::from_millis(30),
        ..EmulatorOptions::default()
    })
    .await;
    let mut creates = h
        .sse("/stream/v1/stream?events=st2.execution__create&action_refs=core.echo")
        .await;
    let wf = h.run("examples.orquesta-sequential", json!({})).await;
    let id = wf["id"].as_str().expect("id");
    let first = creates.next_event().await.expect("first task created");
    let child: Value = serde_json::from_str(&first.data).expect("json");
    let child_id = child["id"].as_str().expect("id");
    assert_eq!(child["parent"], id);
    let r = h
        .req(Method::DELETE, &format!("/api/v1/executions/{id}"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.json::<Value>().await.expect("json")["status"],
        "canceling"
    );
    let done = h
        .wait_status(id, &["canceled", "succeeded", "failed"])
        .await;
    assert_eq!(done["status"], "canceled");
    let (_, c) = h.get_json(&format!("/api/v1/executions/{child_id}")).await;
    assert!(
        ["canceled", "succeeded"].contains(&c["status"].as_str().expect("status")),
        "{}",
        c["status"]
    );
    let (_, children) = h
        .get_json(&format!("/api/v1/executions/{id}/children"))
        .await;
    assert!(
        children.as_array().expect("children").len() < 3,
        "no task starts after the cancel"
    );

    let delayed = h
        .post_json(
            "/api/v1/executions",
            json!({"action": "core.noop", "delay": 30}),
        )
        .await
        .1;
    let done = h
        .wait_status(delayed["id"].as_str().expect("id"), &["succeeded"])
        .await;
    assert_eq!(
        log_statuses(&done),
        vec!["requested", "delayed", "scheduled", "running", "succeeded"]
    );
    assert_eq!(done["delay"], 30);
    h.emu.shutdown().await;
}
