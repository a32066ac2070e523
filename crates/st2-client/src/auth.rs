//! Credentials: an API key, or a user whose password is exchanged for tokens that are
//! renewed before they expire.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::St2Error;
use super::models::Token;
use crate::config::St2Config;
use crate::secret::Secret;

/// Header carrying an API key.
const API_KEY_HEADER: HeaderName = HeaderName::from_static("st2-api-key");
/// Header carrying a token; st2 reads `Authorization` only on `POST /tokens`.
const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-auth-token");

/// How the client authenticates.
pub(crate) enum Auth {
    /// `St2-Api-Key`; never expires, so a 401 is final.
    ApiKey(Secret),
    /// `X-Auth-Token` from `POST /auth/v1/tokens`.
    Token(TokenManager),
    /// `X-Auth-Token` given in the config; never renewed, so a 401 is final.
    FixedToken(Secret),
}

/// One credential header to attach to a request.
#[derive(Clone)]
pub(crate) struct Credential {
    pub name: HeaderName,
    pub value: Secret,
}

impl Credential {
    /// The header value, marked sensitive so no HTTP-level debug output shows it.
    pub fn header_value(&self) -> Result<HeaderValue, St2Error> {
        sensitive(self.value.expose())
    }
}

fn sensitive(text: &str) -> Result<HeaderValue, St2Error> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        St2Error::Setup("the st2 credential contains characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Auth {
    /// The credentials in `config` (validated: exactly one kind is set).
    pub fn from_config(config: &St2Config) -> Result<Self, St2Error> {
        match (&config.api_key, &config.username, &config.password) {
            (Some(key), _, _) => Ok(Self::ApiKey(key.clone())),
            (None, None, _) if config.auth_token.is_some() => Ok(Self::FixedToken(
                config.auth_token.clone().expect("checked just above"),
            )),
            (None, Some(username), Some(password)) => Ok(Self::Token(TokenManager {
                login: Login {
                    username: username.clone(),
                    password: password.clone(),
                    ttl: config.token_ttl.map(|t| t.as_secs().max(1)),
                },
                renew_before: config.token_renew_before,
                cached: Mutex::new(None),
            })),
            _ => Err(St2Error::Setup(
                "no st2 credentials: set st2.api_key, or st2.username and st2.password".into(),
            )),
        }
    }
}

/// What `POST /auth/v1/tokens` needs.
pub(crate) struct Login {
    username: String,
    password: Secret,
    ttl: Option<u64>,
}

impl Login {
    /// `Authorization: Basic ...`, marked sensitive.
    pub fn basic(&self) -> Result<HeaderValue, St2Error> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose()
        ));
        sensitive(&format!("Basic {encoded}"))
    }

    /// `{"ttl": N}` when a lifetime is configured; st2 takes its own default otherwise.
    pub fn body(&self) -> Value {
        match self.ttl {
            Some(ttl) => json!({ "ttl": ttl }),
            None => json!({}),
        }
    }
}

/// Keeps one token and renews it `renew_before` ahead of its expiry.
pub(crate) struct TokenManager {
    login: Login,
    renew_before: Duration,
    // One async lock held across the login: concurrent callers wait for the one renewal in
    // flight instead of each asking st2auth for a token.
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    token: Secret,
    renew_at: Instant,
    expires_at: Instant,
}

impl TokenManager {
    /// The current token, logging in through `login` when there is none or it is due for
    /// renewal. A failed renewal keeps using a token that has not expired yet, and tries
    /// again later.
    pub async fn credential<F>(&self, login: F) -> Result<Credential, St2Error>
    where
        F: AsyncFnOnce(&Login) -> Result<Token, St2Error>,
    {
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        if let Some(c) = cached.as_ref()
            && now < c.renew_at
        {
            return Ok(token_credential(&c.token));
        }
        match login(&self.login).await {
            Ok(token) => {
                let fresh = self.cache(token, now);
                let credential = token_credential(&fresh.token);
                *cached = Some(fresh);
                Ok(credential)
            }
            Err(e) => match cached.as_mut() {
                Some(c) if now < c.expires_at => {
                    // Try again a quarter of the remaining life later, so an st2auth outage
                    // costs one failed login now and then, not one per call.
                    c.renew_at = now + (c.expires_at - now) / 4;
                    tracing::warn!(error = %e, "st2 token renewal failed; using the current token until it expires");
                    Ok(token_credential(&c.token))
                }
                _ => Err(e),
            },
        }
    }

    /// Drops the cached token after st2 refused it, unless a concurrent caller already
    /// replaced it (then the replacement is kept).
    pub async fn invalidate(&self, refused: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == *refused) {
            *cached = None;
        }
    }

    fn cache(&self, token: Token, now: Instant) -> Cached {
        // Measured against our clock once, then kept on the monotonic clock, so a wall-clock
        // jump cannot make a token look fresh or stale.
        let left = Duration::try_from(token.expiry - OffsetDateTime::now_utc()).unwrap_or_default();
        let renew_in = match left.checked_sub(self.renew_before) {
            Some(d) if !d.is_zero() => d,
            _ => {
                // Clock skew or a short st2 token_ttl: renewing on every call would flood
                // st2auth, so use half the lifetime.
                tracing::warn!(
                    lifetime_secs = left.as_secs(),
                    renew_before_secs = self.renew_before.as_secs(),
                    "st2 token lives shorter than st2.token_renew_before_secs; renewing at half its lifetime"
                );
                left / 2
            }
        };
        tracing::info!(user = %token.user, expiry = %token.expiry, renew_in_secs = renew_in.as_secs(), "obtained st2 token");
        Cached {
            token: token.token,
            renew_at: now + renew_in,
            expires_at: now + left,
        }
    }
}

/// The token credential.
pub(crate) fn token_credential(token: &Secret) -> Credential {
    Credential {
        name: TOKEN_HEADER,
        value: token.clone(),
    }
}

/// The API-key credential.
pub(crate) fn api_key_credential(key: &Secret) -> Credential {
    Credential {
        name: API_KEY_HEADER,
        value: key.clone(),
    }
}
