//! `/api/v1/triggertypes`: the trigger types st2 knows. A stock st2 ships only its own
//! system types; anything else (`portarium.event`) exists only once someone creates it, and
//! the `st2` webhook refuses to fire a type that does not exist.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::auth::parse_body;
use super::executions::paginate;
use super::{ApiError, Params, json_response};
use crate::state::Shared;
use crate::util::object_id;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/triggertypes", get(list).post(create))
        .route("/api/v1/triggertypes/{ref_or_id}", get(one).delete(remove))
}

/// st2's system trigger types (pack `core`, st2common's trigger constants), as a stock st2
/// lists them; no other type exists until it is created.
const SYSTEM: &[(&str, &str)] = &[
    (
        "st2.generic.actiontrigger",
        "Trigger encapsulating the completion of an action execution.",
    ),
    ("st2.generic.notifytrigger", "Notification trigger."),
    (
        "st2.action.file_written",
        "Trigger encapsulating action file being written on disk.",
    ),
    (
        "st2.generic.inquiry",
        "Trigger indicating a new \"inquiry\" has entered \"pending\" status",
    ),
    (
        "st2.key_value_pair.create",
        "Trigger encapsulating datastore item creation.",
    ),
    (
        "st2.key_value_pair.update",
        "Trigger encapsulating datastore set action.",
    ),
    (
        "st2.key_value_pair.value_change",
        "Trigger encapsulating a change of datastore item value.",
    ),
    (
        "st2.key_value_pair.delete",
        "Trigger encapsulating datastore item deletion.",
    ),
    (
        "st2.sensor.process_spawn",
        "Trigger indicating sensor process is started up.",
    ),
    (
        "st2.sensor.process_exit",
        "Trigger indicating sensor process is stopped.",
    ),
    (
        "st2.webhook",
        "Trigger type for registering webhooks that can consume arbitrary payload.",
    ),
    (
        "st2.IntervalTimer",
        "Triggers on specified intervals. e.g. every 30s, 1week etc.",
    ),
    (
        "st2.DateTimer",
        "Triggers exactly once when the current time matches the specified time. e.g. timezone:UTC date:2014-12-31 23:59:59.",
    ),
    (
        "st2.CronTimer",
        "Triggers whenever current time matches the specified time constaints like a UNIX cron scheduler.",
    ),
];

/// The system trigger types in their API form, each with a fresh id.
pub(crate) fn system_types() -> Vec<Value> {
    SYSTEM
        .iter()
        .map(|(name, description)| {
            api_form(
                "core",
                name,
                json!(description),
                json!({"type": "object"}),
                json!({}),
            )
        })
        .collect()
}

/// `TriggerTypeAPI` as st2 answers it (captures/triggertype-create.http).
fn api_form(
    pack: &str,
    name: &str,
    description: Value,
    payload: Value,
    parameters: Value,
) -> Value {
    let mut form = json!({
        "description": description,
        "tags": [],
        "uid": format!("trigger_type:{pack}:{name}"),
        "ref": format!("{pack}.{name}"),
        "name": name,
        "pack": pack,
        "payload_schema": payload,
        "parameters_schema": parameters,
        "id": object_id(),
    });
    // st2 leaves falsy attributes out.
    if let Value::Object(o) = &mut form {
        o.retain(|k, v| k != "description" || !v.is_null());
    }
    form
}

fn matches(t: &Value, ref_or_id: &str) -> bool {
    t["ref"].as_str() == Some(ref_or_id) || t["id"].as_str() == Some(ref_or_id)
}

fn missing(ref_or_id: &str) -> ApiError {
    ApiError::not_found(format!(
        "Resource with a reference or id \"{ref_or_id}\" not found"
    ))
}

async fn list(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let items = sh
        .store()
        .trigger_types
        .iter()
        .filter(|t| params.nonempty("pack").is_none_or(|p| t["pack"] == p))
        .cloned()
        .collect();
    paginate(items, &params, None)
}

async fn one(State(sh): State<Arc<Shared>>, Path(r): Path<String>) -> Result<Response, ApiError> {
    let store = sh.store();
    let found = store.trigger_types.iter().find(|t| matches(t, &r));
    found
        .map(|t| json_response(StatusCode::OK, t))
        .ok_or_else(|| missing(&r))
}

async fn create(State(sh): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(pack), Some(name)) = (field("pack"), field("name")) else {
        return Err(ApiError::bad_request(
            "'pack' and 'name' are required properties",
        ));
    };
    let created = api_form(
        pack,
        name,
        body.get("description").cloned().unwrap_or(Value::Null),
        body.get("payload_schema")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
        body.get("parameters_schema")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
    );
    let mut store = sh.store();
    if let Some(existing) = store
        .trigger_types
        .iter()
        .find(|t| t["ref"] == created["ref"])
    {
        let message = "Tried to save duplicate unique keys (E11000 duplicate key error collection: st2.trigger_type_d_b index: uid_1)";
        let mut conflict = json!({"faultstring": message});
        conflict["conflict-id"] = existing["id"].clone();
        return Ok(json_response(StatusCode::CONFLICT, &conflict));
    }
    store.trigger_types.push(created.clone());
    Ok(json_response(StatusCode::CREATED, &created))
}

async fn remove(
    State(sh): State<Arc<Shared>>,
    Path(r): Path<String>,
) -> Result<Response, ApiError> {
    let mut store = sh.store();
    let before = store.trigger_types.len();
    store.trigger_types.retain(|t| !matches(t, &r));
    if store.trigger_types.len() == before {
        return Err(missing(&r));
    }
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

/// Whether the trigger type `reference` exists.
pub(crate) fn exists(sh: &Shared, reference: &str) -> bool {
    sh.store()
        .trigger_types
        .iter()
        .any(|t| t["ref"] == reference)
}
