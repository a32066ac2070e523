//! The built adapter binary as a child process (`serve --config`), its log lines collected,
//! for tests that kill it, stop it or run several replicas.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `portarium-st2 serve`.
pub struct AdapterProcess {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    /// `http://ADDR` (or `https://ADDR` with TLS) it listens on.
    pub base: String,
}

impl AdapterProcess {
    /// Starts `serve --config <config>` and waits (up to 30 s) for its listening line.
    pub async fn start(config: &Path) -> Self {
        Self::start_logging(config, "info").await
    }

    /// The same with `RUST_LOG` at `level`, for tests that read what is logged below info.
    pub async fn start_logging(config: &Path, level: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portarium-st2"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", level)
            .env("NO_COLOR", "1")
            .env_remove("PORTARIUM_ST2_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the adapter");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let mut adapter = Self {
            child,
            lines,
            readers,
            base: String::new(),
        };
        let line = adapter
            .wait_for_line("listening on ", Duration::from_secs(30))
            .await;
        let url = line.split("listening on ").nth(1).unwrap();
        // A JSON log line ends the message with a quote, a text one with a space.
        let url = url.split(|c: char| c.is_whitespace() || c == '"').next();
        adapter.base = url.unwrap().to_string();
        adapter
    }

    /// Every line logged so far.
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a logged line containing `text` and answers it.
    pub async fn wait_for_line(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(text)) {
                return l;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the adapter exited ({status}) before logging {text:?}:\n{}",
                    self.log().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "no line with {text:?} within {within:?}:\n{}",
                self.log().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, like a crash or a lost node, and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (up to 30 s) for the exit; answers how long it took and
    /// whether the exit was clean.
    pub async fn terminate(&mut self) -> (Duration, bool) {
        let sent = self.sigterm();
        loop {
            if let Some(status) = self.exited() {
                let took = sent.elapsed();
                // Its pipes are closed: the readers end once they took its last lines.
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return (took, status.success());
            }
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "no exit within 30 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl AdapterProcess {
    /// Sends SIGTERM without waiting, for tests that watch the drain; answers when it was sent.
    pub fn sigterm(&self) -> Instant {
        let pid = libc::pid_t::try_from(self.pid()).expect("a pid fits pid_t");
        // The signal goes out by syscall, so the time measured is the adapter's, not that of
        // spawning `kill` on a loaded machine.
        let sent = Instant::now();
        // SAFETY: kill(2) with our own child's pid and a valid signal touches no memory.
        let signalled = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(signalled, 0, "{}", std::io::Error::last_os_error());
        sent
    }

    /// Its exit status once it has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for AdapterProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
