//! What the core needs to be told: the tenants that may dispatch, and how dispatches wait.

use std::time::Duration;

use serde::Deserialize;
use st2_basics::FieldError;
use st2_client::Secret;

/// One Portarium tenant allowed to dispatch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The `tenantId` Portarium sends.
    pub id: String,
    /// Bearer token this tenant's caller sends (literal, `env:NAME` or `file:PATH`).
    pub api_token: Secret,
    /// st2 credentials for this tenant instead of `st2`'s (same URLs).
    #[serde(default)]
    pub st2: Option<TenantSt2>,
    /// st2 actions this tenant may run (`core.*`, `linux.check_loadavg`); unset allows all.
    #[serde(default)]
    pub allowed_actions: Option<Vec<String>>,
}

/// A tenant's own st2 credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSt2 {
    /// API key for this tenant.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// User for token auth, instead of `api_key`.
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password.
    #[serde(default)]
    pub password: Option<Secret>,
}

/// Dispatch wait settings. Portarium's callers abort at 10 s by default, so the default
/// wait answers inside that budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    /// Wait for a terminal status this long unless the request asks otherwise.
    #[serde(default = "default_wait")]
    pub default_wait_ms: u64,
    /// Longest wait a request may ask for (`?waitMs=`).
    #[serde(default = "default_max_wait")]
    pub max_wait_ms: u64,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Cancel the st2 execution when a synchronous wait runs out, instead of leaving it
    /// running for a retry to attach to.
    #[serde(default)]
    pub cancel_on_deadline: bool,
    /// Action parameter schemas kept between dispatches.
    #[serde(default)]
    pub schema_cache: SchemaCacheConfig,
}

/// `dispatch.schema_cache`: how long and how many action parameter schemas are kept, so a
/// dispatch checks its payload without reading the schema from st2 each time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaCacheConfig {
    /// How long a schema read from st2 is used; a changed action is seen within it (at once
    /// when st2 refuses parameters the old schema let through). `0s` reads it every time.
    #[serde(default = "default_schema_ttl", with = "st2_basics::duration")]
    pub ttl: Duration,
    /// Most actions whose schema is kept; the oldest go first.
    #[serde(default = "default_schema_entries")]
    pub max_entries: usize,
    /// Most bytes the kept schemas take (their JSON size plus bookkeeping); the oldest go first.
    #[serde(default = "default_schema_bytes")]
    pub max_bytes: usize,
}

impl Default for SchemaCacheConfig {
    fn default() -> Self {
        Self {
            ttl: default_schema_ttl(),
            max_entries: default_schema_entries(),
            max_bytes: default_schema_bytes(),
        }
    }
}

fn default_schema_ttl() -> Duration {
    Duration::from_secs(30)
}
fn default_schema_entries() -> usize {
    1_024
}
fn default_schema_bytes() -> usize {
    4 << 20
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            default_wait_ms: default_wait(),
            max_wait_ms: default_max_wait(),
            max_body_bytes: default_max_body(),
            cancel_on_deadline: false,
            schema_cache: SchemaCacheConfig::default(),
        }
    }
}

fn default_wait() -> u64 {
    8_000
}
fn default_max_wait() -> u64 {
    300_000
}
fn default_max_body() -> usize {
    1 << 20
}

/// Adds a [`FieldError`] (under `tenants[i].`) for every broken rule of the tenant list.
pub fn validate_tenants(tenants: &[TenantConfig], errors: &mut Vec<FieldError>) {
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tenants.iter().enumerate() {
        let field = |name: &str| format!("tenants[{i}].{name}");
        if let Err(e) = crate::core::ids::TENANT_ID.check_as(&field("id"), &t.id) {
            errors.push(e);
        } else if !seen.insert(t.id.as_str()) {
            errors.push(FieldError {
                field: field("id"),
                reason: format!("{} is listed twice", t.id),
            });
        }
        for (j, p) in t.allowed_actions.iter().flatten().enumerate() {
            if let Some(reason) = crate::core::governance::tenants::AllowedActions::check_pattern(p)
            {
                errors.push(FieldError {
                    field: field(&format!("allowed_actions[{j}]")),
                    reason: reason.into(),
                });
            }
        }
        if let Some(own) = &t.st2 {
            let reason = match (&own.api_key, &own.username, &own.password) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => None,
                (None, None, _) => Some("give api_key, or username and password"),
                (Some(_), _, _) => Some("api_key and username are both set; choose one"),
                (None, Some(_), None) => Some("password is required with username"),
            };
            if let Some(reason) = reason {
                errors.push(FieldError {
                    field: field("st2"),
                    reason: reason.into(),
                });
            }
        }
    }
}

impl DispatchConfig {
    /// Adds a [`FieldError`] (under `dispatch.`) for every broken rule.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let d = self;
        if d.default_wait_ms == 0 || d.default_wait_ms > d.max_wait_ms {
            errors.push(FieldError {
                field: "dispatch.default_wait_ms".into(),
                reason: format!(
                    "{} must be between 1 and dispatch.max_wait_ms ({})",
                    d.default_wait_ms, d.max_wait_ms
                ),
            });
        }
        let cache = &d.schema_cache;
        if cache.ttl > Duration::from_secs(3600) {
            errors.push(FieldError {
                field: "dispatch.schema_cache.ttl".into(),
                reason: format!(
                    "{} is above 1h; a changed action would be checked against its old schema that long",
                    st2_basics::duration::format(cache.ttl)
                ),
            });
        }
        if !(1..=100_000).contains(&cache.max_entries) {
            errors.push(FieldError {
                field: "dispatch.schema_cache.max_entries".into(),
                reason: format!("{} is outside 1..=100000", cache.max_entries),
            });
        }
        if !(4096..=(1 << 30)).contains(&cache.max_bytes) {
            errors.push(FieldError {
                field: "dispatch.schema_cache.max_bytes".into(),
                reason: format!(
                    "{} is outside 4096..=1073741824; one action's schema is a few KiB",
                    cache.max_bytes
                ),
            });
        }
        if d.max_body_bytes < 1024 {
            errors.push(FieldError {
                field: "dispatch.max_body_bytes".into(),
                reason: format!(
                    "{} is below 1024; Portarium requests would not fit",
                    d.max_body_bytes
                ),
            });
        }
    }
}
