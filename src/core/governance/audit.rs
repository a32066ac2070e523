//! The append-only, tamper-evident audit log of dispatch decisions and outcomes.
//!
//! One JSON line per dispatch, shaped as Portarium's `EvidenceEntryV1` (plus a `dispatch`
//! member with our specifics): `hashSha256` is SHA-256 over the RFC 8785 canonical JSON of the
//! record without `hashSha256`, and `previousHash` is the hash of the line before, so a
//! changed, removed or reordered record breaks the chain at a point [`verify`] names.
//! Records hold references (ids, refs, verdicts), never payloads or results.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use st2_client::Secret;

use super::anchor::{Anchor, hmac_sha256_hex, same_mac};
use super::canonical::sha256_hex;
use crate::core::Mode;
use crate::core::portarium::{DispatchRequest, DispatchResult};

/// The member holding a record's HMAC-SHA256 (hex) over its `hashSha256`; like
/// `hashSha256`, left out of what the hash covers.
pub const HMAC_FIELD: &str = "hmacSha256";

/// The `actor.adapterId` every record names.
pub const ADAPTER_ID: &str = "portarium-st2";

/// `governance.audit` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The JSONL file; created if missing, appended to (the chain continues) if present.
    pub path: PathBuf,
    /// When records reach the disk.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Key of the HMAC-SHA256 every record carries (`env:NAME` or `file:PATH`); keep it where
    /// whoever can write the log cannot read it. Unset, records carry no HMAC.
    #[serde(default)]
    pub hmac_key: Option<Secret>,
    /// File the anchors (head sequence and hash) are appended to, besides the log line;
    /// somewhere the log's writers cannot write.
    #[serde(default)]
    pub anchor_file: Option<PathBuf>,
    /// How often the head is anchored (when it moved), and once more at shutdown.
    #[serde(default = "default_anchor_interval", with = "st2_basics::duration")]
    pub anchor_interval: Duration,
}

fn default_anchor_interval() -> Duration {
    Duration::from_secs(60)
}

impl AuditConfig {
    /// The audit log at `path`, written with the defaults: fsync always, no key, no anchor file.
    pub fn at(path: PathBuf) -> Self {
        Self {
            path,
            fsync: FsyncPolicy::default(),
            hmac_key: None,
            anchor_file: None,
            anchor_interval: default_anchor_interval(),
        }
    }
}

/// When an appended record is forced to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// `fdatasync` after every record: a record answered for survives a crash.
    #[default]
    Always,
    /// Leave it to the OS; faster, loses the last records on a crash (the chain stays valid).
    Never,
}

/// Why the audit log could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error(
        "audit log {path}: {reason}; check the path (governance.audit.path) and its permissions"
    )]
    Io {
        /// The file.
        path: String,
        /// The I/O error, as text.
        reason: String,
    },
    /// The existing file does not verify, so appending would extend a broken chain.
    #[error(
        "audit log {path} does not verify ({brk}); run `portarium-st2 audit verify {path}`, keep the file as evidence and start a new one"
    )]
    Broken {
        /// The file.
        path: String,
        /// Where the chain breaks.
        brk: ChainBreak,
    },
}

/// The first place a chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {record} (line {line}): {reason}")]
pub struct ChainBreak {
    /// 1-based position among the records.
    pub record: usize,
    /// 1-based line in the file.
    pub line: usize,
    /// What does not hold.
    pub reason: String,
}

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// Number of records.
    pub records: usize,
    /// Hash of the last record (keep it elsewhere to detect a truncated tail).
    pub head_hash: Option<String>,
}

/// One decision (a dispatch, re-run or cancel) and what it came to, before it is chained.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// The request as the tenant sent it (only ids and the flowRef are recorded).
    pub request: &'a DispatchRequest,
    /// The tenant the bearer token belongs to: who asked.
    pub tenant: &'a str,
    /// `None` when allowed; the reason when refused before st2 was asked to run anything.
    pub refused: Option<&'a str>,
    /// What the caller was answered; `None` for the `accepted` record written before st2 is
    /// called, whose outcome a second record gives.
    pub result: Option<&'a DispatchResult>,
    /// What was asked: a start is recorded as `started`, since its outcome comes later.
    pub mode: Mode,
    /// What was done: a dispatch, or a re-run or cancel of an execution.
    pub act: Act<'a>,
}

/// What a decision is about.
#[derive(Debug, Clone, Default)]
pub enum Act<'a> {
    /// A dispatch of the request's flowRef.
    #[default]
    Dispatch,
    /// A re-run of execution `of` with `overrides` (secret values already redacted).
    Rerun {
        /// The original execution's id.
        of: &'a str,
        /// The overriding parameters, secret values already redacted.
        overrides: Value,
    },
    /// A cancel of execution `of`.
    Cancel {
        /// The canceled execution's id.
        of: &'a str,
    },
}

struct Chain {
    file: File,
    sequence: u64,
    last_hash: Option<String>,
}

/// The open log; cheap to share (`Arc`), appends are serialised.
pub struct AuditLog {
    path: PathBuf,
    fsync: FsyncPolicy,
    chain: Arc<Mutex<Chain>>,
    pending: Arc<Pending>,
    key: Option<Secret>,
    anchor_file: Option<PathBuf>,
    /// The sequence last anchored, so an unchanged head is not anchored again.
    anchored: Mutex<Option<u64>>,
}

/// Outcomes an `accepted` record promised and no record gave yet.
#[derive(Debug, Default)]
struct Pending {
    count: std::sync::atomic::AtomicUsize,
    settled: tokio::sync::Notify,
}

/// One outcome still to be written; dropping it (written or not) settles it.
#[derive(Debug)]
pub struct Promise(Arc<Pending>);

impl Drop for Promise {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.settled.notify_waiters();
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the log and continues its chain; refuses a file that does not verify.
    pub fn open(config: &AuditConfig) -> Result<Self, AuditError> {
        let path = &config.path;
        let io = |e: std::io::Error| AuditError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let key = config.hmac_key.as_ref().map(|k| k.expose().as_bytes());
        let head = if path.exists() {
            verify_with(path, key, None).map_err(|e| match e {
                VerifyError::Io(e) => io(e),
                VerifyError::Broken(brk) => AuditError::Broken {
                    path: path.display().to_string(),
                    brk,
                },
            })?
        } else {
            ChainHead {
                records: 0,
                head_hash: None,
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(Self {
            path: path.clone(),
            fsync: config.fsync,
            chain: Arc::new(Mutex::new(Chain {
                file,
                sequence: head.records as u64,
                last_hash: head.head_hash,
            })),
            pending: Arc::default(),
            key: config.hmac_key.clone(),
            anchor_file: config.anchor_file.clone(),
            anchored: Mutex::new(None),
        })
    }

    /// Writes the head (sequence and hash) elsewhere — a log line at INFO and, when configured,
    /// a line of the anchor file — unless it was anchored already; answers the anchor written.
    pub fn anchor(&self) -> Result<Option<Anchor>, AuditError> {
        let (sequence, head) = {
            let chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
            (chain.sequence, chain.last_hash.clone())
        };
        let Some(head_hash) = head else {
            return Ok(None);
        };
        let mut anchored = self.anchored.lock().unwrap_or_else(|e| e.into_inner());
        if *anchored == Some(sequence) {
            return Ok(None);
        }
        let anchor = Anchor {
            sequence,
            head_hash,
            at: now_iso(),
            hmac_sha256: None,
        }
        .signed(self.key.as_ref().map(|k| k.expose().as_bytes()));
        tracing::info!(
            audit_anchor = %format!("{}:{}", anchor.sequence, anchor.head_hash),
            log = %self.path.display(),
            "audit anchor: keep it where the log's writers cannot reach; `audit verify --anchor-head` checks the log against it"
        );
        if let Some(file) = &self.anchor_file {
            let mut line = serde_json::to_string(&anchor).expect("an anchor serializes");
            line.push('\n');
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_data()));
            written.map_err(|e| AuditError::Io {
                path: file.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        *anchored = Some(sequence);
        Ok(Some(anchor))
    }

    /// Anchors the head every `interval` while it moves; runs until the task is aborted.
    pub async fn anchor_every(self: Arc<Self>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = self.anchor() {
                tracing::error!("{e}");
            }
        }
    }

    /// Notes an outcome to come; hold the promise until its record is written.
    pub fn promise(&self) -> Promise {
        self.pending
            .count
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Promise(self.pending.clone())
    }

    /// Waits up to `within` for every promised outcome to be written; answers how many were
    /// not (on shutdown, their executions outlive the process unrecorded).
    pub async fn settle(&self, within: std::time::Duration) -> usize {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let settled = self.pending.settled.notified();
            let left = self.pending.count.load(Ordering::Acquire);
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return self.pending.count.load(Ordering::Acquire);
            }
        }
    }

    /// Appends one record for `decision` and returns its hash.
    pub async fn record(&self, decision: &Decision<'_>) -> Result<String, AuditError> {
        let body = record_body(decision);
        let chain = self.chain.clone();
        let fsync = self.fsync;
        let path = self.path.display().to_string();
        let key = self.key.clone();
        tokio::task::spawn_blocking(move || append(&chain, body, fsync, key.as_ref()))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .map_err(|e| AuditError::Io {
                path,
                reason: e.to_string(),
            })
    }
}

fn append(
    chain: &Mutex<Chain>,
    mut body: Value,
    fsync: FsyncPolicy,
    key: Option<&Secret>,
) -> std::io::Result<String> {
    let mut chain = chain
        .lock()
        .map_err(|_| std::io::Error::other("audit lock poisoned"))?;
    let sequence = chain.sequence + 1;
    body["evidenceId"] = json!(format!(
        "st2-dispatch-{sequence}-{:016x}",
        fastrand::u64(..)
    ));
    body["dispatch"]["sequence"] = json!(sequence);
    if let Some(prev) = &chain.last_hash {
        body["previousHash"] = json!(prev);
    }
    let hash = sha256_hex(&body).map_err(std::io::Error::other)?;
    body["hashSha256"] = json!(hash);
    // The HMAC covers the hash, which covers the record and the link to the one before.
    if let Some(key) = key {
        body[HMAC_FIELD] = json!(hmac_sha256_hex(key.expose().as_bytes(), hash.as_bytes()));
    }
    let mut line = serde_json::to_string(&body).map_err(std::io::Error::other)?;
    line.push('\n');
    chain.file.write_all(line.as_bytes())?;
    if fsync == FsyncPolicy::Always {
        chain.file.sync_data()?;
    }
    chain.sequence = sequence;
    chain.last_hash = Some(hash.clone());
    Ok(hash)
}

/// The record for `d` without its chain fields (evidenceId, sequence, hashes).
fn record_body(d: &Decision<'_>) -> Value {
    let req = d.request;
    let (outcome, execution) = match d.result {
        None => ("accepted".to_string(), Value::Null),
        Some(DispatchResult::Ok { output }) => (
            match (&d.act, d.mode) {
                (Act::Cancel { .. }, _) => "canceled",
                (_, Mode::Start) => "started",
                _ => "succeeded",
            }
            .to_string(),
            output.get("executionId").cloned().unwrap_or(Value::Null),
        ),
        Some(DispatchResult::Err { kind, .. }) => (kind.to_string(), Value::Null),
    };
    let verdict = if d.refused.is_some() {
        "refused"
    } else {
        "allowed"
    };
    let what = match &d.act {
        Act::Rerun { of, .. } => format!("re-run of {of} ({})", req.flow_ref),
        Act::Cancel { of } => format!("cancel of {of} ({})", req.flow_ref),
        Act::Dispatch => format!("dispatch of {}", req.flow_ref),
    };
    let summary = match d.refused {
        Some(reason) => format!("{what} refused: {reason}"),
        None if d.result.is_none() => format!("{what} accepted; its outcome follows"),
        None if d.mode == Mode::DryRun => format!("dry run of {} checked: {outcome}", req.flow_ref),
        None => format!("{what} allowed: {outcome}"),
    };
    let pack = req.flow_ref.trim().split_once('.').map(|(p, _)| p);
    let mut body = json!({
        "schemaVersion": 1,
        "workspaceId": d.tenant,
        "correlationId": req.correlation_id,
        "occurredAtIso": now_iso(),
        "category": if d.refused.is_some() { "PolicyViolation" } else { "Action" },
        "summary": summary,
        "actor": {"kind": "Adapter", "adapterId": ADAPTER_ID},
        "links": {"runId": req.run_id},
        "dispatch": {
            "tenantId": req.tenant_id,
            "actionId": req.action_id,
            "action": req.flow_ref,
            "pack": pack,
            "verdict": verdict,
            "phase": if d.result.is_none() { "accepted" } else { "outcome" },
            "requestedBy": d.tenant,
            "reason": d.refused,
            "outcome": outcome,
            "st2ExecutionId": execution,
            "dryRun": d.mode == Mode::DryRun,
        },
    });
    match &d.act {
        Act::Rerun { of, overrides } => {
            body["dispatch"]["rerunOf"] = json!(of);
            body["dispatch"]["overrides"] = overrides.clone();
        }
        Act::Cancel { of } => body["dispatch"]["cancelOf"] = json!(of),
        Act::Dispatch => {}
    }
    body
}

fn now_iso() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Why [`verify`] failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The chain does not hold.
    #[error("{0}")]
    Broken(ChainBreak),
}

/// Checks every record's hash and link, and that sequence numbers run 1, 2, 3…; names the
/// first record where that fails.
pub fn verify(path: &Path) -> Result<ChainHead, VerifyError> {
    verify_with(path, None, None)
}

/// [`verify`], and with `key` every record's HMAC, and with `anchor` that the log still
/// reaches the anchored head unchanged (a cut tail or a rewritten log does not).
pub fn verify_with(
    path: &Path,
    key: Option<&[u8]>,
    anchor: Option<&Anchor>,
) -> Result<ChainHead, VerifyError> {
    verify_lines_with(BufReader::new(File::open(path)?), key, anchor)
}

/// [`verify`] on an audit log already open (the fuzz target feeds it bytes).
pub fn verify_lines(reader: impl BufRead) -> Result<ChainHead, VerifyError> {
    verify_lines_with(reader, None, None)
}

/// [`verify_with`] on an audit log already open.
pub fn verify_lines_with(
    reader: impl BufRead,
    key: Option<&[u8]>,
    anchor: Option<&Anchor>,
) -> Result<ChainHead, VerifyError> {
    let mut previous: Option<String> = None;
    let mut records = 0usize;
    let mut last_line = 0usize;
    let mut anchored: Option<String> = None;
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        records += 1;
        last_line = i + 1;
        let brk = |reason: String| {
            VerifyError::Broken(ChainBreak {
                record: records,
                line: i + 1,
                reason,
            })
        };
        let mut record: Value =
            serde_json::from_str(&line).map_err(|e| brk(format!("not JSON: {e}")))?;
        let Some(obj) = record.as_object_mut() else {
            return Err(brk("not a JSON object".into()));
        };
        let stored = match obj.remove("hashSha256") {
            Some(Value::String(h)) => h,
            _ => return Err(brk("no hashSha256".into())),
        };
        obj.remove("signatureBase64");
        let mac = obj.remove(HMAC_FIELD);
        if let Some(key) = key {
            let want = hmac_sha256_hex(key, stored.as_bytes());
            match mac.as_ref().and_then(Value::as_str) {
                Some(got) if same_mac(got, &want) => {}
                Some(_) => {
                    return Err(brk(
                        "hmacSha256 does not hold under the key: the record was written or re-chained by someone without the key (or the key is wrong)".into(),
                    ));
                }
                None => {
                    return Err(brk(
                        "no hmacSha256: the record was written without the key (an unkeyed log, or one appended by someone without it)".into(),
                    ));
                }
            }
        }
        let computed = sha256_hex(&record).map_err(|e| brk(e.to_string()))?;
        if computed != stored {
            return Err(brk(format!(
                "content changed: hashSha256 is {stored} but the record hashes to {computed}"
            )));
        }
        let linked = record.get("previousHash").and_then(Value::as_str);
        if linked != previous.as_deref() {
            return Err(brk(format!(
                "chain broken: previousHash is {} but the record before hashes to {} (a record was removed, inserted or moved)",
                linked.unwrap_or("absent"),
                previous
                    .as_deref()
                    .unwrap_or("nothing (this should be the first record)")
            )));
        }
        let sequence = record["dispatch"]["sequence"].as_u64();
        if sequence != Some(records as u64) {
            return Err(brk(format!(
                "sequence is {sequence:?}, expected {records} (records were removed before it)"
            )));
        }
        if anchor.is_some_and(|a| a.sequence == records as u64) {
            anchored = Some(stored.clone());
        }
        previous = Some(stored);
    }
    if let Some(anchor) = anchor {
        check_anchor(anchor, key, records, last_line, anchored.as_deref())?;
    }
    Ok(ChainHead {
        records,
        head_hash: previous,
    })
}

/// That the log reaches `anchor`'s record, and that record is the one anchored.
fn check_anchor(
    anchor: &Anchor,
    key: Option<&[u8]>,
    records: usize,
    last_line: usize,
    found: Option<&str>,
) -> Result<(), VerifyError> {
    let at = |record: usize, line: usize, reason: String| {
        VerifyError::Broken(ChainBreak {
            record,
            line,
            reason,
        })
    };
    if key.is_some_and(|k| !anchor.holds_under(k)) {
        return Err(at(
            0,
            0,
            format!(
                "the anchor for record {} does not hold under the key: it was not written by the adapter",
                anchor.sequence
            ),
        ));
    }
    match found {
        None => Err(at(
            records,
            last_line,
            format!(
                "the log ends at record {records} but the anchor taken {} names record {} (hash {}): records were cut from the tail",
                anchor.at, anchor.sequence, anchor.head_hash
            ),
        )),
        Some(hash) if hash != anchor.head_hash => Err(at(
            anchor.sequence as usize,
            0,
            format!(
                "record {} hashes to {hash} but the anchor taken {} names {}: the log up to it was rewritten (records cut from the head and the rest re-chained, or edited and re-chained)",
                anchor.sequence, anchor.at, anchor.head_hash
            ),
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::portarium::ErrorKind;

    fn request() -> DispatchRequest {
        serde_json::from_value(json!({
            "actionId": "a1", "tenantId": "t1", "runId": "r1", "correlationId": "c1",
            "flowRef": "core.echo", "payload": {"message": "not recorded"}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn records_chain_continue_after_reopen_and_hold_no_payload() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig::at(dir.path().join("audit.jsonl"));
        let req = request();
        let ok = DispatchResult::Ok {
            output: json!({"executionId": "e1", "result": {"stdout": "not recorded"}}),
        };
        let refused = DispatchResult::err(ErrorKind::FlowNotFound, "pack core refused");
        let first = AuditLog::open(&config).unwrap();
        let h1 = first
            .record(&Decision {
                request: &req,
                tenant: "t1",
                refused: None,
                result: Some(&ok),
                mode: Mode::Wait(std::time::Duration::ZERO),
                act: Act::Dispatch,
            })
            .await
            .unwrap();
        drop(first);
        let again = AuditLog::open(&config).unwrap();
        again
            .record(&Decision {
                request: &req,
                tenant: "t1",
                refused: Some("pack core refused"),
                result: Some(&refused),
                mode: Mode::Wait(std::time::Duration::ZERO),
                act: Act::Dispatch,
            })
            .await
            .unwrap();
        let head = verify(&config.path).unwrap();
        assert_eq!(head.records, 2);
        let text = std::fs::read_to_string(&config.path).unwrap();
        assert!(!text.contains("not recorded"), "{text}");
        let second: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second["previousHash"], json!(h1));
        assert_eq!(second["dispatch"]["verdict"], "refused");
        assert_eq!(second["category"], "PolicyViolation");
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["dispatch"]["st2ExecutionId"], "e1");
        assert!(first.get("previousHash").is_none());
    }
}
