//! `/api/v1/executions...`: run actions, read, list, cancel, pause/resume, re-run, output.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use super::auth::parse_body;
use super::{ApiError, Caller, Params, fault_response, json_response};
use crate::catalogue::Action;
use crate::model::{Execution, Status};
use crate::params::{self, ParamError};
use crate::state::{NewExecution, Shared};
use crate::util::{is_object_id, lookup_path, parse_iso, py_repr, py_str_repr, truthy};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/executions", get(list).post(create))
        .route(
            "/api/v1/executions/{id}",
            get(get_one).put(update).delete(cancel),
        )
        .route("/api/v1/executions/{id}/output", get(output))
        .route(
            "/api/v1/executions/{id}/re_run",
            axum::routing::post(re_run),
        )
        .route(
            "/api/v1/executions/{id}/attribute/{attribute}",
            get(attribute),
        )
        .route("/api/v1/executions/{id}/children", get(children))
        .route("/api/v1/executions/{id}/result", get(raw_result))
}

/// Top-level fields of st2's ActionExecution document.
const FIELDS: &[&str] = &[
    "id",
    "trigger",
    "trigger_type",
    "trigger_instance",
    "rule",
    "action",
    "runner",
    "liveaction",
    "workflow_execution",
    "task_execution",
    "status",
    "start_timestamp",
    "end_timestamp",
    "elapsed_seconds",
    "web_url",
    "parameters",
    "context",
    "result",
    "result_size",
    "parent",
    "children",
    "log",
    "delay",
];
/// Fields that are dictionaries in st2's model (sub-paths resolve inside them).
const DICT_FIELDS: &[&str] = &[
    "trigger",
    "trigger_type",
    "trigger_instance",
    "rule",
    "action",
    "runner",
    "liveaction",
    "parameters",
    "context",
    "result",
];
const VALID_EXCLUDE: &[&str] = &["result", "trigger_instance", "status"];
/// Added to every projection so secrets can be masked (st2's `mandatory_include_fields_retrieve`).
const MANDATORY_INCLUDE: &[&str] = &[
    "action.parameters",
    "action.output_schema",
    "runner.runner_parameters",
    "runner.output_key",
    "parameters",
    "action.pack",
    "action.uid",
    "context",
];

/// Look an execution up by id (`last` = newest); 404 in st2's words otherwise.
pub(super) fn find(sh: &Shared, id: &str) -> Result<Execution, ApiError> {
    let store = sh.store();
    let found = if id == "last" {
        match store.executions().last() {
            Some(e) => Some(e),
            None => return Err(ApiError::bad_request("No executions found in the database")),
        }
    } else if is_object_id(id) {
        store.execution(id)
    } else {
        None
    };
    found.cloned().ok_or_else(|| {
        ApiError::not_found(format!("Unable to identify resource with id \"{id}\"."))
    })
}

fn mask(sh: &Shared, params: &Params) -> Result<bool, ApiError> {
    // With RBAC off every caller is an admin and may ask for secrets; with it on, only admins.
    Ok(!params.flag("show_secrets")? || sh.config.secrets_hidden)
}

/// include/exclude handling as st2's controller + router do it.
#[derive(Default)]
struct Projection {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl Projection {
    fn from_params(params: &Params, list_call: bool) -> Result<Projection, ApiError> {
        let include = params.list("include_attributes");
        let exclude = params.list("exclude_attributes");
        if !include.is_empty() && !exclude.is_empty() {
            let (a, b) = if list_call {
                ("exclude_fields", "include_fields")
            } else {
                ("exclude_attributes", "include_attributes")
            };
            return Err(ApiError::bad_request(format!(
                "{a} and {b} arguments are mutually exclusive. You need to provide either one or another, but not both."
            )));
        }
        if let Some(bad) = exclude
            .iter()
            .find(|f| !VALID_EXCLUDE.contains(&f.as_str()))
        {
            return Err(ApiError::bad_request(format!(
                "Invalid or unsupported exclude attribute specified: {bad}"
            )));
        }
        if let Some(bad) = include
            .iter()
            .find(|f| !FIELDS.contains(&f.split('.').next().unwrap_or_default()))
        {
            return Err(ApiError::bad_request(format!(
                "Cannot resolve field \"{}\"",
                bad.split('.').next().unwrap_or_default()
            )));
        }
        Ok(Projection { include, exclude })
    }

    fn apply(&self, e: &Execution, mask: bool, max_result_size: Option<i64>) -> Value {
        let mut doc = e.document(mask);
        let mut include = self.include.clone();
        let mut exclude = self.exclude.clone();
        if let Some(max) = max_result_size
            && e.result_size as i64 > max
        {
            if include.is_empty() {
                exclude.push("result".into());
            } else {
                include.retain(|f| f != "result");
            }
        }
        if !include.is_empty() {
            let tops: Vec<&str> = include
                .iter()
                .map(|f| f.split('.').next().unwrap_or_default())
                .collect();
            let mut fields: Vec<&str> = include.iter().map(String::as_str).collect();
            fields.extend(MANDATORY_INCLUDE.iter().filter(|f| {
                !include
                    .iter()
                    .any(|i| i == f.split('.').next().unwrap_or_default())
            }));
            doc = project(&doc, &fields);
            doc.retain(|k, _| k == "id" || tops.contains(&k.as_str()));
        }
        doc.retain(|k, v| !exclude.contains(k) && truthy(v));
        Value::Object(doc)
    }
}

/// Keep only the (possibly dotted) fields of a document.
fn project(doc: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), doc.get("id").cloned().unwrap_or(Value::Null));
    for field in fields {
        let mut parts = field.splitn(2, '.');
        let top = parts.next().unwrap_or_default();
        let Some(value) = doc.get(top) else { continue };
        match parts.next() {
            None => {
                out.insert(top.into(), value.clone());
            }
            Some(rest) => {
                if matches!(out.get(top), Some(v) if !v.is_object()) {
                    continue;
                }
                if let Some(sub) = lookup_path(value, rest) {
                    let slot = out.entry(top.to_string()).or_insert_with(|| json!({}));
                    insert_path(slot, rest, sub.clone());
                }
            }
        }
    }
    out
}

fn insert_path(slot: &mut Value, path: &str, value: Value) {
    let mut cur = slot;
    let keys: Vec<&str> = path.split('.').collect();
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let map = cur.as_object_mut().expect("made an object above");
        if i == keys.len() - 1 {
            map.insert((*k).to_string(), value);
            return;
        }
        cur = map.entry((*k).to_string()).or_insert_with(|| json!({}));
    }
}

/// Offset/limit as st2's `_get_all` validates them, and the response with its headers.
pub(super) fn paginate(
    items: Vec<Value>,
    params: &Params,
    default_limit: Option<i64>,
) -> Result<Response, ApiError> {
    paginate_with(items, params, default_limit, |v| v)
}

/// [`paginate`] for items that become JSON only once on the page, so a large selection
/// costs no serialization beyond what is returned.
pub(super) fn paginate_with<T>(
    items: Vec<T>,
    params: &Params,
    default_limit: Option<i64>,
    render: impl Fn(T) -> Value,
) -> Result<Response, ApiError> {
    let offset = params.int("offset")?.unwrap_or(0);
    if offset >= 1 << 31 {
        return Err(ApiError::bad_request(format!(
            "Offset \"{offset}\" specified is more than 32-bit int"
        )));
    }
    let limit = params.int("limit")?.or(default_limit);
    let limit = match limit {
        Some(0) => {
            return Err(ApiError::bad_request(
                "Limit, \"0\" specified, must be a positive number or -1 for full result set.",
            ));
        }
        Some(-1) => None,
        Some(l) if l <= -2 => {
            return Err(ApiError::bad_request(format!(
                "Limit, \"{l}\" specified, must be a positive number."
            )));
        }
        // Above [api] max_page_size st2 answers 403 to non-admins only; with RBAC off every
        // user is an admin, so any positive limit is allowed.
        other => other,
    };
    let total = items.len();
    let offset = offset.max(0) as usize;
    let page: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(limit.map_or(usize::MAX, |l| l as usize))
        .map(render)
        .collect();
    let mut resp = json_response(StatusCode::OK, &Value::Array(page));
    resp.headers_mut().insert("X-Total-Count", total.into());
    if let Some(l) = limit {
        resp.headers_mut().insert("X-Limit", l.into());
    }
    Ok(resp)
}

fn advanced_filter(filter: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for token in filter.split(' ') {
        let Some((path, value)) = token.split_once(':') else {
            return Err(ApiError::bad_request(format!(
                "invalid format for filter \"{token}\""
            )));
        };
        let mut parts = path.split('.');
        let top = parts.next().unwrap_or_default();
        if !FIELDS.contains(&top) {
            return Err(ApiError::bad_request(format!(
                "Cannot resolve field \"{top}\""
            )));
        }
        if let Some(sub) = parts.next()
            && !DICT_FIELDS.contains(&top)
        {
            return Err(ApiError::bad_request(format!(
                "Cannot resolve subfield or operator {sub} on the field {top}"
            )));
        }
        out.push((path.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Whether `e` has `value` at `path`; context paths are read in place, since building the
/// whole document for every execution would make each filtered list cost O(n) documents.
fn matches_execution(e: &Execution, path: &str, value: &str) -> bool {
    if let Some(rest) = path.strip_prefix("context.") {
        let (first, tail) = rest.split_once('.').unwrap_or((rest, ""));
        return e.context.get(first).is_some_and(|v| {
            let found = if tail.is_empty() {
                Some(v)
            } else {
                lookup_path(v, tail)
            };
            found.is_some_and(|f| matches_value(f, value))
        });
    }
    let doc = Value::Object(e.document(false));
    lookup_path(&doc, path).is_some_and(|f| matches_value(f, value))
}

fn matches_value(found: &Value, value: &str) -> bool {
    match found {
        Value::String(s) => s == value,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(value)),
        _ => false,
    }
}

async fn list(State(sh): State<Arc<Shared>>, params: Params) -> Result<Response, ApiError> {
    let projection = Projection::from_params(&params, true)?;
    let mask = mask(&sh, &params)?;
    let ids = params.list("id");
    if ids.len() > 100 {
        return Err(ApiError::bad_request(
            "Maximum of 100 items can be provided for a query parameter value",
        ));
    }
    let time_filter = |name: &str| -> Result<Option<time::OffsetDateTime>, ApiError> {
        params
            .nonempty(name)
            .map(|v| {
                parse_iso(v).ok_or_else(|| {
                    ApiError::bad_request("Datetime value does not match expected format.")
                })
            })
            .transpose()
    };
    let (gt, lt, at) = (
        time_filter("timestamp_gt")?,
        time_filter("timestamp_lt")?,
        time_filter("timestamp")?,
    );
    let advanced = params
        .nonempty("filter")
        .map(advanced_filter)
        .transpose()?
        .unwrap_or_default();
    let unsupported = ["trigger_type", "trigger", "trigger_instance", "rule"]
        .iter()
        .any(|f| params.nonempty(f).is_some());
    let ascending = params.nonempty("timestamp_lt").is_none()
        && params.nonempty("sort_desc").is_none()
        && (params.nonempty("timestamp_gt").is_some() || params.nonempty("sort_asc").is_some());
    // st2's persistence turns a filter value "null" (any case) into "field does not exist";
    // `st2 execution list` sends `parent=null` to show top-level executions only.
    // The wanted values are read once, not per execution: the scan runs under the store lock.
    let wanted: Vec<Option<&str>> = ["status", "parent", "action", "runner", "user", "liveaction"]
        .iter()
        .map(|name| params.nonempty(name))
        .collect();
    let eq = |field: usize, actual: Option<&str>| {
        wanted[field].is_none_or(|want| {
            if want.eq_ignore_ascii_case("null") {
                actual.is_none()
            } else {
                actual == Some(want)
            }
        })
    };
    let mut store = sh.store();
    // By id MongoDB reads its _id index; anything else here is a collection scan.
    let by_id = !ids.is_empty();
    if !by_id {
        store.scanned += store.executions().len() as u64;
    }
    let store = &*store;
    let candidates: Vec<&Execution> = if by_id {
        ids.iter().filter_map(|id| store.execution(id)).collect()
    } else {
        store.executions().iter().collect()
    };
    let mut selected: Vec<&Execution> = candidates
        .into_iter()
        .filter(|e| {
            !unsupported
                && eq(0, Some(e.status.as_str()))
                && eq(1, e.parent.as_deref())
                && eq(2, Some(&e.action_ref))
                && eq(3, Some(&e.runner_name))
                && eq(4, e.context.get("user").and_then(Value::as_str))
                && eq(5, Some(&e.liveaction_id))
                && gt.is_none_or(|t| e.start > t)
                && lt.is_none_or(|t| e.start < t)
                && at.is_none_or(|t| e.start == t)
                && advanced.iter().all(|(p, v)| matches_execution(e, p, v))
        })
        .collect();
    selected.sort_by(|a, b| {
        let by_time = if ascending {
            a.start.cmp(&b.start)
        } else {
            b.start.cmp(&a.start)
        };
        // st2 sorts by start time, then action ref; within the same millisecond MongoDB
        // returns documents in the order they were written, which their ids follow.
        by_time
            .then_with(|| a.action_ref.cmp(&b.action_ref))
            .then_with(|| {
                if ascending {
                    a.id.cmp(&b.id)
                } else {
                    b.id.cmp(&a.id)
                }
            })
    });
    paginate_with(selected, &params, Some(100), |e| {
        projection.apply(e, mask, None)
    })
}

async fn get_one(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let projection = Projection::from_params(&params, false)?;
    let mask = mask(&sh, &params)?;
    let max = params.int("max_result_size")?.filter(|m| *m != 0);
    if let Some(m) = max {
        if m <= 0 {
            return Err(ApiError::bad_request(
                "max_result_size must be a positive number",
            ));
        }
        if m > 14 * 1024 * 1024 {
            return Err(ApiError::bad_request(
                "max_result_size query parameter must be smaller than 14 MB",
            ));
        }
    }
    let e = find(&sh, &id)?;
    Ok(json_response(
        StatusCode::OK,
        &projection.apply(&e, mask, max),
    ))
}

/// The body of `POST /executions` (st2's `ExecutionRequest`), checked like st2's router does.
struct ExecutionRequest {
    action: String,
    parameters: Map<String, Value>,
    context: Map<String, Value>,
    notify: Option<Value>,
    delay: Option<u64>,
    user: Option<String>,
}

fn not_of_type(v: &Value, ty: &str) -> ApiError {
    ApiError::bad_request(format!("{} is not of type {}", py_repr(v), ty))
}

fn object_field(body: &Map<String, Value>, name: &str) -> Result<Map<String, Value>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(o)) => Ok(o.clone()),
        Some(other) => Err(not_of_type(other, "'object'")),
    }
}

impl ExecutionRequest {
    fn parse(body: &Value) -> Result<ExecutionRequest, ApiError> {
        let Value::Object(b) = body else {
            return Err(not_of_type(body, "'object'"));
        };
        let action = match b.get("action") {
            None => return Err(ApiError::bad_request("'action' is a required property")),
            Some(Value::String(a)) => a.clone(),
            Some(other) => return Err(not_of_type(other, "'string'")),
        };
        let delay = match b.get("delay") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| not_of_type(v, "'integer'"))?),
        };
        let user = match b.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(u.clone()).filter(|u| !u.is_empty()),
            Some(other) => return Err(not_of_type(other, "'string', 'null'")),
        };
        let notify = b.get("notify").filter(|n| !n.is_null()).cloned();
        if let Some(n) = &notify
            && !n.is_object()
        {
            return Err(not_of_type(n, "'object'"));
        }
        Ok(ExecutionRequest {
            action,
            parameters: object_field(b, "parameters")?,
            context: object_field(b, "context")?,
            notify,
            delay,
            user,
        })
    }
}

fn param_error(e: ParamError) -> ApiError {
    match e {
        ParamError::Invalid(m) => ApiError::bad_request(m),
        ParamError::Internal(m) => ApiError::internal(m),
    }
}

/// st2's `_handle_schedule_execution` + `create_request`: checks, context, casting, validation.
fn schedule(
    sh: &Arc<Shared>,
    caller: &Caller,
    req: ExecutionRequest,
    context_header: Option<&str>,
) -> Result<Execution, ApiError> {
    let action: &Action = sh.catalogue.action(&req.action).ok_or_else(|| {
        ApiError::bad_request(format!("Action \"{}\" cannot be found.", req.action))
    })?;
    let user = req.user.unwrap_or_else(|| caller.user.clone());
    let mut context = req.context;
    context.insert("user".into(), json!(user));
    context.insert("pack".into(), json!(action.pack));
    if let Some(header) = context_header {
        let parsed: Value =
            serde_json::from_str(header).unwrap_or_else(|_| Value::String(header.to_string()));
        let Value::Object(extra) = parsed else {
            return Err(ApiError::bad_request(format!(
                "Unable to convert st2-context from the headers into JSON (was <class '{}'>).",
                crate::util::py_type_name(&parsed)
            )));
        };
        context.extend(extra);
    }
    let runner = sh.catalogue.runner_of(action);
    let parameters = params::cast_params(
        &req.parameters,
        [&action.parameters, &runner.runner_parameters],
    )
    .map_err(param_error)?;
    if !action.enabled {
        return Err(ApiError::bad_request(format!(
            "Unable to execute. Action \"{}\" is disabled.",
            req.action
        )));
    }
    context.insert("pack".into(), json!(action.pack));
    let merged = sh.catalogue.merged_parameters(action);
    params::validate(&parameters, &merged).map_err(param_error)?;
    sh.create_execution(NewExecution {
        action,
        parameters,
        context,
        delay: req.delay,
        notify: req.notify,
        parent: None,
        workflow_execution: None,
        task_execution: None,
        origin: Map::new(),
    })
}

async fn create(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mask = mask(&sh, &params)?;
    let req = ExecutionRequest::parse(&parse_body(&body)?)?;
    let header = headers.get("st2-context").and_then(|v| v.to_str().ok());
    let e = schedule(&sh, &caller, req, header)?;
    Ok(json_response(StatusCode::CREATED, &e.api(mask)))
}

async fn update(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mask = mask(&sh, &params)?;
    let body = parse_body(&body)?;
    let Value::Object(b) = &body else {
        return Err(not_of_type(&body, "'object'"));
    };
    let extra: Vec<String> = b
        .keys()
        .filter(|k| *k != "status" && *k != "result")
        .map(|k| py_str_repr(k))
        .collect();
    if !extra.is_empty() {
        let verb = if extra.len() == 1 { "was" } else { "were" };
        return Err(ApiError::bad_request(format!(
            "Additional properties are not allowed ({} {verb} unexpected)",
            extra.join(", ")
        )));
    }
    let status = match b.get("status") {
        Some(Value::String(s)) => Status::parse(s).ok_or_else(|| {
            let all: Vec<Value> = Status::ALL.iter().map(|s| json!(s.as_str())).collect();
            ApiError::bad_request(format!(
                "{} is not one of {}",
                py_str_repr(s),
                py_repr(&Value::Array(all))
            ))
        })?,
        Some(other) => return Err(not_of_type(other, "'string'")),
        None => return Err(ApiError::bad_request("'status' is a required property")),
    };
    let result = b.get("result").cloned();
    let e = find(&sh, &id)?;
    if e.status.is_completed() {
        return Err(ApiError::bad_request(
            "Execution is already in completed state.",
        ));
    }
    let updated = match status {
        Status::Canceled if e.status == Status::Canceling => write_status(&sh, &id, status, result),
        Status::Canceling | Status::Canceled => {
            sh.request_cancel(&id, &caller.user).map_err(put_error)?
        }
        Status::Paused if e.status == Status::Pausing => write_status(&sh, &id, status, result),
        Status::Pausing | Status::Paused => sh.request_pause(&id, &caller.user)?,
        Status::Resuming => sh.request_resume(&id, &caller.user)?,
        other => write_status(&sh, &id, other, result),
    };
    Ok(json_response(StatusCode::OK, &updated.api(mask)))
}

fn put_error(e: ApiError) -> ApiError {
    if e.status == StatusCode::INTERNAL_SERVER_ERROR {
        ApiError::internal("Failed updating execution due to unexpected error.")
    } else {
        e
    }
}

/// PUT with any other status writes it (and the result) directly, as runners do.
fn write_status(sh: &Shared, id: &str, status: Status, result: Option<Value>) -> Execution {
    sh.update(id, true, |e| {
        e.status = status;
        if let Some(r) = result {
            e.set_result(r);
        }
    })
    .expect("execution exists")
}

async fn cancel(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let mask = mask(&sh, &params)?;
    let e = find(&sh, &id)?;
    if e.status == Status::Canceled {
        return Ok(json_response(StatusCode::OK, &e.api(mask)));
    }
    if !e.status.is_cancelable() {
        // st2 aborts with 200: an error body under a success status.
        return Ok(fault_response(
            StatusCode::OK,
            &format!("Action cannot be canceled. State = {}.", e.status.as_str()),
        ));
    }
    let e = sh
        .request_cancel(&id, &caller.user)
        .map_err(|_| ApiError::internal("Failed canceling execution."))?;
    Ok(json_response(StatusCode::OK, &e.api(mask)))
}

async fn output(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let e = find(&sh, &id)?;
    let wanted = params.nonempty("output_type").unwrap_or("all").to_string();
    let text: String = sh
        .store()
        .outputs
        .iter()
        .filter(|o| o.execution_id == e.id && (wanted == "all" || o.output_type == wanted))
        .map(|o| o.data.as_str())
        .collect();
    Ok(([(CONTENT_TYPE, "text/plain; charset=UTF-8")], text).into_response())
}

async fn re_run(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    Path(id): Path<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mask = mask(&sh, &params)?;
    let body = parse_body(&body)?;
    let Value::Object(b) = &body else {
        return Err(not_of_type(&body, "'object'"));
    };
    let overrides = object_field(b, "parameters")?;
    let list = |name: &str| -> Result<Vec<Value>, ApiError> {
        match b.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(other) => Err(not_of_type(other, "'array'")),
        }
    };
    let (tasks, reset) = (list("tasks")?, list("reset")?);
    if (!tasks.is_empty() || !reset.is_empty()) && !overrides.is_empty() {
        return Err(ApiError::bad_request(
            "Parameters override is not supported when re-running task(s) for a workflow.",
        ));
    }
    if reset.iter().any(|r| !tasks.contains(r)) {
        return Err(ApiError::bad_request(
            "List of tasks to reset does not match the tasks to rerun.",
        ));
    }
    let delay = b.get("delay").and_then(Value::as_u64);
    let user = b
        .get("user")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let no_merge = params.flag("no_merge")?;
    let existing = find(&sh, &id)?;
    if !tasks.is_empty() && existing.runner_name != "orquesta" {
        return Err(ApiError::bad_request(
            "Task option is only supported for Orquesta workflows.",
        ));
    }
    let mut parameters = if no_merge {
        Map::new()
    } else {
        existing.parameters.clone()
    };
    parameters.extend(overrides);
    let mut rerun = json!({"ref": id});
    if !tasks.is_empty() {
        rerun["tasks"] = Value::Array(tasks);
    }
    if !reset.is_empty() {
        rerun["reset"] = Value::Array(reset);
    }
    let mut context = Map::new();
    context.insert("re-run".into(), rerun);
    if let Some(trace) = sh.store().trace_of(&existing.id) {
        context.insert("trace_context".into(), json!({"id_": trace.id}));
    }
    let req = ExecutionRequest {
        action: existing.action_ref.clone(),
        parameters,
        context,
        notify: None,
        delay,
        user,
    };
    let e = schedule(&sh, &caller, req, None)?;
    Ok(json_response(StatusCode::CREATED, &e.api(mask)))
}

async fn attribute(
    State(sh): State<Arc<Shared>>,
    Path((id, attribute)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if !VALID_EXCLUDE.contains(&attribute.as_str())
        && attribute != "action__pack"
        && attribute != "action__uid"
    {
        return Err(ApiError::bad_request(format!(
            "Invalid attribute \"{attribute}\" specified. Valid attributes are: {}",
            VALID_EXCLUDE.join(", ")
        )));
    }
    let e = find(&sh, &id)?;
    let doc = e.document(true);
    let value = match attribute.as_str() {
        "action__pack" => doc["action"]["pack"].clone(),
        "action__uid" => doc["action"]["uid"].clone(),
        other => doc.get(other).cloned().unwrap_or(Value::Null),
    };
    Ok(json_response(StatusCode::OK, &value))
}

async fn children(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let mask = mask(&sh, &params)?;
    let depth = params.int("depth")?.unwrap_or(-1);
    let root = find(&sh, &id)?;
    let store = sh.store();
    let mut out = Vec::new();
    let mut stack: Vec<(String, i64)> =
        root.children.iter().rev().map(|c| (c.clone(), 1)).collect();
    while let Some((cid, level)) = stack.pop() {
        let Some(child) = store.execution(&cid) else {
            continue;
        };
        out.push(child.api(mask));
        if depth < 0 || level < depth {
            stack.extend(child.children.iter().rev().map(|c| (c.clone(), level + 1)));
        }
    }
    Ok(json_response(StatusCode::OK, &Value::Array(out)))
}

async fn raw_result(
    State(sh): State<Arc<Shared>>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let e = find(&sh, &id)
        .map_err(|_| ApiError::not_found(format!("Execution with id {id} not found")))?;
    let body = if params.flag("pretty_format")? {
        serde_json::to_string_pretty(&e.result).unwrap_or_default()
    } else {
        e.result.to_string()
    };
    let mut resp = ([(CONTENT_TYPE, "text/json")], body).into_response();
    if params.flag("download")? {
        let value = format!("attachment; filename=execution_{id}_result.json");
        if let Ok(v) = value.parse() {
            resp.headers_mut().insert(CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}
