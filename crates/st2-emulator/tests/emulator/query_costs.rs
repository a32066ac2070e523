//! What lookups cost on a store holding a production-sized history: indexed ones examine no
//! stored execution, an unindexed `filter=` examines every one.

use reqwest::Method;
use serde_json::json;
use st2_emulator::EmulatorOptions;

use crate::support::start_with;

#[tokio::test]
async fn a_trace_tag_lookup_among_100000_executions_scans_none_and_a_context_filter_scans_all() {
    let h = start_with(EmulatorOptions {
        preload: 100_000,
        ..EmulatorOptions::default()
    })
    .await;
    let tag = "idem%3Atenant-a%3Akey-42";
    let (status, created) = h
        .post_json(
            "/api/v1/executions",
            json!({"action": "core.noop", "context": {"trace_context": {"trace_tag": tag},
                   "portarium": {"dispatch_key": tag}}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();

    let before = h.emu.executions_scanned();
    // The percent signs are the tag's own: the query carries them encoded once more.
    let (status, traces) = h
        .get_json("/api/v1/traces?trace_tag=idem%253Atenant-a%253Akey-42")
        .await;
    assert_eq!(status, 200);
    assert_eq!(traces.as_array().unwrap().len(), 1, "{traces}");
    assert_eq!(traces[0]["trace_tag"], tag);
    assert_eq!(traces[0]["action_executions"][0]["object_id"], id);
    let (status, read) = h
        .get_json(&format!(
            "/api/v1/executions?id={id}&exclude_attributes=result"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(read[0]["id"], id);
    assert_eq!(
        h.emu.executions_scanned(),
        before,
        "indexed lookups scan nothing"
    );

    let r = h
        .req(
            Method::GET,
            "/api/v1/executions?filter=context.portarium.dispatch_key:idem%253Atenant-a%253Akey-42",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let found: serde_json::Value = r.json().await.unwrap();
    assert_eq!(found[0]["id"], id);
    assert_eq!(h.emu.executions_scanned() - before, 100_001);
}

#[tokio::test]
async fn preloaded_executions_read_like_completed_ones() {
    let h = start_with(EmulatorOptions {
        preload: 3,
        ..EmulatorOptions::default()
    })
    .await;
    let (status, listed) = h.get_json("/api/v1/executions?action=core.noop").await;
    assert_eq!(status, 200);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed.iter().all(|e| e["status"] == "succeeded"),
        "{listed:?}"
    );
    let (status, one) = h
        .get_json(&format!(
            "/api/v1/executions/{}",
            listed[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["action"]["ref"], "core.noop");
    assert_eq!(one["result"]["succeeded"], true);
}
