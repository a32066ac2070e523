//! `st2-emulator`: a StackStorm (st2) API emulator that answers like st2 over real HTTP and SSE
//! (`/api/v1`, `/auth/v1`, `/stream/v1` on one port, as behind st2's nginx), runs executions
//! through st2's status machine on its own, and has fault switches for resilience tests.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = st2_emulator::Emulator::start(Default::default()).await?;
//! println!("{}", emulator.base_url());
//! emulator.faults().fail_next(503, 1);
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod catalogue;
mod engine;
mod faults;
mod metrics;
mod model;
mod params;
mod rules;
mod server;
mod shell;
mod state;
mod util;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use catalogue::{Catalogue, CatalogueError};
pub use faults::Faults;

use server::Server;
use state::{Config, Shared};

/// A user who can obtain tokens with HTTP Basic on `POST /auth/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Password.
    pub password: String,
}

/// How to run an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Address to listen on (default `127.0.0.1:0`).
    pub listen: SocketAddr,
    /// API key accepted as `St2-Api-Key` (default `emulator-api-key`).
    pub api_key: String,
    /// Users allowed to log in (default `st2admin` / `Ch@ngeMe`).
    pub users: Vec<User>,
    /// Packs, runners and actions (default: the built-in catalogue).
    pub catalogue: Catalogue,
    /// Maximum and default token lifetime (st2 `[auth] token_ttl`, default 86400 s).
    pub token_ttl: Duration,
    /// Time between automatic status transitions (default 20 ms).
    pub step: Duration,
    /// SSE keep-alive interval (st2 `[stream] heartbeat`, default 25 s).
    pub heartbeat: Duration,
    /// Models st2 with RBAC on and a caller that is no admin: `show_secrets` is ignored, so
    /// secret parameters stay masked (default off: RBAC off, every caller an admin).
    pub secrets_hidden: bool,
    /// Succeeded `core.noop` executions stored before serving, as the history a production
    /// st2 keeps, for measuring what lookups cost (default 0).
    pub preload: usize,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            api_key: "emulator-api-key".into(),
            users: vec![User {
                name: "st2admin".into(),
                password: "Ch@ngeMe".into(),
            }],
            catalogue: Catalogue::builtin(),
            token_ttl: Duration::from_secs(86_400),
            step: Duration::from_millis(20),
            heartbeat: Duration::from_secs(25),
            secrets_hidden: false,
            preload: 0,
        }
    }
}

/// One request the emulator received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path as received.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Response status; 0 when a fault dropped the connection.
    pub status: u16,
}

impl RequestRecord {
    /// What the request costs st2, for counting a client's requests by kind: `create`,
    /// `trace lookup` (indexed), `execution read` (by id), `execution list`, `schema read`,
    /// or `other`.
    pub fn kind(&self) -> &'static str {
        match (self.method.as_str(), self.path.as_str()) {
            ("POST", "/api/v1/executions") => "create",
            ("GET", "/api/v1/traces") => "trace lookup",
            ("GET", p) if p.starts_with("/api/v1/executions/") => "execution read",
            ("GET", "/api/v1/executions") => "execution list",
            ("GET", p) if p.starts_with("/api/v1/actions/views/parameters/") => "schema read",
            _ => "other",
        }
    }
}

/// A running emulator.
pub struct Emulator {
    shared: Arc<Shared>,
    server: Arc<Server>,
}

impl Emulator {
    /// Bind the listen address and start serving.
    pub async fn start(options: EmulatorOptions) -> std::io::Result<Emulator> {
        let config = Config {
            api_key: options.api_key,
            users: options
                .users
                .into_iter()
                .map(|u| (u.name, u.password))
                .collect(),
            token_ttl: options.token_ttl,
            step: options.step,
            heartbeat: options.heartbeat,
            secrets_hidden: options.secrets_hidden,
        };
        let shared = Shared::new(options.catalogue, config, Faults::default());
        if options.preload > 0 {
            let Some(noop) = shared.catalogue.action("core.noop") else {
                return Err(std::io::Error::other(
                    "preloading needs core.noop in the catalogue",
                ));
            };
            let runner = shared.catalogue.runner_of(noop);
            shared.store().preload(noop, runner, options.preload);
        }
        let server = Server::start(shared.clone(), options.listen).await?;
        Ok(Emulator { shared, server })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`; serves `/api/v1`, `/auth/v1` and `/stream/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The fault switches.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Every request received, in order (faulted ones too; `/_emulator` control calls are not logged).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.request_log()
    }

    /// Close the listener and every open connection (streams end), then re-bind the same port.
    /// Executions, tokens and their progress survive; in-flight executions keep moving.
    pub async fn restart(&self) {
        if let Err(e) = self.server.restart().await {
            tracing::error!(error = %e, addr = %self.addr(), "emulator could not re-bind its port after restart");
        }
    }

    /// Executions examined by execution-list scans so far. Lookups st2 answers from an index
    /// (by id, by trace tag) add nothing; an unindexed filter adds every execution it passes.
    pub fn executions_scanned(&self) -> u64 {
        self.shared.store().scanned
    }

    /// Invalidate every issued token (they then get 401 "Unauthorized").
    pub fn revoke_tokens(&self) {
        self.shared.store().tokens.clear();
    }

    /// Stop serving and stop every background task.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl Drop for Emulator {
    /// An emulator dropped without `shutdown` still closes its port and stops its tasks.
    fn drop(&mut self) {
        if let Some(accept) = self.server.stop() {
            accept.abort();
        }
    }
}
