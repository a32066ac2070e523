//! An in-process emulator plus a plain HTTP client that replays capture requests against it.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use st2_emulator::{Emulator, EmulatorOptions};

use crate::cases::{Auth, Request};
use crate::fixture::started;
use crate::sse::{self, Item};

/// Upper bound for any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

/// A running emulator, an HTTP client and a token for `st2admin`.
pub struct Harness {
    /// The emulator under test.
    pub emulator: Emulator,
    http: reqwest::Client,
    token: String,
    api_key: String,
}

/// A response as received.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "emulator body is not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Harness {
    /// Start an emulator with default options except `step` (time between status changes).
    pub async fn start_with_step(step: Duration) -> Harness {
        Harness::start(EmulatorOptions {
            step,
            ..EmulatorOptions::default()
        })
        .await
    }

    /// Start an emulator with these options and log in as `st2admin`.
    pub async fn start(options: EmulatorOptions) -> Harness {
        let api_key = options.api_key.clone();
        let (emulator, http) = started(options, WAIT).await;
        let mut harness = Harness {
            emulator,
            http,
            token: String::new(),
            api_key,
        };
        let login = harness
            .call(&Request {
                method: "POST",
                path: "/auth/v1/tokens",
                body: None,
                auth: Auth::Basic("Ch@ngeMe"),
                status: 201,
            })
            .await;
        assert_eq!(
            login.status,
            201,
            "login as st2admin: {}",
            String::from_utf8_lossy(&login.body)
        );
        harness.token = login.json()["token"]
            .as_str()
            .expect("token response carries `token`")
            .to_string();
        harness
    }

    /// The token issued at start.
    pub fn token(&self) -> &str {
        &self.token
    }

    fn builder(&self, method: &str, path: &str, auth: Auth) -> reqwest::RequestBuilder {
        let method = Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let b = self
            .http
            .request(method, format!("{}{}", self.emulator.base_url(), path));
        match auth {
            Auth::Token => b.header("X-Auth-Token", &self.token),
            Auth::ApiKey => b.header("St2-Api-Key", &self.api_key),
            Auth::Nothing => b,
            Auth::UnknownToken => b.header("X-Auth-Token", "0123456789abcdef0123456789abcdef"),
            Auth::Basic(password) => b.basic_auth("st2admin", Some(password)),
        }
    }

    /// Send a capture's request (with `{id}` already substituted in `path`).
    pub async fn send(&self, method: &str, path: &str, body: Option<&str>, auth: Auth) -> Reply {
        let mut b = self.builder(method, path, auth);
        if let Some(body) = body {
            b = b
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let r = b
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("response body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Send a table request verbatim (no `{id}` in it).
    pub async fn call(&self, request: &Request) -> Reply {
        self.send(request.method, request.path, request.body, request.auth)
            .await
    }

    /// Send a table request about execution `id`.
    pub async fn call_for(&self, request: &Request, id: &str) -> Reply {
        self.send(
            request.method,
            &request.path_with(id),
            request.body,
            request.auth,
        )
        .await
    }

    /// `POST /api/v1/executions` with this body; returns the new execution id.
    pub async fn run(&self, body: &str) -> String {
        let reply = self
            .send("POST", "/api/v1/executions", Some(body), Auth::Token)
            .await;
        assert_eq!(
            reply.status,
            201,
            "POST /executions {body}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        reply.json()["id"]
            .as_str()
            .expect("execution id")
            .to_string()
    }

    /// `GET /api/v1/executions/{id}` as JSON.
    pub async fn execution(&self, id: &str) -> Value {
        let reply = self
            .send(
                "GET",
                &format!("/api/v1/executions/{id}"),
                None,
                Auth::Token,
            )
            .await;
        assert_eq!(reply.status, 200, "GET execution {id}");
        reply.json()
    }

    /// Poll the execution until its status is `status`; bounded by [`WAIT`], with backoff.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let e = self.execution(id).await;
            if e["status"] == status {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} did not reach {status} within {WAIT:?}; last status {} log {}",
                e["status"],
                e["log"]
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Open a stream endpoint and hand back its head and a framing-checking reader.
    pub async fn open_stream(&self, path: &str) -> (Reply, StreamReader) {
        let r = self
            .builder("GET", path, Auth::Token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"));
        let head = Reply {
            status: r.status().as_u16(),
            headers: r.headers().clone(),
            body: Vec::new(),
        };
        let reader = StreamReader {
            chunks: Box::pin(r.bytes_stream()),
            raw: Vec::new(),
            parsed: 0,
            pending: Vec::new(),
            ended: false,
        };
        (head, reader)
    }
}

type Chunks =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Reads an SSE body item by item, checking st2's framing as bytes arrive.
pub struct StreamReader {
    chunks: Chunks,
    raw: Vec<u8>,
    parsed: usize,
    pending: Vec<(Item, Instant)>,
    ended: bool,
}

impl StreamReader {
    /// The next item and when its last byte arrived; `None` once the server ended the body.
    /// Panics when nothing arrives within `within` or the framing differs from st2's.
    pub async fn next(&mut self, within: Duration) -> Option<(Item, Instant)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !self.pending.is_empty() {
                return Some(self.pending.remove(0));
            }
            if self.ended {
                assert_eq!(
                    self.parsed,
                    self.raw.len(),
                    "stream ended inside an event: {:?}",
                    String::from_utf8_lossy(&self.raw[self.parsed..])
                );
                return None;
            }
            match tokio::time::timeout_at(deadline, self.chunks.next()).await {
                Err(_) => panic!(
                    "nothing arrived on the stream within {within:?}; bytes so far: {:?}",
                    String::from_utf8_lossy(&self.raw)
                ),
                Ok(None) => self.ended = true,
                Ok(Some(Err(e))) => panic!("stream broke: {e}"),
                Ok(Some(Ok(bytes))) => {
                    let now = Instant::now();
                    self.raw.extend_from_slice(&bytes);
                    let (items, used) =
                        sse::parse_prefix(&self.raw[self.parsed..]).unwrap_or_else(|e| {
                            panic!(
                                "{e}; whole stream so far: {:?}",
                                String::from_utf8_lossy(&self.raw)
                            )
                        });
                    self.parsed += used;
                    self.pending.extend(items.into_iter().map(|i| (i, now)));
                }
            }
        }
    }

    /// Read items until `stop` says so (the matching item is included) or the body ends, all
    /// within `within` in total.
    pub async fn until(&mut self, within: Duration, stop: impl Fn(&Item) -> bool) -> Vec<Item> {
        let deadline = Instant::now() + within;
        let mut items = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((item, _)) = self.next(left).await else {
                return items;
            };
            let done = stop(&item);
            items.push(item);
            if done {
                return items;
            }
        }
    }

    /// Every byte received so far.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
}
