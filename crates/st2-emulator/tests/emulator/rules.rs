//! Webhook → trigger instance → rule → execution, and the rules / trigger-instance endpoints.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::start;

#[tokio::test]
async fn rules_and_trigger_instances_are_served_like_st2() {
    let h = start().await;
    let (status, rules) = h.get_json("/api/v1/rules").await;
    assert_eq!(status, 200);
    let refs: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["ref"].as_str())
        .collect();
    assert_eq!(
        refs,
        [
            "examples.portarium_event_echo",
            "examples.portarium_webhook_echo"
        ]
    );
    let (status, one) = h
        .get_json("/api/v1/rules/examples.portarium_event_echo")
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["trigger"]["type"], "portarium.event");
    assert_eq!(one["action"]["ref"], "core.echo");
    assert_eq!(one["uid"], "rule:examples:portarium_event_echo");
    let (_, by_id) = h
        .get_json(&format!("/api/v1/rules/{}", one["id"].as_str().unwrap()))
        .await;
    assert_eq!(by_id, one);
    let (status, v) = h.get_json("/api/v1/rules/examples.nope").await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (
            404,
            Some("Resource with a reference or id \"examples.nope\" not found")
        )
    );
    let (_, hooks) = h.get_json("/api/v1/webhooks").await;
    assert_eq!(hooks[0]["parameters"]["url"], "portarium/events");

    // As on a stock st2, the trigger type does not exist until it is created.
    let fire = json!({"trigger": "portarium.event", "payload": {"specversion": "0.3"}});
    let (status, v) = h.post_json("/api/v1/webhooks/st2", fire).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["faultstring"].as_str().unwrap().ends_with(
            "Trigger type with reference \"portarium.event\" doesn't exist in the database"
        ),
        "{v}"
    );
    let (status, created) = h
        .post_json(
            "/api/v1/triggertypes",
            json!({"pack": "portarium", "name": "event", "payload_schema": {"type": "object"}}),
        )
        .await;
    assert_eq!(
        (status, created["ref"].as_str()),
        (201, Some("portarium.event"))
    );
    let (status, _) = h.get_json("/api/v1/triggertypes/portarium.event").await;
    assert_eq!(status, 200);

    // Criteria not met: the instance is recorded, no rule runs.
    let (status, _) = h
        .post_json(
            "/api/v1/webhooks/st2",
            json!({"trigger": "portarium.event", "payload": {"specversion": "0.3"}}),
        )
        .await;
    assert_eq!(status, 202);
    let (_, instances) = h
        .get_json("/api/v1/triggerinstances?trigger=portarium.event")
        .await;
    assert_eq!(instances.as_array().unwrap().len(), 1);
    let id = instances[0]["id"].as_str().unwrap();
    assert_eq!(instances[0]["payload"], json!({"specversion": "0.3"}));
    assert_eq!(instances[0]["status"], "processed");
    let (_, one) = h.get_json(&format!("/api/v1/triggerinstances/{id}")).await;
    assert_eq!(one, instances[0]);
    let (status, v) = h
        .get_json("/api/v1/triggerinstances/000000000000000000000000")
        .await;
    assert_eq!(
        (status, v["faultstring"].as_str()),
        (
            404,
            Some("Unable to identify resource with id \"000000000000000000000000\".")
        )
    );
    let (_, executions) = h.get_json("/api/v1/executions").await;
    assert!(executions.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn a_custom_webhook_runs_its_rule_with_the_rendered_parameters() {
    let h = start().await;
    let r = h
        .req(Method::POST, "/api/v1/webhooks/portarium/events")
        .header("St2-Trace-Tag", "hook-1")
        .header("X-Custom", "yes")
        .json(&json!({"id": "ev-42"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 202);
    let (_, instances) = h.get_json("/api/v1/triggerinstances").await;
    let payload = &instances[0]["payload"];
    assert_eq!(instances[0]["trigger"], "core.st2.webhook");
    assert_eq!(payload["body"], json!({"id": "ev-42"}));
    assert_eq!(payload["headers"]["X-Custom"], "yes");
    assert_eq!(payload["headers_lower"]["x-custom"], "yes");
    assert!(
        payload["headers"].get("st2-api-key").is_none(),
        "credentials stripped: {payload}"
    );

    let mut execution = Value::Null;
    for _ in 0..300 {
        let (_, list) = h.get_json("/api/v1/executions").await;
        if list[0]["status"] == "succeeded" {
            execution = list[0].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(execution["parameters"]["message"], "webhook ev-42");
    assert_eq!(
        execution["context"]["rule"]["name"],
        "portarium_webhook_echo"
    );
    assert_eq!(execution["context"]["user"], "stanley");
    assert_eq!(
        execution["context"]["trigger_instance"]["id"],
        instances[0]["id"]
    );
    let (_, traces) = h.get_json("/api/v1/traces?trace_tag=hook-1").await;
    assert_eq!(
        traces.as_array().unwrap().len(),
        1,
        "the rule's execution joins the hook's trace"
    );
    assert_eq!(
        traces[0]["action_executions"][0]["object_id"],
        execution["id"]
    );
}
