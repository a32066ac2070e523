//! The st2 client against the st2 emulator (and, where a misbehaving server is the point, a
//! tiny stand-in server), over real HTTP on 127.0.0.1.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use st2_client::St2Config;
use st2_client::models::{Notify, NotifyTarget, OutputType};
use st2_client::secret::Secret;
use st2_client::{
    CancelOutcome, Execution, ExecutionRequest, ExecutionStatus, RerunRequest, SortOrder,
    St2Client, St2Error,
};
use st2_emulator::{Emulator, EmulatorOptions};

use crate::support::tls_file;

const KEY: &str = "test-api-key";
const USER: &str = "st2admin";
const PASSWORD: &str = "Ch@ngeMe";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions {
        api_key: KEY.into(),
        ..Default::default()
    })
    .await
    .expect("emulator starts on 127.0.0.1")
}

/// API-key config with short backoffs, so retry tests run fast.
fn config(emu: &Emulator) -> St2Config {
    let mut c = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value(KEY));
    c.retry.backoff.initial = Duration::from_millis(10);
    c.retry.backoff.max = Duration::from_millis(50);
    c
}

fn password_config(emu: &Emulator, password: &str) -> St2Config {
    let mut c = St2Config::with_password(
        emu.base_url().parse().unwrap(),
        USER,
        Secret::from_value(password),
    );
    c.retry.backoff.initial = Duration::from_millis(10);
    c.retry.backoff.max = Duration::from_millis(50);
    c
}

fn client(emu: &Emulator) -> St2Client {
    St2Client::from_config(&config(emu)).unwrap()
}

fn run(action: &str, params: Value) -> ExecutionRequest {
    let mut r = ExecutionRequest::new(action);
    r.parameters = params.as_object().cloned().unwrap_or_default();
    r
}

/// Runs `action` with `params`, expecting st2 to accept it.
async fn start(c: &St2Client, action: &str, params: Value) -> Execution {
    c.executions().create(&run(action, params)).await.unwrap()
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

async fn wait_terminal(c: &St2Client, id: &str) -> Execution {
    let terminal: Vec<ExecutionStatus> = ExecutionStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .cloned()
        .collect();
    wait_for(c, id, &terminal).await
}

/// How many requests the emulator saw for `method` on paths ending in `suffix`.
fn seen(emu: &Emulator, method: &str, suffix: &str) -> usize {
    emu.request_log()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .count()
}

fn token_requests(emu: &Emulator) -> usize {
    seen(emu, "POST", "/auth/v1/tokens")
}

#[tokio::test]
async fn run_an_action_and_find_it_by_context_and_trace_tag() {
    let emu = emulator().await;
    let c = client(&emu);
    let mut req = run("core.echo", json!({"message": "hello st2"}));
    req.context
        .insert("portarium".into(), json!({"run_id": "run-1"}));
    req.trace_tag = Some("idem-key-1".into());
    req.notify = Some(Notify {
        on_complete: Some(NotifyTarget {
            message: Some("done".into()),
            routes: vec!["ops".into()],
            ..NotifyTarget::default()
        }),
        ..Notify::default()
    });
    let created = c.executions().create(&req).await.unwrap();
    assert_eq!(created.status, Some(ExecutionStatus::Requested));
    assert_eq!(created.action_ref(), Some("core.echo"));
    assert_eq!(
        created.context_at("trace_context.trace_tag"),
        Some(&json!("idem-key-1"))
    );
    let done = wait_terminal(&c, &created.id).await;
    assert_eq!(done.status, Some(ExecutionStatus::Succeeded));
    assert_eq!(done.result.as_ref().unwrap()["stdout"], "hello st2");
    let seen: Vec<&str> = done.log.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(seen, ["requested", "scheduled", "running", "succeeded"]);
    assert_eq!(done.context_at("portarium.run_id"), Some(&json!("run-1")));
    assert!(done.end_timestamp.is_some() && done.elapsed_seconds.is_some());

    let traces = c
        .traces()
        .list()
        .trace_tag("idem-key-1")
        .send()
        .await
        .unwrap();
    assert_eq!(traces.items.len(), 1, "{traces:?}");
    assert_eq!(
        traces.items[0].execution_ids().collect::<Vec<_>>(),
        [created.id.as_str()]
    );
    let by_execution = c
        .traces()
        .list()
        .execution(&created.id)
        .send()
        .await
        .unwrap();
    assert_eq!(by_execution.items[0].id, traces.items[0].id);

    let found = c
        .executions()
        .list()
        .filter("context.portarium.run_id", "run-1")
        .filter("action.ref", "core.echo")
        .exclude(&["result"])
        .send()
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].id, created.id);
    assert!(found.items[0].result.is_none(), "result was excluded");

    let err = c
        .executions()
        .list()
        .filter("context.portarium.run_id", "has space")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::InvalidRequest { .. }), "{err}");
}

#[tokio::test]
async fn get_with_include_exclude_and_max_result_size() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.echo", json!({"message": "x".repeat(200)})).await;
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

    let full = c.executions().get(&e.id).send().await.unwrap();
    let size = full.result_size.expect("st2 reports the result size");
    let small = c
        .executions()
        .get(&e.id)
        .max_result_size(size - 1)
        .send()
        .await
        .unwrap();
    assert!(
        small.result.is_none(),
        "a result over the bound is left out"
    );
    let fits = c
        .executions()
        .get(&e.id)
        .max_result_size(size)
        .send()
        .await
        .unwrap();
    assert_eq!(fits.result, full.result);
    let last = c.executions().get("last").send().await.unwrap();
    assert_eq!(last.id, e.id, "`last` is the newest execution");
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
    assert!(matches!(err, St2Error::BadRequest { .. }), "{err}");
    assert_eq!(
        err.faultstring(),
        Some("Action \"core.nope\" cannot be found.")
    );
    assert!(!err.is_retry_safe());
    let call = err.call().unwrap();
    assert_eq!(call.to_string(), "POST /api/v1/executions");

    let err = c
        .executions()
        .create(&run("core.local", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.faultstring(), Some("'cmd' is a required property"));

    let err = c
        .executions()
        .create(&run("examples.disabled", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.faultstring().unwrap().contains("is disabled"), "{err}");

    let err = c.executions().get("notanid").send().await.unwrap_err();
    assert!(matches!(err, St2Error::NotFound { .. }), "{err}");
    assert_eq!(
        err.faultstring(),
        Some("Unable to identify resource with id \"notanid\".")
    );

    let err = c.actions().get("core.doesnotexist").await.unwrap_err();
    assert!(matches!(err, St2Error::NotFound { .. }), "{err}");

    // An id that would change the route is refused before anything is sent.
    let before = emu.request_log().len();
    for bad in ["..", ".", ""] {
        let err = c.executions().get(bad).send().await.unwrap_err();
        assert!(matches!(err, St2Error::InvalidRequest { .. }), "{err}");
    }
    let err = c.executions().cancel("..").await.unwrap_err();
    assert!(matches!(err, St2Error::InvalidRequest { .. }), "{err}");
    assert_eq!(emu.request_log().len(), before);
    // Other odd characters travel percent-encoded inside their one path segment.
    let err = c.executions().get("a/b?c").send().await.unwrap_err();
    assert!(matches!(err, St2Error::NotFound { .. }), "{err}");
    assert_eq!(
        err.faultstring(),
        Some("Unable to identify resource with id \"a/b?c\".")
    );
}

#[tokio::test]
async fn list_filters_and_order() {
    let emu = emulator().await;
    let c = client(&emu);
    let first = start(&c, "core.noop", json!({})).await;
    wait_terminal(&c, &first.id).await;
    let failing = start(&c, "examples.fail", json!({})).await;
    wait_terminal(&c, &failing.id).await;
    let last = start(&c, "core.noop", json!({})).await;
    wait_terminal(&c, &last.id).await;

    let ids = |items: &[Execution]| items.iter().map(|e| e.id.clone()).collect::<Vec<String>>();
    let newest = c
        .executions()
        .list()
        .action("core.noop")
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&newest.items), [last.id.clone(), first.id.clone()]);
    let oldest = c
        .executions()
        .list()
        .action("core.noop")
        .sort(SortOrder::OldestFirst)
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&oldest.items), [first.id.clone(), last.id.clone()]);

    let failed = c
        .executions()
        .list()
        .status(&ExecutionStatus::Failed)
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&failed.items), vec![failing.id.clone()]);
    let mine = c.executions().list().user(USER).send().await.unwrap();
    assert_eq!(mine.total_count, Some(3));
    let nobody = c.executions().list().user("nobody").send().await.unwrap();
    assert!(nobody.items.is_empty());

    let after_first = c
        .executions()
        .list()
        .started_after(first.start_timestamp.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ids(&after_first.items),
        [failing.id.clone(), last.id.clone()]
    );
    let before_last = c
        .executions()
        .list()
        .started_before(last.start_timestamp.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        ids(&before_last.items),
        [failing.id.clone(), first.id.clone()]
    );

    let wf = start(&c, "examples.orquesta-sequential", json!({})).await;
    wait_terminal(&c, &wf.id).await;
    let children = c.executions().list().parent(&wf.id).send().await.unwrap();
    assert_eq!(children.items.len(), 3);
    assert!(
        children
            .items
            .iter()
            .all(|ch| ch.parent.as_deref() == Some(wf.id.as_str()))
    );
}

#[tokio::test]
async fn list_walks_every_page_within_its_bound() {
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
    assert!(page.has_more());
    let second = c
        .executions()
        .list()
        .action("core.noop")
        .limit(3)
        .offset(3)
        .send()
        .await
        .unwrap();
    assert_eq!(second.offset, 3);
    assert!(second.items.iter().all(|e| !page.items.contains(e)));

    let all = c
        .executions()
        .list()
        .action("core.noop")
        .limit(3)
        .all(10)
        .await
        .unwrap();
    assert!(!all.has_more());
    let mut got: Vec<String> = all.items.into_iter().map(|e| e.id).collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids, "three pages cover all seven, without repeats");
    let pages_read = seen(&emu, "GET", "/api/v1/executions");
    assert_eq!(pages_read, 2 + 3, "one request per page");

    let bounded = c
        .executions()
        .list()
        .action("core.noop")
        .limit(3)
        .all(2)
        .await
        .unwrap();
    assert_eq!(bounded.items.len(), 6, "max_pages bounds the walk");
    assert!(bounded.has_more(), "and says that it stopped early");

    let packs = c.packs().list().limit(1).all(10).await.unwrap();
    assert!(packs.items.iter().any(|p| p.r#ref == "core"));
    assert_eq!(Some(packs.items.len() as u64), packs.total_count);
}

#[tokio::test]
async fn cancel_running_and_completed_executions() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.local", json!({"cmd": "sleep 30"})).await;
    wait_for(&c, &e.id, &[ExecutionStatus::Running]).await;
    emu.faults().fail_next(503, 1);
    match c.executions().cancel(&e.id).await.unwrap() {
        CancelOutcome::Canceled(x) => assert!(matches!(
            x.status,
            Some(ExecutionStatus::Canceling | ExecutionStatus::Canceled)
        )),
        other => panic!("expected a cancellation, got {other:?}"),
    }
    assert_eq!(
        seen(&emu, "DELETE", &e.id),
        2,
        "the cancel was retried past a 503"
    );
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
    let same = c
        .executions()
        .rerun(&first.id, &RerunRequest::default())
        .await
        .unwrap();
    assert_eq!(
        same.parameters["message"], "one",
        "original parameters merged in"
    );

    let out = start(
        &c,
        "examples.output",
        json!({"lines": 3, "interval_ms": 10}),
    )
    .await;
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
    assert_eq!(
        c.executions()
            .output(&out.id, OutputType::All)
            .await
            .unwrap(),
        text
    );
}

#[tokio::test]
async fn workflow_children_pause_and_resume() {
    let emu = emulator().await;
    let c = client(&emu);
    let wf = start(&c, "examples.orquesta-sequential", json!({})).await;
    wait_for(&c, &wf.id, &[ExecutionStatus::Running]).await;
    emu.faults().fail_next(503, 1);
    let paused = c.executions().pause(&wf.id).await.unwrap();
    assert!(
        paused
            .status
            .as_ref()
            .is_some_and(ExecutionStatus::is_paused)
    );
    assert_eq!(
        seen(&emu, "PUT", &wf.id),
        2,
        "the pause was retried past a 503"
    );
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
    assert!(
        matches!(err, St2Error::BadRequest { .. }),
        "only workflows pause: {err}"
    );
}

#[tokio::test]
async fn actions_packs_and_webhooks() {
    let emu = emulator().await;
    let c = client(&emu);
    let action = c.actions().get("core.local").await.unwrap();
    assert_eq!(action.r#ref.as_deref(), Some("core.local"));
    assert_eq!(action.runner_type.as_deref(), Some("local-shell-cmd"));
    let params = c.actions().parameters("core.local").await.unwrap();
    assert!(params.parameters["cmd"].required);
    assert!(params.parameters["sudo"].immutable);
    assert!(params.parameters["sudo_password"].secret);
    assert_eq!(params.parameters["timeout"].default, Some(json!(60)));
    let secret = c.action_parameters("examples.secret").await.unwrap();
    assert!(secret.parameters["password"].secret);

    let packs = c.packs().list().send().await.unwrap();
    let refs: Vec<&str> = packs.items.iter().map(|p| p.r#ref.as_str()).collect();
    assert!(
        refs.contains(&"core") && refs.contains(&"examples"),
        "{refs:?}"
    );
    let examples = c.packs().get("examples").await.unwrap();
    assert_eq!(examples.r#ref, "examples");
    assert!(examples.version.is_some());
    let err = c.packs().get("nope").await.unwrap_err();
    assert!(matches!(err, St2Error::NotFound { .. }), "{err}");

    // A stock st2 has no trigger type of a pack's own until someone registers it.
    c.trigger_types()
        .ensure("examples.event", "an event the test fires")
        .await
        .unwrap();
    c.webhooks()
        .trigger("examples.event", &json!({"a": 1}), Some("hook-tag"))
        .await
        .unwrap();
    let traces = c
        .traces()
        .list()
        .trace_tag("hook-tag")
        .send()
        .await
        .unwrap();
    assert_eq!(traces.items.len(), 1);
    assert_eq!(
        traces.items[0].trigger_instances[0].r#ref.as_deref(),
        Some("examples.event"),
        "the trigger instance joined the webhook's trace tag"
    );
    let err = c
        .webhooks()
        .post("sample/hook", &json!({"x": 1}), None)
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::NotFound { .. }), "{err}");
    assert_eq!(
        err.faultstring(),
        Some("Webhook sample/hook not registered with st2")
    );
    assert!(!err.is_retry_safe());
    let err = c
        .webhooks()
        .trigger("examples.event", &json!({}), Some("bad\ntag"))
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::InvalidRequest { .. }), "{err}");
    c.ping().await.unwrap();
}

#[tokio::test]
async fn bad_credentials_are_unauthorized_with_st2s_message_and_never_retried() {
    let emu = emulator().await;
    let mut cfg = config(&emu);
    cfg.api_key = Some(Secret::from_value("wrong-key"));
    let before = emu.request_log().len();
    let err = St2Client::from_config(&cfg)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::Unauthorized { .. }), "{err}");
    assert!(
        err.faultstring().unwrap().starts_with("Unauthorized"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong-key"),
        "the key never shows: {err}"
    );
    assert_eq!(
        emu.request_log().len(),
        before + 1,
        "API-key mode never retries a 401"
    );

    let cfg = password_config(&emu, "not-the-password");
    let err = St2Client::from_config(&cfg)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::Unauthorized { .. }), "{err}");
    assert_eq!(err.faultstring(), Some("Invalid or missing credentials"));
    assert_eq!(err.call().unwrap().to_string(), "POST /auth/v1/tokens");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
    assert_eq!(token_requests(&emu), 1, "a refused login is not repeated");

    let c = client(&emu);
    emu.faults().fail_next_on("GET", "/api/v1/actions", 401, 1);
    let before = emu.request_log().len();
    assert!(matches!(c.ping().await, Err(St2Error::Unauthorized { .. })));
    assert_eq!(emu.request_log().len(), before + 1);
    c.ping().await.unwrap();
}

#[tokio::test]
async fn tokens_are_shared_renewed_before_expiry_and_after_revocation() {
    let emu = emulator().await;
    let mut cfg = password_config(&emu, PASSWORD);
    cfg.token_ttl = Some(Duration::from_secs(3));
    cfg.token_renew_before = Duration::from_secs(2);
    let c = St2Client::from_config(&cfg).unwrap();
    // Concurrent first calls share one token request.
    let calls: Vec<_> = (0..8).map(|_| c.ping()).collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(token_requests(&emu), 1);
    c.ping().await.unwrap();
    assert_eq!(token_requests(&emu), 1, "a fresh token is reused");
    // The token lives 3 s and is renewed 2 s ahead: after 1 s it is due.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let calls: Vec<_> = (0..8).map(|_| c.ping()).collect();
    for r in futures_util::future::join_all(calls).await {
        r.unwrap();
    }
    assert_eq!(
        token_requests(&emu),
        2,
        "renewed once inside the renewal window, however many callers"
    );

    emu.revoke_tokens();
    c.ping().await.unwrap();
    assert_eq!(
        token_requests(&emu),
        3,
        "one transparent re-auth after a 401"
    );

    // A 401 that persists after re-auth is returned, after exactly one more try.
    emu.faults().fail_next_on("GET", "/api/v1/actions", 401, 2);
    let gets = seen(&emu, "GET", "/api/v1/actions");
    let err = c.ping().await.unwrap_err();
    assert!(matches!(err, St2Error::Unauthorized { .. }), "{err}");
    assert_eq!(seen(&emu, "GET", "/api/v1/actions"), gets + 2);
    assert_eq!(token_requests(&emu), 4);
    c.ping().await.unwrap();
}

#[tokio::test]
async fn a_failed_renewal_keeps_the_current_token_until_it_expires() {
    let emu = emulator().await;
    let mut cfg = password_config(&emu, PASSWORD);
    cfg.token_ttl = Some(Duration::from_secs(3));
    cfg.token_renew_before = Duration::from_secs(2);
    // A token request is retried like any safe call; here the renewal fails for good.
    cfg.retry.max_retries = 0;
    let c = St2Client::from_config(&cfg).unwrap();
    c.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // st2auth fails the renewal; the token still has about 1.8 s to live.
    emu.faults().fail_next_on("POST", "/auth/v1/tokens", 503, 1);
    c.ping().await.expect("the current token still works");
    c.ping().await.unwrap();
    assert_eq!(
        token_requests(&emu),
        2,
        "one failed renewal, not one per call"
    );
    let statuses: Vec<u16> = emu
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/auth/v1/tokens"))
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [201, 503]);
    // A quarter of the remaining life later the renewal is tried again, and succeeds.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.ping().await.unwrap();
    assert_eq!(token_requests(&emu), 3);
}

#[tokio::test]
async fn safe_calls_are_retried_through_faults_and_creates_are_not() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.noop", json!({})).await;

    let gets = seen(&emu, "GET", &e.id);
    emu.faults().fail_next(503, 2);
    c.executions()
        .get(&e.id)
        .send()
        .await
        .expect("GET retried past two 503s");
    assert_eq!(seen(&emu, "GET", &e.id), gets + 3);

    emu.faults().drop_next(1);
    c.executions()
        .get(&e.id)
        .send()
        .await
        .expect("GET retried past a dropped connection");

    for status in [502, 504] {
        emu.faults().fail_next(status, 1);
        c.executions()
            .get(&e.id)
            .send()
            .await
            .expect("gateway errors are retried");
    }

    let posts = seen(&emu, "POST", "/api/v1/executions");
    emu.faults().fail_next(503, 1);
    let err = c
        .executions()
        .create(&run("core.noop", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::Server { status: 503, .. }), "{err}");
    assert_eq!(
        seen(&emu, "POST", "/api/v1/executions"),
        posts + 1,
        "a create is sent exactly once"
    );
    assert!(
        !err.is_retry_safe(),
        "a failed create is not safe to repeat"
    );
    assert!(err.to_string().contains("not retried"), "{err}");

    emu.faults().fail_next(503, 1);
    let err = c
        .executions()
        .rerun(&e.id, &RerunRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "a re-run is not retried either");

    let gets = seen(&emu, "GET", &e.id);
    emu.faults().fail_next(500, 4);
    let err = c.executions().get(&e.id).send().await.unwrap_err();
    assert_eq!(err.status(), Some(500), "500 is not retried: {err}");
    assert_eq!(seen(&emu, "GET", &e.id), gets + 1);
    emu.faults().clear();
}

#[tokio::test]
async fn retry_after_is_honoured_or_handed_back() {
    let emu = emulator().await;
    let e = start(&client(&emu), "core.noop", json!({})).await;

    // Retry-After: 1 within a 1.5 s ceiling: the retry waits the full second.
    let mut cfg = config(&emu);
    cfg.retry.backoff.max = Duration::from_millis(1_500);
    let patient = St2Client::from_config(&cfg).unwrap();
    emu.faults().fail_next(429, 1);
    let started = Instant::now();
    patient.executions().get(&e.id).send().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );

    // Past the ceiling, the 429 and st2's wait go back to the caller instead.
    let hasty = client(&emu);
    let gets = seen(&emu, "GET", &e.id);
    emu.faults().fail_next(429, 1);
    let err = hasty.executions().get(&e.id).send().await.unwrap_err();
    assert!(matches!(err, St2Error::RateLimited { .. }), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert!(err.is_retry_safe());
    assert_eq!(seen(&emu, "GET", &e.id), gets + 1);
}

#[tokio::test]
async fn deadlines_and_the_concurrency_limit_hold() {
    let emu = emulator().await;
    let mut cfg = config(&emu);
    cfg.request_timeout = Duration::from_millis(100);
    cfg.retry.max_retries = 2;
    let c = St2Client::from_config(&cfg).unwrap();
    emu.faults().delay(Duration::from_millis(400));
    let err = c.ping().await.unwrap_err();
    assert!(
        matches!(err, St2Error::Timeout { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.is_retry_safe(), "a timed-out read may be repeated");
    assert!(
        err.to_string().contains("gave up after 3 attempts"),
        "{err}"
    );
    let posts = seen(&emu, "POST", "/api/v1/executions");
    let err = c
        .executions()
        .create(&run("core.noop", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, St2Error::Timeout { attempts: 1, .. }),
        "{err}"
    );
    assert!(!err.is_retry_safe(), "a timed-out create may have happened");
    emu.faults().clear();
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen(&emu, "POST", "/api/v1/executions") == posts {
        assert!(
            Instant::now() < deadline,
            "the delayed create reached the emulator"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen(&emu, "POST", "/api/v1/executions"), posts + 1);

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
async fn ratio_faults_exhaust_exactly_the_retry_budget_and_scoped_faults_stay_scoped() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.noop", json!({})).await;
    let attempts = |emu: &Emulator, before: usize| emu.request_log().len() - before;

    let before = emu.request_log().len();
    emu.faults().fail_ratio(503, 1.0);
    let err = c.executions().get(&e.id).send().await.unwrap_err();
    assert!(
        matches!(
            err,
            St2Error::Server {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        attempts(&emu, before),
        4,
        "one try and max_retries (3) retries"
    );
    emu.faults().clear();

    let before = emu.request_log().len();
    emu.faults().drop_ratio(1.0);
    let err = c.executions().get(&e.id).send().await.unwrap_err();
    assert!(
        matches!(err, St2Error::Connect { attempts: 4, .. }),
        "{err}"
    );
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

#[tokio::test]
async fn the_client_reconnects_after_an_emulator_restart() {
    let emu = emulator().await;
    let c = client(&emu);
    let e = start(&c, "core.local", json!({"cmd": "sleep 1"})).await;
    c.ping().await.unwrap();
    emu.restart().await;
    // The pooled connection died with the restart; the client reconnects on its own.
    let done = wait_terminal(&c, &e.id).await;
    assert_eq!(done.status, Some(ExecutionStatus::Succeeded));
}

/// A stand-in server on 127.0.0.1 answering every request with `status`, `headers` and
/// `body`; returns its base URL and a count of requests it received.
async fn stand_in(
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: &'static str,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let headers = headers.clone();
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut resp = axum::response::Response::new(axum::body::Body::from(body));
            *resp.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            for (name, value) in headers {
                resp.headers_mut().insert(name, value.parse().unwrap());
            }
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

fn stand_in_client(url: &str) -> St2Client {
    St2Client::from_config(&St2Config::with_api_key(
        url.parse().unwrap(),
        Secret::from_value(KEY),
    ))
    .unwrap()
}

/// One request as a stand-in server saw it.
struct Seen {
    method: String,
    uri: String,
    headers: axum::http::HeaderMap,
}

/// A stand-in st2 on 127.0.0.1 that records every request: `POST .../tokens` gets a token
/// (`token-1`, valid for an hour), anything else `[]`.
async fn recorder() -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let log = log.clone();
        async move {
            let tokens = req.uri().path().ends_with("/tokens");
            log.lock().unwrap().push(Seen {
                method: req.method().to_string(),
                uri: req.uri().to_string(),
                headers: req.headers().clone(),
            });
            let expiry = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let (status, body) = if tokens {
                (
                    201,
                    json!({"user": USER, "token": "token-1", "expiry": expiry}),
                )
            } else {
                (200, json!([]))
            };
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                axum::Json(body),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn credentials_travel_only_in_st2s_headers() {
    let (url, seen) = recorder().await;
    let header =
        |s: &Seen, name: &str| s.headers.get(name).map(|v| v.to_str().unwrap().to_string());

    St2Client::from_config(&St2Config::with_password(
        url.parse().unwrap(),
        USER,
        Secret::from_value(PASSWORD),
    ))
    .unwrap()
    .ping()
    .await
    .unwrap();
    St2Client::from_config(&St2Config::with_api_key(
        url.parse().unwrap(),
        Secret::from_value(KEY),
    ))
    .unwrap()
    .ping()
    .await
    .unwrap();

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "login, then one call per client");
    let (login, with_token, with_key) = (&seen[0], &seen[1], &seen[2]);
    assert_eq!(
        (login.method.as_str(), login.uri.as_str()),
        ("POST", "/auth/v1/tokens")
    );
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert_eq!(
        header(login, "authorization"),
        Some(format!("Basic {basic}"))
    );

    assert!(
        with_token.uri.starts_with("/api/v1/actions?"),
        "{}",
        with_token.uri
    );
    assert_eq!(
        header(with_token, "x-auth-token").as_deref(),
        Some("token-1")
    );
    assert_eq!(
        header(with_token, "authorization"),
        None,
        "never Authorization: Bearer"
    );
    assert_eq!(header(with_token, "st2-api-key"), None);

    assert_eq!(header(with_key, "st2-api-key").as_deref(), Some(KEY));
    assert_eq!(header(with_key, "authorization"), None);
    assert_eq!(header(with_key, "x-auth-token"), None);
    for s in seen.iter() {
        let query = s
            .uri
            .split_once('?')
            .map_or("", |(_, q)| q)
            .to_ascii_lowercase();
        for secret in ["token-1", KEY, PASSWORD, "x-auth-token", "st2-api-key"] {
            assert!(
                !query.contains(&secret.to_ascii_lowercase()),
                "no credential in the query string: {}",
                s.uri
            );
        }
    }
}

#[tokio::test]
async fn decode_errors_name_the_json_path() {
    let body = r#"[{"id":"a","status":"running"},{"id":"b","log":[{"timestamp":12,"status":"requested"}]}]"#;
    let (url, _) = stand_in(200, vec![("content-type", "application/json".into())], body).await;
    let err = stand_in_client(&url)
        .executions()
        .list()
        .send()
        .await
        .unwrap_err();
    let St2Error::Decode { path, call, .. } = &err else {
        panic!("expected Decode, got {err}")
    };
    assert_eq!(path, "[1].log[0].timestamp");
    assert_eq!(call.to_string(), "GET /api/v1/executions");
}

#[tokio::test]
async fn redirects_are_not_followed_so_credentials_stay_put() {
    let (elsewhere, elsewhere_hits) = stand_in(200, vec![], "[]").await;
    let (url, _) = stand_in(
        302,
        vec![("location", format!("{elsewhere}/api/v1/actions"))],
        "",
    )
    .await;
    let err = stand_in_client(&url).ping().await.unwrap_err();
    assert!(
        matches!(err, St2Error::Unexpected { status: 302, .. }),
        "{err}"
    );
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_unreachable_st2_is_a_connect_error_after_the_retry_budget() {
    // Bind then drop a listener: nothing answers on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = St2Config::with_api_key(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
        Secret::from_value(KEY),
    );
    cfg.retry.backoff.initial = Duration::from_millis(10);
    cfg.retry.backoff.max = Duration::from_millis(20);
    let err = St2Client::from_config(&cfg)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert!(
        matches!(err, St2Error::Connect { attempts: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("GET /api/v1/actions"), "{err}");
    assert!(
        !err.to_string().contains("limit="),
        "no query in messages: {err}"
    );
}

#[test]
fn a_ca_file_that_is_not_pem_is_a_setup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, "not a certificate").unwrap();
    let mut cfg = St2Config::with_api_key(
        "https://127.0.0.1:1".parse().unwrap(),
        Secret::from_value(KEY),
    );
    cfg.tls.ca_file = Some(path);
    let err = St2Client::from_config(&cfg).err().expect("refused");
    assert!(matches!(err, St2Error::Setup(_)), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
}

/// An HTTPS server on 127.0.0.1 presenting the test server certificate and answering every
/// request with `[]`; returns its base URL, how many connections it accepted and how many
/// requests it answered.
async fn tls_stand_in() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor =
        crate::support::tls_server::acceptor(&tls_file("server.pem"), &tls_file("server.key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let accepted = handshakes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]";
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, handshakes, answered)
}

#[tokio::test]
async fn tls_is_verified_against_system_roots_plus_the_configured_ca() {
    let (url, handshakes, answered) = tls_stand_in().await;
    let cfg = St2Config::with_api_key(url.parse().unwrap(), Secret::from_value(KEY));
    let mut cfg = cfg;

    let err = St2Client::from_config(&cfg)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    assert!(matches!(err, St2Error::Tls { .. }), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "says why: {err}");
    assert!(!err.is_transient(), "a refused certificate stays refused");
    assert_eq!(handshakes.load(Ordering::SeqCst), 1, "and is not retried");
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "an unknown CA is refused before any request is sent"
    );

    cfg.tls.ca_file = Some(tls_file("ca.pem"));
    St2Client::from_config(&cfg).unwrap().ping().await.unwrap();
    assert_eq!(answered.load(Ordering::SeqCst), 1);
}

/// The datastore round trip: a missing key reads as `None`, a put key reads back with its
/// value, a TTL shows as `expire_timestamp`, the list filters by prefix, a delete of a key
/// that is gone says so.
#[tokio::test]
async fn datastore_keys_round_trip() {
    let emu = emulator().await;
    let c = client(&emu);
    assert_eq!(c.keys().get("portarium-st2.t.lease").await.unwrap(), None);
    let put = c
        .keys()
        .put(
            "portarium-st2.t.lease",
            "replica-a",
            Some(Duration::from_secs(15)),
        )
        .await
        .unwrap();
    assert_eq!(put.value, "replica-a");
    let expiry = put.expire_timestamp.expect("a TTL gives an expiry");
    let ahead = expiry - time::OffsetDateTime::now_utc();
    assert!(
        ahead.whole_seconds() > 5 && ahead.whole_seconds() <= 15,
        "{ahead}"
    );
    c.keys()
        .put("portarium-st2.t.checkpoint", "{}", None)
        .await
        .unwrap();
    c.keys().put("other", "x", None).await.unwrap();
    let read = c.keys().get("portarium-st2.t.checkpoint").await.unwrap();
    assert_eq!(
        read.map(|p| (p.value, p.expire_timestamp)),
        Some(("{}".into(), None))
    );
    let listed = c
        .keys()
        .list()
        .prefix("portarium-st2.t.")
        .all(5)
        .await
        .unwrap();
    let mut names: Vec<_> = listed.items.iter().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["portarium-st2.t.checkpoint", "portarium-st2.t.lease"]
    );
    assert!(c.keys().delete("portarium-st2.t.lease").await.unwrap());
    assert!(!c.keys().delete("portarium-st2.t.lease").await.unwrap());
    assert_eq!(c.keys().get("portarium-st2.t.lease").await.unwrap(), None);
}
