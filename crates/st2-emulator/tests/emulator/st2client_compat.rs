//! Regressions found by running the official `st2` CLI (st2client) against the emulator
//! (`scripts/st2client-compat.sh`): each test pins the st2 behaviour the CLI relies on.

use serde_json::{Value, json};

use crate::support::start;

/// `st2 execution list` sends `parent=null`: st2 reads a "null" filter value as "no such field",
/// so top-level executions are listed and workflow children are not.
#[tokio::test]
async fn parent_null_filter_lists_top_level_executions_only() {
    let h = start().await;
    let wf = h
        .run("examples.orquesta-sequential", json!({"name": "Rusty"}))
        .await;
    let wf_id = wf["id"].as_str().expect("id").to_string();
    h.wait_status(&wf_id, &["succeeded"]).await;
    let noop = h.run("core.noop", json!({})).await;

    let (status, all) = h.get_json("/api/v1/executions/?parent=null").await;
    assert_eq!(status, 200, "{all}");
    let ids: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{all}");
    assert!(ids.contains(&wf_id.as_str()) && ids.contains(&noop["id"].as_str().expect("id")));

    let (_, children) = h
        .get_json(&format!("/api/v1/executions?parent={wf_id}"))
        .await;
    let children = children.as_array().expect("list");
    assert!(!children.is_empty());
    assert!(children.iter().all(|c| c["parent"] == wf_id.as_str()));
    let (_, upper) = h.get_json("/api/v1/executions?parent=NULL").await;
    assert_eq!(upper.as_array().map(Vec::len), Some(2), "any case, as st2");
}

/// `st2 whoami` reads `authentication.token_expire` for token sessions; st2 names the method
/// after the credential and the location after its security definition.
#[tokio::test]
async fn user_endpoint_reports_how_the_caller_authenticated() {
    let h = start().await;
    let (_, by_key) = h.get_json("/api/v1/user").await;
    assert_eq!(
        by_key["authentication"],
        json!({"method": "API key", "location": "header"})
    );

    let token: Value = h
        .http
        .post(h.url("/auth/v1/tokens"))
        .basic_auth("st2admin", Some("Ch@ngeMe"))
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    let value = token["token"].as_str().expect("token");
    let expiry = token["expiry"].as_str().expect("expiry");
    let by_token: Value = h
        .http
        .get(h.url("/api/v1/user"))
        .header("X-Auth-Token", value)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(by_token["username"], "st2admin");
    assert_eq!(by_token["authentication"]["method"], "authentication token");
    assert_eq!(by_token["authentication"]["location"], "header");
    // Whole seconds with a Z, the token's own expiry cut at the seconds.
    let expected = format!("{}Z", &expiry[..19]);
    assert_eq!(
        by_token["authentication"]["token_expire"],
        expected.as_str()
    );

    let by_query: Value = h
        .http
        .get(h.url(&format!("/api/v1/user?st2-api-key={}", crate::support::KEY)))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(by_query["authentication"]["location"], "query");
}
