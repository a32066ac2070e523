//! A real `nats-server` with JetStream on a loopback port, for the NATS sink tests; and
//! NATS decentralized auth (operator mode) minted here the way `nsc` does it, for the
//! credentials-file tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped, restartable) nats-server owning its store directory.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// The `.creds` file this fixture's own connections use (operator mode).
    creds: Option<PathBuf>,
    /// Where its log goes when kept (`-l`), to say why it refused something.
    log: Option<PathBuf>,
}

fn binary() -> PathBuf {
    let found = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!("nats-server is not installed; install it with `apt-get install -y nats-server` (.ci/run does this)")
    })
}

impl NatsServer {
    /// A server on `port`, not started yet.
    pub fn on_port(port: u16) -> Self {
        binary();
        Self {
            port,
            store: tempfile::tempdir().expect("temp dir"),
            child: None,
            creds: None,
            log: None,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same store) and waits until it accepts connections.
    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// [`NatsServer::start`] with more command-line options (auth, TLS).
    pub fn start_with(&mut self, options: &[&str]) {
        let child = Command::new(binary())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .args(options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it in operator mode with `auth`'s server config; this fixture's own connections
    /// (streams, [`NatsServer::stored`]) authenticate with `creds`. Its log is kept, at debug
    /// level, see [`NatsServer::log`].
    pub fn start_operator_mode(&mut self, auth: &OperatorMode, creds: &Path) {
        let log = self.store.path().join("nats-server.log");
        let config = auth.server_config();
        self.creds = Some(creds.to_path_buf());
        self.log = Some(log.clone());
        let (config, log) = (config.display().to_string(), log.display().to_string());
        // Debug level: why a login was refused (a revoked user, say) is logged only there.
        self.start_with(&["-c", &config, "-l", &log, "-D"]);
    }

    /// The server's log so far (operator mode only; empty otherwise).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// A JetStream context on it, authenticated when it runs in operator mode.
    async fn jetstream(&self) -> async_nats::jetstream::Context {
        let options = match &self.creds {
            Some(creds) => async_nats::ConnectOptions::with_credentials_file(creds.clone())
                .await
                .expect("read the fixture's .creds"),
            None => async_nats::ConnectOptions::new(),
        };
        async_nats::jetstream::new(options.connect(self.url()).await.unwrap())
    }

    /// A JetStream context on it, with Portarium's stream (`PORTARIUM_EVENTS`, subjects
    /// `portarium.events.>`) created.
    pub async fn portarium_stream(&self) -> async_nats::jetstream::Context {
        let js = self.jetstream().await;
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "PORTARIUM_EVENTS".into(),
            subjects: vec!["portarium.events.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        js
    }

    /// The event ids of every message `stream` holds, in order, and its configuration.
    pub async fn stored(
        &self,
        stream: &str,
    ) -> (Vec<String>, async_nats::jetstream::stream::Config) {
        let js = self.jetstream().await;
        let mut stream = js.get_stream(stream).await.unwrap();
        let info = stream.info().await.unwrap().clone();
        let mut ids = Vec::new();
        for seq in info.state.first_sequence..=info.state.last_sequence {
            if info.state.messages == 0 {
                break;
            }
            let m = stream.get_raw_message(seq).await.unwrap();
            let event: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            ids.push(event["id"].as_str().unwrap().to_string());
        }
        (ids, info.config)
    }

    /// Stops it (SIGKILL, like a crash) and waits for the process to end.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Publishes `event` (a structured CloudEvent) where Portarium's publisher would, on
/// `portarium.events.<type without com.portarium.>`, and waits for JetStream to store it.
pub async fn publish_event(js: &async_nats::jetstream::Context, event: &serde_json::Value) {
    let subject = format!(
        "portarium.events.{}",
        event["type"]
            .as_str()
            .unwrap()
            .trim_start_matches("com.portarium.")
    );
    js.publish(subject, serde_json::to_vec(event).unwrap().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

/// NATS decentralized auth as `nsc` sets it up: an operator, its system account and one
/// account with JetStream enabled, each an NKey with a JWT signed by the key above it.
/// Users get `.creds` files; the server trusts the operator and has both account JWTs
/// preloaded (`resolver: MEMORY`).
pub struct OperatorMode {
    dir: tempfile::TempDir,
    operator: nkeys::KeyPair,
    system: nkeys::KeyPair,
    account: nkeys::KeyPair,
    /// User public keys the account revokes, with the time up to which their JWTs are void.
    revoked: Vec<(String, i64)>,
}

impl Default for OperatorMode {
    fn default() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            operator: nkeys::KeyPair::new_operator(),
            system: nkeys::KeyPair::new_account(),
            account: nkeys::KeyPair::new_account(),
            revoked: Vec::new(),
        }
    }
}

impl OperatorMode {
    /// The `.creds` file of a new user of the account.
    pub fn user_creds(&self, name: &str) -> PathBuf {
        self.creds_signed_by(name, &self.account)
    }

    /// The `.creds` file of a new user whose JWT `signer` signed (not the account: the
    /// server does not know that key, as with creds issued by another operator's account).
    pub fn creds_signed_by(&self, name: &str, signer: &nkeys::KeyPair) -> PathBuf {
        let user = nkeys::KeyPair::new_user();
        self.write_creds(name, &user, signer)
    }

    /// The `.creds` file of a user of the account that the account has revoked.
    pub fn revoked_user_creds(&mut self, name: &str) -> PathBuf {
        let user = nkeys::KeyPair::new_user();
        let path = self.write_creds(name, &user, &self.account);
        // Revoked are JWTs issued at or before this time: this one.
        self.revoked.push((user.public_key(), now()));
        path
    }

    fn write_creds(&self, name: &str, user: &nkeys::KeyPair, signer: &nkeys::KeyPair) -> PathBuf {
        let claims = serde_json::json!({
            "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
            "type": "user", "version": 2,
        });
        let jwt = mint_jwt(signer, &user.public_key(), name, claims);
        let seed = user.seed().expect("a user seed");
        let text = format!(
            "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n"
        );
        let path = self.dir.path().join(format!("{name}.creds"));
        std::fs::write(&path, text).expect("write the .creds file");
        path
    }

    /// Writes the server's config (trusted operator, system account, both account JWTs
    /// preloaded, JetStream on) and answers its path. Call after the last revocation.
    pub fn server_config(&self) -> PathBuf {
        let operator = self.operator.public_key();
        let operator_jwt = mint_jwt(
            &self.operator,
            &operator,
            "portarium-test-operator",
            serde_json::json!({
                "system_account": self.system.public_key(),
                "type": "operator", "version": 2,
            }),
        );
        let operator_file = self.dir.path().join("operator.jwt");
        std::fs::write(&operator_file, &operator_jwt).expect("write the operator JWT");
        let unlimited = serde_json::json!({
            "subs": -1, "data": -1, "payload": -1,
            "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1,
        });
        let system_jwt = mint_jwt(
            &self.operator,
            &self.system.public_key(),
            "SYS",
            serde_json::json!({"limits": unlimited, "type": "account", "version": 2}),
        );
        // Storage limits other than 0 are what enables JetStream for an account.
        let mut limits = unlimited;
        for field in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[field] = (-1).into();
        }
        let revocations: serde_json::Map<String, serde_json::Value> = self
            .revoked
            .iter()
            .map(|(user, until)| (user.clone(), (*until).into()))
            .collect();
        let account_jwt = mint_jwt(
            &self.operator,
            &self.account.public_key(),
            "PORTARIUM",
            serde_json::json!({
                "limits": limits, "revocations": revocations,
                "type": "account", "version": 2,
            }),
        );
        let config = format!(
            "operator: \"{}\"\n\
             system_account: {sys}\n\
             resolver: MEMORY\n\
             resolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n",
            operator_file.display(),
            sys = self.system.public_key(),
            acc = self.account.public_key(),
        );
        let path = self.dir.path().join("operator-mode.conf");
        std::fs::write(&path, config).expect("write the server config");
        path
    }
}

/// Seconds since the Unix epoch.
fn now() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.expect("after 1970").as_secs()).expect("in range")
}

/// A NATS JWT (v2) for `subject` signed by `issuer`: header `{"typ":"JWT","alg":"ed25519-nkey"}`,
/// the standard claims (`jti` = base32 of the SHA-512/256 of the claims without it, as
/// nats-io/jwt computes it; `iat`; `iss`; `name`; `sub`) and the `nats` section given.
pub fn mint_jwt(
    issuer: &nkeys::KeyPair,
    subject: &str,
    name: &str,
    nats: serde_json::Value,
) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sha2::Digest;
    let mut claims = serde_json::json!({
        "iat": now(), "iss": issuer.public_key(), "name": name, "sub": subject,
    });
    let digest = sha2::Sha512_256::digest(claims.to_string().as_bytes());
    claims["jti"] = base32(&digest).into();
    claims["nats"] = nats;
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{body}");
    let signature = issuer.sign(signed.as_bytes()).expect("sign the JWT");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// RFC 4648 base32 without padding (the `jti` encoding).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}
