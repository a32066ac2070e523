//! [`St2Client`]: one authenticated handle on an st2 cluster, shared by every API area.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tower::ServiceExt;

use super::error::{Call, St2Error};
use super::models::{Fault, Token};
use super::transport::{self, Transport};
use crate::config::{St2Config, St2Endpoints};
use crate::governance::secrets::Secret;

const API_KEY_HEADER: &str = "st2-api-key";
const TOKEN_HEADER: &str = "x-auth-token";
/// How much of a non-JSON error body is kept in a message.
const BODY_EXCERPT: usize = 200;

/// A typed client for one st2 cluster. Cheap to clone; clones share connections,
/// the concurrency limit and the token.
#[derive(Clone)]
pub struct St2Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: St2Endpoints,
    // Only builds requests; they are sent through `transport`, which wraps a clone of it.
    http: reqwest::Client,
    transport: Transport,
    request_timeout: Duration,
    auth: Auth,
}

enum Auth {
    ApiKey(Secret),
    Token(TokenAuth),
}

struct TokenAuth {
    username: String,
    password: Secret,
    ttl: Option<u64>,
    renew_before: Duration,
    // One lock so concurrent callers share a single renewal instead of stampeding st2auth.
    cached: Mutex<Option<(Secret, OffsetDateTime)>>,
}

/// Which st2 service a request goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Api,
    Auth,
}

/// One request, before credentials are attached.
pub(crate) struct Request {
    pub service: Service,
    pub method: Method,
    /// Path under the service root, starting with `/`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub json: Option<Value>,
    pub headers: Vec<(HeaderName, String)>,
}

impl Request {
    /// A request without query, body or extra headers.
    pub fn new(service: Service, method: Method, path: impl Into<String>) -> Self {
        Self {
            service,
            method,
            path: path.into(),
            query: Vec::new(),
            json: None,
            headers: Vec::new(),
        }
    }
}

/// A successful answer.
pub(crate) struct Answer {
    pub call: Call,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// Decodes the body, naming the JSON path of any mismatch.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, St2Error> {
        decode(&self.call, &self.body)
    }

    /// A numeric header such as `X-Total-Count`.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.parse().ok()
    }
}

/// Decodes `body` as `T`; errors carry the JSON path.
pub(crate) fn decode<T: DeserializeOwned>(call: &Call, body: &[u8]) -> Result<T, St2Error> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| St2Error::Decode {
        call: call.clone(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

impl St2Client {
    /// Builds a client from validated configuration.
    pub fn from_config(config: &St2Config) -> Result<Self, St2Error> {
        let endpoints = config
            .endpoints()
            .map_err(|e| St2Error::Setup(e.to_string()))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .user_agent(concat!("portarium-st2/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.tls.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| St2Error::Setup(format!("st2.tls.ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                St2Error::Setup(format!(
                    "st2.tls.ca_file {} is not PEM: {e}",
                    path.display()
                ))
            })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| St2Error::Setup(format!("HTTP client: {e}")))?;
        let request_timeout = Duration::from_millis(config.request_timeout_ms);
        let auth = match (&config.api_key, &config.username, &config.password) {
            (Some(key), _, _) => Auth::ApiKey(key.clone()),
            (None, Some(username), Some(password)) => Auth::Token(TokenAuth {
                username: username.clone(),
                password: password.clone(),
                ttl: config.token_ttl_secs,
                renew_before: Duration::from_secs(config.token_renew_before_secs),
                cached: Mutex::new(None),
            }),
            _ => {
                return Err(St2Error::Setup(
                    "no st2 credentials: set st2.api_key or st2.username and st2.password".into(),
                ));
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                transport: transport::build(
                    http.clone(),
                    request_timeout,
                    config.max_concurrency,
                    &config.retry,
                ),
                endpoints,
                http,
                request_timeout,
                auth,
            }),
        })
    }

    /// The service roots this client talks to.
    pub fn endpoints(&self) -> &St2Endpoints {
        &self.inner.endpoints
    }

    /// Checks that st2 answers and accepts the credentials (one cheap authenticated read).
    pub async fn ping(&self) -> Result<(), St2Error> {
        let mut req = Request::new(Service::Api, Method::GET, "/actions");
        req.query = vec![
            ("limit".into(), "1".into()),
            ("include_attributes".into(), "ref".into()),
        ];
        self.send(req).await.map(drop)
    }

    /// Sends `req` with credentials; after a 401 in token mode, renews the token and
    /// tries exactly once more.
    pub(crate) async fn send(&self, req: Request) -> Result<Answer, St2Error> {
        let retry_on_401 =
            matches!(self.inner.auth, Auth::Token(_)) && !req.path.starts_with("/tokens");
        let (name, credential) = self.credential().await?;
        match self.send_with(&req, Some((name, &credential))).await {
            Err(St2Error::Unauthorized { .. }) if retry_on_401 => {
                self.forget_token(&credential).await;
                let (name, credential) = self.credential().await?;
                self.send_with(&req, Some((name, &credential))).await
            }
            other => other,
        }
    }

    async fn send_with(
        &self,
        req: &Request,
        credential: Option<(&'static str, &Secret)>,
    ) -> Result<Answer, St2Error> {
        let root = match req.service {
            Service::Api => &self.inner.endpoints.api,
            Service::Auth => &self.inner.endpoints.auth,
        };
        let url = format!("{}{}", root.as_str().trim_end_matches('/'), req.path);
        let call = Call {
            method: req.method.clone(),
            path: reqwest::Url::parse(&url)
                .map(|u| u.path().to_string())
                .unwrap_or_else(|_| req.path.clone()),
        };
        let mut builder = self.inner.http.request(req.method.clone(), &url);
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(body) = &req.json {
            builder = builder.json(body);
        }
        for (name, value) in &req.headers {
            builder = builder.header(name, value);
        }
        if let Some((name, secret)) = credential {
            let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
                St2Error::Setup(
                    "the st2 credential contains characters not allowed in a header".into(),
                )
            })?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        let request = builder
            .build()
            .map_err(|e| St2Error::Setup(format!("{call}: {e}")))?;
        let response = self
            .inner
            .transport
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| self.transport_error(&call, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let retry_after = transport::retry_after(&response);
        let body = tokio::time::timeout(self.inner.request_timeout, response.bytes())
            .await
            .map_err(|_| St2Error::Timeout {
                call: call.clone(),
                after: self.inner.request_timeout,
            })?
            .map_err(|e| St2Error::Connect {
                call: call.clone(),
                message: e.to_string(),
            })?;
        if status.is_success() {
            return Ok(Answer {
                call,
                headers,
                body,
            });
        }
        Err(St2Error::from_status(
            call,
            status.as_u16(),
            faultstring(&body),
            retry_after,
        ))
    }

    fn transport_error(&self, call: &Call, err: tower::BoxError) -> St2Error {
        if err.is::<tower::timeout::error::Elapsed>() {
            return St2Error::Timeout {
                call: call.clone(),
                after: self.inner.request_timeout,
            };
        }
        // reqwest's message can include the URL; ours never carries credentials in it.
        let message = match err.downcast_ref::<reqwest::Error>() {
            Some(e) => {
                let mut text = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            }
            None => err.to_string(),
        };
        St2Error::Connect {
            call: call.clone(),
            message,
        }
    }

    /// The header and value to authenticate with, fetching or renewing a token if due.
    async fn credential(&self) -> Result<(&'static str, Secret), St2Error> {
        let token_auth = match &self.inner.auth {
            Auth::ApiKey(key) => return Ok((API_KEY_HEADER, key.clone())),
            Auth::Token(t) => t,
        };
        let mut cached = token_auth.cached.lock().await;
        if let Some((token, expiry)) = cached.as_ref()
            && OffsetDateTime::now_utc() + token_auth.renew_before < *expiry
        {
            return Ok((TOKEN_HEADER, token.clone()));
        }
        let token = self.request_token(token_auth).await?;
        tracing::info!(user = %token.user, expiry = %token.expiry, "obtained st2 token");
        let secret = Secret::from_value(token.token);
        *cached = Some((secret.clone(), token.expiry));
        Ok((TOKEN_HEADER, secret))
    }

    /// Drops the cached token if it is still `stale`, so a concurrent renewal is kept.
    async fn forget_token(&self, stale: &Secret) {
        if let Auth::Token(t) = &self.inner.auth {
            let mut cached = t.cached.lock().await;
            if cached.as_ref().is_some_and(|(token, _)| token == stale) {
                *cached = None;
            }
        }
    }

    async fn request_token(&self, auth: &TokenAuth) -> Result<Token, St2Error> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            auth.username,
            auth.password.expose()
        ));
        let mut req = Request::new(Service::Auth, Method::POST, "/tokens");
        req.json = Some(match auth.ttl {
            Some(ttl) => serde_json::json!({ "ttl": ttl }),
            None => serde_json::json!({}),
        });
        let basic = Secret::from_value(format!("Basic {basic}"));
        self.send_with(&req, Some(("authorization", &basic)))
            .await?
            .json()
    }
}

/// st2's `faultstring`, or the start of a body that is not st2's error JSON.
fn faultstring(body: &[u8]) -> String {
    match serde_json::from_slice::<Fault>(body) {
        Ok(fault) => fault.faultstring,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let mut excerpt: String = text.chars().take(BODY_EXCERPT).collect();
            if text.chars().count() > BODY_EXCERPT {
                excerpt.push('…');
            }
            if excerpt.trim().is_empty() {
                "(empty body)".into()
            } else {
                excerpt
            }
        }
    }
}
