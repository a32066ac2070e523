//! [`St2Client`]: one authenticated handle on an st2 cluster, shared by every API area, and
//! the request plumbing those areas use.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use tower::{BoxError, ServiceExt};
use tracing::Instrument;

use super::auth::{self, Auth, Credential, Login};
use super::error::{Call, St2Error};
use super::models::{Fault, Token};
use super::transport::{self, Exhausted, Reply, Transport};
use crate::config::{St2Config, St2Endpoints};

/// How much of a non-JSON error body is kept in a message.
const BODY_EXCERPT: usize = 200;

/// A typed client for one st2 cluster. Cheap to clone; clones share connections, the
/// concurrency limit and the token.
///
/// API areas hang off it in the style of `octocrab`: [`St2Client::executions`],
/// [`St2Client::actions`], [`St2Client::packs`], [`St2Client::traces`],
/// [`St2Client::webhooks`].
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

/// Which st2 service a request goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Service {
    Api,
    Auth,
    Stream,
}

/// One request before credentials are attached. Its path is built from segments, each
/// percent-encoded, so an id can never change which route is called.
pub(crate) struct ApiRequest {
    service: Service,
    method: Method,
    segments: Vec<String>,
    query: Vec<(&'static str, String)>,
    json: Option<Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    refusal: Option<String>,
}

impl ApiRequest {
    /// A request to the st2api route made of `segments` (`["executions", id]`).
    pub fn new<S: AsRef<str>>(method: Method, segments: impl IntoIterator<Item = S>) -> Self {
        Self {
            service: Service::Api,
            method,
            segments: segments
                .into_iter()
                .map(|s| s.as_ref().to_string())
                .collect(),
            query: Vec::new(),
            json: None,
            headers: Vec::new(),
            refusal: None,
        }
    }

    /// `GET` on an st2api route.
    pub fn get<S: AsRef<str>>(segments: impl IntoIterator<Item = S>) -> Self {
        Self::new(Method::GET, segments)
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.query.push((key, value.into()));
        self
    }

    /// Adds query parameters.
    pub fn queries(mut self, pairs: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.query.extend(pairs);
        self
    }

    /// Sets a JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.json = Some(body);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Marks the request as not to be sent, for a reason found while building it; sending it
    /// then fails with [`St2Error::InvalidRequest`] naming the call.
    pub fn refuse(mut self, reason: impl Into<String>) -> Self {
        self.refusal.get_or_insert(reason.into());
        self
    }

    fn on(mut self, service: Service) -> Self {
        self.service = service;
        self
    }
}

/// A successful answer.
pub(crate) struct Answer {
    pub call: Call,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    /// Decodes the body, naming the JSON path of any mismatch.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, St2Error> {
        decode(&self.call, &self.body)
    }

    /// The body as text (st2 sends UTF-8; anything else is replaced, not refused).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A numeric header such as `X-Total-Count`.
    pub fn header_u64(&self, name: &str) -> Option<u64> {
        self.headers.get(name)?.to_str().ok()?.trim().parse().ok()
    }
}

/// Decodes `body` as `T`; errors carry the JSON path of the bad value. The path is tracked
/// only on a second read after a failure: tracking it costs an allocation per key, on every
/// answer st2 gives, for the rare one that does not decode.
pub(crate) fn decode<T: DeserializeOwned>(call: &Call, body: &[u8]) -> Result<T, St2Error> {
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| St2Error::Decode {
        call: call.clone(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })
}

impl St2Client {
    /// Builds a client from validated configuration: TLS with verification always on (plus
    /// `tls.ca_file`), redirects never followed (they would carry credentials elsewhere), and
    /// the tower stack of [`super::transport`].
    pub fn from_config(config: &St2Config) -> Result<Self, St2Error> {
        let endpoints = config
            .endpoints()
            .map_err(|e| St2Error::Setup(e.to_string()))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portarium-st2/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.tls.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| St2Error::Setup(format!("st2.tls.ca_file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    St2Error::Setup(format!(
                        "st2.tls.ca_file {} holds no PEM certificate; give the CA certificate(s) in PEM form",
                        path.display()
                    ))
                })?;
            http = http.tls_certs_merge(certs);
        }
        let http = http
            .build()
            .map_err(|e| St2Error::Setup(format!("HTTP client: {e}")))?;
        let request_timeout = config.request_timeout;
        Ok(Self {
            inner: Arc::new(Inner {
                transport: transport::build(
                    http.clone(),
                    request_timeout,
                    config.max_concurrency,
                    &config.retry,
                ),
                auth: Auth::from_config(config)?,
                endpoints,
                http,
                request_timeout,
            }),
        })
    }

    /// The service roots this client talks to.
    pub fn endpoints(&self) -> &St2Endpoints {
        &self.inner.endpoints
    }

    /// Checks that st2 answers and accepts the credentials (one cheap authenticated read).
    pub async fn ping(&self) -> Result<(), St2Error> {
        let req = ApiRequest::get(["actions"])
            .query("limit", "1")
            .query("include_attributes", "ref");
        self.send(req).await.map(drop)
    }

    /// Sends `req` with credentials. In token mode a 401 drops the token, and the call is
    /// made once more with a fresh one: st2 refused it before acting, so even a POST is safe
    /// to repeat. A second 401 is returned.
    pub(crate) async fn send(&self, req: ApiRequest) -> Result<Answer, St2Error> {
        let credential = self.credential().await?;
        let result = self.execute(&req, Some(&credential)).await;
        let (Err(St2Error::Unauthorized { .. }), Auth::Token(tokens)) = (&result, &self.inner.auth)
        else {
            return result;
        };
        tokens.invalidate(&credential.value).await;
        tracing::info!(
            method = %req.method,
            "st2 refused the token; signing in again and repeating the call once"
        );
        let credential = self.credential().await?;
        self.execute(&req, Some(&credential)).await
    }

    async fn credential(&self) -> Result<Credential, St2Error> {
        match &self.inner.auth {
            Auth::ApiKey(key) => Ok(auth::api_key_credential(key)),
            Auth::FixedToken(token) => Ok(auth::token_credential(token)),
            Auth::Token(tokens) => {
                tokens
                    .credential(async |login: &Login| self.login(login).await)
                    .await
            }
        }
    }

    /// `POST /auth/v1/tokens` with HTTP Basic.
    async fn login(&self, login: &Login) -> Result<Token, St2Error> {
        let req = ApiRequest::new(Method::POST, ["tokens"])
            .on(Service::Auth)
            .json(login.body())
            .header(AUTHORIZATION, login.basic()?);
        self.execute(&req, None).await?.json()
    }

    /// Sends one request through the transport and turns the answer into a result.
    async fn execute(
        &self,
        req: &ApiRequest,
        credential: Option<&Credential>,
    ) -> Result<Answer, St2Error> {
        let (call, request) = self.build(req, credential)?;
        // INFO, so a dispatch's trace shows its st2 calls (the adapter exports INFO spans).
        let span = tracing::info_span!("st2_call", method = %call.method, path = %call.path);
        let started = Instant::now();
        let outcome = self
            .inner
            .transport
            .clone()
            .oneshot(request)
            .instrument(span.clone())
            .await;
        let _enter = span.enter();
        let reply = match outcome {
            Ok(reply) => reply,
            Err(err) => {
                let err = self.transport_error(&call, err);
                tracing::debug!(error = %err, elapsed_ms = started.elapsed().as_millis() as u64, "st2 call failed");
                return Err(err);
            }
        };
        tracing::debug!(
            status = reply.status.as_u16(),
            attempts = reply.attempts,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "st2 answered"
        );
        into_answer(call, reply)
    }

    /// Opens a long-lived `GET` on st2stream with credentials, outside the transport: the
    /// head must arrive within `request_timeout_ms`, the body is not buffered or bounded. A refused
    /// token is renewed once, as [`St2Client::send`] does; any other non-2xx is its error.
    pub(crate) async fn open_stream(&self, req: ApiRequest) -> Result<reqwest::Response, St2Error> {
        let req = req.on(Service::Stream);
        let mut renewed = false;
        loop {
            let credential = self.credential().await?;
            let (call, request) = self.build(&req, Some(&credential))?;
            // The answer's head (and an error body) must come within one request deadline;
            // only the body of a successful stream is exempt.
            let timeout = self.inner.request_timeout;
            let timed_out = || St2Error::Timeout {
                call: call.clone(),
                after: timeout,
                attempts: 1,
            };
            let response = tokio::time::timeout(timeout, self.inner.http.execute(request))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| self.transport_error(&call, e.into()))?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status().as_u16();
            let body = tokio::time::timeout(timeout, response.bytes())
                .await
                .map_err(|_| timed_out())?
                .unwrap_or_default();
            let err = St2Error::from_status(call, status, faultstring(&body), None, 1);
            match (&err, &self.inner.auth) {
                (St2Error::Unauthorized { .. }, Auth::Token(tokens)) if !renewed => {
                    tokens.invalidate(&credential.value).await;
                    renewed = true;
                }
                _ => return Err(err),
            }
        }
    }

    /// The HTTP request for `req` on its service, with `credential` attached.
    fn build(
        &self,
        req: &ApiRequest,
        credential: Option<&Credential>,
    ) -> Result<(Call, reqwest::Request), St2Error> {
        let root = match req.service {
            Service::Api => &self.inner.endpoints.api,
            Service::Auth => &self.inner.endpoints.auth,
            Service::Stream => &self.inner.endpoints.stream,
        };
        let mut url = root.clone();
        let shown = format!(
            "{}/{}",
            root.path().trim_end_matches('/'),
            req.segments.join("/")
        );
        let call = Call {
            method: req.method.clone(),
            path: shown,
        };
        let bad_segment = req
            .segments
            .iter()
            .find(|s| s.is_empty() || *s == "." || *s == "..")
            .map(|bad| format!("{bad:?} is not a valid id or name"));
        if let Some(reason) = req.refusal.clone().or(bad_segment) {
            return Err(St2Error::InvalidRequest { call, reason });
        }
        url.path_segments_mut()
            .map_err(|()| St2Error::Setup(format!("{root} cannot have a path")))?
            .pop_if_empty()
            .extend(&req.segments);
        let mut builder = self.inner.http.request(req.method.clone(), url);
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(body) = &req.json {
            builder = builder.json(body);
        }
        for (name, value) in &req.headers {
            builder = builder.header(name, value.clone());
        }
        if let Some(c) = credential {
            builder = builder.header(c.name.clone(), c.header_value()?);
        }
        let request = builder
            .build()
            .map_err(|e| St2Error::Setup(format!("{call}: {e}")))?;
        Ok((call, request))
    }

    fn transport_error(&self, call: &Call, err: BoxError) -> St2Error {
        let (attempts, err) = match err.downcast::<Exhausted>() {
            Ok(exhausted) => (exhausted.attempts, exhausted.source),
            Err(err) => (1, err),
        };
        if let Some(tls) = transport::tls_refusal(err.as_ref()) {
            return St2Error::Tls {
                call: call.clone(),
                message: tls.to_string(),
            };
        }
        if err.is::<tower::timeout::error::Elapsed>() {
            return St2Error::Timeout {
                call: call.clone(),
                after: self.inner.request_timeout,
                attempts,
            };
        }
        // The URL is left out: the call already names the path, and the query may hold
        // filter values that have no place in an error message.
        let message = match err.downcast::<reqwest::Error>() {
            Ok(e) => {
                let e = e.without_url();
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            }
            Err(other) => other.to_string(),
        };
        St2Error::Connect {
            call: call.clone(),
            message,
            attempts,
        }
    }
}

/// A 2xx becomes an [`Answer`]; anything else the matching [`St2Error`].
fn into_answer(call: Call, reply: Reply) -> Result<Answer, St2Error> {
    if reply.status.is_success() {
        return Ok(Answer {
            call,
            headers: reply.headers,
            body: reply.body,
        });
    }
    Err(St2Error::from_status(
        call,
        reply.status.as_u16(),
        faultstring(&reply.body),
        reply.retry_after(),
        reply.attempts,
    ))
}

/// st2's `faultstring`, or the start of a body that is not st2's error JSON.
pub(crate) fn faultstring(body: &[u8]) -> String {
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
