//! The st2 client against the st2 emulator over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use portarium_st2::config::St2Config;
use portarium_st2::governance::secrets::Secret;
use portarium_st2::st2::models::OutputType;
use portarium_st2::st2::{
    CancelOutcome, Execution, ExecutionRequest, ExecutionStatus, RerunRequest, St2Client, St2Error,
};
use serde_json::json;
use st2_emulator::{Emulator, EmulatorOptions};

const KEY: &str = "test-api-key";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .expect("emulator starts on 127.0.0.1")
}

fn config(emu: &Emulator) -> St2Config {
    let mut c = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(KEY));
    c.retry.initial_backoff_ms = 10;
    c.retry.max_backoff_ms = 50;
    c
}

fn client(emu: &Emulator) -> St2Client {
    St2Client::from_config(&config(emu)).unwrap()
}

fn run(action: &str, params: serde_json::Value) -> ExecutionRequest {
    let mut r = ExecutionRequest::new(action);
    r.parameters = params.as_object().cloned().unwrap_or_default();
    r
}

/// Polls until the execution reaches a status in `until`, bounded by 10 s.
async fn wait_for(c: &St2Client, id: &str, until: &[ExecutionStatus]) -> Execution {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = c.executions().get(id).send().await.unwrap();
        if e.status.as_ref().is_some_and(|s| until.contains(s)) {
            return e;
        }
        assert!(Instant::now() < deadline, "{id} stuck in {:?}", e.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `action` with `params`, expecting st2 to accept it.
async fn start(c: &St2Client, action: &str, params: serde_json::Value) -> Execution {
    c.executions().create(&run(action, params)).await.unwrap()
}

async fn wait_terminal(c: &St2Client, id: &str) -> Execution {
    let terminal: Vec<ExecutionStatus> = ExecutionStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .cloned()
        .collect();
    wait_for(c, id, &terminal).await
}

#[tokio::test]
async fn run_an_action_and_follow_it_to_success() {
    let emu = emulator().await;
    let c = client(&emu);
    let mut req = run("core.echo", json!({"message": "hello st2"}));
    req.context
        .insert("portarium".into(), json!({"run_id": "run-1"}));
    req.trace_tag = Some("idem-key-1".into());
    let created = c.executions().create(&req).await.unwrap();
    assert_eq!(created.status, Some(ExecutionStatus::Requested));
    assert_eq!(created.action_ref(), Some("core.echo"));
    let done = wait_terminal(&c, &created.id).await;
    assert_eq!(done.status, Some(ExecutionStatus::Succeeded));
    assert_eq!(done.result.as_ref().unwrap()["stdout"], "hello st2");
    let seen: Vec<&str> = done.log.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(seen, ["requested", "scheduled", "running", "succeeded"]);
    assert_eq!(done.context_at("portarium.run_id"), Some(&json!("run-1")));
    assert!(done.end_timestamp.is_some() && done.elapsed_seconds.is_some());

    let traces = c.traces_by_tag("idem-key-1").await.unwrap();
    assert!(
        traces.iter().any(|t| t
            .action_executions
            .iter()
            .any(|a| a.object_id == created.id)),
        "the trace tag finds the execution: {traces:?}"
    );
    let found = c
        .executions()
        .list()
        .filter("context.portarium.run_id", "run-1")
        .send()
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].id, created.id);
}

#[tokio::test]
async fn get_with_include_and_exclude_attributes() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.noop", json!({})).await;
    wait_terminal(&c, &e.id).await;
    let slim = c
        .executions()
        .get(&e.id)
        .include(&["id", "status"])
        .send()
        .await
        .unwrap();
    assert_eq!(slim.id, e.id);
    assert!(slim.status.is_some());
    assert!(slim.log.is_empty(), "log was not asked for");
    let no_status = c
        .executions()
        .get(&e.id)
        .exclude(&["status"])
        .send()
        .await
        .unwrap();
    assert!(no_status.status.is_none());
    let err = c
        .executions()
        .get(&e.id)
        .exclude(&["log"])
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::BadRequest { .. }), "{err}");
}

#[tokio::test]
async fn failures_and_validation_errors_keep_st2s_faultstring() {
    let emu = emulator().await;
    let c = client(&emu);
    let failed = start(&c, "examples.fail", json!({})).await;
    let failed = wait_terminal(&c, &failed.id).await;
    assert_eq!(failed.status, Some(ExecutionStatus::Failed));
    assert!(failed.status.as_ref().unwrap().is_failure());

    let err = c
        .executions()
        .create(&run("core.nope", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(
        err.faultstring(),
        Some("Action \"core.nope\" cannot be found.")
    );
    assert!(!err.is_retry_safe());

    let err = c
        .executions()
        .create(&run("core.local", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.faultstring(), Some("'cmd' is a required property"));

    let err = c.executions().get("notanid").send().await.unwrap_err();
    assert!(matches!(err, St2Error::NotFound { .. }), "{err}");
    assert_eq!(
        err.faultstring(),
        Some("Unable to identify resource with id \"notanid\".")
    );

    let err = c.action("core.doesnotexist").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn list_walks_every_page() {
    let emu = emulator().await;
    let c = client(&emu);
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(start(&c, "core.noop", json!({})).await.id);
    }
    let page = c
        .executions()
        .list()
        .action("core.noop")
        .limit(3)
        .send()
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.total_count, Some(7));
    assert_eq!(page.limit, Some(3));
    let all = c
        .executions()
        .list()
        .action("core.noop")
        .limit(3)
        .all(10)
        .await
        .unwrap();
    let mut got: Vec<String> = all.into_iter().map(|e| e.id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "three pages cover all seven, without repeats");
    let bounded = c
        .executions()
        .list()
        .action("core.noop")
        .limit(3)
        .all(2)
        .await
        .unwrap();
    assert_eq!(bounded.len(), 6, "max_pages bounds the walk");
}

#[tokio::test]
async fn cancel_running_and_completed_executions() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.local", json!({"cmd": "sleep 30"})).await;
    wait_for(&c, &e.id, &[ExecutionStatus::Running]).await;
    match c.executions().cancel(&e.id).await.unwrap() {
        CancelOutcome::Canceled(x) => assert!(matches!(
            x.status,
            Some(ExecutionStatus::Canceling | ExecutionStatus::Canceled)
        )),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert_eq!(
        wait_terminal(&c, &e.id).await.status,
        Some(ExecutionStatus::Canceled)
    );

    let done = start(&c, "core.noop", json!({})).await;
    wait_terminal(&c, &done.id).await;
    match c.executions().cancel(&done.id).await.unwrap() {
        CancelOutcome::AlreadyCompleted { faultstring } => {
            assert_eq!(faultstring, "Action cannot be canceled. State = succeeded.")
        }
        other => panic!("expected AlreadyCompleted, got {other:?}"),
    }
}

#[tokio::test]
async fn timeouts_rerun_and_output() {
    let emu = emulator().await;
    let c = client(&emu);
    let slow = start(&c, "core.local", json!({"cmd": "sleep 5", "timeout": 1})).await;
    assert_eq!(
        wait_terminal(&c, &slow.id).await.status,
        Some(ExecutionStatus::Timeout)
    );

    let first = start(&c, "core.echo", json!({"message": "one"})).await;
    wait_terminal(&c, &first.id).await;
    let mut rerun = RerunRequest::default();
    rerun.parameters.insert("message".into(), json!("two"));
    let second = c.executions().rerun(&first.id, &rerun).await.unwrap();
    assert_ne!(second.id, first.id);
    let second = wait_terminal(&c, &second.id).await;
    assert_eq!(second.result.as_ref().unwrap()["stdout"], "two");
    assert_eq!(second.context_at("re-run.ref"), Some(&json!(first.id)));

    let out = c
        .executions()
        .create(&run(
            "examples.output",
            json!({"lines": 3, "interval_ms": 10}),
        ))
        .await
        .unwrap();
    wait_terminal(&c, &out.id).await;
    let text = c
        .executions()
        .output(&out.id, OutputType::Stdout)
        .await
        .unwrap();
    assert_eq!(text, "line 1\nline 2\nline 3\n");
    assert_eq!(
        c.executions()
            .output(&out.id, OutputType::Stderr)
            .await
            .unwrap(),
        ""
    );
}

#[tokio::test]
async fn workflow_children_pause_and_resume() {
    let emu = emulator().await;
    let c = client(&emu);
    let wf = start(&c, "examples.orquesta-sequential", json!({})).await;
    wait_for(&c, &wf.id, &[ExecutionStatus::Running]).await;
    let paused = c.executions().pause(&wf.id).await.unwrap();
    assert!(matches!(
        paused.status,
        Some(ExecutionStatus::Pausing | ExecutionStatus::Paused)
    ));
    wait_for(&c, &wf.id, &[ExecutionStatus::Paused]).await;
    let resumed = c.executions().resume(&wf.id).await.unwrap();
    assert!(matches!(
        resumed.status,
        Some(ExecutionStatus::Resuming | ExecutionStatus::Running)
    ));
    let done = wait_terminal(&c, &wf.id).await;
    assert_eq!(done.status, Some(ExecutionStatus::Succeeded));
    let children = c.executions().children(&wf.id, -1).await.unwrap();
    assert_eq!(children.len(), 3);
    assert!(
        children
            .iter()
            .all(|ch| ch.parent.as_deref() == Some(wf.id.as_str()))
    );

    let plain = start(&c, "core.local", json!({"cmd": "sleep 2"})).await;
    wait_for(&c, &plain.id, &[ExecutionStatus::Running]).await;
    let err = c.executions().pause(&plain.id).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "only workflows pause: {err}");
}

#[tokio::test]
async fn actions_packs_and_webhooks() {
    let emu = emulator().await;
    let c = client(&emu);
    let action = c.action("core.local").await.unwrap();
    assert_eq!(action.runner_type.as_deref(), Some("local-shell-cmd"));
    let params = c.action_parameters("core.local").await.unwrap();
    assert!(params.parameters["cmd"].required);
    assert!(params.parameters["sudo"].immutable);
    assert!(params.parameters["sudo_password"].secret);
    let secret = c.action_parameters("examples.secret").await.unwrap();
    assert!(secret.parameters["password"].secret);
    let packs = c.packs().await.unwrap();
    assert!(packs.iter().any(|p| p.r#ref == "core"));
    assert_eq!(c.pack("examples").await.unwrap().r#ref, "examples");
    c.post_trigger("examples.event", &json!({"a": 1}), Some("tag-1"))
        .await
        .unwrap();
    c.ping().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_are_unauthorized_with_st2s_message() {
    let emu = emulator().await;
    let mut cfg = config(&emu);
    cfg.api_key = Some(Secret::from_value("wrong"));
    let err = St2Client::from_config(&cfg)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::Unauthorized { .. }), "{err}");
    let fault = err.faultstring().unwrap();
    assert!(fault.starts_with("Unauthorized"), "{fault}");
    assert!(
        !err.to_string().contains("wrong"),
        "the refused key never shows: {err}"
    );

    let cfg = St2Config::with_password(
        emu.base_url().parse().unwrap(),
        "st2admin",
        Secret::from_value("not-the-password"),
    );
    let err = St2Client::from_config(&cfg)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert_eq!(err.faultstring(), Some("Invalid or missing credentials"));
}

fn token_requests(emu: &Emulator) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/auth/v1/tokens"))
        .count()
}

#[tokio::test]
async fn tokens_are_renewed_before_expiry_and_after_revocation() {
    let emu = emulator().await;
    let mut cfg = St2Config::with_password(
        emu.base_url().parse().unwrap(),
        "st2admin",
        Secret::from_value("Ch@ngeMe"),
    );
    cfg.token_ttl_secs = Some(3);
    cfg.token_renew_before_secs = 2;
    let c = St2Client::from_config(&cfg).unwrap();
    // Concurrent first calls share one token request.
    let calls: Vec<_> = (0..8).map(|_| c.ping()).collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(token_requests(&emu), 1);
    c.ping().await.unwrap();
    assert_eq!(token_requests(&emu), 1, "a fresh token is reused");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    c.ping().await.unwrap();
    assert_eq!(token_requests(&emu), 2, "renewed inside the renewal window");
    emu.revoke_tokens();
    c.ping().await.unwrap();
    assert_eq!(
        token_requests(&emu),
        3,
        "one transparent re-auth after a 401"
    );
}

#[tokio::test]
async fn safe_calls_are_retried_through_faults_and_creates_are_not() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.noop", json!({})).await;

    emu.faults().fail_next(503, 2);
    c.executions()
        .get(&e.id)
        .send()
        .await
        .expect("GET retried past two 503s");

    emu.faults().drop_next(1);
    c.executions()
        .get(&e.id)
        .send()
        .await
        .expect("GET retried past a dropped connection");

    emu.faults().fail_next(429, 1);
    let started = Instant::now();
    c.executions().get(&e.id).send().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "Retry-After honoured up to the backoff cap"
    );

    let before = emu.request_log().len();
    emu.faults().fail_next(503, 1);
    let err = c
        .executions()
        .create(&run("core.noop", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::Server { status: 503, .. }), "{err}");
    assert_eq!(
        emu.request_log().len(),
        before + 1,
        "a create is sent exactly once"
    );
    assert!(
        !err.is_retry_safe(),
        "a failed create is not safe to repeat"
    );

    emu.faults().fail_next(500, 4);
    let err = c.executions().get(&e.id).send().await.unwrap_err();
    assert_eq!(err.status(), Some(500), "500 is not retried: {err}");
    emu.faults().clear();
}

#[tokio::test]
async fn deadlines_and_the_concurrency_limit_hold() {
    let emu = emulator().await;
    let mut cfg = config(&emu);
    cfg.request_timeout_ms = 100;
    cfg.retry.max_retries = 0;
    let c = St2Client::from_config(&cfg).unwrap();
    emu.faults().delay(Duration::from_millis(400));
    let err = c.ping().await.unwrap_err();
    assert!(matches!(err, St2Error::Timeout { .. }), "{err}");
    assert!(err.is_retry_safe(), "a timed-out read may be repeated");

    emu.faults().delay(Duration::from_millis(100));
    let mut cfg = config(&emu);
    cfg.max_concurrency = 2;
    let c = St2Client::from_config(&cfg).unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..6).map(|_| c.ping()).collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    // Six calls of >=100 ms, two at a time, cannot finish in less than three rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    emu.faults().clear();
}

#[tokio::test]
async fn executions_survive_an_emulator_restart_and_streams_are_cut() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.local", json!({"cmd": "sleep 1"})).await;
    let mut stream = reqwest::Client::new()
        .get(format!("{}/stream/v1/stream", emu.base_url()))
        .header("St2-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(&stream.chunk().await.unwrap().unwrap()[..], b"\n");
    emu.restart().await;
    assert!(
        until_closed(&mut stream).await,
        "a restart ends open streams"
    );
    // The client reconnects on its own (retry on connect errors) and finds the execution.
    let done = wait_terminal(&c, &e.id).await;
    assert_eq!(
        done.status,
        Some(ExecutionStatus::Succeeded),
        "progress survived the restart"
    );

    let mut stream = reqwest::Client::new()
        .get(format!("{}/stream/v1/stream", emu.base_url()))
        .header("St2-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(&stream.chunk().await.unwrap().unwrap()[..], b"\n");
    emu.faults().cut_streams();
    assert!(
        until_closed(&mut stream).await,
        "cut_streams ends an open stream"
    );
}

/// Reads until the server ends the response (cleanly or by reset); false after 5 s.
async fn until_closed(stream: &mut reqwest::Response) -> bool {
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn ratio_faults_exhaust_exactly_the_retry_budget_and_scoped_faults_stay_scoped() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.noop", json!({})).await;
    let attempts = |emu: &Emulator, before: usize| emu.request_log().len() - before;

    let before = emu.request_log().len();
    emu.faults().fail_ratio(503, 1.0);
    let err = c.executions().get(&e.id).send().await.unwrap_err();
    assert!(matches!(err, St2Error::Server { status: 503, .. }), "{err}");
    assert_eq!(
        attempts(&emu, before),
        4,
        "one try and max_retries (3) retries"
    );
    emu.faults().clear();

    let before = emu.request_log().len();
    emu.faults().drop_ratio(1.0);
    let err = c.executions().get(&e.id).send().await.unwrap_err();
    assert!(matches!(err, St2Error::Connect { .. }), "{err}");
    assert!(err.is_retry_safe());
    assert_eq!(attempts(&emu, before), 4);
    emu.faults().clear();

    emu.faults()
        .fail_next_on("POST", "/api/v1/executions", 429, 1);
    c.executions()
        .get(&e.id)
        .send()
        .await
        .expect("a GET is outside the fault's scope");
    let err = c
        .executions()
        .create(&run("core.noop", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, St2Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "429 carries st2's Retry-After: {err}"
    );
    start(&c, "core.noop", json!({})).await;
}
