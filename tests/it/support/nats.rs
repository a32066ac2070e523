//! A real `nats-server` with JetStream on a loopback port, for the NATS sink tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped, restartable) nats-server owning its store directory.
pub struct NatsServer {
    pub port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
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

    /// A JetStream context on it, with Portarium's stream (`PORTARIUM_EVENTS`, subjects
    /// `portarium.events.>`) created.
    pub async fn portarium_stream(&self) -> async_nats::jetstream::Context {
        let js = async_nats::jetstream::new(async_nats::connect(self.url()).await.unwrap());
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
        let js = async_nats::jetstream::new(async_nats::connect(self.url()).await.unwrap());
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
