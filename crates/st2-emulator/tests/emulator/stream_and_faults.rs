//! SSE framing and filters, the output stream's EOF, fault switches (in process and over the
//! `/_emulator` routes), restart and the request log.

use std::time::{Duration, Instant};

use crate::support::{KEY, start, start_with};
use reqwest::Method;
use serde_json::{Value, json};
use st2_emulator::EmulatorOptions;

#[tokio::test]
async fn event_stream_framing_headers_and_default_filter() {
    let h = start().await;
    let mut sse = h.sse("/stream/v1/stream").await;
    assert_eq!(
        sse.headers["content-type"],
        "text/event-stream; charset=UTF-8"
    );
    assert_eq!(sse.headers["cache-control"], "no-cache");
    assert_eq!(sse.headers["x-accel-buffering"], "no");
    let e = h
        .run("examples.output", json!({"lines": 2, "interval_ms": 5}))
        .await;
    let id = e["id"].as_str().expect("id").to_string();
    let mut names = Vec::new();
    loop {
        let f = sse.next_event().await.expect("event");
        let body: Value = serde_json::from_str(&f.data).expect("one-line json");
        names.push(f.event.clone());
        if f.event == "st2.liveaction__update" {
            assert!(
                body["result"].is_string(),
                "liveaction result is a JSON-encoded string"
            );
        }
        if f.event == "st2.execution__update" && body["status"] == "succeeded" {
            assert_eq!(body["id"], id.as_str());
            break;
        }
    }
    assert!(
        sse.raw
            .starts_with("\nevent: st2.liveaction__create\ndata: {"),
        "{:?}",
        &sse.raw[..40]
    );
    assert!(!sse.raw.contains("id:") && !sse.raw.contains("retry:"));
    assert_eq!(
        names[..2],
        ["st2.liveaction__create", "st2.execution__create"]
    );
    assert!(
        !names.iter().any(|n| n.contains("output")),
        "output events need events="
    );
    h.emu.shutdown().await;
}

#[tokio::test]
async fn stream_filters_and_end_event() {
    let h = start().await;
    let mut output_events = h
        .sse("/stream/v1/stream?events=st2.execution.output__create")
        .await;
    let mut echo_only = h.sse("/stream/v1/stream?action_refs=core.echo").await;
    let noop = h.run("core.noop", json!({})).await;
    let echo = h.run("core.echo", json!({"message": "x"})).await;
    let echo_id = echo["id"].as_str().expect("id");
    let mut by_id = h
        .sse(&format!("/stream/v1/stream?execution_ids={echo_id}&end_event=st2.execution__update&end_execution_id={echo_id}"))
        .await;
    let mut seen = Vec::new();
    while let Some(f) = by_id.next_event().await {
        seen.push(f.event);
    }
    assert!(
        seen.iter().all(|n| n == "st2.execution__update"),
        "execution_ids drops liveaction events: {seen:?}"
    );
    assert!(by_id.raw.ends_with("\n\n"));
    let last: Value =
        serde_json::from_str(by_id.raw.trim_end().rsplit("data: ").next().expect("data"))
            .expect("json");
    assert_eq!(
        last["status"], "succeeded",
        "the end event is sent, then the stream closes"
    );

    let f = output_events.next_event().await.expect("output event");
    assert_eq!(f.event, "st2.execution.output__create");
    let out: Value = serde_json::from_str(&f.data).expect("json");
    assert_eq!(
        (
            out["execution_id"].as_str(),
            out["data"].as_str(),
            out["output_type"].as_str()
        ),
        (Some(echo_id), Some("x\n"), Some("stdout"))
    );
    assert_eq!(out["action_ref"], "core.echo");
    loop {
        let f = echo_only.next_event().await.expect("event");
        let body: Value = serde_json::from_str(&f.data).expect("json");
        let action = if body["action"].is_string() {
            body["action"].clone()
        } else {
            body["action"]["ref"].clone()
        };
        assert_eq!(action, "core.echo", "noop {} filtered out", noop["id"]);
        if f.event == "st2.execution__update" && body["status"] == "succeeded" {
            break;
        }
    }
    h.emu.shutdown().await;
}

#[tokio::test]
async fn heartbeat_on_connect_and_when_idle() {
    let h = start_with(EmulatorOptions {
        heartbeat: Duration::from_millis(200),
        ..EmulatorOptions::default()
    })
    .await;
    let mut sse = h.sse("/stream/v1/stream").await;
    while sse.raw.len() < 2 {
        assert!(sse.pull().await.expect("open"));
    }
    assert_eq!(
        sse.raw, "\n\n",
        "one newline on connect, one after an idle heartbeat interval"
    );
    h.emu.faults().silence_streams(true);
    // Silence is what is under test: nothing may arrive during several heartbeat intervals.
    let quiet = tokio::time::timeout(Duration::from_millis(700), sse.pull()).await;
    assert!(quiet.is_err(), "a silenced stream sends no heartbeat");
    h.emu.faults().silence_streams(false);
    assert!(sse.pull().await.expect("open"));
    assert_eq!(sse.raw, "\n\n\n");
    h.emu.faults().cut_streams();
    assert!(!sse.read_to_end().await, "a cut stream ends abruptly");
    h.emu.shutdown().await;
}

#[tokio::test]
async fn output_stream_replays_follows_and_ends_with_eof() {
    let h = start().await;
    let e = h
        .run("examples.output", json!({"lines": 3, "interval_ms": 60}))
        .await;
    let id = e["id"].as_str().expect("id");
    let mut live = h.sse(&format!("/stream/v1/executions/{id}/output")).await;
    assert!(live.read_to_end().await);
    let frames: Vec<&str> = live.raw.split("\n\n").filter(|f| !f.is_empty()).collect();
    assert_eq!(frames.len(), 4, "{}", live.raw);
    assert!(
        frames[..3]
            .iter()
            .all(|f| f.starts_with("event: st2.execution.output__create\ndata: {"))
    );
    assert_eq!(frames[3], "event: EOF\ndata: ''");
    let datas: Vec<String> = frames[..3]
        .iter()
        .map(|f| {
            serde_json::from_str::<Value>(&f["event: st2.execution.output__create\ndata: ".len()..])
                .expect("json")["data"]
                .as_str()
                .expect("data")
                .to_string()
        })
        .collect();
    assert_eq!(datas, vec!["line 1\n", "line 2\n", "line 3\n"]);

    let mut replay = h
        .sse(&format!(
            "/stream/v1/executions/{id}/output?output_type=stdout"
        ))
        .await;
    assert!(replay.read_to_end().await);
    assert_eq!(
        replay.raw, live.raw,
        "a completed execution replays its output, then EOF"
    );
    let mut none = h
        .sse(&format!(
            "/stream/v1/executions/{id}/output?output_type=stderr"
        ))
        .await;
    assert!(none.read_to_end().await);
    assert_eq!(none.raw, "event: EOF\ndata: ''\n\n");
    let text = h
        .req(Method::GET, &format!("/api/v1/executions/{id}/output"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert_eq!(text, "line 1\nline 2\nline 3\n");
    h.emu.shutdown().await;
}

#[tokio::test]
async fn fault_switches_in_process() {
    let h = start().await;
    let faults = h.emu.faults();
    faults.fail_next(503, 2);
    for _ in 0..2 {
        let r = h
            .req(Method::GET, "/api/v1/actions")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(
            r.json::<Value>().await.expect("json"),
            json!({"faultstring": "Service Unavailable"})
        );
    }
    assert_eq!(h.status(Method::GET, "/api/v1/actions").await, 200);

    faults.fail_next_on("POST", "/api/v1/executions", 429, 1);
    assert_eq!(h.status(Method::GET, "/api/v1/executions").await, 200);
    let r = h
        .req(Method::POST, "/api/v1/executions")
        .json(&json!({"action": "core.noop"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");

    faults.fail_ratio(500, 1.0);
    assert_eq!(h.status(Method::GET, "/api/v1").await, 500);
    faults.clear();
    assert_eq!(h.status(Method::GET, "/api/v1").await, 200);

    faults.drop_next(1);
    assert!(
        h.req(Method::GET, "/api/v1/actions").send().await.is_err(),
        "dropped connection, no response"
    );
    let log = h.emu.request_log();
    let dropped = log.last().expect("logged");
    assert_eq!(
        (dropped.path.as_str(), dropped.status),
        ("/api/v1/actions", 0)
    );

    faults.drop_ratio(1.0);
    assert!(h.req(Method::GET, "/api/v1").send().await.is_err());
    faults.clear();

    faults.delay(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(h.status(Method::GET, "/api/v1").await, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
    faults.clear();
    h.emu.shutdown().await;
}

#[tokio::test]
async fn control_routes_restart_and_request_log() {
    let h = start().await;
    let ctl = |path: &str| h.http.post(h.url(path)).header("St2-Api-Key", KEY);
    let r = h
        .http
        .post(h.url("/_emulator/faults"))
        .json(&json!({"clear": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401, "control routes need the API key");
    let r = ctl("/_emulator/faults")
        .json(&json!({"fail_next": {"status": 502, "count": 1}}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 204);
    assert_eq!(h.status(Method::GET, "/api/v1").await, 502);
    assert_eq!(h.status(Method::GET, "/api/v1").await, 200);

    let r = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("Ch@ngeMe"))
        .send()
        .await
        .expect("request");
    let token = r.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("token")
        .to_string();
    let e = h.run("core.local", json!({"cmd": "sleep 0.5"})).await;
    let id = e["id"].as_str().expect("id").to_string();
    let mut sse = h.sse("/stream/v1/stream").await;
    assert_eq!(
        ctl("/_emulator/restart")
            .send()
            .await
            .expect("request")
            .status(),
        204
    );
    // Returns only when the stream ends (a silent open stream would hit the wait bound and fail).
    sse.read_to_end().await;
    // The listener comes back on the same port; a fresh client avoids pooled dead connections.
    let fresh = reqwest::Client::new();
    let r = fresh
        .get(h.url("/api/v1"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("listening again");
    assert_eq!(r.status(), 200, "tokens survive a restart");
    let h2 = crate::support::Harness {
        emu: h.emu,
        http: fresh,
    };
    let done = h2.wait_status(&id, &["succeeded", "failed"]).await;
    assert_eq!(
        done["status"], "succeeded",
        "in-flight executions keep moving across a restart"
    );

    assert_eq!(
        h2.http
            .post(h2.url("/_emulator/revoke_tokens"))
            .header("St2-Api-Key", KEY)
            .send()
            .await
            .expect("request")
            .status(),
        204
    );
    let r = h2
        .http
        .get(h2.url("/api/v1"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let log: Vec<Value> = h2
        .http
        .get(h2.url("/_emulator/requests"))
        .header("St2-Api-Key", KEY)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(
        log.iter()
            .any(|r| r["path"] == "/api/v1" && r["status"] == 502)
    );
    assert!(
        log.iter()
            .all(|r| !r["path"].as_str().expect("path").starts_with("/_emulator"))
    );
    h2.emu.restart().await;
    let r = reqwest::Client::new()
        .get(h2.url("/api/v1"))
        .header("St2-Api-Key", KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "in-process restart re-binds too");
    h2.emu.shutdown().await;
}
