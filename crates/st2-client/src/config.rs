//! `st2:` in a config file: where st2 is, how to sign in, and how calls to it behave. The
//! client owns these types; an application embeds [`St2Config`] in its own configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use st2_basics::{BackoffConfig, FieldError, duration};
use url::Url;

use crate::secret::Secret;

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
    /// A token st2 already issued (`st2 auth`, st2client's `ST2_AUTH_TOKEN`), sent as
    /// `X-Auth-Token` as it is: never renewed, so a 401 once it expires is final.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// User for `POST /auth/v1/tokens`, when no API key is used.
    #[serde(default)]
    pub username: Option<String>,
    /// That user's password (literal, `env:NAME` or `file:PATH`).
    #[serde(default)]
    pub password: Option<Secret>,
    /// Token lifetime to ask st2auth for (`24h`); unset takes st2's default (24 h).
    #[serde(default, with = "st2_basics::duration::option")]
    pub token_ttl: Option<Duration>,
    /// Renew a token this long before it expires.
    #[serde(default = "default_renew_before", with = "st2_basics::duration")]
    pub token_renew_before: Duration,
    /// Deadline for one st2 request (the stream is exempt).
    #[serde(
        default = "default_request_timeout",
        alias = "request_timeout_ms",
        with = "st2_basics::duration"
    )]
    pub request_timeout: Duration,
    /// Deadline for opening a TCP/TLS connection to st2.
    #[serde(
        default = "default_connect_timeout",
        alias = "connect_timeout_ms",
        with = "st2_basics::duration"
    )]
    pub connect_timeout: Duration,
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
    pub stream: crate::stream::StreamConfig,
}

/// Retry policy for st2 calls that are safe to repeat (reads, cancel, pause/resume).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 turns retrying off.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Pauses between attempts; `max` also caps a `Retry-After` from st2 that is honoured.
    #[serde(default = "default_retry_backoff")]
    pub backoff: BackoffConfig,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            backoff: default_retry_backoff(),
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

fn default_renew_before() -> Duration {
    Duration::from_secs(300)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_max_concurrency() -> usize {
    32
}
fn default_max_retries() -> u32 {
    3
}
fn default_retry_backoff() -> BackoffConfig {
    BackoffConfig::new(Duration::from_millis(100), Duration::from_secs(2))
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
            auth_token: None,
            username: None,
            password: None,
            token_ttl: None,
            token_renew_before: default_renew_before(),
            request_timeout: default_request_timeout(),
            connect_timeout: default_connect_timeout(),
            max_concurrency: default_max_concurrency(),
            retry: RetryConfig::default(),
            tls: TlsConfig::default(),
            stream: crate::stream::StreamConfig::default(),
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

    /// This config with other credentials (an API key, or a user and password) in place of
    /// its own, everything else shared.
    pub fn with_credentials(
        &self,
        api_key: Option<Secret>,
        username: Option<String>,
        password: Option<Secret>,
    ) -> Self {
        Self {
            api_key,
            auth_token: None,
            username,
            password,
            ..self.clone()
        }
    }

    /// Resolves the three service roots from `base_url` and the per-service overrides.
    ///
    /// Call only on a validated config; a missing root is reported by [`St2Config::validate`].
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

    /// Adds a [`FieldError`] (under `st2.`) for every broken rule.
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        self.stream.validate(errors);
        self.retry.backoff.validate("st2.retry.backoff", errors);
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
        if self.auth_token.is_some() && (self.api_key.is_some() || self.username.is_some()) {
            bad(
                "st2.auth_token",
                "set with st2.api_key or st2.username; choose one way to authenticate".into(),
            );
        }
        match (&self.api_key, &self.username, &self.password) {
            (None, None, _) if self.auth_token.is_some() => {}
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
                "no st2 credentials: set st2.api_key (recommended), st2.auth_token, or st2.username and st2.password".into(),
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
        if let Some(ttl) = self.token_ttl {
            if ttl < Duration::from_secs(1) {
                bad("st2.token_ttl", "must be at least 1s".into());
            } else if self.token_renew_before >= ttl {
                bad(
                    "st2.token_renew_before",
                    format!(
                        "{} must be less than st2.token_ttl ({}), or the token would be renewed forever",
                        duration::format(self.token_renew_before),
                        duration::format(ttl)
                    ),
                );
            }
        }
        if self.request_timeout.is_zero() {
            bad("st2.request_timeout", "must be greater than 0".into());
        }
        if self.connect_timeout.is_zero() {
            bad("st2.connect_timeout", "must be greater than 0".into());
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

/// Fields of earlier versions that moved or changed unit: `(old path, new path and form)`,
/// relative to `st2.`. A config still using one is refused with a message naming the new
/// field, rather than guessing a unit.
pub const RENAMED: &[(&str, &str)] = &[
    ("token_ttl_secs", "token_ttl (a duration such as 24h)"),
    (
        "token_renew_before_secs",
        "token_renew_before (a duration such as 5m)",
    ),
    (
        "retry.initial_backoff_ms",
        "retry.backoff.initial (a duration such as 100ms)",
    ),
    (
        "retry.max_backoff_ms",
        "retry.backoff.max (a duration such as 2s)",
    ),
    (
        "stream.initial_backoff_ms",
        "stream.backoff.initial (a duration such as 250ms)",
    ),
    (
        "stream.max_backoff_ms",
        "stream.backoff.max (a duration such as 30s)",
    ),
];
