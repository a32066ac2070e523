//! What one dispatch costs st2, counted by the emulator's request log: a create, the key's
//! indexed lookup (before creating, and the replicas' convergence check after), no read of
//! the execution once the stream covers it, and the action's parameter schema only when the
//! schema cache does not hold it (its TTL on tokio's paused clock; dropped when st2 refuses).

use std::time::Duration;

use serde_json::{Value, json};
use st2_emulator::RequestRecord;

use crate::support::stack::Stack;

const TOKEN: &str = "cost-token";

fn body(key: &str) -> Value {
    json!({
        "actionId": "act-1", "tenantId": "cost", "runId": "run-1", "correlationId": "corr-1",
        "idempotencyKey": key, "flowRef": "core.noop", "payload": {}
    })
}

async fn stack(yaml: &str) -> Stack {
    let mut b = Stack::builder().tenant("cost", TOKEN);
    if !yaml.is_empty() {
        b = b.yaml(yaml);
    }
    b.start().await
}

/// The st2 API requests made for callers (not the stream connection), from `from` on.
fn api_requests(s: &Stack, from: usize) -> Vec<RequestRecord> {
    s.emu
        .request_log()
        .into_iter()
        .skip(from)
        .filter(|r| !r.path.starts_with("/stream/"))
        .collect()
}

fn schema_reads(s: &Stack) -> usize {
    api_requests(s, 0)
        .iter()
        .filter(|r| r.kind() == "schema read")
        .count()
}

/// Dispatches `key` through the adapter and checks that it succeeded.
async fn dispatch_ok(s: &Stack, key: &str) -> Value {
    let (status, answer) = s.dispatch(Some(TOKEN), &body(key)).await;
    assert_eq!((status, &answer["ok"]), (200, &json!(true)), "{answer}");
    answer
}

#[tokio::test]
async fn a_dispatch_costs_a_create_and_the_indexed_lookups_and_nothing_else() {
    let s = stack("").await;
    // Until the stream is open and st2's clock has passed the second it opened in (st2's
    // `Date` has whole seconds), the watcher reads each new execution once to close the gap.
    // Warm up until a dispatch needs no such read.
    let mut covered = false;
    for i in 0..200 {
        let before = s.emu.request_log().len();
        dispatch_ok(&s, &format!("warm-{i}")).await;
        if !api_requests(&s, before)
            .iter()
            .any(|r| r.kind() == "execution read")
        {
            covered = true;
            break;
        }
    }
    assert!(covered, "the stream never covered a new execution");
    assert_eq!(
        schema_reads(&s),
        1,
        "the warm-up read core.noop's schema once"
    );

    const N: usize = 20;
    let scanned = s.emu.executions_scanned();
    let before = s.emu.request_log().len();
    for i in 0..N {
        let answer = dispatch_ok(&s, &format!("hot-{i}")).await;
        assert_eq!(answer["output"]["status"], "succeeded");
    }
    let mut tally = std::collections::BTreeMap::new();
    for r in api_requests(&s, before) {
        *tally.entry(r.kind()).or_insert(0usize) += 1;
    }
    // Per dispatch: the create, the trace-index lookup before it and the convergence check
    // after it (both indexed), and nothing else: the schema comes from the cache and the
    // result from the stream.
    assert_eq!(
        tally,
        [("create", N), ("trace lookup", 2 * N)]
            .into_iter()
            .collect(),
        "st2 requests of {N} dispatches"
    );
    assert_eq!(
        s.emu.executions_scanned(),
        scanned,
        "no lookup scanned stored executions"
    );
}

/// Moves tokio's clock on by `by`, on the paused clock. It is paused only for the jump, between
/// dispatches, so no request is in flight when time leaps.
async fn jump(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn a_schema_is_read_again_once_its_ttl_has_passed() {
    let s = stack("dispatch: {schema_cache: {ttl: 10s}}").await;
    dispatch_ok(&s, "ttl-1").await;
    dispatch_ok(&s, "ttl-2").await;
    assert_eq!(
        schema_reads(&s),
        1,
        "the second dispatch used the cached schema"
    );

    jump(Duration::from_secs(9)).await;
    dispatch_ok(&s, "ttl-3").await;
    assert_eq!(
        schema_reads(&s),
        1,
        "9 s after the read the schema is still used"
    );

    jump(Duration::from_secs(2)).await;
    dispatch_ok(&s, "ttl-4").await;
    assert_eq!(
        schema_reads(&s),
        2,
        "past 10 s the schema is read from st2 again"
    );
    dispatch_ok(&s, "ttl-5").await;
    assert_eq!(schema_reads(&s), 2, "and cached again");
}

#[tokio::test]
async fn st2_refusing_the_parameters_drops_the_cached_schema() {
    let s = stack("").await;
    dispatch_ok(&s, "refused-1").await;
    assert_eq!(schema_reads(&s), 1);

    // st2 refuses the create's parameters although the cached schema let them through.
    s.emu
        .faults()
        .fail_next_on("POST", "/api/v1/executions", 400, 1);
    let (status, answer) = s.dispatch(Some(TOKEN), &body("refused-2")).await;
    assert_eq!(
        status, 422,
        "st2 ran nothing and the request must change: {answer}"
    );
    assert_eq!(answer["errorKind"], "RemoteError");
    let message = answer["message"].as_str().unwrap();
    assert!(
        message.contains("st2 refused core.noop's parameters: Bad Request"),
        "{message}"
    );
    assert_eq!(schema_reads(&s), 2, "the schema was dropped and read again");

    dispatch_ok(&s, "refused-3").await;
    assert_eq!(schema_reads(&s), 2, "the fresh schema is cached");
}

#[tokio::test]
async fn with_no_schema_cache_each_dispatch_reads_the_schema_once() {
    let s = stack("dispatch: {schema_cache: {ttl: 0s}}").await;
    for i in 1..=3 {
        dispatch_ok(&s, &format!("uncached-{i}")).await;
        assert_eq!(
            schema_reads(&s),
            i,
            "the secret booking and the payload check share one read per dispatch"
        );
    }
}
