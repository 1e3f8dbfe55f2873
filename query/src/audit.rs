//! The audit log: append-only JSON lines, one record per request, fsynced before results
//! stream. A single writer thread appends and fsyncs whatever records are waiting (group
//! commit), so concurrent requests share one fsync; a request that must be durable awaits its
//! acknowledgement, which comes only after `fdatasync` returned. Records nobody awaits are
//! written at once and synced with the next awaited one, or within `BACKGROUND_SYNC`.
//!
//! A query leaves two lines with the same `request_id`: `phase: "start"` (durable before the
//! first batch) and `phase: "end"` (rows, bytes, outcome). `strata audit` joins them.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    /// `start` / `end` for queries; `request` for everything answered in one call.
    pub phase: String,
    /// What was asked: `statement`, `prepare`, `execute`, `get_tables`, `authenticate`, …
    pub action: String,
    /// The door the request came through: `flight`, `cohort`, `pg`.
    #[serde(default)]
    pub door: String,
    pub sub: String,
    pub issuer: String,
    pub tier: String,
    pub egress_mode: String,
    pub visa_ids: Vec<String>,
    pub workspace: Option<String>,
    pub peer: Option<String>,
    pub statement: Option<String>,
    pub statement_sha256: Option<String>,
    pub plan_sha256: Option<String>,
    /// `table:tier` for every table the plan reads.
    pub tables: Vec<String>,
    pub rows: Option<u64>,
    pub bytes: Option<u64>,
    /// Protected (aggregate) cells in the result as computed, and how many of them disclosure
    /// control suppressed; released = protected - suppressed.
    #[serde(default)]
    pub protected_cells: Option<u64>,
    pub suppressed_cells: Option<u64>,
    /// The suppressed cells by reason: threshold, complementary, dominance, differencing.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub suppressed_by_reason: std::collections::BTreeMap<String, u64>,
    pub egress_alert: bool,
    /// `ok`, `denied`, `unauthenticated`, `invalid`, `error`, `cancelled`, `started`.
    pub outcome: String,
    pub error: Option<String>,
    pub duration_ms: Option<f64>,
}

impl AuditRecord {
    /// The statement (SQL text or cohort definition) the request is about, with its hash.
    pub fn set_statement(&mut self, statement: &str) {
        self.statement_sha256 = Some(sha256_hex(statement));
        self.statement = Some(statement.to_string());
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

/// A line for the writer (none: only acknowledge once everything before is on disk).
type Message = (Option<String>, Option<Ack>);

pub struct AuditLog {
    path: PathBuf,
    /// Taken when the log is dropped: the writer then writes what is left and ends.
    sender: std::sync::Mutex<Option<mpsc::Sender<Message>>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// When each record not yet on disk was handed over, oldest first (the writer's backlog).
    waiting: Arc<std::sync::Mutex<VecDeque<Instant>>>,
}

impl AuditLog {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open audit log {}", path.display()))?;
        let (sender, receiver) = mpsc::channel();
        let waiting = Arc::new(std::sync::Mutex::new(VecDeque::new()));
        let written = waiting.clone();
        let writer = std::thread::Builder::new()
            .name("strata-audit".into())
            .spawn(move || writer(file, receiver, &written))
            .context("cannot start the audit writer")?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            sender: std::sync::Mutex::new(Some(sender)),
            writer: Some(writer),
            waiting,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends and waits until the record is on disk.
    pub async fn append(&self, record: &AuditRecord) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.send(record, Some(ack))?;
        done.await
            .map_err(|_| "the audit writer stopped".to_string())?
    }

    /// Appends without waiting (records of refusals and of finished streams: nothing left to
    /// hold back).
    pub fn submit(&self, record: &AuditRecord) {
        if let Err(e) = self.send(record, None) {
            tracing::error!(error = %e, "audit record lost");
        }
    }

    /// Waits until every record handed over before this call is on disk; an error when one
    /// of them (since the last flush) could not be written.
    pub async fn flush(&self) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        self.enqueue((None, Some(ack)))?;
        done.await
            .map_err(|_| "the audit writer stopped".to_string())?
    }

    /// Records waiting for the writer, and how long the oldest has waited.
    pub fn backlog(&self) -> (usize, Duration) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = waiting.front().map_or(Duration::ZERO, |t| t.elapsed());
        (waiting.len(), oldest)
    }

    fn send(&self, record: &AuditRecord, ack: Option<Ack>) -> Result<(), String> {
        let line = serde_json::to_string(record).map_err(|e| e.to_string())?;
        self.enqueue((Some(line), ack))?;
        crate::metrics::record(record);
        Ok(())
    }

    /// Hands a message to the writer; a line joins the backlog, in the channel's order (both
    /// under the sender's lock).
    fn enqueue(&self, message: Message) -> Result<(), String> {
        let sender = self
            .sender
            .lock()
            .map_err(|_| "audit log poisoned".to_string())?;
        let sender = sender.as_ref().ok_or("the audit log is closed")?;
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let line = message.0.is_some();
        if line {
            waiting.push_back(Instant::now());
        }
        if sender.send(message).is_err() {
            if line {
                waiting.pop_back();
            }
            return Err("the audit writer stopped".to_string());
        }
        Ok(())
    }
}

impl Drop for AuditLog {
    /// The last records (end records of streams dropped at shutdown) reach the disk before the
    /// process exits: the writer drains the channel once it is closed, then ends.
    fn drop(&mut self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// How long a record nobody waits for (a success answered in one call, a query's end record)
/// may stay written but not synced. It is synced with the next record somebody waits for, or
/// after this long: a query's durable start record then costs one `fdatasync` of its own, not
/// also the wait for the previous request's. A crash of the process loses nothing written; only
/// the machine's could lose these few milliseconds of records.
const BACKGROUND_SYNC: Duration = Duration::from_millis(20);

fn writer(
    mut file: File,
    receiver: mpsc::Receiver<Message>,
    waiting: &std::sync::Mutex<VecDeque<Instant>>,
) {
    // A flush reports the records lost since the one before.
    let mut lost: Option<String> = None;
    // Lines written since the last sync.
    let mut unsynced = 0;
    let synced = |unsynced: &mut usize| {
        let mut waiting = waiting.lock().unwrap_or_else(|p| p.into_inner());
        let done = (*unsynced).min(waiting.len());
        waiting.drain(..done);
        *unsynced = 0;
    };
    loop {
        let first = if unsynced == 0 {
            receiver.recv().ok()
        } else {
            match receiver.recv_timeout(BACKGROUND_SYNC) {
                Ok(message) => Some(message),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(e) = sync(&mut file) {
                        failed(&mut lost, e);
                    }
                    synced(&mut unsynced);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            }
        };
        let Some(first) = first else {
            // Closed: what was written reaches the disk before the writer ends.
            if unsynced > 0 {
                match sync(&mut file) {
                    Ok(()) => synced(&mut unsynced),
                    Err(e) => failed(&mut lost, e),
                }
            }
            return;
        };
        let mut batch = vec![first];
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        let mut buf = String::new();
        let mut lines = 0;
        for line in batch.iter().filter_map(|(line, _)| line.as_ref()) {
            buf.push_str(line);
            buf.push('\n');
            lines += 1;
        }
        let awaited = batch.iter().any(|(_, ack)| ack.is_some());
        let mut result = if lines == 0 {
            Ok(())
        } else {
            file.write_all(buf.as_bytes())
                .map_err(|e| format!("audit log write failed: {e}"))
        };
        unsynced += lines;
        if result.is_ok() && awaited && unsynced > 0 {
            result = sync(&mut file);
        }
        if let Err(e) = &result {
            failed(&mut lost, e.clone());
        }
        if awaited || result.is_err() {
            synced(&mut unsynced);
        }
        for (line, ack) in batch {
            let Some(ack) = ack else { continue };
            let answer = match line {
                Some(_) => result.clone(),
                None => lost.take().map_or(Ok(()), Err),
            };
            let _ = ack.send(answer);
        }
    }
}

/// A write or sync that failed: logged, counted, and reported by the next flush.
fn failed(lost: &mut Option<String>, e: String) {
    tracing::error!(error = %e, "audit log write failed");
    crate::metrics::audit_write_failed();
    *lost = Some(e);
}

fn sync(file: &mut File) -> Result<(), String> {
    file.sync_data()
        .map_err(|e| format!("audit log write failed: {e}"))
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `strata audit`: reads the log, joins the start and end lines of each request, filters.
pub struct AuditQuery {
    pub sub: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub contains: Option<String>,
    pub json: bool,
}

pub fn print(path: &Path, q: &AuditQuery) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read audit log {}", path.display()))?;
    let mut merged: Vec<AuditRecord> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = Default::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: AuditRecord = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not an audit record", path.display(), n + 1))?;
        match index.get(&record.request_id) {
            Some(&i) if record.phase == "end" => {
                let start = &mut merged[i];
                start.phase = "end".into();
                start.rows = record.rows;
                start.bytes = record.bytes;
                start.egress_alert = record.egress_alert;
                start.outcome = record.outcome;
                start.error = record.error;
                start.duration_ms = record.duration_ms;
                start.suppressed_cells = record.suppressed_cells;
                start.suppressed_by_reason = record.suppressed_by_reason;
                start.protected_cells = record.protected_cells;
            }
            _ => {
                index.insert(record.request_id.clone(), merged.len());
                merged.push(record);
            }
        }
    }
    let mut shown = 0;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for r in merged.iter().filter(|r| {
        q.sub.as_ref().is_none_or(|s| &r.sub == s)
            && q.outcome.as_ref().is_none_or(|o| &r.outcome == o)
            && q.since
                .as_ref()
                .is_none_or(|t| r.time.as_str() >= t.as_str())
            && q.contains.as_ref().is_none_or(|c| {
                r.statement
                    .as_deref()
                    .is_some_and(|s| s.contains(c.as_str()))
            })
    }) {
        shown += 1;
        if q.json {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        } else {
            writeln!(
                out,
                "{} {:<9} {:<14} {}@{} tier={} rows={} bytes={}{} {}{}",
                r.time,
                r.outcome,
                r.action,
                r.sub,
                r.issuer,
                r.tier,
                r.rows.map_or("-".into(), |v| v.to_string()),
                r.bytes.map_or("-".into(), |v| v.to_string()),
                if r.egress_alert { " EGRESS-ALERT" } else { "" },
                r.statement.as_deref().unwrap_or("").replace('\n', " "),
                r.error
                    .as_deref()
                    .map_or(String::new(), |e| format!(" [{e}]")),
            )?;
        }
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> AuditRecord {
        AuditRecord {
            request_id: id.into(),
            phase: "request".into(),
            outcome: "ok".into(),
            ..AuditRecord::default()
        }
    }

    fn lines(path: &Path) -> usize {
        std::fs::read_to_string(path).unwrap().lines().count()
    }

    #[tokio::test]
    async fn a_flush_returns_once_what_came_before_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..50 {
            log.submit(&record(&i.to_string()));
        }
        log.flush().await.unwrap();
        assert_eq!(lines(&path), 50);
        assert_eq!(log.backlog().0, 0);
    }

    #[test]
    fn dropping_the_log_writes_what_was_submitted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..200 {
            log.submit(&record(&i.to_string()));
        }
        drop(log);
        assert_eq!(lines(&path), 200);
    }

    /// Records nobody waits for reach the disk without a flush, and an awaited record
    /// carries those written before it.
    #[tokio::test]
    async fn records_nobody_awaits_are_synced_soon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        for i in 0..10 {
            log.submit(&record(&i.to_string()));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while log.backlog().0 > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(log.backlog().0, 0);
        assert_eq!(lines(&path), 10);
        log.submit(&record("background"));
        log.append(&record("awaited")).await.unwrap();
        assert_eq!(lines(&path), 12);
        assert_eq!(
            log.backlog().0,
            0,
            "the awaited sync covered the record before it"
        );
    }

    /// A full disk: the durable append fails (so nothing is released), and the next flush
    /// reports the records submitted without waiting that were lost with it.
    #[tokio::test]
    async fn a_full_disk_fails_the_append_and_the_next_flush() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        log.submit(&record("lost"));
        assert!(log.append(&record("refused")).await.is_err());
        let flushed = log.flush().await;
        assert!(flushed.unwrap_err().contains("No space left"));
        // Reported once: nothing was lost since.
        log.flush().await.unwrap();
        assert_eq!(log.backlog().0, 0);
    }
}
