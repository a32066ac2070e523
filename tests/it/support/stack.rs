//! `Stack`: the st2 emulator and the whole adapter in front of it, built by `App::build` as
//! `serve` builds it. Most adapter tests start exactly this; the builder takes what differs.

use std::time::Duration;

use super::SendJson;
use axum::Router;
use portarium_st2::app::App;
use portarium_st2::config::Config;
use portarium_st2::server::conn::ConnectionLimits;
use portarium_st2::server::{DispatchState, Limits, Readiness};
use serde_json::Value;
use st2_client::St2Client;
use st2_emulator::{Emulator, EmulatorOptions};

/// The st2 API key the emulator accepts and the adapter's `st2` section uses.
pub const KEY: &str = "stack-key";

/// What to start; [`Stack::builder`].
#[derive(Default)]
pub struct StackBuilder {
    st2: String,
    tenants: Vec<(String, String, String)>,
    yaml: String,
    limits: Option<Limits>,
    secrets_hidden: bool,
}

/// A running emulator and adapter; the test runtime's end stops them.
pub struct Stack {
    pub emu: Emulator,
    /// The adapter's base URL: `http://ADDR`, or `https://ADDR` when `server.tls` is set.
    pub base: String,
    pub http: reqwest::Client,
    // Held for its event sinks, which end when it is dropped.
    _app: App,
}

impl StackBuilder {
    /// More entries of the `st2` flow mapping, e.g. `retry: {max_retries: 0}`.
    pub fn st2(mut self, entries: &str) -> Self {
        self.st2 = format!(", {entries}");
        self
    }

    /// A tenant calling with `token`.
    pub fn tenant(self, id: &str, token: &str) -> Self {
        self.tenant_with(id, token, "")
    }

    /// A tenant with more entries of its flow mapping, e.g. `allowed_actions: [core.echo]`.
    pub fn tenant_with(mut self, id: &str, token: &str, entries: &str) -> Self {
        let entries = if entries.is_empty() {
            String::new()
        } else {
            format!(", {entries}")
        };
        self.tenants.push((id.into(), token.into(), entries));
        self
    }

    /// Top-level configuration sections in YAML.
    pub fn yaml(mut self, fragment: &str) -> Self {
        self.yaml.push_str(fragment);
        if !fragment.ends_with('\n') {
            self.yaml.push('\n');
        }
        self
    }

    /// Serves the dispatch routes under `limits` instead of the configured ones: the
    /// configuration refuses a request deadline shorter than `dispatch.max_wait_ms`, and the
    /// tests of the deadline itself need one.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// st2 with RBAC on, its secrets hidden from the adapter's (non-admin) st2 user.
    pub fn secrets_hidden(mut self) -> Self {
        self.secrets_hidden = true;
        self
    }

    pub async fn start(self) -> Stack {
        let emu = Emulator::start(EmulatorOptions {
            api_key: KEY.into(),
            secrets_hidden: self.secrets_hidden,
            ..Default::default()
        })
        .await
        .unwrap();
        let mut yaml = format!(
            "listen: 127.0.0.1:0\nst2: {{base_url: '{}', api_key: {KEY}{}}}\n",
            emu.base_url(),
            self.st2
        );
        if !self.tenants.is_empty() {
            yaml.push_str("tenants:\n");
        }
        for (id, token, entries) in &self.tenants {
            yaml.push_str(&format!("  - {{id: {id}, api_token: {token}{entries}}}\n"));
        }
        yaml.push_str(&self.yaml);
        let config = Config::from_yaml(&yaml, "test", std::iter::empty())
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        // No readiness caching, so each probe reflects st2 now.
        let app = App::build(&config, Duration::ZERO).await.unwrap();
        let base = match self.limits {
            None => serve(&app.router, &config).await,
            Some(limits) => {
                let readiness =
                    Readiness::of_st2(&app.client, config.st2.request_timeout, Duration::ZERO);
                let router = portarium_st2::server::router(readiness, app.dispatch.clone(), limits);
                serve(&router, &config).await
            }
        };
        Stack {
            emu,
            base,
            http: reqwest::Client::new(),
            _app: app,
        }
    }
}

/// Serves the adapter the way `serve` does: TLS when the configuration asks for it, under the
/// configured connection limits.
async fn serve(router: &Router, config: &Config) -> String {
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = config
        .server
        .tls
        .as_ref()
        .map(|tls| tls.acceptor().unwrap());
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    tokio::spawn(portarium_st2::server::conn::serve_connections(
        listener,
        router.clone(),
        acceptor,
        ConnectionLimits::new(&config.server),
        std::future::pending(),
    ));
    format!("{scheme}://{addr}")
}

impl Stack {
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// POSTs `body` to the adapter's `path` with `token` (none: no Authorization header);
    /// the status and the JSON answer (`null` when the body is not JSON).
    pub async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A request to the adapter's `path` with `token` as bearer, for the test to finish.
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    /// `method` on the adapter's `path` as `token` with a JSON `body`; the answer, whatever it is.
    pub async fn send_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.request(method, path, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/dispatch`.
    pub async fn dispatch(&self, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.post(token, "/v1/dispatch", body).await
    }

    /// st2's `GET /api/v1/{path}` straight from the emulator, past the adapter.
    pub async fn st2_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/api/v1/{path}", self.emu.base_url()))
            .header("St2-Api-Key", KEY)
            .send_json()
            .await
    }

    /// Requests made for callers; the stream watchers' own connections are not counted.
    pub fn st2_requests(&self) -> usize {
        self.emu
            .request_log()
            .iter()
            .filter(|r| !r.path.starts_with("/stream/"))
            .count()
    }

    /// Executions the adapter asked st2 to create.
    pub fn creates(&self) -> usize {
        self.emu
            .request_log()
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/api/v1/executions")
            .count()
    }
}

/// Serves only the dispatch routes for `config` on a loopback port, readiness always up; the base
/// URL. For tests that start their own emulator first (with options, or shared with direct
/// st2 calls) and need no events, sinks or stream watchers.
pub async fn serve_dispatch_routes(config: &Config) -> String {
    let client = St2Client::from_config(&config.st2).unwrap();
    let readiness = Readiness::new(
        std::sync::Arc::new(|| Box::pin(async { Ok(()) })),
        Duration::from_secs(1),
        Duration::ZERO,
    );
    let dispatch =
        DispatchState::new(&config.st2, &config.tenants, &config.dispatch, &client).unwrap();
    let limits = Limits::new(&config.server, config.dispatch.max_body_bytes);
    let router = portarium_st2::server::router(readiness, dispatch, limits);
    serve(&router, config).await
}

/// The whole adapter (`App::build`) for the config in `yaml`, served on a loopback port: the
/// app (to shut down) and its base URL.
pub async fn app_from_yaml(yaml: &str) -> (App, String) {
    let config = Config::from_yaml(yaml, "test", std::iter::empty()).unwrap();
    let app = App::build(&config, Duration::ZERO).await.unwrap();
    let base = app
        .serve_in_background("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (app, base)
}

/// A stack with tenant `t1` (token `tok-1`) and an audit log in `dir` (`audit.jsonl`).
pub async fn audited(dir: &tempfile::TempDir) -> Stack {
    Stack::builder()
        .tenant("t1", "tok-1")
        .yaml(&format!(
            "governance: {{audit: {{path: '{}'}}}}",
            dir.path().join("audit.jsonl").display()
        ))
        .start()
        .await
}
