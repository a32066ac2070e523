//! Lifecycle events across restarts, replicas and shutdowns, with the built binary as a child
//! process, the st2 emulator and a real nats-server: nothing lost when the adapter dies,
//! nothing doubled in JetStream with several replicas, no wait at SIGTERM when nothing is
//! queued, and a broken checkpoint costs a log line, not the service.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use futures_util::StreamExt;
use serde_json::{Value, json};
use st2_client::api::executions::ExecutionRequest;
use st2_client::{ExecutionStatus, St2Client, St2Config};
use st2_emulator::Emulator;

use crate::support::adapter::AdapterProcess;
use crate::support::nats::NatsServer;
use crate::support::{SendJson, free_port, quick_emulator};

const KEY: &str = "durability-key";

/// Event ids as the HTTP receiver got them, duplicates included; while `refusing`, it
/// answers 503 and keeps nothing.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>, Arc<std::sync::atomic::AtomicBool>);

impl Received {
    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    fn distinct(&self) -> BTreeSet<String> {
        self.ids().into_iter().collect()
    }

    /// Waits (up to `within`) until every id of `want` arrived.
    async fn wait_for_all(&self, want: &BTreeSet<String>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.distinct();
            let missing: Vec<_> = want.difference(&got).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} transitions never arrived over HTTP, e.g. {:?}",
                missing.len(),
                want.len(),
                &missing[..missing.len().min(5)]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A CloudEvents receiver on 127.0.0.1 standing in for Portarium; answers its URL.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new()
        .route(
            "/events",
            post(
                |State(r): State<Received>, body: axum::body::Bytes| async move {
                    if r.1.load(std::sync::atomic::Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    r.0.lock()
                        .unwrap()
                        .push(event["id"].as_str().unwrap().to_string());
                    axum::http::StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// Everything one test's adapters share: st2, NATS, the receiver, a config folder.
struct World {
    emu: Emulator,
    nats: NatsServer,
    sink: String,
    received: Received,
    st2: St2Client,
    dir: tempfile::TempDir,
    deployment: &'static str,
}

impl World {
    async fn new(deployment: &'static str) -> World {
        let mut nats = NatsServer::on_port(free_port());
        nats.start();
        World::with_nats(deployment, nats).await
    }

    /// [`World::new`] around a NATS server started by the caller.
    async fn with_nats(deployment: &'static str, nats: NatsServer) -> World {
        let emu = quick_emulator(KEY).await;
        let (sink, received) = receiver().await;
        let config = St2Config::with_api_key(
            emu.base_url().parse().unwrap(),
            st2_client::Secret::from_value(KEY),
        );
        let st2 = St2Client::from_config(&config).unwrap();
        World {
            emu,
            nats,
            sink,
            received,
            st2,
            dir: tempfile::tempdir().unwrap(),
            deployment,
        }
    }

    fn stream(&self) -> String {
        format!("LIFECYCLE_{}", self.deployment.to_uppercase())
    }

    fn checkpoint_key(&self) -> String {
        format!("portarium-st2.{}.lifecycle.checkpoint", self.deployment)
    }

    fn lease_key(&self) -> String {
        format!("portarium-st2.{}.lifecycle.lease", self.deployment)
    }

    /// The config of replica `replica`: every `core` execution reported (a governed pack),
    /// to HTTP and NATS, checkpoint every 200 ms, a 3 s lease.
    fn config(&self, replica: &str) -> PathBuf {
        self.config_with(replica, "")
    }

    /// [`World::config`] with more `events.nats` settings (one `key: value` a line).
    fn config_with(&self, replica: &str, nats_settings: &str) -> PathBuf {
        let nats_settings: String = nats_settings
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let path = self.dir.path().join(format!("{replica}.yaml"));
        let yaml = format!(
            "listen: 127.0.0.1:0\n\
             st2: {{base_url: '{base}', api_key: {KEY}}}\n\
             tenants:\n  - {{id: t1, api_token: tok}}\n\
             events:\n\
             \x20 shutdown_grace: 1s\n\
             \x20 lifecycle:\n\
             \x20   governed_packs: [core]\n\
             \x20   governed_tenant: t1\n\
             \x20   deployment: {dep}\n\
             \x20   checkpoint: {{interval: 200ms}}\n\
             \x20   lease: {{ttl: 3s, replica: {replica}}}\n\
             \x20 http:\n\
             \x20   url: {sink}\n\
             \x20   delivery: {{queue_size: 4096, backoff: {{initial: 20ms, max: 500ms}}}}\n\
             \x20 nats:\n\
             \x20   url: {nats}\n\
             \x20   stream: {stream}\n\
             \x20   subject_prefix: lifecycle.{dep}\n\
             \x20   delivery: {{queue_size: 4096, backoff: {{initial: 20ms, max: 500ms}}}}\n\
             {nats_settings}",
            base = self.emu.base_url(),
            dep = self.deployment,
            sink = self.sink,
            nats = self.nats.url(),
            stream = self.stream(),
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// Replica `a`, holding the lease, once `n` short executions have been run and reported
    /// over HTTP; answers it and the transitions reported.
    async fn reporting(&self, n: usize) -> (AdapterProcess, BTreeSet<String>) {
        let mut adapter = AdapterProcess::start(&self.config("a")).await;
        adapter
            .wait_for_line("lifecycle lease changed hands", Duration::from_secs(10))
            .await;
        let ids = self.run_sleeps(n, 0.1).await;
        let want = self.finished(&ids, Duration::from_secs(10)).await;
        self.received
            .wait_for_all(&want, Duration::from_secs(10))
            .await;
        (adapter, want)
    }

    /// Starts `n` `core.local` executions running `sleep <secs>`; answers their ids.
    async fn run_sleeps(&self, n: usize, secs: f64) -> Vec<String> {
        let st2 = &self.st2;
        futures_util::stream::iter(0..n)
            .map(|_| async move {
                let mut r = ExecutionRequest::new("core.local");
                r.parameters = json!({"cmd": format!("sleep {secs}")})
                    .as_object()
                    .cloned()
                    .unwrap();
                st2.executions().create(&r).await.unwrap().id
            })
            .buffer_unordered(16)
            .collect()
            .await
    }

    /// Waits until every one of `ids` ended, and answers their transition ids: each must
    /// have started and succeeded.
    async fn finished(&self, ids: &[String], within: Duration) -> BTreeSet<String> {
        let deadline = Instant::now() + within;
        let mut want = BTreeSet::new();
        for id in ids {
            loop {
                let e = self.st2.executions().get(id).send().await.unwrap();
                if e.is_terminal() {
                    assert_eq!(e.status, Some(ExecutionStatus::Succeeded), "{id}");
                    break;
                }
                assert!(Instant::now() < deadline, "{id} still {:?}", e.status);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            want.insert(format!("st2:{id}:started"));
            want.insert(format!("st2:{id}:succeeded"));
        }
        want
    }

    /// Checks that JetStream holds exactly one message per transition of `want`, once the
    /// stream has stopped growing.
    async fn exactly_once_in_jetstream(&self, want: &BTreeSet<String>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ids = loop {
            let (ids, _) = self.nats.stored(&self.stream()).await;
            let got: BTreeSet<_> = ids.iter().cloned().collect();
            if want.is_subset(&got) || Instant::now() > deadline {
                break ids;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Late republications, if any, would land now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (again, config) = self.nats.stored(&self.stream()).await;
        assert_eq!(ids.len(), again.len(), "the stream kept growing");
        let mut counts: HashMap<&String, usize> = HashMap::new();
        for id in &again {
            *counts.entry(id).or_default() += 1;
        }
        let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(doubled.is_empty(), "stored more than once: {doubled:?}");
        let got: BTreeSet<String> = again.into_iter().collect();
        assert_eq!(&got, want, "JetStream holds exactly the transitions");
        // The stream the adapter created carries the default limits.
        assert_eq!(config.duplicate_window, Duration::from_secs(120));
        assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.max_bytes, 1 << 30);
    }
}

/// (a) The adapter is SIGKILLed while 200 executions run, and 100 of them finish while it
/// is down: after the restart every transition of all 200 arrives over HTTP, and JetStream
/// holds each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_adapter_reports_what_finished_while_it_was_down_and_jetstream_holds_each_once() {
    let w = World::new("ita").await;
    let config = w.config("a");
    let mut adapter = AdapterProcess::start(&config).await;
    adapter
        .wait_for_line("lifecycle lease changed hands", Duration::from_secs(10))
        .await;
    let short = w.run_sleeps(100, 2.5).await;
    let long = w.run_sleeps(100, 9.0).await;
    let all: Vec<String> = short.iter().chain(&long).cloned().collect();
    let started: BTreeSet<String> = all.iter().map(|id| format!("st2:{id}:started")).collect();
    w.received
        .wait_for_all(&started, Duration::from_secs(20))
        .await;
    // Two checkpoint intervals, so the key names them in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    adapter.kill();
    let down: BTreeSet<String> = w.received.distinct();
    let missed = w.finished(&short, Duration::from_secs(30)).await;
    assert!(
        missed
            .iter()
            .all(|id| id.ends_with(":started") || !down.contains(id)),
        "the 100 short executions ended while nothing could report them"
    );
    let mut adapter = AdapterProcess::start(&config).await;
    adapter
        .wait_for_line(
            "lifecycle reconciled from the checkpoint",
            Duration::from_secs(20),
        )
        .await;
    let want: BTreeSet<String> = missed
        .into_iter()
        .chain(w.finished(&long, Duration::from_secs(40)).await)
        .collect();
    assert_eq!(want.len(), 400);
    w.received
        .wait_for_all(&want, Duration::from_secs(30))
        .await;
    w.exactly_once_in_jetstream(&want).await;
    let (took, clean) = adapter.terminate().await;
    assert!(clean, "{took:?}");
}

/// (b) Two replicas of one deployment, 500 executions: JetStream holds each transition
/// once; the replica that reports is killed mid-run and the other one takes over with
/// nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_publish_each_transition_once_and_survive_the_reporter_dying() {
    let w = World::new("itb").await;
    let mut a = AdapterProcess::start(&w.config("a")).await;
    a.wait_for_line("lifecycle lease changed hands", Duration::from_secs(10))
        .await;
    let mut b = AdapterProcess::start(&w.config("b")).await;
    let first = w.run_sleeps(250, 3.0).await;
    let started: BTreeSet<String> = first.iter().map(|id| format!("st2:{id}:started")).collect();
    w.received
        .wait_for_all(&started, Duration::from_secs(30))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holder = w.st2.keys().get(&w.lease_key()).await.unwrap().unwrap();
    assert_eq!(holder.value, "a", "the first replica up took the lease");
    let ids = w.received.ids();
    assert_eq!(
        ids.len(),
        w.received.distinct().len(),
        "while one replica holds the lease, only it publishes: no id twice even over HTTP"
    );
    // Kill the reporter mid-run: the first 250 are still sleeping.
    a.kill();
    let second = w.run_sleeps(250, 1.0).await;
    b.wait_for_line(
        "lifecycle reconciled from the checkpoint",
        Duration::from_secs(20),
    )
    .await;
    let all: Vec<String> = first.into_iter().chain(second).collect();
    let want = w.finished(&all, Duration::from_secs(60)).await;
    assert_eq!(want.len(), 1000);
    w.received
        .wait_for_all(&want, Duration::from_secs(30))
        .await;
    w.exactly_once_in_jetstream(&want).await;
    let holder = w.st2.keys().get(&w.lease_key()).await.unwrap().unwrap();
    assert_eq!(holder.value, "b", "the survivor holds the lease");
    let (_, clean) = b.terminate().await;
    assert!(clean);
    assert!(
        w.st2.keys().get(&w.lease_key()).await.unwrap().is_none(),
        "a clean stop releases the lease"
    );
}

/// (c) SIGTERM with nothing queued ends the process in under a second, without the line
/// about undelivered events, and leaves a checkpoint behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_queued_exits_at_once() {
    let w = World::new("itc").await;
    let (mut adapter, want) = w.reporting(3).await;
    // Nothing queued in the NATS sink either (on a loaded machine it can trail HTTP), and
    // the periodic checkpoint has caught up: it names nothing in flight.
    w.exactly_once_in_jetstream(&want).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let saved = w.st2.keys().get(&w.checkpoint_key()).await.unwrap();
        let parsed = saved
            .and_then(|v| portarium_st2::events::checkpoint::Checkpoint::parse(&v.value, 100).ok());
        if parsed.is_some_and(|cp| cp.in_flight.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the checkpoint never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = w.emu.request_log().len();
    let (took, clean) = adapter.terminate().await;
    // Read by bench/sigterm.sh (docs/benchmarks.md, "Shutdown").
    eprintln!("SIGTERM with nothing queued took {took:?}");
    assert!(clean);
    let log = adapter.log().join("\n");
    assert!(!log.contains("still held"), "{log}");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    // The stop does only what is needed: st2 already holds the last checkpoint (written
    // within an interval of the last change), so only the lease is released.
    let at_stop: Vec<String> = w.emu.request_log()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let checkpoint = format!("/api/v1/keys/{}", w.checkpoint_key());
    let lease = format!("DELETE /api/v1/keys/{}", w.lease_key());
    assert!(
        !at_stop.iter().any(|r| r.ends_with(&checkpoint)) && at_stop.contains(&lease),
        "{at_stop:?}"
    );
    assert!(log.contains("portarium-st2 stopped"), "{log}");
    let saved = w.st2.keys().get(&w.checkpoint_key()).await.unwrap();
    let saved = saved.expect("the last checkpoint is written at stop");
    let cp = portarium_st2::events::checkpoint::Checkpoint::parse(&saved.value, 100).unwrap();
    assert!(cp.in_flight.is_empty(), "{cp:?}");
}

/// A stop while the reporter is still reading the checkpoint (st2 answering 503, so the read
/// retries with backoff for seconds) does not wait for that read: the process ends at once
/// and still releases the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_checkpoint_read_is_retrying_exits_at_once() {
    let w = World::new("ith").await;
    let checkpoint = format!("/api/v1/keys/{}", w.checkpoint_key());
    w.emu.faults().fail_next_on("GET", &checkpoint, 503, 1000);
    let mut adapter = AdapterProcess::start(&w.config("a")).await;
    adapter
        .wait_for_line("held=true", Duration::from_secs(10))
        .await;
    // The read is under way, between its retries.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        w.emu
            .request_log()
            .iter()
            .any(|r| r.path == checkpoint && r.status == 503),
        "the checkpoint read was refused"
    );
    let (took, clean) = adapter.terminate().await;
    assert!(clean);
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    w.emu.faults().clear();
    assert!(
        w.st2.keys().get(&w.lease_key()).await.unwrap().is_none(),
        "the lease is released"
    );
}

/// st2 hanging at SIGTERM holds the stop no longer than the drain's grace plus the same again
/// for the last checkpoint and the lease release, not for the st2 client's timeouts and
/// retries (tens of seconds); the log says what was not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_st2_hangs_exits_within_the_grace() {
    let w = World::new("itj").await;
    let (mut adapter, _) = w.reporting(2).await;
    // Every st2 request from now on waits a minute for its answer.
    w.emu.faults().delay(Duration::from_secs(60));
    let (took, clean) = adapter.terminate().await;
    w.emu.faults().clear();
    assert!(clean);
    // events.shutdown_grace is 1s: at most 1 s of drain and 1 s of last writes, plus exit.
    assert!(took < Duration::from_secs(4), "SIGTERM took {took:?}");
    let log = adapter.log().join("\n");
    assert!(
        log.contains("did not take the last lifecycle checkpoint and the lease release"),
        "{log}"
    );
}

/// Events still queued at SIGTERM (the receiver is down) get `shutdown_grace`, are counted
/// in one line, and arrive after the next start: the checkpoint still names their executions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_queued_at_stop_are_reported_after_the_next_start() {
    use std::sync::atomic::Ordering;
    let w = World::new("itf").await;
    let config = w.config("a");
    let mut adapter = AdapterProcess::start(&config).await;
    adapter
        .wait_for_line("held=true", Duration::from_secs(10))
        .await;
    w.received.1.store(true, Ordering::SeqCst);
    let ids = w.run_sleeps(3, 0.1).await;
    let want = w.finished(&ids, Duration::from_secs(10)).await;
    adapter
        .wait_for_line("event delivery failed; retrying", Duration::from_secs(10))
        .await;
    let (took, clean) = adapter.terminate().await;
    assert!(clean);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "the grace is 1 s: {took:?}"
    );
    let left = adapter
        .log()
        .into_iter()
        .find(|l| l.contains("still held"))
        .expect("what was left is logged");
    assert!(left.contains("queued=6"), "{left}");
    assert!(w.received.ids().is_empty());
    w.received.1.store(false, Ordering::SeqCst);
    let _adapter = AdapterProcess::start(&config).await;
    w.received
        .wait_for_all(&want, Duration::from_secs(15))
        .await;
}

/// st2 refusing the checkpoint read is retried at one depth only: each read is one call that
/// the st2 client repeats (4 attempts with the default `st2.retry`), then one warning and the
/// reporter's own pause (0.5 s, then 1 s, with jitter), not a third loop of attempts between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checkpoint_read_is_retried_by_one_policy() {
    let w = World::new("itr").await;
    let checkpoint = format!("/api/v1/keys/{}", w.checkpoint_key());
    // Two reads' worth of refusals: the third read gets the answer (no key).
    w.emu.faults().fail_next_on("GET", &checkpoint, 503, 8);
    let mut adapter = AdapterProcess::start(&w.config("a")).await;
    adapter
        .wait_for_line("no usable lifecycle checkpoint", Duration::from_secs(15))
        .await;
    let gets = w
        .emu
        .request_log()
        .iter()
        .filter(|r| r.path == checkpoint && r.method == "GET")
        .count();
    assert_eq!(gets, 9, "8 refused, then answered");
    let warnings: Vec<String> = adapter
        .log()
        .into_iter()
        .filter(|l| l.contains("cannot read the lifecycle checkpoint from st2"))
        .collect();
    assert_eq!(
        warnings.len(),
        2,
        "one warning per refused read: {warnings:#?}"
    );
    for (line, (attempt, full)) in warnings.iter().zip([(1, 500), (2, 1_000)]) {
        assert!(line.contains(&format!("attempt={attempt}")), "{line}");
        let wait: u64 = line
            .split("retry_in_ms=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no retry_in_ms in {line}"));
        assert!(
            (full / 2..=full).contains(&wait),
            "{wait} ms for {full}: {line}"
        );
    }
    let (_, clean) = adapter.terminate().await;
    assert!(clean);
}

/// (d) A checkpoint key holding garbage, or deleted by hand: the adapter says so in one
/// line and a metric, starts from now, and keeps reporting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_or_deleted_checkpoint_is_logged_and_reporting_starts_from_now() {
    let w = World::new("itd").await;
    w.st2
        .keys()
        .put(&w.checkpoint_key(), "{not a checkpoint", None)
        .await
        .unwrap();
    for (reason, rerun) in [("unreadable", true), ("missing", false)] {
        let mut adapter = AdapterProcess::start(&w.config("a")).await;
        let line = adapter
            .wait_for_line("no usable lifecycle checkpoint", Duration::from_secs(10))
            .await;
        assert!(line.contains(reason), "{line}");
        let metrics = reqwest::Client::new()
            .get(format!("{}/metrics", adapter.base))
            .send_text()
            .await;
        assert!(
            metrics.lines().any(
                |l| l.starts_with("portarium_st2_events_checkpoint_resets_total")
                    && l.contains(&format!("reason=\"{reason}\""))
                    && l.ends_with(" 1")
            ),
            "{metrics}"
        );
        let ids = w.run_sleeps(5, 0.1).await;
        let want = w.finished(&ids, Duration::from_secs(10)).await;
        w.received
            .wait_for_all(&want, Duration::from_secs(10))
            .await;
        // The key is replaced by a good checkpoint.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = w.st2.keys().get(&w.checkpoint_key()).await.unwrap();
            let parsed = value.map(|v| {
                portarium_st2::events::checkpoint::Checkpoint::parse(&v.value, 100).is_ok()
            });
            if parsed == Some(true) {
                break;
            }
            assert!(Instant::now() < deadline, "no good checkpoint written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, clean) = adapter.terminate().await;
        assert!(clean);
        let resets = adapter
            .log()
            .iter()
            .filter(|l| l.contains("no usable lifecycle checkpoint"))
            .count();
        assert_eq!(resets, 1, "one line per start");
        if rerun {
            assert!(w.st2.keys().delete(&w.checkpoint_key()).await.unwrap());
        }
    }
}

/// The NATS sink for production: a server that demands a password, an NKey or a client
/// certificate gets the event from a sink configured with it (its URL a `file:` secret
/// reference), and none from a sink with the wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_sink_authenticates_by_password_nkey_and_mutual_tls() {
    use crate::support::tls_file;
    use portarium_st2::events::config::NatsSinkConfig;
    use portarium_st2::events::sink::nats;

    let dir = tempfile::tempdir().unwrap();
    let user = nkeys::KeyPair::new_user();
    let nkey_conf = dir.path().join("nkey.conf");
    std::fs::write(
        &nkey_conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let seed_file = dir.path().join("seed");
    std::fs::write(&seed_file, user.seed().unwrap()).unwrap();
    let path = |name: &str| tls_file(name).display().to_string();
    let cases: Vec<(&str, Vec<String>, String, bool)> = vec![
        (
            "user and password",
            ["--user", "portarium", "--pass", "s3cret"]
                .map(String::from)
                .to_vec(),
            "user: portarium\npassword: s3cret\n".into(),
            true,
        ),
        (
            "a wrong password",
            ["--user", "portarium", "--pass", "s3cret"]
                .map(String::from)
                .to_vec(),
            "user: portarium\npassword: guess\n".into(),
            false,
        ),
        (
            "an NKey seed from a file",
            vec!["-c".into(), nkey_conf.display().to_string()],
            format!("nkey: 'file:{}'\n", seed_file.display()),
            true,
        ),
        (
            "mutual TLS",
            vec![
                "--tlsverify".into(),
                "--tlscert".into(),
                path("server.pem"),
                "--tlskey".into(),
                path("server.key"),
                "--tlscacert".into(),
                path("client-ca.pem"),
            ],
            format!(
                "tls: {{ca_file: '{}', cert_file: '{}', key_file: '{}'}}\n",
                path("ca.pem"),
                path("client.pem"),
                path("client.key")
            ),
            true,
        ),
    ];
    for (what, options, auth, delivers) in cases {
        let mut server = NatsServer::on_port(free_port());
        let options: Vec<&str> = options.iter().map(String::as_str).collect();
        server.start_with(&options);
        // The URL as a secret reference: read from a file at load.
        let url_file = dir.path().join("url");
        std::fs::write(&url_file, server.url()).unwrap();
        let yaml = format!(
            "url: 'file:{}'\n{auth}delivery: {{backoff: {{initial: 20ms, max: 200ms}}}}\n",
            url_file.display()
        );
        let config: NatsSinkConfig = serde_norway::from_str(&yaml).unwrap();
        let (sink, _worker) = nats::start(&config).await.unwrap();
        let event: portarium_st2::events::CloudEvent = serde_json::from_value(json!({
            "specversion": "1.0", "id": "st2:x:started", "source": "s",
            "type": "com.portarium.run.ActionDispatched", "tenantid": "t", "correlationid": "c"
        }))
        .unwrap();
        sink.send(Arc::new(event)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(if delivers { 10 } else { 2 });
        while sink.counts().delivered == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sink.counts().delivered == 1, delivers, "{what}");
    }
}

/// NATS decentralized auth: a server in operator mode (operator, account and user JWTs minted
/// and signed here) gets every lifecycle event from an adapter whose sink has the user's
/// `.creds` file, in the stream the adapter created with its limits. The creds of a user
/// signed by an account key the server does not trust, or revoked by its account, deliver
/// nothing: the adapter keeps reporting over HTTP and its log says NATS refused its
/// credentials and what to check; the server's log names the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_file_delivers_in_operator_mode_and_refused_creds_deliver_nothing() {
    use crate::support::nats::OperatorMode;
    const REFUSED: &str = "NATS refused this adapter's credentials";
    let mut auth = OperatorMode::default();
    let good = auth.user_creds("portarium");
    let forged = auth.creds_signed_by("forged", &nkeys::KeyPair::new_account());
    let revoked = auth.revoked_user_creds("revoked");
    let mut nats = NatsServer::on_port(free_port());
    nats.start_operator_mode(&auth, &good);
    let w = World::with_nats("itg", nats).await;
    let creds = |path: &std::path::Path| format!("credentials_file: '{}'", path.display());

    let mut adapter = AdapterProcess::start(&w.config_with("a", &creds(&good))).await;
    adapter
        .wait_for_line("held=true", Duration::from_secs(10))
        .await;
    let ids = w.run_sleeps(3, 0.1).await;
    let want = w.finished(&ids, Duration::from_secs(10)).await;
    w.received
        .wait_for_all(&want, Duration::from_secs(10))
        .await;
    w.exactly_once_in_jetstream(&want).await;
    let (_, clean) = adapter.terminate().await;
    assert!(clean);
    let log = adapter.log().join("\n");
    assert!(!log.contains(REFUSED), "{log}");

    for (replica, path, server_says) in [
        ("forged", &forged, "account missing"),
        ("revoked", &revoked, "user authentication revoked"),
    ] {
        let mut adapter = AdapterProcess::start(&w.config_with(replica, &creds(path))).await;
        let line = adapter
            .wait_for_line(REFUSED, Duration::from_secs(10))
            .await;
        assert!(line.contains("credentials_file"), "{line}");
        adapter
            .wait_for_line("held=true", Duration::from_secs(10))
            .await;
        let ids = w.run_sleeps(2, 0.1).await;
        let reported = w.finished(&ids, Duration::from_secs(10)).await;
        w.received
            .wait_for_all(&reported, Duration::from_secs(10))
            .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (stored, _) = w.nats.stored(&w.stream()).await;
        assert_eq!(
            stored.len(),
            want.len(),
            "{replica}: nothing more in JetStream"
        );
        let server_log = w.nats.log();
        assert!(
            server_log.to_lowercase().contains(server_says),
            "{replica}: the server's log names why:\n{server_log}"
        );
        let (_, clean) = adapter.terminate().await;
        assert!(clean);
    }
}

/// Settings that cannot work are refused at start, naming the field and what to do.
#[tokio::test]
async fn unusable_nats_credentials_are_refused_naming_the_field() {
    use portarium_st2::events::config::NatsSinkConfig;
    use portarium_st2::events::sink::nats;

    for (yaml, field) in [
        (
            "url: nats://127.0.0.1:1\ncredentials_file: /nonexistent/portarium.creds\n",
            "events.nats.credentials_file",
        ),
        (
            "url: nats://127.0.0.1:1\nnkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4\n",
            "events.nats.nkey",
        ),
        (
            "url: nats://127.0.0.1:1\ntls: {ca_file: /nonexistent/ca.pem}\n",
            "events.nats.tls",
        ),
    ] {
        let config: NatsSinkConfig = serde_norway::from_str(yaml).unwrap();
        let Err(err) = nats::start(&config).await else {
            panic!("{yaml} was accepted");
        };
        let err = err.to_string();
        assert!(err.starts_with(field), "{err}");
    }
}

/// The new settings are checked at load, every problem at once with its dotted path.
#[test]
fn durability_and_nats_settings_are_checked_naming_each_field() {
    let yaml = "st2: {base_url: 'http://127.0.0.1:9101', api_key: k}\n\
        events:\n\
        \x20 lifecycle:\n\
        \x20   deployment: 'a.b'\n\
        \x20   checkpoint: {interval: 0s, reconcile_max_pages: 0, max_in_flight: 0}\n\
        \x20   lease: {ttl: 2s, replica: 'no spaces please'}\n\
        \x20 nats:\n\
        \x20   url: nats://127.0.0.1:4222\n\
        \x20   nkey: SUAAAA\n\
        \x20   user: u\n\
        \x20   tls: {cert_file: /c.pem}\n\
        \x20   stream_limits: {max_age: 1m, duplicate_window: 2m, max_bytes: 0}\n";
    let Err(err) = portarium_st2::config::Config::from_yaml(yaml, "test", std::iter::empty())
    else {
        panic!("accepted");
    };
    let err = err.to_string();
    for field in [
        "events.lifecycle.deployment:",
        "events.lifecycle.checkpoint.interval:",
        "events.lifecycle.checkpoint.reconcile_max_pages:",
        "events.lifecycle.checkpoint.max_in_flight:",
        "events.lifecycle.lease.ttl:",
        "events.lifecycle.lease.replica:",
        "events.nats: give one of credentials_file, nkey, or user with password",
        "events.nats.password:",
        "events.nats.tls.key_file:",
        "events.nats.stream_limits.duplicate_window:",
        "events.nats.stream_limits.max_bytes:",
    ] {
        assert!(err.contains(field), "{field} missing from:\n{err}");
    }
}

/// A replica whose lease another one took stops reporting at its next look, and at its stop
/// leaves the checkpoint (now the other's to write) alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_lost_the_lease_stops_reporting_and_leaves_the_checkpoint_alone() {
    let w = World::new("ite").await;
    let mut adapter = AdapterProcess::start(&w.config("a")).await;
    adapter
        .wait_for_line("held=true", Duration::from_secs(10))
        .await;
    let ids = w.run_sleeps(2, 0.1).await;
    let want = w.finished(&ids, Duration::from_secs(10)).await;
    w.received
        .wait_for_all(&want, Duration::from_secs(10))
        .await;
    // Another replica takes over (as if a's renewals had failed for a while).
    w.st2
        .keys()
        .put(&w.lease_key(), "other", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    adapter
        .wait_for_line("held=false", Duration::from_secs(5))
        .await;
    // The new holder writes its own checkpoint.
    let theirs =
        r#"{"version":1,"watermark":"2026-12-06T00:00:00Z","in_flight":[],"replica":"other"}"#;
    w.st2
        .keys()
        .put(&w.checkpoint_key(), theirs, None)
        .await
        .unwrap();
    let unreported = w.run_sleeps(3, 0.1).await;
    w.finished(&unreported, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = w.received.distinct();
    assert!(
        unreported
            .iter()
            .all(|id| !got.iter().any(|e| e.contains(id.as_str()))),
        "the replica without the lease reported"
    );
    let (_, clean) = adapter.terminate().await;
    assert!(clean);
    let after = w
        .st2
        .keys()
        .get(&w.checkpoint_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.value, theirs,
        "the checkpoint is the holder's to write"
    );
    assert_eq!(
        w.st2
            .keys()
            .get(&w.lease_key())
            .await
            .unwrap()
            .unwrap()
            .value,
        "other",
        "the lease is not released by a replica that does not hold it"
    );
}
