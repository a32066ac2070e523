//! Load tool for `docs/benchmarks.md`: end-to-end dispatch throughput, the adapter's latency
//! overhead over calling st2 directly, and the adapter's memory idle and under load.
//!
//! ```sh
//! cargo run --release --example loadtest -- e2e --n 1000 --concurrency 1,32
//! cargo run --release --example loadtest -- overhead --n 2000 --concurrency 64 --stored 0,10000,100000
//! cargo run --release --example loadtest -- cpu --n 5000 --concurrency 64 --preload 10000
//! cargo run --release --example loadtest -- memory --inflight 10000
//! cargo run --release --example loadtest -- stream --executions 5000
//! ```
//!
//! Every target is on 127.0.0.1: an in-process st2 emulator unless `--st2-url` names one
//! already running (so other clients can be measured against the very same emulator).

// The reference folder is found the way the tests find it.
#[path = "../tests/it/support/reference.rs"]
mod reference;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use portarium_st2::app::App;
use portarium_st2::core::dispatch::Dispatcher;
use portarium_st2::core::portarium::DispatchRequest;
use serde_json::{Value, json};
use st2_client::St2Client;
use st2_client::St2Config;
use st2_client::secret::Secret;
use st2_client::stream::{ExecutionWatcher, StreamConfig};
use st2_emulator::{Emulator, EmulatorOptions};

#[derive(Parser)]
#[command(about = "Measure portarium-st2 against the st2 emulator (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// `core.noop` executions created and followed to completion through the dispatcher.
    E2e(E2eArgs),
    /// `POST /v1/dispatch` on the adapter vs the same work as plain HTTP calls to st2.
    Overhead(OverheadArgs),
    /// The adapter process's CPU time and st2 requests per dispatch.
    Cpu(CpuArgs),
    /// The adapter process's resident memory idle and with executions in flight.
    Memory(MemoryArgs),
    /// st2 stream events parsed and applied to waiting dispatches, per second.
    Stream(StreamArgs),
}

#[derive(Args)]
struct StreamArgs {
    /// Executions in the stream, each with st2's create and update events and a waiter.
    #[arg(long, default_value_t = 5000)]
    executions: usize,
}

#[derive(Args)]
struct Target {
    /// An st2 (or st2-emulator) already running; by default one starts in-process.
    #[arg(long)]
    st2_url: Option<String>,
    /// Its API key.
    #[arg(long, default_value = "bench-key")]
    api_key: String,
    /// Emulator step between execution states, for the in-process emulator.
    #[arg(long, default_value_t = 20)]
    step_ms: u64,
    /// Executions the in-process emulator holds before the run (st2's history).
    #[arg(long, default_value_t = 0)]
    preload: usize,
}

#[derive(Args)]
struct OverheadArgs {
    #[command(flatten)]
    run: E2eArgs,
    /// Stored executions to measure at, comma-separated: for each, a fresh in-process
    /// emulator preloaded with that many (instead of `--preload`).
    #[arg(long, value_delimiter = ',')]
    stored: Vec<usize>,
    /// Direct-then-adapter rounds per size and concurrency, alternating so both paths see
    /// the same machine; the figures are over all rounds.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

#[derive(Args)]
struct CpuArgs {
    #[command(flatten)]
    target: Target,
    /// Dispatches measured (after a warm-up of 256).
    #[arg(long, default_value_t = 5000)]
    n: usize,
    /// Dispatches in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// The adapter binary (default: next to this example, in target/release).
    #[arg(long)]
    adapter: Option<PathBuf>,
}

#[derive(Args)]
struct E2eArgs {
    #[command(flatten)]
    target: Target,
    /// Executions per run.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    concurrency: Vec<usize>,
    /// Follow executions by polling each one instead of through st2's event stream.
    #[arg(long)]
    poll: bool,
}

#[derive(Args)]
struct MemoryArgs {
    #[command(flatten)]
    target: Target,
    /// Dispatches held in flight at once.
    #[arg(long, default_value_t = 10_000)]
    inflight: usize,
    /// The adapter binary (default: next to this example, in target/release).
    #[arg(long)]
    adapter: Option<PathBuf>,
}

/// Where st2 is, and the emulator if this process runs it.
struct St2 {
    url: String,
    key: String,
    _emulator: Option<Emulator>,
}

impl Target {
    async fn open(&self) -> St2 {
        self.open_with(self.preload).await
    }

    /// st2, or a fresh in-process emulator holding `preload` executions.
    async fn open_with(&self, preload: usize) -> St2 {
        match &self.st2_url {
            Some(url) => St2 {
                url: url.clone(),
                key: self.api_key.clone(),
                _emulator: None,
            },
            None => {
                let emu = Emulator::start(EmulatorOptions {
                    api_key: self.api_key.clone(),
                    step: Duration::from_millis(self.step_ms),
                    preload,
                    ..Default::default()
                })
                .await
                .expect("the emulator starts");
                St2 {
                    url: emu.base_url(),
                    key: self.api_key.clone(),
                    _emulator: Some(emu),
                }
            }
        }
    }
}

impl St2 {
    fn client(&self, max_concurrency: usize) -> St2Client {
        let mut cfg = St2Config::with_api_key(
            self.url.parse().expect("a valid st2 URL"),
            Secret::from_value(&self.key),
        );
        cfg.max_concurrency = max_concurrency.max(1) * 4;
        St2Client::from_config(&cfg).expect("a valid st2 config")
    }

    /// The st2 API requests the in-process emulator received so far (not the stream's), by
    /// kind; `None` against an st2 this process does not run.
    fn requests(&self) -> Option<Tally> {
        let log = self._emulator.as_ref()?.request_log();
        let mut tally = Tally::default();
        for r in log.iter().filter(|r| !r.path.starts_with("/stream/")) {
            *tally.0.entry(r.kind()).or_default() += 1;
        }
        Some(tally)
    }
}

/// st2 requests by kind.
#[derive(Default, Clone)]
struct Tally(std::collections::BTreeMap<&'static str, usize>);

impl Tally {
    /// Requests per operation between `self` (before) and `after`, over `ops` operations:
    /// the total and each kind.
    fn per_op(&self, after: &Tally, ops: usize) -> String {
        let ops = ops.max(1) as f64;
        let mut total = 0;
        let mut parts = Vec::new();
        for (kind, n) in &after.0 {
            let d = n - self.0.get(kind).copied().unwrap_or(0);
            if d > 0 {
                total += d;
                parts.push(format!("{kind} {:.2}", d as f64 / ops));
            }
        }
        format!("{:.2} ({})", total as f64 / ops, parts.join(", "))
    }
}

fn request(run: &str, i: usize) -> DispatchRequest {
    DispatchRequest {
        action_id: format!("a{i}"),
        idempotency_key: Some(format!("{run}-{i}")),
        tenant_id: "bench".into(),
        run_id: run.into(),
        correlation_id: format!("c{i}"),
        flow_ref: "core.noop".into(),
        payload: Default::default(),
        trace: None,
        invocation_id: None,
    }
}

/// Latencies of one run, and how long it took.
struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
    failures: usize,
}

impl Run {
    /// Operations per second of wall time.
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn line(&mut self, label: &str, concurrency: usize) -> String {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        format!(
            "| {label} | {concurrency} | {} | {:.0} | {:.2} | {:.2} | {} |",
            self.latencies.len(),
            self.rate(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            self.failures
        )
    }
}

/// Runs `n` operations `concurrency` at a time, timing each.
async fn drive<F, Fut>(n: usize, concurrency: usize, op: F) -> Run
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let results: Vec<(Duration, bool)> = futures_util::stream::iter(0..n)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                let ok = fut.await;
                (t.elapsed(), ok)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Run {
        wall: started.elapsed(),
        failures: results.iter().filter(|(_, ok)| !ok).count(),
        latencies: results.into_iter().map(|(d, _)| d).collect(),
    }
}

const HEADER: &str = "| path | concurrency | executions | per second | p50 ms | p99 ms | failures |\n|---|---|---|---|---|---|---|";

async fn e2e(args: E2eArgs) {
    let st2 = args.target.open().await;
    println!("{HEADER}");
    for &c in &args.concurrency {
        let client = st2.client(c);
        let dispatcher = if args.poll {
            Dispatcher::new(client)
        } else {
            let watcher = ExecutionWatcher::start(client.clone(), StreamConfig::default());
            Dispatcher::new(client).with_watcher(watcher)
        };
        let dispatcher = Arc::new(dispatcher);
        let run_id = format!("e2e-{c}-{}", fastrand::u32(..));
        let mut run = drive(args.n, c, |i| {
            let d = dispatcher.clone();
            let req = request(&run_id, i);
            async move { d.dispatch(&req, Duration::from_secs(60)).await.is_ok() }
        })
        .await;
        let path = if args.poll {
            "portarium-st2 dispatcher (polling)"
        } else {
            "portarium-st2 dispatcher (event stream)"
        };
        println!("{}", run.line(path, c));
    }
}

/// What a careful script does without the adapter: create, then read until completed.
async fn direct(http: &reqwest::Client, st2: &St2, i: usize) -> bool {
    let created: Value = match http
        .post(format!("{}/api/v1/executions", st2.url))
        .header("St2-Api-Key", &st2.key)
        .json(&json!({"action": "core.noop", "parameters": {}, "context": {"bench": i}}))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => return false,
    };
    let Some(id) = created["id"].as_str() else {
        return false;
    };
    let mut pause = Duration::from_millis(25);
    for _ in 0..200 {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
        let e: Value = match http
            .get(format!("{}/api/v1/executions/{id}", st2.url))
            .header("St2-Api-Key", &st2.key)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => continue,
        };
        match e["status"].as_str() {
            Some("succeeded") => return true,
            Some("failed" | "timeout" | "abandoned" | "canceled") => return false,
            _ => {}
        }
    }
    false
}

/// One `POST /v1/dispatch` through the adapter at `base`; whether it succeeded.
async fn via_adapter(http: &reqwest::Client, base: &str, req: DispatchRequest) -> bool {
    match http
        .post(format!("{base}/v1/dispatch?waitMs=60000"))
        .bearer_auth("bench-token")
        .json(&req_body(&req))
        .send()
        .await
    {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Both paths' runs at one size and concurrency, merged over the rounds.
struct Side {
    run: Run,
    requests: String,
}

async fn overhead(args: OverheadArgs) {
    let run = &args.run;
    let sizes = if args.stored.is_empty() {
        vec![run.target.preload]
    } else {
        args.stored.clone()
    };
    assert!(
        sizes.len() == 1 || run.target.st2_url.is_none(),
        "--stored needs the in-process emulator (no --st2-url)"
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    println!(
        "| stored | path | concurrency | executions | per second | p50 ms | p99 ms | failures | st2 requests per execution |\n|---|---|---|---|---|---|---|---|---|"
    );
    // Every size is up at once and the rounds go through the sizes in turn, so a busy
    // moment of the machine falls on all sizes alike rather than on the one measured then.
    let mut targets = Vec::new();
    for &stored in &sizes {
        let st2 = run.target.open_with(stored).await;
        let (base, server) = adapter_in_process(&st2, !run.poll).await;
        // The adapter's first dispatches read the schema and wait for the stream.
        let warm = format!("warm-{stored}-{}", fastrand::u32(..));
        drive(64, 8, |i| via_adapter(&http, &base, request(&warm, i))).await;
        targets.push((stored, st2, base, server));
    }
    let mut sides: Vec<(usize, usize, Option<Side>, Option<Side>)> = Vec::new();
    for &c in &run.concurrency {
        for &stored in &sizes {
            sides.push((stored, c, None, None));
        }
    }
    for round in 0..args.rounds.max(1) {
        for (stored, c, direct_side, adapter_side) in &mut sides {
            let (_, st2, base, _) = targets.iter().find(|t| t.0 == *stored).unwrap();
            let before = st2.requests();
            let r = drive(run.n, *c, |i| direct(&http, st2, i)).await;
            merge(direct_side, r, before, st2.requests());
            let run_id = format!("ovh-{stored}-{c}-{round}-{}", fastrand::u32(..));
            let before = st2.requests();
            let r = drive(run.n, *c, |i| via_adapter(&http, base, request(&run_id, i))).await;
            merge(adapter_side, r, before, st2.requests());
        }
    }
    let mut adapter_rates = Vec::new();
    let mut ratios = Vec::new();
    for (stored, c, direct_side, adapter_side) in sides {
        let (mut d, mut a) = (direct_side.unwrap(), adapter_side.unwrap());
        println!(
            "| {stored} {} {} |",
            d.run.line("direct st2 calls (create + poll)", c),
            d.requests
        );
        println!(
            "| {stored} {} {} |",
            a.run.line("POST /v1/dispatch on the adapter", c),
            a.requests
        );
        let ratio = a.run.rate() / d.run.rate();
        ratios.push(format!("| {stored} | {c} | {ratio:.2}x |"));
        adapter_rates.push((stored, c, a.run.rate()));
    }
    println!("\n| stored | concurrency | adapter / direct |\n|---|---|---|");
    for r in &ratios {
        println!("{r}");
    }
    println!(
        "\n| stored | concurrency | adapter per second | vs the first size |\n|---|---|---|---|"
    );
    for &(stored, c, rate) in &adapter_rates {
        let first = adapter_rates
            .iter()
            .find(|(_, c0, _)| *c0 == c)
            .map_or(rate, |(_, _, r)| *r);
        println!("| {stored} | {c} | {rate:.0} | {:.2}x |", rate / first);
    }
}

/// Adds one round to a side's figures.
fn merge(side: &mut Option<Side>, run: Run, before: Option<Tally>, after: Option<Tally>) {
    let ops = run.latencies.len();
    let requests = match (before, after) {
        (Some(b), Some(a)) => b.per_op(&a, ops),
        _ => "n/a (st2 not in this process)".into(),
    };
    match side {
        None => *side = Some(Side { run, requests }),
        Some(s) => {
            s.run.latencies.extend(run.latencies);
            s.run.wall += run.wall;
            s.run.failures += run.failures;
            s.requests = requests;
        }
    }
}

/// The adapter as its own process (`portarium-st2 serve`) on a free port, in front of `st2`;
/// its base URL once it answers.
async fn spawn_adapter(
    st2: &St2,
    binary: Option<PathBuf>,
    http: &reqwest::Client,
) -> (std::process::Child, String) {
    let dir = tempfile_dir();
    let config_path = dir.join("adapter.yaml");
    let port = free_port();
    let yaml = adapter_yaml(st2, true)
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"));
    std::fs::write(&config_path, yaml).unwrap();
    let binary = binary.unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent()
            .and_then(|p| p.parent())
            .unwrap()
            .join("portarium-st2")
    });
    let child = std::process::Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (child, base)
}

/// CPU time (user + system) the process `pid` has used, all its threads included.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) — utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // /proc counts in USER_HZ, which Linux fixes at 100 per second.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

async fn cpu(args: CpuArgs) {
    let st2 = args.target.open().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(64))
        .build()
        .unwrap();
    let (mut child, base) = spawn_adapter(&st2, args.adapter.clone(), &http).await;
    let pid = child.id();
    let run_id = format!("cpu-{}", fastrand::u32(..));
    // Warm-up: connections, the schema cache, the stream covering new executions.
    drive(256, args.concurrency, |i| {
        via_adapter(&http, &base, request(&format!("{run_id}-warm"), i))
    })
    .await;
    let (cpu_before, requests_before) = (cpu_time(pid), st2.requests());
    let mut run = drive(args.n, args.concurrency, |i| {
        via_adapter(&http, &base, request(&run_id, i))
    })
    .await;
    let (cpu_after, requests_after) = (cpu_time(pid), st2.requests());
    let used = cpu_after - cpu_before;
    let done = run.latencies.len() - run.failures;
    println!("{HEADER}");
    println!(
        "{}",
        run.line(
            "POST /v1/dispatch on the adapter (own process)",
            args.concurrency
        )
    );
    println!(
        "\n| stored | dispatches | adapter CPU s | adapter CPU per dispatch | st2 requests per dispatch |\n|---|---|---|---|---|"
    );
    let requests = match (requests_before, requests_after) {
        (Some(b), Some(a)) => b.per_op(&a, args.n),
        _ => "n/a (st2 not in this process)".into(),
    };
    println!(
        "| {} | {done} | {:.2} | {:.0} µs | {requests} |",
        args.target.preload,
        used.as_secs_f64(),
        used.as_secs_f64() * 1e6 / done.max(1) as f64
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The adapter's router on a loopback port in this process.
async fn adapter_in_process(st2: &St2, stream: bool) -> (String, App) {
    let config = adapter_config(st2, stream);
    let app = App::build(&config, Duration::from_secs(2)).await.unwrap();
    let base = app
        .serve_in_background("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (base, app)
}

fn adapter_yaml(st2: &St2, stream: bool) -> String {
    format!(
        "listen: 127.0.0.1:0\nlog: {{level: warn}}\nst2: {{base_url: '{}', api_key: '{}', max_concurrency: 256, stream: {{enabled: {stream}}}}}\ntenants:\n  - {{id: bench, api_token: bench-token}}\ndispatch: {{max_wait_ms: 600000}}\n",
        st2.url, st2.key
    )
}

fn adapter_config(st2: &St2, stream: bool) -> portarium_st2::config::Config {
    portarium_st2::config::Config::from_yaml(
        &adapter_yaml(st2, stream),
        "loadtest",
        std::iter::empty(),
    )
    .unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn memory(args: MemoryArgs) {
    let st2 = args.target.open().await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.inflight)
        .build()
        .unwrap();
    let (mut child, base) = spawn_adapter(&st2, args.adapter.clone(), &http).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = rss_kib(child.id());
    // Each dispatch runs an action that takes a while, so all of them are in flight at once.
    let run_id = format!("mem-{}", fastrand::u32(..));
    let load = {
        let http = http.clone();
        let base = base.clone();
        futures_util::stream::iter(0..args.inflight)
            .map(move |i| {
                let http = http.clone();
                let mut req = request(&run_id, i);
                req.flow_ref = "core.local".into();
                req.payload = json!({"cmd": "sleep 20"}).as_object().cloned().unwrap();
                let url = format!("{base}/v1/dispatch?waitMs=60000");
                async move {
                    let _ = http
                        .post(url)
                        .bearer_auth("bench-token")
                        .json(&req_body(&req))
                        .send()
                        .await;
                }
            })
            .buffer_unordered(args.inflight)
            .collect::<Vec<()>>()
    };
    let pid = child.id();
    let sampler = async {
        let mut peak = 0;
        for _ in 0..150 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peak = peak.max(rss_kib(pid));
        }
        peak
    };
    let (peak, ()) = tokio::select! {
        peak = sampler => (peak, ()),
        _ = load => (rss_kib(pid), ()),
    };
    println!("| adapter RSS | MiB |\n|---|---|");
    println!("| idle | {:.1} |", idle as f64 / 1024.0);
    println!(
        "| {} dispatches in flight (peak) | {:.1} |",
        args.inflight,
        peak as f64 / 1024.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// st2's own execution events for one `core.local` run (the recorded capture), as templates.
fn captured_execution_events() -> Vec<(String, Value)> {
    let path = reference::reference_dir().join("captures/stream-core-local.sse");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read st2's recorded stream {}: {e}; set {} to the st2 reference folder",
            path.display(),
            reference::DIR_VAR
        )
    });
    text.split("\n\n")
        .filter_map(|frame| {
            let event = frame.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = frame.lines().find_map(|l| l.strip_prefix("data: "))?;
            event
                .starts_with("st2.execution__")
                .then(|| (event.to_string(), serde_json::from_str(data).unwrap()))
        })
        .collect()
}

/// A stand-in st2 that serves, once told to, one stream holding every event of `count`
/// executions, so the watcher's parsing and applying is all that is measured.
async fn stream(args: StreamArgs) {
    use axum::body::Body;
    use axum::routing::get;
    use st2_client::Execution;
    let templates = captured_execution_events();
    let ids: Vec<String> = (0..args.executions).map(|i| format!("{i:024x}")).collect();
    let mut body = String::new();
    for id in &ids {
        for (event, data) in &templates {
            let mut data = data.clone();
            data["id"] = json!(id);
            body.push_str(&format!("event: {event}\ndata: {data}\n\n"));
        }
    }
    let events = ids.len() * templates.len();
    let bytes = body.len();
    let go = Arc::new(tokio::sync::Notify::new());
    let body = Arc::new(body);
    let app = axum::Router::new()
        .route(
            "/api/v1/executions",
            get(|| async { axum::Json(json!([])) }),
        )
        .route(
            "/stream/v1/stream",
            get({
                let go = go.clone();
                let body = body.clone();
                move || async move {
                    // Headers now, so the watcher counts as connected; events once told to.
                    let events = futures_util::stream::once(async move {
                        go.notified().await;
                        Ok::<_, std::convert::Infallible>(body.as_bytes().to_vec())
                    });
                    axum::response::Response::builder()
                        .header("content-type", "text/event-stream")
                        .body(Body::from_stream(events))
                        .unwrap()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let st2 = St2 {
        url,
        key: "bench-key".into(),
        _emulator: None,
    };
    let watcher = ExecutionWatcher::start(st2.client(1), StreamConfig::default());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    assert!(watcher.connected(deadline).await, "the watcher connects");
    // Each waiter knows its execution started after the connection opened, so the watcher
    // relies on the stream alone (no reads).
    let mut first: Value = templates[0].1.clone();
    first["start_timestamp"] = json!("2999-01-01T00:00:00.000000Z");
    let waits = ids.iter().map(|id| {
        let mut doc = first.clone();
        doc["id"] = json!(id);
        let known: Execution = serde_json::from_value(doc).unwrap();
        let watcher = watcher.clone();
        async move { watcher.wait_for(&known, deadline).await.is_ok() }
    });
    let waits: Vec<_> = waits.collect();
    let all = futures_util::future::join_all(waits);
    tokio::pin!(all);
    // Let every waiter register before the events flow.
    tokio::select! {
        _ = &mut all => panic!("waits ended before the stream started"),
        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
    }
    let flow = Instant::now();
    go.notify_one();
    let resolved = all.await;
    let took = flow.elapsed();
    let ok = resolved.iter().filter(|r| **r).count();
    println!(
        "| stream | executions | events | MiB | seconds | events per second | waits resolved |\n|---|---|---|---|---|---|---|"
    );
    println!(
        "| st2 execution events → watcher → waiting dispatches | {} | {events} | {:.1} | {:.2} | {:.0} | {ok} |",
        ids.len(),
        bytes as f64 / (1024.0 * 1024.0),
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
}

fn req_body(req: &DispatchRequest) -> Value {
    serde_json::to_value(req).unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portarium-st2-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::main]
async fn main() {
    match Cli::parse().command {
        Command::E2e(a) => e2e(a).await,
        Command::Overhead(a) => overhead(a).await,
        Command::Cpu(a) => cpu(a).await,
        Command::Memory(a) => memory(a).await,
        Command::Stream(a) => stream(a).await,
    }
}
