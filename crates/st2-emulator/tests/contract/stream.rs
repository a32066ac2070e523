//! Stream captures replayed against the emulator: st2's byte framing (a `\n` on connect,
//! `event:`/`data:` frames, bare `\n` keep-alives, no `id:`/`retry:`), the events one run
//! produces, their payload shapes, the output stream's `EOF`, `end_event` closing, and headers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use st2_emulator::EmulatorOptions;

use crate::capture::Recorded;
use crate::cases::request;
use crate::check::{Check, same_execution};
use crate::client::{Harness, StreamReader, WAIT};
use crate::reference;
use crate::shape::{Rules, compare, render};
use crate::sse::{self, Item};

/// Captures whose HTTP head shows st2's stream response headers.
const STREAM_HEAD: &str = "stream-filtered-end-event.sse";
const OUTPUT_HEAD: &str = "stream-execution-output-endpoint.sse";

/// Open the stream request behind `file` (about execution `id`, if any) and check its head.
async fn open(h: &Harness, c: &mut Check, file: &str, id: Option<&str>) -> StreamReader {
    let request = request(file);
    let path = id.map_or_else(|| request.path.to_string(), |id| request.path_with(id));
    let (head, reader) = h.open_stream(&path).await;
    let head_file = if path.contains("/output") {
        OUTPUT_HEAD
    } else {
        STREAM_HEAD
    };
    let capture = Recorded::load(head_file).unwrap_or_else(|e| panic!("{e}"));
    c.that(head.status == 200, || {
        format!("GET {path}: status {}", head.status)
    });
    c.headers(&capture, &head);
    reader
}

/// The events recorded in a stream capture (keep-alives and EOF left out).
fn recorded(file: &str) -> Vec<(String, Value)> {
    let body = Recorded::load(file).unwrap_or_else(|e| panic!("{e}")).body;
    sse::parse_all(&body)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .into_iter()
        .filter_map(|i| match &i {
            Item::Event { name, .. } if name != "EOF" => Some((name.clone(), i.json())),
            _ => None,
        })
        .collect()
}

fn events(items: &[Item]) -> Vec<(String, Value)> {
    items
        .iter()
        .filter_map(|i| {
            i.name()
                .filter(|n| *n != "EOF")
                .map(|n| (n.to_string(), i.json()))
        })
        .collect()
}

/// The first item must be st2's connect keep-alive; reading it also proves the subscription.
async fn expect_connect_keepalive(c: &mut Check, reader: &mut StreamReader) {
    let first = reader.next(WAIT).await.map(|(i, _)| i);
    c.that(first == Some(Item::KeepAlive), || {
        format!("st2 writes a bare `\\n` first on connect; emulator sent {first:?}")
    });
}

/// The action ref of an event payload (liveaction: `action` string; execution: `action.ref`).
fn action_ref(data: &Value) -> String {
    data["action"]
        .as_str()
        .or_else(|| data["action"]["ref"].as_str())
        .or_else(|| data["action_ref"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// What identifies "the same event" across st2's run and the emulator's.
fn key(name: &str, data: &Value) -> String {
    format!(
        "{name} {} {} {}",
        action_ref(data),
        data["status"].as_str().unwrap_or("-"),
        data["context"]["orquesta"]["task_name"]
            .as_str()
            .unwrap_or("-")
    )
}

/// Execution and liveaction event payloads from the same action and parameters as st2's.
fn event_rules(name: &str) -> Rules {
    if name.starts_with("st2.liveaction__") {
        // `result` is a JSON string here; its decoded value is compared in `liveaction_results`.
        Rules::default().fixed("$.action").fixed("$.parameters")
    } else {
        same_execution("$").fixed("$.result")
    }
}

/// Each emulator event must have the shape of some st2 event with the same key.
fn compare_payloads(
    c: &mut Check,
    file: &str,
    st2: &[(String, Value)],
    emu: &[(String, Value)],
    adjust: &dyn Fn(Rules) -> Rules,
) {
    for (name, data) in emu {
        let k = key(name, data);
        let rules = adjust(event_rules(name));
        let candidates: Vec<_> = st2
            .iter()
            .filter(|(n, d)| key(n, d) == k)
            .map(|(_, d)| compare(d, data, &rules))
            .collect();
        match candidates.into_iter().min_by_key(Vec::len) {
            None => c.that(false, || format!("{file}: st2 sent no event like `{k}`")),
            Some(diffs) if diffs.is_empty() => {}
            Some(diffs) => c.that(false, || render(&format!("{file}: `{k}`"), &diffs, &rules)),
        }
    }
}

/// Liveaction events carry `result` as a JSON-encoded string, execution events as an object.
fn liveaction_results(c: &mut Check, file: &str, emu: &[(String, Value)]) {
    for (name, data) in emu {
        let result = &data["result"];
        if name.starts_with("st2.liveaction__") {
            let decoded = result.as_str().map(serde_json::from_str::<Value>);
            c.that(matches!(decoded, Some(Ok(Value::Object(_)))), || {
                format!("{file}: {name} must carry `result` as a JSON-encoded object string like st2, got {result}")
            });
        } else if name.starts_with("st2.execution__") && !result.is_null() {
            c.that(result.is_object(), || {
                format!("{file}: {name} carries `result` as an object in st2, got {result}")
            });
        }
    }
}

/// How many events of each name.
fn counts(events: &[(String, Value)]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (name, _) in events {
        *m.entry(name.clone()).or_insert(0) += 1;
    }
    m
}

/// Per entity (liveaction or execution id): its event names and statuses, in arrival order,
/// consecutive repeats of the same status folded when `fold` (st2 repeats statuses on result
/// updates, st2-api.md §7.3).
fn histories(events: &[(String, Value)], fold: bool) -> Vec<(String, Vec<String>)> {
    let mut by_id: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for (name, data) in events {
        let kind = name.split("__").next().unwrap_or_default().to_string();
        let entry = by_id
            .entry(format!("{kind} {}", data["id"]))
            .or_insert_with(|| {
                (
                    format!(
                        "{kind} {} {}",
                        action_ref(data),
                        data["context"]["orquesta"]["task_name"]
                            .as_str()
                            .unwrap_or("-")
                    ),
                    Vec::new(),
                )
            });
        let step = format!(
            "{} {}",
            name.rsplit("__").next().unwrap_or_default(),
            data["status"].as_str().unwrap_or("-")
        );
        let status = |s: &str| s.split(' ').nth(1).map(str::to_string);
        if !(fold && entry.1.last().map(|l| status(l)) == Some(status(&step))) {
            entry.1.push(step);
        }
    }
    let mut out: Vec<_> = by_id.into_values().collect();
    out.sort();
    out
}

/// One action run seen by st2 and by the emulator: as many events of each name, the same
/// sequence per entity, payloads shaped like st2's, and liveaction results as JSON strings.
fn same_run_as_st2(c: &mut Check, file: &str, st2: &[(String, Value)], emu: &[(String, Value)]) {
    c.that(counts(emu) == counts(st2), || {
        format!(
            "event counts differ: st2 {:?}, emulator {:?}",
            counts(st2),
            counts(emu)
        )
    });
    c.that(histories(emu, false) == histories(st2, false), || {
        format!(
            "per-entity event sequences differ:\n  st2      {:?}\n  emulator {:?}",
            histories(st2, false),
            histories(emu, false)
        )
    });
    compare_payloads(c, file, st2, emu, &|r| r);
    liveaction_results(c, file, emu);
}

async fn read_until_execution(reader: &mut StreamReader, id: &str, status: &str) -> Vec<Item> {
    let id = id.to_string();
    let status = status.to_string();
    reader
        .until(WAIT, move |item| {
            item.name() == Some("st2.execution__update") && {
                let d = item.json();
                d["id"] == id.as_str() && d["status"] == status.as_str()
            }
        })
        .await
}

#[tokio::test]
async fn idle_stream_sends_bare_newline_keepalives_like_capture() {
    if reference::missing() {
        return;
    }
    let heartbeat = Duration::from_secs(2);
    let h = Harness::start(EmulatorOptions {
        heartbeat,
        ..EmulatorOptions::default()
    })
    .await;
    let mut c = Check::new("idle /stream/v1/stream");
    let mut reader = open(&h, &mut c, "stream-idle-30s-heartbeat.raw", None).await;
    // st2 pre-fills the queue: the connect keep-alive comes at once, not after a heartbeat.
    let (first, at_connect) = reader.next(heartbeat / 2).await.expect("stream open");
    let (second, at_idle) = reader.next(heartbeat * 3).await.expect("stream open");
    c.that(
        first == Item::KeepAlive && second == Item::KeepAlive,
        || format!("two bare `\\n` expected, got {first:?}, {second:?}"),
    );
    let gap = at_idle - at_connect;
    c.that(gap >= heartbeat.mul_f32(0.8), || {
        format!(
            "the idle keep-alive came {gap:?} after connect, before the {heartbeat:?} heartbeat"
        )
    });
    let recorded = Recorded::load("stream-idle-30s-heartbeat.raw")
        .expect("capture")
        .body;
    c.that(reader.raw() == recorded.as_slice(), || {
        format!(
            "idle bytes differ: st2 {:?}, emulator {:?}",
            String::from_utf8_lossy(&recorded),
            String::from_utf8_lossy(reader.raw())
        )
    });
    c.finish();
}

#[tokio::test]
async fn stream_of_one_core_local_run_matches_capture() {
    if reference::missing() {
        return;
    }
    let file = "stream-core-local.sse";
    let h = Harness::start_with_step(Duration::from_millis(20)).await;
    let mut c = Check::new(file);
    let mut reader = open(&h, &mut c, file, None).await;
    expect_connect_keepalive(&mut c, &mut reader).await;
    let id = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"echo hi"}}"#)
        .await;
    let emu = events(&read_until_execution(&mut reader, &id, "succeeded").await);
    let st2 = recorded(file);
    same_run_as_st2(&mut c, file, &st2, &emu);
    c.finish();
}

#[tokio::test]
async fn stream_filtered_by_action_ref_matches_capture() {
    if reference::missing() {
        return;
    }
    let file = "stream-action-refs-core-echo.sse";
    let h = Harness::start_with_step(Duration::from_millis(20)).await;
    let mut c = Check::new(file);
    let mut reader = open(&h, &mut c, file, None).await;
    expect_connect_keepalive(&mut c, &mut reader).await;
    // A run of another action first: the filter must keep all of its events out.
    let other = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"echo unfiltered"}}"#)
        .await;
    h.wait_for(&other, "succeeded").await;
    let id = h
        .run(r#"{"action":"core.echo","parameters":{"message":"filtered"}}"#)
        .await;
    let emu = events(&read_until_execution(&mut reader, &id, "succeeded").await);
    let st2 = recorded(file);
    c.that(
        emu.iter().all(|(_, d)| action_ref(d) == "core.echo"),
        || {
            format!(
                "action_refs=core.echo let through: {:?}",
                emu.iter()
                    .map(|(n, d)| format!("{n} {}", action_ref(d)))
                    .collect::<Vec<_>>()
            )
        },
    );
    same_run_as_st2(&mut c, file, &st2, &emu);
    c.finish();
}

#[tokio::test]
async fn stream_of_orquesta_sequential_run_matches_capture() {
    if reference::missing() {
        return;
    }
    let file = "stream-orquesta-sequential.sse";
    let h = Harness::start_with_step(Duration::from_millis(20)).await;
    let mut c = Check::new(file);
    let mut reader = open(&h, &mut c, file, None).await;
    expect_connect_keepalive(&mut c, &mut reader).await;
    let id = h
        .run(
            request("execution-post-orquesta-sequential.json")
                .body
                .expect("body"),
        )
        .await;
    let emu = events(&read_until_execution(&mut reader, &id, "succeeded").await);
    let st2 = recorded(file);
    let creates = |ev: &[(String, Value)]| {
        counts(ev)
            .into_iter()
            .filter(|(n, _)| n.ends_with("__create"))
            .collect::<Vec<_>>()
    };
    c.that(creates(&emu) == creates(&st2), || {
        format!(
            "create events differ: st2 {:?}, emulator {:?}",
            creates(&st2),
            creates(&emu)
        )
    });
    let names = |ev: &[(String, Value)]| counts(ev).into_keys().collect::<Vec<_>>();
    c.that(names(&emu) == names(&st2), || {
        format!(
            "event names differ: st2 {:?}, emulator {:?}",
            names(&st2),
            names(&emu)
        )
    });
    // st2's workflow engine repeats the parent's `running` on each result update and sends two
    // more `succeeded` liveaction updates after the execution's: status sequences are compared
    // with repeats folded (st2-api.md §7.3), and the read stops at the parent's `succeeded`.
    let st2_seen: Vec<(String, Value)> = {
        let last = st2.iter().rposition(|(n, d)| {
            n == "st2.execution__update" && action_ref(d) == "examples.orquesta-sequential"
        });
        st2[..=last.expect("parent update in capture")].to_vec()
    };
    c.that(histories(&emu, true) == histories(&st2_seen, true), || {
        format!(
            "per-entity status sequences differ:\n  st2      {:?}\n  emulator {:?}",
            histories(&st2_seen, true),
            histories(&emu, true)
        )
    });
    compare_payloads(&mut c, file, &st2, &emu, &|r| r);
    liveaction_results(&mut c, file, &emu);
    c.finish();
}

#[tokio::test]
async fn stream_of_output_events_matches_capture() {
    if reference::missing() {
        return;
    }
    let file = "stream-output-events.sse";
    // Slow steps: the stream is opened after the POST (it filters on the new id) and must be
    // subscribed before the execution is scheduled, as st2's capture shows.
    let h = Harness::start_with_step(Duration::from_millis(400)).await;
    let mut c = Check::new(file);
    // st2 ran a shell loop printing line1, line2 a second apart; the emulator does not interpret
    // loops, so the same output comes from echo + sleep.
    let id = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"echo line1; sleep 1; echo line2"}}"#)
        .await;
    let mut reader = open(&h, &mut c, file, Some(&id)).await;
    expect_connect_keepalive(&mut c, &mut reader).await;
    let emu = events(&read_until_execution(&mut reader, &id, "succeeded").await);
    let st2 = recorded(file);
    let sequence = |ev: &[(String, Value)]| {
        ev.iter()
            .map(|(n, d)| {
                format!(
                    "{n} {}",
                    d["status"]
                        .as_str()
                        .or_else(|| d["data"].as_str())
                        .unwrap_or("-")
                )
            })
            .collect::<Vec<_>>()
    };
    c.that(sequence(&emu) == sequence(&st2), || {
        format!(
            "event sequence differs:\n  st2      {:?}\n  emulator {:?}",
            sequence(&st2),
            sequence(&emu)
        )
    });
    let substituted =
        "st2's command was a shell loop; the emulator runs echo + sleep for the same output";
    let adjust = |r: Rules| {
        r.fixed("$.data")
            .fixed("$.action_ref")
            .fixed("$.runner_ref")
            .free("$.parameters", substituted)
            .free("$.liveaction.parameters", substituted)
    };
    compare_payloads(&mut c, file, &st2, &emu, &adjust);
    for (name, data) in emu
        .iter()
        .filter(|(n, _)| n == "st2.execution.output__create")
    {
        c.that(data["execution_id"] == id.as_str(), || {
            format!("{name}: execution_id {} is not {id}", data["execution_id"])
        });
    }
    c.finish();
}

#[tokio::test]
async fn stream_with_end_event_closes_after_terminal_update_like_capture() {
    if reference::missing() {
        return;
    }
    let file = "stream-filtered-end-event.sse";
    let h = Harness::start_with_step(Duration::from_millis(400)).await;
    let mut c = Check::new(file);
    let id = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"sleep 2; echo done"}}"#)
        .await;
    let mut reader = open(&h, &mut c, file, Some(&id)).await;
    expect_connect_keepalive(&mut c, &mut reader).await;
    // Read to the end of the body: the server must close it after the terminal update.
    let items = reader.until(WAIT, |_| false).await;
    let emu = events(&items);
    let st2 = recorded(file);
    let statuses = |ev: &[(String, Value)]| {
        ev.iter()
            .map(|(n, d)| format!("{n} {}", d["status"]))
            .collect::<Vec<_>>()
    };
    c.that(statuses(&emu) == statuses(&st2), || {
        format!(
            "events before the close differ:\n  st2      {:?}\n  emulator {:?}",
            statuses(&st2),
            statuses(&emu)
        )
    });
    c.that(items.last().is_some_and(|i| i.name().is_some()), || {
        "the stream must end right after the end event, not after a keep-alive".into()
    });
    compare_payloads(&mut c, file, &st2, &emu, &|r| r);
    c.finish();
}

#[tokio::test]
async fn output_stream_sends_every_chunk_then_eof_like_capture() {
    if reference::missing() {
        return;
    }
    let file = "stream-execution-output-endpoint.sse";
    let h = Harness::start_with_step(Duration::from_millis(20)).await;
    let mut c = Check::new(file);
    // st2's loop printed line1..line3 a second apart; echo + sleep gives the same chunks live.
    let id = h
        .run(r#"{"action":"core.local","parameters":{"cmd":"echo line1; sleep 1; echo line2; sleep 1; echo line3"}}"#)
        .await;
    let mut reader = open(&h, &mut c, file, Some(&id)).await;
    let items = reader.until(WAIT, |_| false).await;
    let recorded_items =
        sse::parse_all(&Recorded::load(file).expect("capture").body).expect("framing");
    c.that(items.first() != Some(&Item::KeepAlive), || {
        "st2's output stream sends no keep-alive".into()
    });
    c.that(items.last() == recorded_items.last(), || {
        format!(
            "the output stream must end with {:?}, got {:?}",
            recorded_items.last(),
            items.last()
        )
    });
    c.that(items.len() == recorded_items.len(), || {
        format!(
            "{} items, st2 sent {}: {items:?}",
            items.len(),
            recorded_items.len()
        )
    });
    let adjust = |r: Rules| {
        r.fixed("$.data")
            .fixed("$.action_ref")
            .fixed("$.runner_ref")
    };
    compare_payloads(&mut c, file, &recorded(file), &events(&items), &adjust);
    for (name, data) in events(&items) {
        c.that(data["execution_id"] == id.as_str(), || {
            format!("{name}: execution_id {} is not {id}", data["execution_id"])
        });
    }
    c.finish();
}

#[tokio::test]
async fn output_stream_of_a_finished_execution_replays_every_chunk_then_eof() {
    if reference::missing() {
        return;
    }
    let file = "stream-execution-output-endpoint.sse";
    let h = Harness::start_with_step(Duration::from_millis(20)).await;
    let mut c = Check::new("output stream opened after the execution ended");
    let id = h
        .run(r#"{"action":"examples.output","parameters":{"lines":3,"interval_ms":20}}"#)
        .await;
    h.wait_for(&id, "succeeded").await;
    let mut reader = open(&h, &mut c, file, Some(&id)).await;
    let items = reader.until(WAIT, |_| false).await;
    c.that(items.first() != Some(&Item::KeepAlive), || {
        "st2's output stream sends no keep-alive".into()
    });
    let eof = Item::Event {
        name: "EOF".into(),
        data: "''".into(),
    };
    c.that(items.last() == Some(&eof), || {
        format!("the stream must end with st2's EOF frame: {items:?}")
    });
    c.that(items.len() == 4, || {
        format!("three output chunks, then EOF: {items:?}")
    });
    let st2 = recorded(file);
    for (i, (name, data)) in events(&items).iter().enumerate() {
        c.that(name == "st2.execution.output__create", || {
            format!("chunk {i} is {name}")
        });
        c.shape(&format!("chunk {i}"), &st2[0].1, data, &Rules::default());
        c.that(data["execution_id"] == id.as_str(), || {
            format!(
                "chunk {i}: execution_id {} is not {id}",
                data["execution_id"]
            )
        });
        let line = format!("line {}\n", i + 1);
        c.that(data["data"] == line.as_str(), || {
            format!("chunk {i}: data {} is not {line:?}", data["data"])
        });
    }
    c.finish();
}

#[tokio::test]
async fn idle_stream_repeats_the_bare_newline_every_heartbeat() {
    let h = Harness::start(EmulatorOptions {
        heartbeat: Duration::from_millis(200),
        ..EmulatorOptions::default()
    })
    .await;
    let (_, mut reader) = h.open_stream("/stream/v1/stream").await;
    for n in 0..3 {
        let item = reader.next(Duration::from_secs(3)).await.map(|(i, _)| i);
        assert_eq!(
            item,
            Some(Item::KeepAlive),
            "keep-alive {n} is one bare newline"
        );
    }
}
