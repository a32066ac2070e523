//! The adapter's configuration: one typed struct, read from YAML, overridden by
//! `PORTARIUM_ST2_*` environment variables, validated before anything starts.
//!
//! Environment overrides address a field by its path, upper-cased, with `__` between
//! levels: `PORTARIUM_ST2_LISTEN`, `PORTARIUM_ST2_ST2__BASE_URL`,
//! `PORTARIUM_ST2_ST2__RETRY__MAX_RETRIES`. Values are read as YAML scalars, so numbers and
//! booleans work unquoted; quote a string that looks like a number (`'"123"'`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_norway::Value;
use url::Url;

use crate::governance::secrets::Secret;

/// Prefix of every environment variable that overrides a config field.
pub const ENV_PREFIX: &str = "PORTARIUM_ST2_";
/// Environment variable naming the config file (read by the CLI, not an override).
pub const ENV_CONFIG_FILE: &str = "PORTARIUM_ST2_CONFIG";
/// The documented example configuration (`docs/config.example.yaml`).
pub const EXAMPLE: &str = include_str!("../docs/config.example.yaml");

/// The whole adapter configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the adapter's HTTP API binds to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The StackStorm cluster to drive.
    pub st2: St2Config,
    /// Who may call the adapter: one entry per Portarium tenant (workspace).
    #[serde(default)]
    pub tenants: Vec<TenantConfig>,
    /// How long dispatches wait for st2.
    #[serde(default)]
    pub dispatch: DispatchConfig,
    /// The adapter's own listener: TLS and mutual TLS (`crate::server::tls`).
    #[serde(default)]
    pub server: crate::server::tls::ListenerConfig,
    /// Pack review gate, audit log and redaction (`crate::governance`).
    #[serde(default)]
    pub governance: crate::governance::GovernanceConfig,
    /// Scraping st2's metrics and exporting telemetry over OTLP.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Portarium events: lifecycle out, event classes in.
    #[serde(default)]
    pub events: crate::events::EventsConfig,
}

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
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            default_wait_ms: default_wait(),
            max_wait_ms: default_max_wait(),
            max_body_bytes: default_max_body(),
            cancel_on_deadline: false,
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

/// Logging settings; `RUST_LOG` overrides `level` when set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `portarium_st2=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

/// How to reach and authenticate to st2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct St2Config {
    /// One address serving `/api`, `/auth` and `/stream`, as behind st2's usual nginx.
    #[serde(default)]
    pub base_url: Option<Url>,
    /// st2api on its own (st2 default port 9101); `/v1` is appended when it has no path.
    #[serde(default)]
    pub api_url: Option<Url>,
    /// st2auth on its own (st2 default port 9100); `/v1` is appended when it has no path.
    #[serde(default)]
    pub auth_url: Option<Url>,
    /// st2stream on its own (st2 default port 9102); `/v1` is appended when it has no path.
    #[serde(default)]
    pub stream_url: Option<Url>,
    /// API key sent as `St2-Api-Key` (literal, `env:NAME` or `file:PATH`). Preferred: it never expires.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// User for `POST /auth/v1/tokens`, when no API key is used.
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password (literal, `env:NAME` or `file:PATH`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Token lifetime to ask st2auth for; unset takes st2's default (24 h).
    #[serde(default)]
    pub token_ttl_secs: Option<u64>,
    /// Renew a token this long before it expires.
    #[serde(default = "default_renew_before")]
    pub token_renew_before_secs: u64,
    /// Deadline for one st2 request (the stream is exempt).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Deadline for opening a TCP/TLS connection to st2.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// Most st2 requests in flight at once from this adapter.
    #[serde(default = "default_max_concurrency")]
    pub max_concurrency: usize,
    /// Retries of calls that are safe to repeat.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS to st2.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Following executions through st2's event stream.
    #[serde(default)]
    pub stream: crate::st2::stream::StreamConfig,
}

/// Retry policy for st2 calls that are safe to repeat (reads, cancel, pause/resume).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 turns retrying off.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff; each retry doubles it, with jitter.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    /// Backoff ceiling (a `Retry-After` from st2 is honoured up to this too).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_backoff_ms: default_initial_backoff(),
            max_backoff_ms: default_max_backoff(),
        }
    }
}

/// TLS settings for connections to st2. Verification is always on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificate(s), PEM, trusted in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The three st2 service roots, each ending in its API version (`.../v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct St2Endpoints {
    /// st2api root, e.g. `https://st2.example.com/api/v1`.
    pub api: Url,
    /// st2auth root, e.g. `https://st2.example.com/auth/v1`.
    pub auth: Url,
    /// st2stream root, e.g. `https://st2.example.com/stream/v1`.
    pub stream: Url,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_renew_before() -> u64 {
    300
}
fn default_request_timeout() -> u64 {
    10_000
}
fn default_connect_timeout() -> u64 {
    3_000
}
fn default_max_concurrency() -> usize {
    32
}
fn default_max_retries() -> u32 {
    3
}
fn default_initial_backoff() -> u64 {
    100
}
fn default_max_backoff() -> u64 {
    2_000
}

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `st2.base_url`.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax {
        /// The file (or `<string>`).
        path: String,
        /// Parser message with line and column.
        message: String,
    },
    /// An environment override could not be applied.
    #[error("{var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field has the wrong type, an unknown name, or an unresolvable secret.
    #[error("{field}: {message}{origin}")]
    Field {
        /// Dotted path of the field.
        field: String,
        /// The decoder's message.
        message: String,
        /// ` (set by VAR)` when an environment variable supplied the value.
        origin: String,
    },
    /// Values decode but break a rule; every broken rule is listed.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl Config {
    /// Loads `path` (or nothing, when `None`), applies `PORTARIUM_ST2_*` from the process
    /// environment, and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (yaml, name) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "<none>".to_string()),
        };
        Self::from_yaml(&yaml, &name, std::env::vars())
    }

    /// Parses `yaml`, applies overrides from `env` (only `PORTARIUM_ST2_*` entries are
    /// looked at), and validates. `name` labels the source in error messages.
    pub fn from_yaml(
        yaml: &str,
        name: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree: Value = if yaml.trim().is_empty() {
            Value::Mapping(Default::default())
        } else {
            serde_norway::from_str(yaml).map_err(|e| ConfigError::Syntax {
                path: name.to_string(),
                message: e.to_string(),
            })?
        };
        if !tree.is_mapping() {
            return Err(ConfigError::Syntax {
                path: name.to_string(),
                message: "the top level must be a mapping of field names to values".into(),
            });
        }
        let mut applied: Vec<(String, String)> = Vec::new();
        let mut overrides: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != ENV_CONFIG_FILE)
            .collect();
        overrides.sort();
        for (var, raw) in overrides {
            let path = env_path(&var)?;
            set_path(&mut tree, &path, parse_scalar(&raw)).map_err(|reason| ConfigError::Env {
                var: var.clone(),
                reason,
            })?;
            applied.push((path.join("."), var));
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let field = e.path().to_string();
            let origin = applied
                .iter()
                .find(|(p, _)| field == *p || field.starts_with(&format!("{p}.")))
                .map(|(_, var)| format!(" (set by {var})"))
                .unwrap_or_default();
            ConfigError::Field {
                field: if field == "." {
                    "<top level>".into()
                } else {
                    field
                },
                message: e.into_inner().to_string(),
                origin,
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule a decoded config must satisfy, reporting all failures at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        self.st2.validate(&mut errors);
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let field = |name: &str| format!("tenants[{i}].{name}");
            if t.id.trim().is_empty() {
                errors.push(FieldError {
                    field: field("id"),
                    reason: "must not be empty".into(),
                });
            } else if !seen.insert(t.id.as_str()) {
                errors.push(FieldError {
                    field: field("id"),
                    reason: format!("{} is listed twice", t.id),
                });
            }
            for (j, p) in t.allowed_actions.iter().flatten().enumerate() {
                if let Some(reason) = crate::governance::tenants::AllowedActions::check_pattern(p) {
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
        self.governance.validate(&mut errors);
        if let Some(Err(e)) = self.server.tls.as_ref().map(|t| t.acceptor()) {
            errors.push(FieldError {
                field: format!("server.tls.{}", e.field),
                reason: e.reason,
            });
        }
        self.telemetry.validate(&mut errors);
        self.events.validate(&mut errors);
        let d = &self.dispatch;
        if d.default_wait_ms == 0 || d.default_wait_ms > d.max_wait_ms {
            errors.push(FieldError {
                field: "dispatch.default_wait_ms".into(),
                reason: format!(
                    "{} must be between 1 and dispatch.max_wait_ms ({})",
                    d.default_wait_ms, d.max_wait_ms
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
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }
}

impl St2Config {
    /// A config for `base_url` with an API key and every other setting at its default.
    pub fn with_api_key(base_url: Url, api_key: Secret) -> Self {
        Self {
            base_url: Some(base_url),
            api_url: None,
            auth_url: None,
            stream_url: None,
            api_key: Some(api_key),
            username: None,
            password: None,
            token_ttl_secs: None,
            token_renew_before_secs: default_renew_before(),
            request_timeout_ms: default_request_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            max_concurrency: default_max_concurrency(),
            retry: RetryConfig::default(),
            tls: TlsConfig::default(),
            stream: crate::st2::stream::StreamConfig::default(),
        }
    }

    /// A config for `base_url` with user/password token auth and other settings at default.
    pub fn with_password(base_url: Url, username: &str, password: Secret) -> Self {
        Self {
            api_key: None,
            username: Some(username.to_string()),
            password: Some(password),
            ..Self::with_api_key(base_url, Secret::from_value("unused"))
        }
    }

    /// This config with a tenant's own credentials in place of the shared ones.
    pub fn for_tenant(&self, own: &TenantSt2) -> Self {
        Self {
            api_key: own.api_key.clone(),
            username: own.username.clone(),
            password: own.password.clone(),
            ..self.clone()
        }
    }

    /// Resolves the three service roots from `base_url` and the per-service overrides.
    ///
    /// Call only on a validated config; a missing root is reported by [`Config::validate`].
    pub fn endpoints(&self) -> Result<St2Endpoints, FieldError> {
        let pick = |own: &Option<Url>, field: &str, prefix: &str| -> Result<Url, FieldError> {
            match (own, &self.base_url) {
                (Some(url), _) => Ok(with_version(url)),
                (None, Some(base)) => Ok(join_path(base, &format!("{prefix}/v1"))),
                (None, None) => Err(FieldError {
                    field: format!("st2.{field}"),
                    reason: format!(
                        "set st2.base_url, or st2.{field} for a service on its own port"
                    ),
                }),
            }
        };
        Ok(St2Endpoints {
            api: pick(&self.api_url, "api_url", "api")?,
            auth: pick(&self.auth_url, "auth_url", "auth")?,
            stream: pick(&self.stream_url, "stream_url", "stream")?,
        })
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        self.stream.validate(errors);
        let mut bad = |field: &str, reason: String| {
            errors.push(FieldError {
                field: field.to_string(),
                reason,
            })
        };
        for (field, url) in [
            ("st2.base_url", &self.base_url),
            ("st2.api_url", &self.api_url),
            ("st2.auth_url", &self.auth_url),
            ("st2.stream_url", &self.stream_url),
        ] {
            if let Some(url) = url
                && let Err(reason) = check_service_url(url)
            {
                bad(field, reason);
            }
        }
        if self.base_url.is_none() {
            let uses_auth = self.username.is_some();
            for (field, url, needed) in [
                ("st2.api_url", &self.api_url, true),
                ("st2.stream_url", &self.stream_url, true),
                ("st2.auth_url", &self.auth_url, uses_auth),
            ] {
                if needed && url.is_none() {
                    bad(
                        field,
                        "required when st2.base_url is not set (or set st2.base_url to the address serving /api, /auth and /stream)".into(),
                    );
                }
            }
        }
        match (&self.api_key, &self.username, &self.password) {
            (Some(_), Some(_), _) => bad(
                "st2.username",
                "st2.api_key and st2.username are both set; choose one way to authenticate".into(),
            ),
            (Some(_), None, Some(_)) => bad(
                "st2.password",
                "set without st2.username; remove it or use user/password auth instead of st2.api_key".into(),
            ),
            (None, None, _) => bad(
                "st2.api_key",
                "no st2 credentials: set st2.api_key (recommended) or st2.username and st2.password".into(),
            ),
            (None, Some(user), None) => bad(
                "st2.password",
                format!("required with st2.username ({user}); use env:NAME or file:PATH"),
            ),
            (None, Some(user), Some(_)) if user.trim().is_empty() => {
                bad("st2.username", "must not be empty".into())
            }
            _ => {}
        }
        if let Some(ttl) = self.token_ttl_secs {
            if ttl == 0 {
                bad("st2.token_ttl_secs", "must be at least 1 second".into());
            } else if self.token_renew_before_secs >= ttl {
                bad(
                    "st2.token_renew_before_secs",
                    format!(
                        "{} must be less than st2.token_ttl_secs ({ttl}), or the token would be renewed forever",
                        self.token_renew_before_secs
                    ),
                );
            }
        }
        if self.request_timeout_ms == 0 {
            bad("st2.request_timeout_ms", "must be greater than 0".into());
        }
        if self.connect_timeout_ms == 0 {
            bad("st2.connect_timeout_ms", "must be greater than 0".into());
        }
        if !(1..=4096).contains(&self.max_concurrency) {
            bad(
                "st2.max_concurrency",
                format!("{} is outside 1..=4096", self.max_concurrency),
            );
        }
        if self.retry.max_retries > 10 {
            bad(
                "st2.retry.max_retries",
                format!(
                    "{} is more than 10; retries multiply load on a struggling st2",
                    self.retry.max_retries
                ),
            );
        }
        if self.retry.initial_backoff_ms == 0 {
            bad(
                "st2.retry.initial_backoff_ms",
                "must be greater than 0".into(),
            );
        }
        if self.retry.initial_backoff_ms > self.retry.max_backoff_ms {
            bad(
                "st2.retry.initial_backoff_ms",
                format!(
                    "{} is greater than st2.retry.max_backoff_ms ({})",
                    self.retry.initial_backoff_ms, self.retry.max_backoff_ms
                ),
            );
        }
        if let Some(ca) = &self.tls.ca_file
            && let Err(e) = std::fs::metadata(ca)
        {
            bad(
                "st2.tls.ca_file",
                format!("cannot read {}: {e}", ca.display()),
            );
        }
    }
}

/// Accepts http(s) URLs without credentials, query or fragment.
fn check_service_url(url: &Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{url}: scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(format!("{url}: has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not contain credentials; use st2.api_key or st2.username/st2.password".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{url}: must not have a query or fragment"));
    }
    Ok(())
}

/// `http://h:9101` → `http://h:9101/v1`; a URL that already has a path is kept as written.
fn with_version(url: &Url) -> Url {
    if url.path().trim_matches('/').is_empty() {
        join_path(url, "v1")
    } else {
        let mut u = url.clone();
        let trimmed = u.path().trim_end_matches('/').to_string();
        u.set_path(&trimmed);
        u
    }
}

fn join_path(base: &Url, suffix: &str) -> Url {
    let mut u = base.clone();
    let path = format!("{}/{}", base.path().trim_end_matches('/'), suffix);
    u.set_path(&path);
    u
}

/// `PORTARIUM_ST2_ST2__RETRY__MAX_RETRIES` → `["st2", "retry", "max_retries"]`.
fn env_path(var: &str) -> Result<Vec<String>, ConfigError> {
    let rest = &var[ENV_PREFIX.len()..];
    let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(ConfigError::Env {
            var: var.to_string(),
            reason: "empty path segment; write levels as PORTARIUM_ST2_ST2__BASE_URL".into(),
        });
    }
    Ok(path)
}

fn parse_scalar(raw: &str) -> Value {
    match serde_norway::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        Ok(Value::Null) if raw.trim().is_empty() => Value::String(String::new()),
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(tree: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path
        .split_last()
        .expect("env_path never returns an empty path");
    let mut node = tree;
    for (depth, key) in parents.iter().enumerate() {
        let map = node
            .as_mapping_mut()
            .ok_or_else(|| format!("{} is not a section", path[..depth].join(".")))?;
        node = map
            .entry(Value::String(key.clone()))
            .or_insert_with(|| Value::Mapping(Default::default()));
        if node.is_null() {
            *node = Value::Mapping(Default::default());
        }
    }
    let map = node
        .as_mapping_mut()
        .ok_or_else(|| format!("{} is not a section", parents.join(".")))?;
    map.insert(Value::String(last.clone()), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_yaml(
            yaml,
            "test.yaml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    const MINIMAL: &str = "st2:\n  base_url: http://127.0.0.1:9000\n  api_key: k\n";

    #[test]
    fn minimal_config_gets_defaults_and_endpoints() {
        let c = load(MINIMAL, &[]).unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.st2.request_timeout_ms, 10_000);
        let e = c.st2.endpoints().unwrap();
        assert_eq!(e.api.as_str(), "http://127.0.0.1:9000/api/v1");
        assert_eq!(e.auth.as_str(), "http://127.0.0.1:9000/auth/v1");
        assert_eq!(e.stream.as_str(), "http://127.0.0.1:9000/stream/v1");
    }

    #[test]
    fn per_service_urls_override_base_and_get_a_version() {
        let c = load(
            "st2:\n  api_url: http://h:9101\n  stream_url: http://h:9102/v1/\n  auth_url: http://h:9100\n  username: u\n  password: p\n",
            &[],
        )
        .unwrap();
        let e = c.st2.endpoints().unwrap();
        assert_eq!(e.api.as_str(), "http://h:9101/v1");
        assert_eq!(e.stream.as_str(), "http://h:9102/v1");
        assert_eq!(e.auth.as_str(), "http://h:9100/v1");
    }

    #[test]
    fn env_overrides_nested_fields_with_types() {
        let c = load(
            MINIMAL,
            &[
                ("PORTARIUM_ST2_ST2__RETRY__MAX_RETRIES", "5"),
                ("PORTARIUM_ST2_LISTEN", "127.0.0.1:9999"),
                ("PORTARIUM_ST2_CONFIG", "ignored.yaml"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.st2.retry.max_retries, 5);
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn env_alone_can_configure_everything() {
        let c = load(
            "",
            &[
                ("PORTARIUM_ST2_ST2__BASE_URL", "https://st2.example"),
                ("PORTARIUM_ST2_ST2__API_KEY", "abc"),
            ],
        )
        .unwrap();
        assert_eq!(c.st2.api_key.unwrap().expose(), "abc");
    }

    #[test]
    fn wrong_type_names_the_field_and_the_variable() {
        let err = load(
            MINIMAL,
            &[("PORTARIUM_ST2_ST2__REQUEST_TIMEOUT_MS", "fast")],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("st2.request_timeout_ms:"), "{msg}");
        assert!(
            msg.contains("PORTARIUM_ST2_ST2__REQUEST_TIMEOUT_MS"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_its_path() {
        let err = load(
            "st2:\n  base_url: http://h\n  api_key: k\n  tmeout: 3\n",
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("tmeout"), "{msg}");
        assert!(msg.starts_with("st2"), "{msg}");
    }

    #[test]
    fn every_broken_rule_is_reported_with_its_field() {
        let err = load(
            "st2:\n  base_url: ftp://h\n  api_key: k\n  username: u\n  request_timeout_ms: 0\n  max_concurrency: 0\n  retry: {initial_backoff_ms: 5000, max_backoff_ms: 100}\n",
            &[],
        )
        .unwrap_err();
        let ConfigError::Invalid(errors) = err else {
            panic!("expected Invalid, got {err}")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "st2.base_url",
            "st2.username",
            "st2.request_timeout_ms",
            "st2.max_concurrency",
            "st2.retry.initial_backoff_ms",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
    }

    #[test]
    fn missing_credentials_and_urls_are_named() {
        let err = load("st2:\n  api_url: http://h:9101\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("st2.api_key: no st2 credentials"), "{err}");
        assert!(err.contains("st2.stream_url: required"), "{err}");
        let err = load("st2:\n  base_url: http://h\n  username: u\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("st2.password: required with st2.username"),
            "{err}"
        );
    }

    #[test]
    fn credentials_in_urls_are_refused() {
        let err = load("st2:\n  base_url: http://u:p@h\n  api_key: k\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("st2.base_url: must not contain credentials"),
            "{err}"
        );
    }

    #[test]
    fn unresolvable_secret_names_field_and_variable() {
        let err = load(
            "st2:\n  base_url: http://h\n  api_key: env:PST2_CONFIG_TEST_UNSET\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("st2.api_key:"), "{err}");
        assert!(err.contains("PST2_CONFIG_TEST_UNSET"), "{err}");
    }

    #[test]
    fn yaml_syntax_error_names_the_file() {
        let err = load("st2: [unclosed", &[]).unwrap_err().to_string();
        assert!(err.contains("test.yaml is not valid YAML"), "{err}");
    }

    #[test]
    fn documented_example_loads_as_written() {
        let c = load(EXAMPLE, &[("ST2_API_KEY_UNUSED", "x")]);
        // The example reads its key from env:ST2_API_KEY, so it must fail only on that.
        let err = c.unwrap_err().to_string();
        assert!(
            err.starts_with("st2.api_key:") && err.contains("ST2_API_KEY"),
            "{err}"
        );
        let with_key = EXAMPLE.replace("env:ST2_API_KEY", "literal-key");
        let c = load(&with_key, &[]).unwrap();
        assert_eq!(
            c.st2.endpoints().unwrap().api.as_str(),
            "https://st2.example.com/api/v1"
        );
        assert_eq!(c.st2.retry.max_retries, default_max_retries());
        assert_eq!(c.st2.max_concurrency, default_max_concurrency());
    }

    #[test]
    fn tenants_and_dispatch_rules_name_the_entry() {
        let c = load(
            "st2: {base_url: 'http://h', api_key: k}\ntenants:\n  - {id: a, api_token: ta}\n  - {id: b, api_token: tb, st2: {api_key: kb}}\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.tenants.len(), 2);
        assert_eq!(c.dispatch.default_wait_ms, 8_000);
        let err = load(
            "st2: {base_url: 'http://h', api_key: k}\ntenants:\n  - {id: a, api_token: ta}\n  - {id: a, api_token: tb, st2: {username: u}}\ndispatch: {default_wait_ms: 900000}\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for want in [
            "tenants[1].id: a is listed twice",
            "tenants[1].st2: password is required",
            "dispatch.default_wait_ms",
        ] {
            assert!(err.contains(want), "{want} missing: {err}");
        }
    }

    #[test]
    fn token_renewal_window_must_fit_inside_ttl() {
        let err = load(
            "st2:\n  base_url: http://h\n  username: u\n  password: p\n  token_ttl_secs: 60\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("st2.token_renew_before_secs"), "{err}");
    }
}
