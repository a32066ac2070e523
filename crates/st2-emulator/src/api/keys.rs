//! `/api/v1/keys`: st2's key-value datastore (captures key-*.http, keys-list.http).
//!
//! A key put with `ttl` carries `expire_timestamp` and is gone once that passes. st2 leaves
//! the removal to a MongoDB TTL index, whose sweep runs about once a minute, so a real key can
//! still be read up to a minute after its `expire_timestamp`; the emulator removes it exactly
//! then. Secrets are stored "encrypted" (a hex form that is not the value) and shown in the
//! clear only with `decrypt=true`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::auth::parse_body;
use super::{ApiError, Caller, Params, json_response};
use crate::state::Shared;
use crate::util::{iso, now, object_id};

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/keys", get(list))
        .route("/api/v1/keys/{name}", get(one).put(put).delete(remove))
}

/// st2's two scopes, under their full names.
const SYSTEM: &str = "st2kv.system";
const USER: &str = "st2kv.user";

/// One stored pair; `name` is the bare name (user-scoped pairs also record their user).
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    id: String,
    scope: &'static str,
    user: Option<String>,
    name: String,
    value: String,
    secret: bool,
    description: Option<String>,
    expires: Option<OffsetDateTime>,
}

impl Pair {
    fn expired(&self, at: OffsetDateTime) -> bool {
        self.expires.is_some_and(|e| e <= at)
    }

    /// `KeyValuePairAPI.from_model`: secrets stay encrypted unless `decrypt`, falsy
    /// attributes are left out, `expire_timestamp` only for a pair with a TTL.
    fn api_form(&self, decrypt: bool) -> Value {
        let encrypted = self.secret && !decrypt;
        let value = if encrypted {
            encrypt(&self.value)
        } else {
            self.value.clone()
        };
        let uid_name = match &self.user {
            Some(u) => format!("{u}:{}", self.name),
            None => self.name.clone(),
        };
        let mut form = json!({
            "uid": format!("key_value_pair:{}:{uid_name}", self.scope),
            "scope": self.scope,
            "name": self.name,
            "value": value,
            "secret": self.secret,
            "id": self.id,
            "encrypted": encrypted,
        });
        if let Some(d) = &self.description {
            form["description"] = json!(d);
        }
        if let Some(u) = &self.user {
            form["user"] = json!(u);
        }
        if let Some(e) = self.expires {
            form["expire_timestamp"] = json!(iso(e));
        }
        form
    }
}

/// Stands in for st2's AES: uppercase hex, never the value itself.
fn encrypt(value: &str) -> String {
    let mut out = String::from("3030303030");
    for b in value.bytes() {
        out.push_str(&format!("{:02X}", b ^ 0x5A));
    }
    out
}

/// The scope and user a request addresses; st2 takes `system`/`user` and the full names.
fn scope_of(params: &Params, caller: &Caller) -> Result<(&'static str, Option<String>), ApiError> {
    match params.nonempty("scope").unwrap_or(SYSTEM) {
        "system" | SYSTEM => Ok((SYSTEM, None)),
        "user" | USER => Ok((
            USER,
            Some(
                params
                    .nonempty("user")
                    .map_or_else(|| caller.user.clone(), str::to_string),
            ),
        )),
        other => Err(ApiError::bad_request(format!(
            "Invalid scope \"{other}\". Valid scopes are: st2kv.system, st2kv.user"
        ))),
    }
}

fn missing(name: &str, scope: &str) -> ApiError {
    ApiError::not_found(format!(
        "KeyValuePair with name: {name} and scope: {scope} not found in db."
    ))
}

/// Drops every pair whose TTL has passed, as the TTL index would.
fn sweep(pairs: &mut Vec<Pair>) {
    let at = now();
    pairs.retain(|p| !p.expired(at));
}

async fn list(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    params: Params,
) -> Result<Response, ApiError> {
    let decrypt = params.flag("decrypt")?;
    let offset = params.int("offset")?.unwrap_or(0).max(0) as usize;
    let limit = match params.int("limit")?.unwrap_or(100) {
        l if l < 0 => usize::MAX,
        0 => {
            return Err(ApiError::bad_request(
                "Limit, \"0\" specified, must be a positive number or -1 for full result set.",
            ));
        }
        l => l as usize,
    };
    let scope = match params.nonempty("scope") {
        Some(_) => Some(scope_of(&params, &caller)?),
        None => None,
    };
    let mut store = sh.store();
    sweep(&mut store.keys);
    let page: Vec<Value> = store
        .keys
        .iter()
        .filter(|p| {
            scope
                .as_ref()
                .is_none_or(|(s, u)| p.scope == *s && p.user == *u)
        })
        .filter(|p| {
            params
                .nonempty("prefix")
                .is_none_or(|x| p.name.starts_with(x))
        })
        .filter(|p| params.nonempty("name").is_none_or(|n| p.name == n))
        .filter(|p| params.nonempty("id").is_none_or(|i| p.id == i))
        .skip(offset)
        .take(limit)
        .map(|p| p.api_form(decrypt))
        .collect();
    // The recorded list carries no X-Total-Count or X-Limit (keys-list.http).
    Ok(json_response(StatusCode::OK, &Value::Array(page)))
}

async fn one(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let decrypt = params.flag("decrypt")?;
    let (scope, user) = scope_of(&params, &caller)?;
    let mut store = sh.store();
    sweep(&mut store.keys);
    store
        .keys
        .iter()
        .find(|p| p.scope == scope && p.user == user && p.name == name)
        .map(|p| json_response(StatusCode::OK, &p.api_form(decrypt)))
        .ok_or_else(|| missing(&name, scope))
}

async fn put(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = parse_body(&body)?;
    let Some(value) = body.get("value").and_then(Value::as_str) else {
        return Err(ApiError::bad_request(match body.get("value") {
            None => "'value' is a required property".to_string(),
            Some(v) => format!("{v} is not of type 'string'"),
        }));
    };
    let ttl = match body.get("ttl") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(t) if t > 0 => Some(t),
            Some(_) => None,
            None => {
                return Err(ApiError::bad_request(format!(
                    "{v} is not of type 'integer', 'null'"
                )));
            }
        },
    };
    let mut params = Vec::new();
    for field in ["scope", "user"] {
        if let Some(v) = body.get(field).and_then(Value::as_str) {
            params.push(format!("{field}={v}"));
        }
    }
    let (scope, user) = scope_of(&Params::parse(Some(&params.join("&"))), &caller)?;
    let secret = body.get("secret").and_then(Value::as_bool).unwrap_or(false);
    let at = now();
    let mut store = sh.store();
    sweep(&mut store.keys);
    let pair = Pair {
        id: object_id(),
        scope,
        user,
        name,
        value: value.to_string(),
        secret,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        expires: ttl.map(|t| at + time::Duration::seconds(t)),
    };
    let form = match store
        .keys
        .iter_mut()
        .find(|p| p.scope == pair.scope && p.user == pair.user && p.name == pair.name)
    {
        // An update keeps the pair's id.
        Some(existing) => {
            *existing = Pair {
                id: existing.id.clone(),
                ..pair
            };
            existing.api_form(false)
        }
        None => {
            let form = pair.api_form(false);
            store.keys.push(pair);
            form
        }
    };
    Ok(json_response(StatusCode::OK, &form))
}

async fn remove(
    State(sh): State<Arc<Shared>>,
    caller: Caller,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let (scope, user) = scope_of(&params, &caller)?;
    let mut store = sh.store();
    sweep(&mut store.keys);
    let before = store.keys.len();
    store
        .keys
        .retain(|p| !(p.scope == scope && p.user == user && p.name == name));
    if store.keys.len() == before {
        return Err(missing(&name, scope));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_past_its_ttl_is_swept_and_one_without_stays() {
        let pair = |name: &str, expires| Pair {
            id: object_id(),
            scope: SYSTEM,
            user: None,
            name: name.into(),
            value: "v".into(),
            secret: false,
            description: None,
            expires,
        };
        let mut pairs = vec![
            pair("gone", Some(now() - time::Duration::milliseconds(1))),
            pair("kept", None),
            pair("later", Some(now() + time::Duration::seconds(60))),
        ];
        sweep(&mut pairs);
        let names: Vec<_> = pairs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["kept", "later"]);
        assert!(pairs[1].api_form(false)["expire_timestamp"].is_string());
        assert!(pairs[0].api_form(false).get("expire_timestamp").is_none());
    }

    #[test]
    fn secrets_are_shown_encrypted_unless_decrypted() {
        assert_ne!(encrypt("s3cr3t"), "s3cr3t");
        assert!(encrypt("s3cr3t").chars().all(|c| c.is_ascii_hexdigit()));
    }
}
