//! Memory held in bytes, not in counts (issue 17): the adapter, run as its own process, keeps
//! its resident memory under a stated ceiling while large results and many events go through.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use st2_client::stream::{ExecutionWatcher, StreamConfig};
use st2_client::{ExecutionRequest, Secret, St2Client, St2Config};
use st2_emulator::{Emulator, EmulatorOptions};

use crate::release::{TOKEN, serve};
use crate::support::SendJson;

/// Bytes of the result of `examples.big`.
const RESULT_BYTES: usize = 500_000;
/// How much the adapter's resident memory may grow while 100 dispatches with 500 kB results
/// and 600 events with 256-byte ids (plus 600 refused ones with 60 kB ids) go through. With
/// finished executions cached whole (as before issue 17) the same load grew it by about 70 MB;
/// with summaries, by about 20-26 MB.
const GROWTH_CEILING_MB: u64 = 40;

/// An emulator (API key `k`) with `examples.big`, whose result is `RESULT_BYTES` long.
async fn emulator() -> Emulator {
    let extra = format!(
        "actions:\n  - pack: examples\n    name: big\n    runner_type: noop\n    behaviour:\n      kind: result\n      result: {{blob: {}}}\n",
        "x".repeat(RESULT_BYTES)
    );
    Emulator::start(EmulatorOptions {
        api_key: "k".into(),
        catalogue: crate::support::catalogue_with(&extra),
        heartbeat: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The resident set of process `pid`, in MB.
fn rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kb / 1024
}

fn event(id: &str) -> Value {
    json!({"specversion": "1.0", "id": id, "source": "portarium.control-plane",
           "type": "com.portarium.run.RunStarted", "data": {"n": 1},
           "tenantid": "t1", "correlationid": "corr-1"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_and_many_event_ids_stay_under_the_memory_ceiling() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let served = serve(
        dir.path(),
        &emu.base_url(),
        "events:\n  inbound:\n    classes:\n      - {type: com.portarium.run.RunStarted, trigger: portarium.event}\n",
    )
    .await;
    let http = reqwest::Client::new();
    let base = served.base.clone();
    let dispatch = |n: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let answer: Value = http
                .post(format!("{base}/v1/dispatch"))
                .bearer_auth(TOKEN)
                .json(
                    &json!({"actionId": format!("a{n}"), "tenantId": "t1", "runId": "r1",
                               "correlationId": "c1", "flowRef": "examples.big", "payload": {}}),
                )
                .send_json()
                .await;
            let blob = answer["output"]["result"]["blob"].as_str().map(str::len);
            assert_eq!(blob, Some(RESULT_BYTES), "a{n}");
        }
    };
    let send_event = |id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/v1/events"))
                .bearer_auth(TOKEN)
                .json(&event(&id))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Warm up every path once, so the baseline holds the adapter's steady allocations.
    for n in 0..5 {
        dispatch(1_000 + n).await;
        assert_eq!(send_event(format!("warm-{n}")).await, 202);
    }
    let pid = served.pid();
    let before = rss_mb(pid);

    futures_util::stream::iter(0..100)
        .for_each_concurrent(10, dispatch)
        .await;
    // The longest id accepted, 600 times over, each distinct.
    let statuses: Vec<u16> = futures_util::stream::iter(0..600)
        .map(|n| send_event(format!("{n:06}{}", "i".repeat(250))))
        .buffer_unordered(10)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 202), "{statuses:?}");
    // And the attack itself: 600 distinct 60 kB ids, each refused before anything keeps it.
    let statuses: Vec<u16> = futures_util::stream::iter(0..600)
        .map(|n| send_event(format!("{n:06}{}", "i".repeat(60_000))))
        .buffer_unordered(10)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 400),
        "60 kB ids are refused: {statuses:?}"
    );

    let after = rss_mb(pid);
    eprintln!(
        "adapter RSS: {before} MB before, {after} MB after (ceiling: +{GROWTH_CEILING_MB} MB)"
    );
    assert!(
        after <= before + GROWTH_CEILING_MB,
        "RSS grew from {before} MB to {after} MB, over the {GROWTH_CEILING_MB} MB ceiling"
    );
}

/// A finished execution too large to keep whole is remembered as its summary; a wait that
/// starts after it ended still gets the whole execution, read from st2 again.
#[tokio::test]
async fn a_finished_execution_kept_as_a_summary_is_read_whole_again() {
    let emu = emulator().await;
    let config = St2Config::with_api_key(emu.base_url().parse().unwrap(), Secret::from_value("k"));
    let st2 = St2Client::from_config(&config).unwrap();
    let watcher = ExecutionWatcher::start(st2.clone(), StreamConfig::default());
    let created = st2
        .executions()
        .create(&ExecutionRequest::new("examples.big"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let first = watcher.wait_terminal(&created.id, deadline).await.unwrap();
    let reads = emu.request_log().len();
    let started = Instant::now();
    let again = watcher.wait_terminal(&created.id, deadline).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        again.result, first.result,
        "the whole result, not the summary"
    );
    assert!(
        emu.request_log()[reads..]
            .iter()
            .any(|r| r.path == format!("/api/v1/executions/{}", created.id)),
        "read from st2 again"
    );
}
