//! Contract: the emulator answers the requests recorded in `shared/reference/st2/captures/`
//! the way the real st2 did — status code, the headers that matter, error text to the letter,
//! body shape (keys, types, nesting) and SSE framing.
//!
//! Captures not reproduced here, and why: keys/apikeys/inquiries/rules/ruleenforcements/
//! triggertypes (the emulator does not serve the datastore, API-key management, inquiries or
//! rules yet); orquesta-basic and core.uuid bodies (actions not in the default catalogue;
//! `examples.orquesta-sequential` covers workflows); `auth-token-validate*` (st2 itself answers
//! 404/401 there, nothing to emulate beyond the router's 404).

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use st2_emulator::{Emulator, EmulatorOptions};
use support::openapi::Spec;
use support::{Capture, capture, shape_diff};

const KEY: &str = "contract-key";

/// Data-dependent subtrees: their keys depend on the command run, the host, or the action's
/// own definition, not on the API's contract.
const FREE: &[&str] = &[".result", ".liveaction.runner_info", ".runner_info"];

struct Harness {
    emu: Emulator,
    http: reqwest::Client,
}

impl Harness {
    async fn new() -> Self {
        let emu = Emulator::start(EmulatorOptions {
            api_key: KEY.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        Self {
            emu,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.base_url())
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).header("St2-Api-Key", KEY)
    }

    fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("St2-Api-Key", KEY)
            .json(&body)
    }

    async fn wait_status(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let body: Value = self
                .get(&format!("/api/v1/executions/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if body["status"] == want {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Asserts status, st2's standard headers, and (for JSON) the body shape or exact error text.
async fn assert_like(name: &str, method: &str, st2: &Capture, resp: reqwest::Response) -> Value {
    assert_eq!(resp.status().as_u16(), st2.status, "{name}: status");
    let path = resp.url().path().to_string();
    let headers = resp.headers().clone();
    for h in [
        "content-type",
        "x-request-id",
        "access-control-allow-origin",
        "access-control-expose-headers",
        "x-total-count",
        "x-limit",
        "x-api-url",
    ] {
        assert_eq!(
            st2.header(h).is_some(),
            headers.contains_key(h),
            "{name}: header {h} presence (st2: {:?})",
            st2.header(h)
        );
    }
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        st2.header("content-type").unwrap(),
        "{name}: content type"
    );
    let body: Value = resp.json().await.unwrap();
    let spec = Spec::load();
    let schema = spec
        .response_schema(method, &path, st2.status)
        .unwrap_or_else(|| panic!("{name}: st2's spec declares {method} {path}"));
    let violations = spec.validate(&schema, &body);
    assert!(
        violations.is_empty(),
        "{name}: against st2's spec:\n{}",
        violations.join("\n")
    );
    let want = st2.json();
    if want.get("faultstring").is_some() {
        assert_eq!(body, want, "{name}: error body");
    } else {
        let diff = shape_diff(&want, &body, FREE);
        assert!(
            diff.is_empty(),
            "{name}: shape differs:\n{}",
            diff.join("\n")
        );
    }
    body
}

#[tokio::test]
async fn auth_failures_match_st2() {
    let h = Harness::new().await;
    let resp = h
        .http
        .get(h.url("/api/v1/executions"))
        .send()
        .await
        .unwrap();
    assert_like("api-no-token", "GET", &capture("api-no-token.http"), resp).await;
    let resp = h
        .http
        .get(h.url("/api/v1/executions"))
        .header("X-Auth-Token", "nope")
        .send()
        .await
        .unwrap();
    assert_like("api-bad-token", "GET", &capture("api-bad-token.http"), resp).await;
    let resp = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_like(
        "auth-token-bad-password",
        "POST",
        &capture("auth-token-bad-password.http"),
        resp,
    )
    .await;
}

#[tokio::test]
async fn token_creation_and_token_auth_match_st2() {
    let h = Harness::new().await;
    let resp = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("Ch@ngeMe"))
        .send()
        .await
        .unwrap();
    let token = assert_like(
        "auth-token-post",
        "POST",
        &capture("auth-token-post.http"),
        resp,
    )
    .await;
    let token = token["token"].as_str().unwrap();
    let resp = h
        .http
        .get(h.url("/api/v1/executions?limit=2"))
        .header("X-Auth-Token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get("set-cookie").is_some_and(|c| c
            .to_str()
            .unwrap()
            .starts_with(&format!("auth-token={token}"))),
        "st2 sets the auth-token cookie after token auth"
    );
}

#[tokio::test]
async fn execution_lifecycle_bodies_match_st2() {
    let h = Harness::new().await;
    let resp = h
        .post(
            "/api/v1/executions",
            json!({"action": "core.local", "parameters": {"cmd": "echo hi"}}),
        )
        .send()
        .await
        .unwrap();
    let created = assert_like(
        "execution-post-core-local",
        "POST",
        &capture("execution-post-core-local.http"),
        resp,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_ne!(created["liveaction"]["id"], created["id"]);
    h.wait_status(id, "succeeded").await;
    let resp = h
        .get(&format!("/api/v1/executions/{id}"))
        .send()
        .await
        .unwrap();
    let done = assert_like(
        "execution-get-core-local-succeeded",
        "GET",
        &capture("execution-get-core-local-succeeded.http"),
        resp,
    )
    .await;
    assert_eq!(done["result"]["stdout"], "hi");
    let st2_result = capture("execution-get-core-local-succeeded.http").json()["result"].clone();
    assert!(
        shape_diff(&st2_result, &done["result"], &[]).is_empty(),
        "a shell runner's result has st2's keys"
    );

    let resp = h
        .post(
            "/api/v1/executions",
            json!({"action": "core.local", "parameters": {"cmd": "sleep 30"}}),
        )
        .send()
        .await
        .unwrap();
    let sleeping: Value = resp.json().await.unwrap();
    let sid = sleeping["id"].as_str().unwrap();
    h.wait_status(sid, "running").await;
    let resp = h
        .http
        .delete(h.url(&format!("/api/v1/executions/{sid}")))
        .header("St2-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    let canceled = assert_like(
        "execution-delete-cancel",
        "DELETE",
        &capture("execution-delete-cancel.http"),
        resp,
    )
    .await;
    assert_eq!(canceled["status"], "canceling");
    assert_eq!(canceled["result"]["message"], "Action canceled by user.");
}

#[tokio::test]
async fn execution_errors_match_st2_to_the_letter() {
    let h = Harness::new().await;
    let cases = [
        (
            "execution-post-missing-action.http",
            json!({"action": "core.nope", "parameters": {}}),
        ),
        (
            "execution-post-missing-required-param.http",
            json!({"action": "core.local", "parameters": {}}),
        ),
        (
            "execution-post-bad-param-type.http",
            json!({"action": "core.local", "parameters": {"cmd": "echo", "timeout": "abc"}}),
        ),
    ];
    for (name, body) in cases {
        let resp = h.post("/api/v1/executions", body).send().await.unwrap();
        assert_like(name, "POST", &capture(name), resp).await;
    }
    let resp = h.get("/api/v1/executions/notanid").send().await.unwrap();
    assert_like(
        "execution-get-badid",
        "GET",
        &capture("execution-get-badid.http"),
        resp,
    )
    .await;
    let resp = h
        .get("/api/v1/actions/core.doesnotexist")
        .send()
        .await
        .unwrap();
    assert_like(
        "action-get-missing",
        "GET",
        &capture("action-get-missing.http"),
        resp,
    )
    .await;
}

#[tokio::test]
async fn lists_carry_st2s_pagination_headers_and_shapes() {
    let h = Harness::new().await;
    // st2's recording lists the two newest executions of a finished orquesta run: its
    // last two task executions, children of the workflow.
    let resp = h
        .post(
            "/api/v1/executions",
            json!({"action": "examples.orquesta-sequential", "parameters": {}}),
        )
        .send()
        .await
        .unwrap();
    let wf: Value = resp.json().await.unwrap();
    h.wait_status(wf["id"].as_str().unwrap(), "succeeded").await;
    let resp = h.get("/api/v1/executions?limit=2").send().await.unwrap();
    assert_eq!(
        resp.headers()["x-total-count"],
        "4",
        "the workflow and its three tasks"
    );
    assert_eq!(resp.headers()["x-limit"], "2");
    let st2 = capture("executions-list.http");
    let ours = assert_like("executions-list", "GET", &st2, resp).await;
    let ours = ours.as_array().unwrap();
    assert_eq!(ours.len(), 2);
    assert!(
        ours.iter().all(|e| e["parent"] == wf["id"]),
        "newest first: the last tasks"
    );

    let resp = h.get("/api/v1/actions/core.local").send().await.unwrap();
    assert_like(
        "action-get-core-local",
        "GET",
        &capture("action-get-core-local.http"),
        resp,
    )
    .await;
    let resp = h
        .get("/api/v1/actions/views/parameters/core.local")
        .send()
        .await
        .unwrap();
    assert_like(
        "action-view-parameters",
        "GET",
        &capture("action-view-parameters.http"),
        resp,
    )
    .await;
    let resp = h.get("/api/v1/packs").send().await.unwrap();
    assert_like("packs-list", "GET", &capture("packs-list.http"), resp).await;
}

#[tokio::test]
async fn stream_framing_matches_st2_bytes() {
    let h = Harness::new().await;
    let mut stream = h.get("/stream/v1/stream").send().await.unwrap();
    assert_eq!(
        stream.headers()["content-type"],
        "text/event-stream; charset=UTF-8"
    );
    assert_eq!(stream.headers()["cache-control"], "no-cache");
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("a keep-alive on connect")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"\n", "st2 writes one bare newline on connect");

    let resp = h
        .post(
            "/api/v1/executions",
            json!({"action": "core.local", "parameters": {"cmd": "echo hi"}}),
        )
        .send()
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.contains("\"status\":\"succeeded\"") || text.matches("event: ").count() < 8 {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .expect("all events within 10 s")
            .unwrap()
            .expect("stream stays open");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let st2 = support::reference_text("captures/stream-core-local.sse");
    let names = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&text),
        names(&st2),
        "same events for one core.local run"
    );
    for frame in text.split("\n\n").filter(|f| !f.trim().is_empty()) {
        let lines: Vec<&str> = frame.trim_start_matches('\n').lines().collect();
        assert_eq!(lines.len(), 2, "frame is exactly event + data: {frame:?}");
        assert!(lines[0].starts_with("event: st2."));
        let data: Value = serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
        if lines[0].contains("liveaction") {
            assert!(
                data["result"].is_string() || data.get("result").is_none(),
                "liveaction result is a JSON string"
            );
        } else {
            assert!(
                data["id"].is_string(),
                "execution events carry the execution id"
            );
        }
        assert!(!frame.contains("\nid:") && !frame.contains("retry:"));
    }
    assert!(text.contains(&id));
}

/// Reads a whole response body that the server itself ends, bounded by 10 s.
async fn read_to_end(resp: reqwest::Response) -> String {
    let body = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the server ends the stream by itself");
    body.unwrap()
}

#[tokio::test]
async fn output_stream_replays_then_ends_with_st2s_eof_frame() {
    let h = Harness::new().await;
    let resp = h
        .post(
            "/api/v1/executions",
            json!({"action": "examples.output", "parameters": {"lines": 3, "interval_ms": 20}}),
        )
        .send()
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.wait_status(&id, "succeeded").await;
    let resp = h
        .get(&format!("/stream/v1/executions/{id}/output"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=UTF-8"
    );
    let body = read_to_end(resp).await;
    let st2 = support::reference_text("captures/stream-execution-output-endpoint.sse");
    let st2_body = st2.split_once("\r\n\r\n").unwrap().1;
    assert!(
        !body.starts_with('\n'),
        "the output stream sends no keep-alive"
    );
    assert!(body.ends_with("event: EOF\ndata: ''\n\n"), "{body:?}");
    assert!(st2_body.ends_with("event: EOF\ndata: ''\n\n"));
    let frames: Vec<&str> = body.trim_end().split("\n\n").collect();
    assert_eq!(frames.len(), 4, "three output chunks, then EOF: {body:?}");
    let st2_data: Value = serde_json::from_str(
        st2_body
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    for (i, frame) in frames[..3].iter().enumerate() {
        let (event, data) = frame.split_once('\n').unwrap();
        assert_eq!(event, "event: st2.execution.output__create");
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert!(
            shape_diff(&st2_data, &data, &[]).is_empty(),
            "output chunk shape: {data}"
        );
        assert_eq!(data["execution_id"], id.as_str());
        assert_eq!(data["data"], format!("line {}\n", i + 1));
    }
}

#[tokio::test]
async fn filtered_stream_closes_once_the_end_event_arrives() {
    let h = Harness::new().await;
    let resp = h
        .post(
            "/api/v1/executions",
            json!({"action": "core.local", "parameters": {"cmd": "sleep 1"}}),
        )
        .send()
        .await
        .unwrap();
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = h
        .get(&format!(
            "/stream/v1/stream?events=st2.execution__update&execution_ids={id}\
             &end_event=st2.execution__update&end_execution_id={id}"
        ))
        .send()
        .await
        .unwrap();
    let body = read_to_end(resp).await;
    assert!(body.starts_with('\n'), "keep-alive on connect");
    let last = body.trim_end().rsplit("\n\n").next().unwrap();
    let data: Value =
        serde_json::from_str(last.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(
        data["status"], "succeeded",
        "the closing event is the completed one"
    );
    let names: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| *n == "st2.execution__update"),
        "only the filtered event type: {names:?}"
    );
}

#[tokio::test]
async fn idle_stream_sends_a_bare_newline_every_heartbeat() {
    let emu = Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut resp = reqwest::Client::new()
        .get(format!("{}/stream/v1/stream", emu.base_url()))
        .header("St2-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    for n in 0..3 {
        let chunk = tokio::time::timeout(Duration::from_secs(3), resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("keep-alive {n} within 3 s"))
            .unwrap()
            .unwrap();
        assert_eq!(&chunk[..], b"\n", "keep-alive {n} is one bare newline");
    }
}

/// The request behind each capture that has a JSON body, for checking st2 against its spec.
const CAPTURED_ROUTES: &[(&str, &str, &str)] = &[
    ("api-no-token.http", "GET", "/api/v1/executions"),
    ("api-bad-token.http", "GET", "/api/v1/executions"),
    ("auth-token-post.http", "POST", "/auth/v1/tokens"),
    ("auth-token-bad-password.http", "POST", "/auth/v1/tokens"),
    (
        "execution-post-core-local.http",
        "POST",
        "/api/v1/executions",
    ),
    (
        "execution-get-core-local-succeeded.http",
        "GET",
        "/api/v1/executions/x",
    ),
    ("execution-get-badid.http", "GET", "/api/v1/executions/x"),
    (
        "execution-get-include-attrs.http",
        "GET",
        "/api/v1/executions/x",
    ),
    (
        "execution-post-missing-action.http",
        "POST",
        "/api/v1/executions",
    ),
    (
        "execution-post-missing-required-param.http",
        "POST",
        "/api/v1/executions",
    ),
    (
        "execution-post-bad-param-type.http",
        "POST",
        "/api/v1/executions",
    ),
    (
        "execution-delete-cancel.http",
        "DELETE",
        "/api/v1/executions/x",
    ),
    ("execution-put-pausing.http", "PUT", "/api/v1/executions/x"),
    ("execution-put-resuming.http", "PUT", "/api/v1/executions/x"),
    (
        "execution-rerun.http",
        "POST",
        "/api/v1/executions/x/re_run",
    ),
    (
        "execution-children-orquesta.http",
        "GET",
        "/api/v1/executions/x/children",
    ),
    ("executions-list.http", "GET", "/api/v1/executions"),
    (
        "executions-list-exclude-result.http",
        "GET",
        "/api/v1/executions",
    ),
    (
        "executions-list-include-attrs.http",
        "GET",
        "/api/v1/executions",
    ),
    ("action-get-core-local.http", "GET", "/api/v1/actions/x"),
    ("action-get-missing.http", "GET", "/api/v1/actions/x"),
    (
        "action-view-parameters.http",
        "GET",
        "/api/v1/actions/views/parameters/x",
    ),
    ("actions-list-core.http", "GET", "/api/v1/actions"),
    ("packs-list.http", "GET", "/api/v1/packs"),
];

#[test]
fn st2s_recorded_answers_satisfy_its_own_spec() {
    let spec = Spec::load();
    let mut report = Vec::new();
    for (name, method, path) in CAPTURED_ROUTES {
        let c = capture(name);
        let schema = spec
            .response_schema(method, path, c.status)
            .unwrap_or_else(|| panic!("{name}: spec declares {method} {path}"));
        for v in spec.validate(&schema, &c.json()) {
            report.push(format!("{name}: {v}"));
        }
    }
    assert!(
        report.is_empty(),
        "real st2 answers breaking st2's spec:\n{}",
        report.join("\n")
    );
}

#[test]
fn the_spec_validator_rejects_what_st2s_spec_forbids() {
    let spec = Spec::load();
    let schema = spec
        .response_schema("GET", "/api/v1/executions/x", 200)
        .unwrap();
    let good = capture("execution-get-core-local-succeeded.http").json();
    assert_eq!(spec.validate(&schema, &good), Vec::<String>::new());
    let mut bad = good.clone();
    bad["surprise"] = json!(1);
    bad["status"] = json!("timed_out");
    bad["start_timestamp"] = json!("yesterday");
    bad["elapsed_seconds"] = json!("fast");
    let violations = spec.validate(&schema, &bad).join("\n");
    for want in [
        ".surprise: not allowed",
        ".status:",
        ".start_timestamp:",
        ".elapsed_seconds: expected number",
    ] {
        assert!(
            violations.contains(want),
            "{want} missing from:\n{violations}"
        );
    }
}
