//! Shared test helpers: a NATS server, the st2 reference data, and the test certificates.

pub mod adapter;
pub mod deploy;
pub mod nats;
pub mod reference;
pub mod stack;
pub mod tls_server;

pub use reference::{missing, reference_dir};

/// Test-only certificates (made for these tests with openssl): a private CA, a server
/// certificate for 127.0.0.1 it signed, a client CA and client, and a rogue pair. They live with
/// the st2 client's tests, which stand alone; the adapter may read what its dependency holds.
pub fn tls_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/st2-client/tests/it/support/tls")
        .join(name)
}

/// The emulator's built-in catalogue with the `packs` and `actions` of `extra` (a catalogue
/// fragment in YAML) added.
pub fn catalogue_with(extra: &str) -> st2_emulator::Catalogue {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/st2-emulator/src/catalogue.yaml");
    let mut catalogue: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let extra: serde_norway::Value = serde_norway::from_str(extra).unwrap();
    for list in ["packs", "actions"] {
        if let Some(added) = extra[list].as_sequence() {
            let into = catalogue[list].as_sequence_mut().unwrap();
            into.extend(added.iter().cloned());
        }
    }
    st2_emulator::Catalogue::from_yaml(&serde_norway::to_string(&catalogue).unwrap()).unwrap()
}

/// Sends a request whose answer the test needs and reads its JSON body: the transport and the
/// body must not fail, whatever the status.
pub trait SendJson {
    fn send_json<T: serde::de::DeserializeOwned>(self) -> impl Future<Output = T>;
    /// The same for a text body, such as `/metrics`.
    fn send_text(self) -> impl Future<Output = String>;
}

impl SendJson for reqwest::RequestBuilder {
    async fn send_json<T: serde::de::DeserializeOwned>(self) -> T {
        self.send().await.unwrap().json().await.unwrap()
    }

    async fn send_text(self) -> String {
        self.send().await.unwrap().text().await.unwrap()
    }
}

/// The stdout of a finished command that must have succeeded; a failure shows `what` with the
/// command's stdout and stderr.
pub fn succeeded(out: &std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// An emulator accepting API key `key`, with keep-alives every 200 ms: well inside a test
/// watcher's silence bound, as st2's 25 s are inside the default 60 s.
pub async fn quick_emulator(key: &str) -> st2_emulator::Emulator {
    st2_emulator::Emulator::start(st2_emulator::EmulatorOptions {
        api_key: key.into(),
        heartbeat: std::time::Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A config file in `dir` whose `st2` section points at `emu` with `api_key` (a literal or a
/// secret reference such as `env:NAME`), for the binary's commands.
pub fn st2_config_file(
    dir: &std::path::Path,
    emu: &st2_emulator::Emulator,
    api_key: &str,
) -> std::path::PathBuf {
    let path = dir.join("st2.yaml");
    let yaml = format!(
        "st2: {{base_url: '{}', api_key: '{api_key}'}}\n",
        emu.base_url()
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A loopback port free right now (bound, then released): nothing listens on it.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Makes `subscriber` this thread's default for as long as the guards live.
///
/// tracing-core caches whether a callsite is wanted when it is first hit. While exactly one
/// dispatcher is registered it asks only the hitting thread's own default, so a callsite
/// first hit by another test's thread (which has no subscriber) is cached as unwanted, and
/// this thread's subscriber never sees it: spans and lines went missing at random when other
/// tests ran beside. A second, silent dispatcher kept alive with the guard makes tracing ask
/// every registered dispatcher, this one included.
pub fn scoped_subscriber(
    subscriber: impl tracing::Subscriber + Send + Sync + 'static,
) -> (tracing::Dispatch, tracing::subscriber::DefaultGuard) {
    let silent = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    (silent, tracing::subscriber::set_default(subscriber))
}
