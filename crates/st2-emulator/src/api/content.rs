//! Content and bookkeeping endpoints: API root, actions (+ parameter views), runner types,
//! packs, traces and the `st2` webhook.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::auth::parse_body;
use super::executions::paginate;
use super::{ApiError, Caller, Params, json_response};
use crate::catalogue::Action;
use crate::state::Shared;
use crate::util::{json_type_name, py_repr, uuid4};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1", get(root))
        // nginx maps /api/ to st2api's `/`, which is this same root (captures/api-root.http).
        .route("/api", get(root))
        .route("/api/v1/user", get(user))
        .route("/api/v1/actions", get(actions))
        .route("/api/v1/actions/{ref_or_id}", get(action))
        .route(
            "/api/v1/actions/views/parameters/{ref_or_id}",
            get(action_parameters),
        )
        .route("/api/v1/actions/views/overview", get(actions_overview))
        .route(
            "/api/v1/actions/views/overview/{ref_or_id}",
            get(action_overview),
        )
        .route("/api/v1/runnertypes", get(runners))
        .route("/api/v1/runnertypes/{name_or_id}", get(runner))
        .route("/api/v1/packs", get(packs))
        .route("/api/v1/packs/{ref_or_id}", get(pack))
        .route("/api/v1/traces", get(traces))
        .route("/api/v1/traces/{id}", get(trace))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rules/{ref_or_id}", get(rule))
        .route("/api/v1/triggerinstances", get(trigger_instances))
        .route("/api/v1/triggerinstances/{id}", get(trigger_instance))
        .route("/api/v1/webhooks", get(webhooks))
        .route("/api/v1/webhooks/{*hook}", post(webhook))
}

async fn root() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"version": "3.10dev", "docs_url": "http://docs.stackstorm.com/latest"}),
    )
}

async fn user(caller: Caller) -> Response {
    let mut authentication = json!({
        "method": caller.auth.method,
        "location": caller.auth.location,
    });
    if let Some(expire) = caller.auth.token_expire {
        // st2 formats it with strftime("%Y-%m-%dT%H:%M:%SZ"): whole seconds.
        let fmt =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        authentication["token_expire"] = json!(expire.format(fmt).unwrap_or_default());
    }
    json_response(
        StatusCode::OK,
        &json!({
            "username": caller.user,
            "authentication": authentication,
            "rbac": {"enabled": false, "roles": [], "is_admin": true},
        }),
    )
}

/// Apply `include_attributes` / `exclude_attributes` to content documents (st2's router keeps
/// `id` and `ref` for content-pack resources).
fn select_fields(items: Vec<Value>, params: &Params) -> Result<Vec<Value>, ApiError> {
    let include = params.list("include_attributes");
    let exclude = params.list("exclude_attributes");
    if !include.is_empty() && !exclude.is_empty() {
        return Err(ApiError::bad_request(
            "exclude_fields and include_fields arguments are mutually exclusive. You need to provide either one or another, but not both.",
        ));
    }
    let tops = |fields: &[String]| {
        fields
            .iter()
            .map(|f| f.split('.').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };
    let (include, exclude) = (tops(&include), tops(&exclude));
    Ok(items
        .into_iter()
        .map(|mut item| {
            if let Value::Object(m) = &mut item {
                m.retain(|k, _| {
                    (include.is_empty() || include.contains(k) || k == "id" || k == "ref")
                        && !exclude.contains(k)
                });
            }
            item
        })
        .collect())
}

fn find_action<'a>(sh: &'a Shared, ref_or_id: &str) -> Result<&'a Action, ApiError> {
    let found = if ref_or_id.contains('.') {
        sh.catalogue.action(ref_or_id)
    } else {
        sh.catalogue.actions().iter().find(|a| a.id() == ref_or_id)
    };
    found.ok_or_else(|| {
        ApiError::not_found(format!(
            "Resource with a reference or id \"{ref_or_id}\" not found"
        ))
    })
}

fn action_filtered<'a>(sh: &'a Shared, params: &Params) -> Vec<&'a Action> {
    sh.catalogue
        .actions()
        .iter()
        .filter(|a| params.nonempty("pack").is_none_or(|p| a.pack == p))
        .filter(|a| params.nonempty("name").is_none_or(|n| a.name == n))
        .collect()
}

async fn actions(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let items = action_filtered(&sh, &params)
        .iter()
        .map(|a| a.api())
        .collect();
    paginate(select_fields(items, &params)?, &params, None)
}

async fn action(
    State(sh): State<Arc<Shared>>,
    Path(r): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, &find_action(&sh, &r)?.api()))
}

async fn action_parameters(
    State(sh): State<Arc<Shared>>,
    Path(r): Path<String>,
) -> Result<Response, ApiError> {
    let a = find_action(&sh, &r)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"parameters": sh.catalogue.merged_parameters(a)}),
    ))
}

fn overview(sh: &Shared, a: &Action) -> Value {
    let mut v = a.api();
    v["parameters"] = Value::Object(sh.catalogue.merged_parameters(a));
    v
}

async fn actions_overview(
    State(sh): State<Arc<Shared>>,
    params: Params,
) -> Result<Response, ApiError> {
    let items = action_filtered(&sh, &params)
        .iter()
        .map(|a| overview(&sh, a))
        .collect();
    paginate(select_fields(items, &params)?, &params, None)
}

async fn action_overview(
    State(sh): State<Arc<Shared>>,
    Path(r): Path<String>,
) -> Result<Response, ApiError> {
    let a = find_action(&sh, &r)?;
    Ok(json_response(StatusCode::OK, &overview(&sh, a)))
}

async fn runners(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let items = sh
        .catalogue
        .runners()
        .iter()
        .filter(|r| params.nonempty("name").is_none_or(|n| r.name == n))
        .map(|r| r.api())
        .collect();
    paginate(select_fields(items, &params)?, &params, Some(100))
}

async fn runner(
    State(sh): State<Arc<Shared>>,
    Path(name_or_id): Path<String>,
) -> Result<Response, ApiError> {
    let runners = sh.catalogue.runners();
    let r = runners
        .iter()
        .find(|r| r.id() == name_or_id)
        .or_else(|| runners.iter().find(|r| r.name == name_or_id))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Resource with a name or id \"{name_or_id}\" not found"
            ))
        })?;
    Ok(json_response(StatusCode::OK, &r.api()))
}

async fn packs(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let items = sh
        .catalogue
        .packs()
        .iter()
        .filter(|p| params.nonempty("ref").is_none_or(|r| p.reference == r))
        .filter(|p| params.nonempty("name").is_none_or(|n| p.api()["name"] == n))
        .map(|p| p.api())
        .collect();
    paginate(select_fields(items, &params)?, &params, Some(100))
}

async fn pack(
    State(sh): State<Arc<Shared>>,
    Path(ref_or_id): Path<String>,
) -> Result<Response, ApiError> {
    let packs = sh.catalogue.packs();
    let p = packs
        .iter()
        .find(|p| p.id() == ref_or_id)
        .or_else(|| packs.iter().find(|p| p.reference == ref_or_id))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Resource with a ref or id \"{ref_or_id}\" not found"
            ))
        })?;
    Ok(json_response(StatusCode::OK, &p.api()))
}

async fn traces(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let store = sh.store();
    let candidates: Box<dyn Iterator<Item = &crate::model::Trace>> =
        match params.nonempty("trace_tag") {
            Some(tag) => Box::new(store.traces_tagged(tag)),
            None => Box::new(store.traces.iter()),
        };
    let mut selected: Vec<_> = candidates
        .filter(|t| {
            params
                .nonempty("execution")
                .is_none_or(|id| t.action_executions.iter().any(|c| c.object_id == id))
        })
        .filter(|t| {
            params
                .nonempty("trigger_instance")
                .is_none_or(|id| t.trigger_instances.iter().any(|c| c.object_id == id))
        })
        .filter(|_| params.nonempty("rule").is_none())
        .collect();
    let ascending =
        params.get("sort_asc") == Some("True") && params.get("sort_desc") != Some("True");
    selected.sort_by(|a, b| {
        let by_time = if ascending {
            a.start.cmp(&b.start)
        } else {
            b.start.cmp(&a.start)
        };
        by_time.then_with(|| a.trace_tag.cmp(&b.trace_tag))
    });
    let items = selected.iter().map(|t| t.api()).collect();
    drop(store);
    paginate(select_fields(items, &params)?, &params, Some(100))
}

async fn trace(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = sh.store();
    let t = store.traces.iter().find(|t| t.id == id).ok_or_else(|| {
        ApiError::not_found(format!("Unable to identify resource with id \"{id}\"."))
    })?;
    Ok(json_response(StatusCode::OK, &t.api()))
}

async fn rules(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let items = sh
        .catalogue
        .rules()
        .iter()
        .filter(|r| params.nonempty("pack").is_none_or(|p| r.pack == p))
        .map(|r| r.api())
        .collect();
    paginate(select_fields(items, &params)?, &params, None)
}

async fn rule(State(sh): State<Arc<Shared>>, Path(r): Path<String>) -> Result<Response, ApiError> {
    let found = sh
        .catalogue
        .rules()
        .iter()
        .find(|rule| rule.reference() == r || rule.id == r)
        .ok_or_else(|| {
            ApiError::not_found(format!("Resource with a reference or id \"{r}\" not found"))
        })?;
    Ok(json_response(StatusCode::OK, &found.api()))
}

/// `GET /api/v1/triggerinstances`: newest first, filterable by `trigger`.
async fn trigger_instances(
    State(sh): State<Arc<Shared>>,
    params: Params,
) -> Result<Response, ApiError> {
    let items: Vec<Value> = sh
        .store()
        .trigger_instances
        .iter()
        .rev()
        .filter(|t| {
            params
                .nonempty("trigger")
                .is_none_or(|tr| t["trigger"].as_str() == Some(tr))
        })
        .cloned()
        .collect();
    paginate(select_fields(items, &params)?, &params, Some(100))
}

async fn trigger_instance(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = sh.store();
    let t = store
        .trigger_instances
        .iter()
        .find(|t| t["id"].as_str() == Some(id.as_str()))
        .ok_or_else(|| {
            ApiError::not_found(format!("Unable to identify resource with id \"{id}\"."))
        })?;
    Ok(json_response(StatusCode::OK, t))
}

/// A header name as st2 (webob, from the WSGI environ) hands it to rules: `Content-Type`,
/// `X-Request-Id` (captures/triggerinstances-custom-webhook.http).
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `GET /api/v1/webhooks`: the custom hooks rules on `core.st2.webhook` register.
async fn webhooks(State(sh): State<Arc<Shared>>) -> Response {
    let hooks: Vec<Value> = sh
        .catalogue
        .rules()
        .iter()
        .filter_map(|r| r.webhook_url())
        .map(|url| json!({"type": "core.st2.webhook", "parameters": {"url": url}}))
        .collect();
    json_response(StatusCode::OK, &Value::Array(hooks))
}

/// `POST /api/v1/webhooks/{hook}`: the system `st2` hook fires the named trigger; a custom
/// hook fires `core.st2.webhook` for the rules that registered its url.
async fn webhook(
    State(sh): State<Arc<Shared>>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    if !body.is_object() && !body.is_array() {
        return Err(ApiError::bad_request(format!(
            "{} is not of type 'object', 'array'",
            py_repr(&body)
        )));
    }
    let trace_tag = headers
        .get("St2-Trace-Tag")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("webhook-{hook}-{}", uuid4().replace('-', "")));
    if hook == "st2" || hook == "st2/" {
        let Value::Object(b) = &body else {
            return Err(ApiError::bad_request(format!(
                "Webhook body needs to be an object, got: {}",
                json_type_name(&body)
            )));
        };
        let trigger = b.get("trigger").filter(|t| crate::util::truthy(t));
        let Some(trigger) = trigger else {
            return Err(ApiError::bad_request("Trigger not specified."));
        };
        let trigger = crate::util::py_str(trigger);
        let payload = b
            .get("payload")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        if !super::triggers::exists(&sh, &trigger) {
            return Err(ApiError::bad_request(format!(
                "Trigger payload validation failed and validation is enabled, not dispatching a \
                 trigger \"{trigger}\" ({}): Trigger type with reference \"{trigger}\" doesn't \
                 exist in the database",
                py_repr(&payload)
            )));
        }
        sh.dispatch_trigger(&trigger, &payload, trace_tag, |r| {
            r.trigger.trigger_type == trigger
        });
    } else {
        let url = hook.trim_matches('/');
        if !sh
            .catalogue
            .rules()
            .iter()
            .any(|r| r.webhook_url() == Some(url))
        {
            return Err(ApiError::not_found(format!(
                "Webhook {hook} not registered with st2"
            )));
        }
        // st2 strips credentials from the headers it hands to rules.
        let mut plain = Map::new();
        let mut lower = Map::new();
        for (name, value) in &headers {
            let n = name.as_str();
            if matches!(
                n,
                "x-auth-token" | "st2-api-key" | "authorization" | "cookie"
            ) {
                continue;
            }
            let v = json!(value.to_str().unwrap_or_default());
            plain.insert(title_case(n), v.clone());
            lower.insert(n.to_ascii_lowercase(), v);
        }
        let payload = json!({"headers": plain, "headers_lower": lower, "body": body});
        sh.dispatch_trigger("core.st2.webhook", &payload, trace_tag, |r| {
            r.webhook_url() == Some(url)
        });
    }
    Ok(json_response(StatusCode::ACCEPTED, &body))
}
