//! Each REST capture's request replayed against a fresh emulator with the default catalogue:
//! same status, headers, body shape and OpenAPI validity as st2's recorded answer.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::capture::Recorded;
use crate::cases::{Auth, request};
use crate::check::{Check, same_entity, same_execution};
use crate::client::{Harness, Reply, WAIT};
use crate::reference;
use crate::shape::{Rules, is_st2_timestamp};

/// Time between automatic status changes: quick, yet each status stays observable.
const STEP: Duration = Duration::from_millis(20);

/// Send the request behind `file` (about execution `id`, if any) and check the reply against it.
async fn replay(
    h: &Harness,
    c: &mut Check,
    file: &str,
    id: Option<&str>,
    rules: Option<&Rules>,
) -> Reply {
    let request = request(file);
    let path = id.map_or_else(|| request.path.to_string(), |id| request.path_with(id));
    let reply = h
        .send(request.method, &path, request.body, request.auth)
        .await;
    c.reply(file, &request, &path, &reply, rules);
    reply
}

/// A fresh emulator, one replayed capture, default rules (statuses and faultstrings compared).
async fn replay_alone(files: &[&str]) {
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new(&files.join(", "));
    for file in files {
        replay(&h, &mut c, file, None, Some(&Rules::default())).await;
    }
    c.finish();
}

/// Tests that each replay their captures against a fresh emulator, alone, with default rules:
/// the errors st2 answers (401, 404, 400) need nothing set up first.
macro_rules! answers_like_capture {
    ($($name:ident: [$($file:literal),+];)+) => {$(
        #[tokio::test]
        async fn $name() {
            if reference::missing() {
                return;
            }
            replay_alone(&[$($file),+]).await;
        }
    )+};
}

answers_like_capture! {
    token_request_with_bad_password_answers_401_like_capture: ["auth-token-bad-password.http"];
    token_validation_without_credentials_answers_401_like_capture: ["auth-token-validate-via-auth.http"];
    token_validation_on_api_prefix_answers_404_like_capture: ["auth-token-validate.http"];
    api_root_without_credentials_answers_401_like_capture: ["api-root.http", "api-v1-root.http"];
    api_call_without_credentials_answers_401_like_capture: ["api-no-token.http"];
    api_call_with_unknown_token_answers_401_like_capture: ["api-bad-token.http"];
    action_get_missing_ref_answers_404_like_capture: ["action-get-missing.http"];
    execution_get_with_malformed_id_answers_404_like_capture: ["execution-get-badid.http"];
    execution_get_with_unknown_id_answers_404_like_capture: ["execution-get-missing.http"];
    execution_post_of_unknown_action_answers_400_like_capture: ["execution-post-missing-action.http"];
    execution_post_without_required_parameter_answers_400_like_capture: ["execution-post-missing-required-param.http"];
    execution_post_with_uncastable_parameter_answers_400_like_capture: ["execution-post-bad-param-type.http"];
}

/// Replay the create behind `file`, check the answer like st2's execution and by the
/// invariants of every execution, and return its id.
async fn created(h: &Harness, c: &mut Check, file: &str) -> String {
    let post = replay(h, c, file, None, Some(&same_execution("$"))).await;
    execution_invariants(c, "POST", &post.json());
    id_of(c, &post)
}

fn id_of(c: &Check, reply: &Reply) -> String {
    match reply.json()["id"].as_str() {
        Some(id) => id.to_string(),
        None => c.abort(&format!(
            "no execution id in {}",
            String::from_utf8_lossy(&reply.body)
        )),
    }
}

/// Relations st2 keeps inside every Execution document.
fn execution_invariants(c: &mut Check, what: &str, doc: &Value) {
    let id = doc["id"].as_str().unwrap_or_default();
    c.that(doc["liveaction"]["id"] != doc["id"], || {
        format!("{what}: liveaction.id must be a different ObjectId than the execution id {id}")
    });
    let web_url = doc["web_url"].as_str().unwrap_or_default();
    c.that(
        web_url.ends_with(&format!("/#/history/{id}/general")),
        || format!("{what}: web_url `{web_url}` must end with /#/history/{id}/general like st2's"),
    );
    let log: Vec<&str> = doc["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["status"].as_str())
        .collect();
    c.that(
        log.first() == Some(&"requested") && log.last() == doc["status"].as_str().as_ref(),
        || {
            format!(
                "{what}: log must start at requested and end at the current status {}: {log:?}",
                doc["status"]
            )
        },
    );
    c.that(
        doc.get("end_timestamp").is_some() == doc.get("elapsed_seconds").is_some(),
        || format!("{what}: elapsed_seconds appears exactly when end_timestamp does"),
    );
}

/// `expiry` is `ttl` seconds after the request, as st2 writes it.
fn check_expiry(c: &mut Check, what: &str, token: &Value, sent: OffsetDateTime, ttl: i64) {
    let expiry = token["expiry"].as_str().unwrap_or_default();
    c.that(is_st2_timestamp(expiry), || {
        format!("{what}: expiry `{expiry}` is not st2's microsecond UTC form")
    });
    match OffsetDateTime::parse(expiry, &Rfc3339) {
        Ok(at) => {
            let off = (at - sent).whole_seconds() - ttl;
            c.that(off.abs() <= 30, || {
                format!("{what}: expiry {expiry} is not {ttl}s after the request (off by {off}s)")
            });
        }
        Err(e) => c.that(false, || {
            format!("{what}: expiry `{expiry}` does not parse: {e}")
        }),
    }
}

#[tokio::test]
async fn token_request_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("POST /auth/v1/tokens");
    let sent = OffsetDateTime::now_utc();
    let reply = replay(
        &h,
        &mut c,
        "auth-token-post.http",
        None,
        Some(&Rules::default()),
    )
    .await;
    check_expiry(&mut c, "auth-token-post.http", &reply.json(), sent, 86_400);
    c.finish();
}

#[tokio::test]
async fn token_request_with_ttl_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("POST /auth/v1/tokens {ttl}");
    let sent = OffsetDateTime::now_utc();
    let reply = replay(
        &h,
        &mut c,
        "auth-token-ttl.http",
        None,
        Some(&Rules::default()),
    )
    .await;
    let ttl: Value =
        serde_json::from_str(request("auth-token-ttl.http").body.expect("body")).expect("json");
    check_expiry(
        &mut c,
        "auth-token-ttl.http",
        &reply.json(),
        sent,
        ttl["ttl"].as_i64().expect("ttl"),
    );
    c.finish();
}

#[tokio::test]
async fn action_get_core_local_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET core.local");
    let reply = replay(
        &h,
        &mut c,
        "action-get-core-local.http",
        None,
        Some(&same_entity()),
    )
    .await;
    let cookie = reply.header("set-cookie").unwrap_or_default();
    c.that(
        cookie.starts_with(&format!("auth-token={}; ", h.token())),
        || format!("the auth-token cookie must carry the token used: `{cookie}`"),
    );
    c.finish();
}

#[tokio::test]
async fn action_parameters_view_for_core_local_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET actions/views/parameters/core.local");
    let rules = Rules::default().fixed("$.parameters");
    replay(
        &h,
        &mut c,
        "action-view-parameters.http",
        None,
        Some(&rules),
    )
    .await;
    c.finish();
}

/// st2 and the emulator list partly different catalogue entries: an entry whose `key` st2 also
/// listed must equal st2's under `same`; the others must have the shape of st2's entry at the
/// same position under `other`. Both lists must be sorted by `key` as st2 sorts them.
fn compare_catalogue_list(
    c: &mut Check,
    file: &str,
    actual: &Value,
    key: &str,
    same: &Rules,
    other: &Rules,
) {
    let expected = Recorded::load(file)
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("{e}"));
    let (Some(e), Some(a)) = (expected.as_array(), actual.as_array()) else {
        c.that(false, || {
            format!("{file}: emulator body is not an array: {actual}")
        });
        return;
    };
    let sorted = |list: &[Value]| {
        list.windows(2)
            .all(|w| w[0][key].as_str() <= w[1][key].as_str())
    };
    assert!(sorted(e), "{file}: st2's list is sorted by {key}");
    c.that(sorted(a), || {
        format!(
            "{file}: st2 sorts by {key}; emulator order: {:?}",
            a.iter().map(|x| &x[key]).collect::<Vec<_>>()
        )
    });
    c.that(!a.is_empty(), || format!("{file}: emulator list is empty"));
    let mut in_common = 0;
    for (i, item) in a.iter().enumerate() {
        let what = format!("{file} entry {i} ({})", item[key]);
        match e.iter().find(|x| x[key] == item[key]) {
            Some(same_item) => {
                in_common += 1;
                c.shape(&what, same_item, item, same);
            }
            None => c.shape(&what, &e[i.min(e.len() - 1)], item, other),
        }
    }
    c.that(in_common > 0, || {
        format!(
            "{file}: no entry in common with st2's by {key}, so none was compared value by value"
        )
    });
}

async fn replay_list(h: &Harness, c: &mut Check, file: &str) -> Value {
    let reply = replay(h, c, file, None, None).await;
    let limit = request(file)
        .path
        .split("limit=")
        .nth(1)
        .and_then(|l| l.split('&').next())
        .and_then(|l| l.parse::<usize>().ok());
    let body = reply.json();
    if let (Some(limit), Some(items)) = (limit, body.as_array()) {
        c.that(items.len() <= limit, || {
            format!("{file}: {} items for limit={limit}", items.len())
        });
    }
    body
}

#[tokio::test]
async fn actions_list_filtered_by_pack_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET actions?pack=core");
    let file = "actions-list-core.http";
    let body = replay_list(&h, &mut c, file).await;
    let other = Rules::default()
        .open("$.parameters", "each action defines its own parameters")
        .free("$.runner_type", "each action has its own runner");
    compare_catalogue_list(&mut c, file, &body, "ref", &same_entity(), &other);
    c.that(
        body.as_array()
            .into_iter()
            .flatten()
            .all(|a| a["pack"] == "core"),
        || format!("{file}: pack filter not applied"),
    );
    c.finish();
}

#[tokio::test]
async fn packs_list_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET packs");
    let file = "packs-list.http";
    let body = replay_list(&h, &mut c, file).await;
    let catalogue_content =
        "which files, keywords, contributors and dependencies a pack has is pack content";
    let lists = |r: Rules| {
        r.any_length("$.files", catalogue_content)
            .any_length("$.keywords", catalogue_content)
            .any_length("$.contributors", catalogue_content)
            .any_length("$.python_versions", catalogue_content)
            .any_length("$.dependencies", catalogue_content)
    };
    let same = lists(
        Rules::default()
            .fixed("$.ref")
            .fixed("$.uid")
            .fixed("$.name")
            .fixed("$.path"),
    );
    compare_catalogue_list(&mut c, file, &body, "ref", &same, &lists(Rules::default()));
    c.finish();
}

#[tokio::test]
async fn runnertypes_list_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET runnertypes");
    let file = "runnertypes-list.http";
    let body = replay_list(&h, &mut c, file).await;
    let other = Rules::default()
        .open(
            "$.runner_parameters",
            "each runner defines its own parameters",
        )
        .open(
            "$.output_schema",
            "each runner defines its own output schema",
        );
    compare_catalogue_list(&mut c, file, &body, "name", &same_entity(), &other);
    c.finish();
}

#[tokio::test]
async fn core_local_execution_matches_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("core.local `echo hi`");
    let id = created(&h, &mut c, "execution-post-core-local.http").await;
    h.wait_for(&id, "succeeded").await;
    let rules = same_execution("$").fixed("$.result");
    let get = replay(
        &h,
        &mut c,
        "execution-get-core-local-succeeded.http",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "GET", &get.json());
    c.finish();
}

#[tokio::test]
async fn core_local_post_of_a_loop_command_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("core.local for-loop");
    replay(
        &h,
        &mut c,
        "execution-post-core-local-slow.json",
        None,
        Some(&same_execution("$")),
    )
    .await;
    c.finish();
}

#[tokio::test]
async fn core_echo_execution_matches_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("core.echo");
    replay(
        &h,
        &mut c,
        "execution-post-core-echo.json",
        None,
        Some(&same_execution("$")),
    )
    .await;
    // The recorded GET is of a second run, with another message.
    let id = h
        .run(r#"{"action":"core.echo","parameters":{"message":"hello rust"}}"#)
        .await;
    h.wait_for(&id, "succeeded").await;
    let rules = same_execution("$").fixed("$.result");
    let get = replay(
        &h,
        &mut c,
        "execution-get-core-echo.json",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "GET", &get.json());
    c.finish();
}

#[tokio::test]
async fn core_noop_execution_matches_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("core.noop");
    let id = created(&h, &mut c, "execution-post-core-noop.json").await;
    h.wait_for(&id, "succeeded").await;
    let rules = same_execution("$").fixed("$.result");
    replay(
        &h,
        &mut c,
        "execution-get-core-noop.json",
        Some(&id),
        Some(&rules),
    )
    .await;
    c.finish();
}

#[tokio::test]
async fn failing_core_local_execution_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("core.local `echo oops >&2; exit 3`");
    let id = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"echo oops >&2; exit 3"}}"#)
        .await;
    h.wait_for(&id, "failed").await;
    let rules = same_execution("$").fixed("$.result");
    let get = replay(
        &h,
        &mut c,
        "execution-get-core-local-fail.json",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "GET", &get.json());
    c.finish();
}

/// POST `sleep 30`, wait until it runs, DELETE it, wait for `canceled`; returns the id.
async fn canceled_sleep(h: &Harness, c: &mut Check) -> String {
    let post = replay(
        h,
        c,
        "execution-post-core-local-sleep.json",
        None,
        Some(&same_execution("$")),
    )
    .await;
    let id = id_of(c, &post);
    h.wait_for(&id, "running").await;
    let rules = same_execution("$").fixed("$.result");
    let delete = replay(
        h,
        c,
        "execution-delete-cancel.http",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(c, "DELETE", &delete.json());
    h.wait_for(&id, "canceled").await;
    id
}

#[tokio::test]
async fn cancel_of_running_execution_matches_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("cancel core.local `sleep 30`");
    let id = canceled_sleep(&h, &mut c).await;
    let rules = same_execution("$").fixed("$.result");
    let get = replay(
        &h,
        &mut c,
        "execution-get-canceled.json",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "GET", &get.json());
    c.finish();
}

#[tokio::test]
async fn rerun_of_canceled_execution_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("re_run of a canceled core.local");
    let original = canceled_sleep(&h, &mut c).await;
    let rerun = replay(
        &h,
        &mut c,
        "execution-rerun.http",
        Some(&original),
        Some(&same_execution("$")),
    )
    .await;
    let doc = rerun.json();
    execution_invariants(&mut c, "re_run", &doc);
    c.that(doc["context"]["re-run"]["ref"] == original.as_str(), || {
        format!(
            "context.re-run.ref must be the re-run execution {original}: {}",
            doc["context"]
        )
    });
    let traces = h
        .send(
            "GET",
            &format!("/api/v1/traces?execution={original}"),
            None,
            Auth::Token,
        )
        .await;
    let trace_id = traces.json()[0]["id"].clone();
    c.that(doc["context"]["trace_context"]["id_"] == trace_id, || {
        format!(
            "the re-run joins the original's trace {trace_id}: context {}",
            doc["context"]
        )
    });
    c.finish();
}

#[tokio::test]
async fn execution_output_text_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions/{id}/output");
    // st2 ran a shell loop printing line1..line3; the emulator does not interpret loops, so the
    // same three lines come from three echos.
    let id = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"echo line1; echo line2; echo line3"}}"#)
        .await;
    h.wait_for(&id, "succeeded").await;
    for file in [
        "api-execution-output-all.txt",
        "api-execution-output-stdout.txt",
    ] {
        let request = request(file);
        let reply = h.call_for(&request, &id).await;
        let expected = Recorded::load(file).unwrap_or_else(|e| panic!("{e}")).body;
        c.that(reply.status == request.status, || {
            format!("{file}: status {}", reply.status)
        });
        c.that(reply.body == expected, || {
            format!(
                "{file}: body differs: st2 {:?}, emulator {:?}",
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&reply.body)
            )
        });
        let ct = reply.header("content-type").unwrap_or_default();
        c.that(ct.starts_with("text/plain"), || {
            format!("{file}: st2 answers text/plain, emulator `{ct}`")
        });
    }
    c.finish();
}

/// Run the recorded workflow (`examples.orquesta-sequential`, name Rusty) to success.
async fn finished_workflow(h: &Harness) -> String {
    let id = h
        .run(
            request("execution-post-orquesta-sequential.json")
                .body
                .expect("body"),
        )
        .await;
    h.wait_for(&id, "succeeded").await;
    id
}

/// Rules for a list of the workflow's child executions, in st2's order.
fn children_rules() -> Rules {
    same_execution("$[]")
        .fixed("$[].result")
        .fixed("$[].context.orquesta.task_name")
}

fn children_point_at(c: &mut Check, what: &str, list: &Value, parent: &str) {
    for child in list.as_array().into_iter().flatten() {
        c.that(child["parent"] == parent && child["context"]["parent"]["execution_id"] == parent, || {
            format!("{what}: child {} must name parent {parent} in `parent` and `context.parent.execution_id`", child["id"])
        });
    }
}

#[tokio::test]
async fn orquesta_sequential_execution_matches_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("examples.orquesta-sequential");
    let id = created(&h, &mut c, "execution-post-orquesta-sequential.json").await;
    h.wait_for(&id, "succeeded").await;
    let rules = same_execution("$").fixed("$.result");
    let get = replay(
        &h,
        &mut c,
        "execution-get-orquesta-sequential.json",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "GET", &get.json());
    c.finish();
}

#[tokio::test]
async fn workflow_children_endpoint_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions/{id}/children");
    let id = finished_workflow(&h).await;
    let reply = replay(
        &h,
        &mut c,
        "execution-children-orquesta.http",
        Some(&id),
        Some(&children_rules()),
    )
    .await;
    children_point_at(&mut c, "children", &reply.json(), &id);
    c.finish();
}

#[tokio::test]
async fn executions_list_filtered_by_parent_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions?parent=");
    let id = finished_workflow(&h).await;
    let file = "executions-list-children-of-orquesta.http";
    let reply = replay(&h, &mut c, file, Some(&id), Some(&children_rules())).await;
    children_point_at(&mut c, "list", &reply.json(), &id);
    // Same workflow, same number of children.
    let st2_total = Recorded::load(file)
        .expect("capture")
        .header("X-Total-Count")
        .map(str::to_string);
    c.that(
        reply.header("x-total-count").map(str::to_string) == st2_total,
        || {
            format!(
                "{file}: X-Total-Count {:?}, st2 {st2_total:?}",
                reply.header("x-total-count")
            )
        },
    );
    c.finish();
}

#[tokio::test]
async fn executions_list_newest_first_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions?limit=2");
    let id = finished_workflow(&h).await;
    let reply = replay(
        &h,
        &mut c,
        "executions-list.http",
        None,
        Some(&children_rules()),
    )
    .await;
    // Newest first: the two listed are the workflow's last tasks, not the workflow itself.
    children_point_at(&mut c, "list", &reply.json(), &id);
    // The count is of everything stored, not of the page: the workflow and its three tasks.
    c.that(reply.header("x-total-count") == Some("4"), || {
        format!(
            "X-Total-Count {:?}, expected 4",
            reply.header("x-total-count")
        )
    });
    c.finish();
}

#[tokio::test]
async fn executions_list_excluding_result_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions?exclude_attributes=result");
    finished_workflow(&h).await;
    replay(
        &h,
        &mut c,
        "executions-list-exclude-result.http",
        None,
        Some(&children_rules()),
    )
    .await;
    c.finish();
}

#[tokio::test]
async fn executions_list_filtered_by_action_and_status_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions?action=&status=&include_attributes=");
    finished_workflow(&h).await;
    let rules = Rules::default().fixed("$[].action.*");
    replay(
        &h,
        &mut c,
        "executions-list-filter-action-status.http",
        None,
        Some(&rules),
    )
    .await;
    c.finish();
}

#[tokio::test]
async fn executions_list_with_include_attributes_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions?include_attributes=");
    finished_workflow(&h).await;
    let rules = Rules::default().fixed("$[].action.*");
    replay(
        &h,
        &mut c,
        "executions-list-include-attrs.http",
        None,
        Some(&rules),
    )
    .await;
    c.finish();
}

#[tokio::test]
async fn executions_list_with_api_key_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions with St2-Api-Key");
    finished_workflow(&h).await;
    replay(
        &h,
        &mut c,
        "executions-list-with-apikey.http",
        None,
        Some(&Rules::default()),
    )
    .await;
    c.finish();
}

#[tokio::test]
async fn execution_get_with_include_attributes_matches_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions/{id}?include_attributes=status,result");
    let id = finished_workflow(&h).await;
    let rules = Rules::default().fixed("$.result");
    replay(
        &h,
        &mut c,
        "execution-get-include-attrs.http",
        Some(&id),
        Some(&rules),
    )
    .await;
    c.finish();
}

/// Poll until the workflow has started a child, bounded by [`WAIT`], with backoff.
async fn wait_for_first_child(h: &Harness, id: &str) {
    let deadline = Instant::now() + WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        let reply = h
            .send(
                "GET",
                &format!("/api/v1/executions/{id}/children"),
                None,
                Auth::Token,
            )
            .await;
        if reply.status == 200 && reply.json().as_array().is_some_and(|a| !a.is_empty()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "workflow {id} started no child within {WAIT:?}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Why the log after pause + resume is longer than st2's (its sequence is checked explicitly).
const RESUMED_WITH_TASKS_LEFT: &str = "a workflow resumed with tasks left goes resuming → running → succeeded; \
                                       st2's had none left and went resuming → succeeded";

#[tokio::test]
async fn pause_and_resume_of_running_workflow_match_captures() {
    if reference::missing() {
        return;
    }
    // Slower steps, so the workflow is still running when the pause arrives.
    let h = Harness::start_with_step(Duration::from_millis(250)).await;
    let mut c = Check::new("pause + resume examples.orquesta-sequential");
    let substituted = "st2 paused examples.orquesta-basic (parameters cmd, timeout); the default \
                       catalogue's workflow is examples.orquesta-sequential (parameter name)";
    let rules = Rules::default()
        .fixed("$.runner.*")
        .free("$.runner.id", "ObjectId generated at registration")
        .open("$.action.parameters", substituted)
        .open("$.parameters", substituted)
        .open("$.liveaction.parameters", substituted);
    let id = h
        .run(
            request("execution-post-orquesta-sequential.json")
                .body
                .expect("body"),
        )
        .await;
    // st2 paused while the workflow's first task was under way.
    wait_for_first_child(&h, &id).await;
    let pausing = replay(
        &h,
        &mut c,
        "execution-put-pausing.http",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "PUT pausing", &pausing.json());
    h.wait_for(&id, "paused").await;
    let resuming = replay(
        &h,
        &mut c,
        "execution-put-resuming.http",
        Some(&id),
        Some(&rules),
    )
    .await;
    execution_invariants(&mut c, "PUT resuming", &resuming.json());
    h.wait_for(&id, "succeeded").await;
    let after = rules
        .any(
            "$.result.output",
            "st2's workflow was paused after its last task, which leaves output null; ours is paused mid-run and finishes its tasks",
        )
        .any_length("$.log", RESUMED_WITH_TASKS_LEFT)
        .free("$.log[].status", RESUMED_WITH_TASKS_LEFT);
    let get = replay(
        &h,
        &mut c,
        "execution-get-orquesta-basic-after-pause-resume.json",
        Some(&id),
        Some(&after),
    )
    .await;
    let doc = get.json();
    execution_invariants(&mut c, "GET after resume", &doc);
    let log: Vec<&str> = doc["log"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["status"].as_str())
        .collect();
    let expected_with_tasks_left = [
        "requested",
        "scheduled",
        "running",
        "pausing",
        "paused",
        "resuming",
        "running",
        "succeeded",
    ];
    c.that(log == expected_with_tasks_left, || {
        format!("log after pause/resume: {log:?}, expected {expected_with_tasks_left:?}")
    });
    c.finish();
}

/// st2 takes no fraction or 3 to 6 digits (st2common/util/isotime.py): one and seven digits
/// are refused with its 400, three are listed (the execution made now started after the
/// recorded time).
#[tokio::test]
async fn timestamp_filters_take_only_st2s_datetime_format_like_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET executions?timestamp_gt");
    let noop = Some(r#"{"action":"core.noop"}"#);
    let id = id_of(
        &c,
        &h.send("POST", "/api/v1/executions", noop, Auth::ApiKey)
            .await,
    );
    let listed = replay(
        &h,
        &mut c,
        "executions-list-timestamp-gt-3-digits.http",
        None,
        Some(&Rules::default()),
    )
    .await;
    c.that(listed.json()[0]["id"] == id.as_str(), || {
        format!("the execution made now is listed: {}", listed.json())
    });
    for file in [
        "executions-list-timestamp-gt-1-digit.http",
        "executions-list-timestamp-gt-7-digits.http",
    ] {
        replay(&h, &mut c, file, None, Some(&Rules::default())).await;
    }
    c.finish();
}

/// A stock st2 has no `portarium.event`: firing it is refused until the type is created; a
/// custom hook no rule registered is a 404; the instance's payload is what was posted.
#[tokio::test]
async fn trigger_types_and_webhooks_answer_like_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("trigger types and webhooks");
    let values = Rules::default();
    let listed = Rules::default()
        .open("$.payload", "the posted payload")
        .any_length("$", "one listed");
    for (file, rules) in [
        ("webhook-st2-unknown-trigger.http", &values),
        ("webhook-custom-unregistered.http", &values),
        ("triggertype-create.http", &values),
        ("webhook-st2-registered-trigger.http", &values),
        ("triggerinstances-portarium-event.http", &listed),
        ("triggertype-delete.http", &values),
    ] {
        replay(&h, &mut c, file, None, Some(rules)).await;
    }
    c.finish();
}

#[tokio::test]
async fn webhook_st2_post_answers_202_and_echoes_the_body_like_capture() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("POST /api/v1/webhooks/st2");
    // The payload st2 builds for the recorded custom hook (`rusttest`), sent to the system hook.
    let body = r#"{"trigger":"core.st2.webhook","payload":{"headers":{},"body":{"msg":"hello"}}}"#;
    let path = "/api/v1/webhooks/st2";
    let reply = h.send("POST", path, Some(body), Auth::Token).await;
    let capture = Recorded::load("webhook-post.http").unwrap_or_else(|e| panic!("{e}"));
    c.that(Some(reply.status) == capture.status, || {
        format!("status {}, st2 {:?}", reply.status, capture.status)
    });
    c.headers(&capture, &reply);
    let sent: Value = serde_json::from_str(body).expect("json");
    let got = reply.json();
    c.that(got == sent, || {
        format!("st2 echoes the request body; emulator answered {got}")
    });
    c.schema("POST", path, reply.status, &got);
    c.finish();
}

#[tokio::test]
async fn traces_by_tag_list_the_execution_with_st2_trace_fields() {
    if reference::missing() {
        return;
    }
    // No trace was captured; the fields are st2's TraceAPI as st2-api.md §5 lists them.
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("GET traces?trace_tag=");
    let id = h
        .run(&json!({"action": "core.local", "parameters": {"cmd": "echo traced"}, "context": {"trace_context": {"trace_tag": "contract-trace"}}}).to_string())
        .await;
    let path = "/api/v1/traces?trace_tag=contract-trace";
    let reply = h.send("GET", path, None, Auth::Token).await;
    c.that(reply.status == 200, || format!("status {}", reply.status));
    let body = reply.json();
    c.schema("GET", path, reply.status, &body);
    c.that(reply.header("x-total-count") == Some("1"), || {
        format!("X-Total-Count {:?}", reply.header("x-total-count"))
    });
    let trace = &body[0];
    let allowed = [
        "id",
        "trace_tag",
        "action_executions",
        "rules",
        "trigger_instances",
        "start_timestamp",
    ];
    for key in trace.as_object().into_iter().flat_map(|o| o.keys()) {
        c.that(allowed.contains(&key.as_str()), || {
            format!("trace field {key} is not one of st2's {allowed:?}")
        });
    }
    c.that(trace["trace_tag"] == "contract-trace", || {
        format!("trace_tag: {}", trace["trace_tag"])
    });
    let component = &trace["action_executions"][0];
    c.that(
        component["object_id"] == id.as_str() && component["ref"] == "core.local",
        || {
            format!(
                "action_executions[0] must be {{object_id: {id}, ref: core.local}}: {component}"
            )
        },
    );
    for key in component.as_object().into_iter().flat_map(|o| o.keys()) {
        c.that(
            ["object_id", "ref", "updated_at", "caused_by"].contains(&key.as_str()),
            || format!("trace component field {key} is not st2's"),
        );
    }
    c.that(
        component["updated_at"]
            .as_str()
            .is_some_and(is_st2_timestamp),
        || format!("updated_at {}", component["updated_at"]),
    );
    c.finish();
}

/// The datastore round trip st2 recorded: put, put a secret, read (a secret decrypted on
/// request), list in creation order (no paging headers), delete; then what the captures do not
/// show: a missing key is a 404 in st2's words, and a key put with `ttl` carries its
/// `expire_timestamp` that many seconds ahead.
#[tokio::test]
async fn datastore_keys_answer_like_captures() {
    if reference::missing() {
        return;
    }
    let h = Harness::start_with_step(STEP).await;
    let mut c = Check::new("datastore keys");
    let rules = Rules::default();
    for file in [
        "key-put.http",
        "key-put-secret.http",
        "key-get.http",
        "key-get-secret-decrypt.http",
        "keys-list.http",
        "key-delete.http",
    ] {
        replay(&h, &mut c, file, None, Some(&rules)).await;
    }
    let gone = h
        .send("GET", "/api/v1/keys/rusttest", None, Auth::Token)
        .await;
    c.that(gone.status == 404, || {
        format!("deleted key: {}", gone.status)
    });
    c.that(
        gone.json()["faultstring"]
            == "KeyValuePair with name: rusttest and scope: st2kv.system not found in db.",
        || format!("deleted key: {}", gone.json()),
    );
    let sent = OffsetDateTime::now_utc();
    let leased = h
        .send(
            "PUT",
            "/api/v1/keys/lease",
            Some(r#"{"name":"lease","value":"replica-a","ttl":30}"#),
            Auth::Token,
        )
        .await;
    let form = leased.json();
    let expiry = json!({"expiry": form["expire_timestamp"]});
    check_expiry(&mut c, "key with ttl", &expiry, sent, 30);
    let listed = h
        .send("GET", "/api/v1/keys?prefix=lea", None, Auth::Token)
        .await;
    c.that(listed.json().as_array().map(Vec::len) == Some(1), || {
        format!("prefix list: {}", listed.json())
    });
    c.finish();
}
