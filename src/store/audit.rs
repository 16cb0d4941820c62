//! The append-only, hash-chained audit log.
//!
//! # File format
//!
//! One JSON object per line (JSON lines), `\n`-terminated:
//!
//! ```text
//! {"actor":"ops","at":"2026-05-01T12:00:00.123456Z","details":{...},"event":"run.started","hash":"<64 hex>","identity":"E1001","prev":"<64 hex>","run":"r-1","seq":1}
//! ```
//!
//! | field | meaning |
//! | --- | --- |
//! | `seq` | 1 for the first record, then +1 per record |
//! | `at` | RFC 3339, UTC, microseconds (`...T12:00:00.123456Z`) |
//! | `actor`, `event` | who did what |
//! | `run`, `identity` | the run id and identity id, or `null` |
//! | `details` | caller-supplied JSON, passed through [`redact`] before it is written |
//! | `prev` | the previous record's `hash`; 64 zeros ([`GENESIS`]) for the first record |
//! | `hash` | lower-case hex SHA-256 of `prev` (its 64 ASCII hex characters) followed by the canonical JSON of the record *without* the `hash` field |
//!
//! **Canonical JSON** is compact serde_json output (no whitespace, serde_json's string escaping and
//! number formatting) with the keys of every object, at every depth, sorted by their UTF-8 bytes.
//! It is produced by this module's own writer, so it does not depend on serde_json's
//! `preserve_order` feature. Every line is written in canonical form (with `hash` in its sorted
//! place), and [`verify`] rejects a line that is not — so the hash can be recomputed by anyone:
//! `printf '%s' "$prev$(jq -cS 'del(.hash)' <<<"$line")" | sha256sum` (jq's `-cS` gives the same
//! form for the strings and integers Closeout writes).
//!
//! **Head file.** `<log>.head` (the log's file name with `.head` appended) holds
//! `{"hash":"<hex>","seq":N}` for the last record. It is replaced atomically (temporary file,
//! fsync, rename) after every append, so deleting the last lines of the log — which leaves a valid
//! chain — is detected. A head exactly one record behind the log (the last record's `prev` equals
//! the head's hash) is the trace of an append interrupted between the log's fsync and the head's
//! rename: [`verify`] reports it as a warning and the next append repairs it. A missing head is read
//! as "no records", so it is fine for an empty log (and, by the same rule, one record).
//!
//! # Concurrency
//!
//! [`AuditLog::append`] opens the log, takes an exclusive lock on it (`flock` on Unix), reads and
//! checks the last record and the head, writes the new line with one `write`, fsyncs, replaces the
//! head, and unlocks. Several handles, threads or processes may append to one log. [`verify`]
//! takes a shared lock, so it never sees a half-written line.
//!
//! # Secrets
//!
//! `details` is caller-supplied. [`redact`] replaces the value of every key that contains (ASCII
//! case-insensitively) `secret`, `password`, `passwd`, `token`, `credential`, `private` or `value`
//! with `"[redacted]"`, at any depth; `append` calls it on every entry as defence in depth.
//! Callers must still never put a secret value into an audit entry.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The `prev` of the first record: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Key fragments whose values [`redact`] replaces.
const SENSITIVE: [&str; 7] = [
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "private",
    "value",
];

/// What a caller records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who ran Closeout: `$CLOSEOUT_ACTOR`, else the OS user. An approver is named in `details`.
    pub actor: String,
    /// What happened, as a dotted name (`run.started`, `action.done`, `run.finished`,
    /// `override.protected`, ...).
    pub event: String,
    /// The run the entry belongs to, if any.
    pub run: Option<String>,
    /// The identity the entry is about, if any.
    pub identity: Option<String>,
    /// Event-specific JSON. [`AuditLog::append`] redacts it before writing; never put a secret in
    /// it anyway.
    pub details: Value,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain: 1 for the first record, then +1 per record, without gaps.
    pub seq: u64,
    /// When the record was appended (UTC); written with microseconds.
    #[serde(serialize_with = "serialize_at")]
    pub at: DateTime<Utc>,
    /// Who acted (see [`AuditEntry::actor`]).
    pub actor: String,
    /// What happened (see [`AuditEntry::event`]).
    pub event: String,
    /// The run id, or `null`.
    pub run: Option<String>,
    /// The identity id, or `null`.
    pub identity: Option<String>,
    /// The entry's details as written, i.e. after [`redact`].
    pub details: Value,
    /// The previous record's `hash`; [`GENESIS`] for the first record.
    pub prev: String,
    /// Lower-case hex SHA-256 of `prev` followed by the canonical JSON of the record without this
    /// field.
    pub hash: String,
}

fn format_at(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn serialize_at<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_at(at))
}

impl AuditRecord {
    /// The record as a JSON object without the `hash` field: what the hash covers.
    fn unhashed(&self) -> Map<String, Value> {
        let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let mut map = Map::new();
        map.insert("seq".into(), Value::from(self.seq));
        map.insert("at".into(), Value::String(format_at(&self.at)));
        map.insert("actor".into(), Value::String(self.actor.clone()));
        map.insert("event".into(), Value::String(self.event.clone()));
        map.insert("run".into(), opt(&self.run));
        map.insert("identity".into(), opt(&self.identity));
        map.insert("details".into(), self.details.clone());
        map.insert("prev".into(), Value::String(self.prev.clone()));
        map
    }

    /// The record's line in the log, without the trailing newline.
    pub fn to_line(&self) -> String {
        let mut map = self.unhashed();
        map.insert("hash".into(), Value::String(self.hash.clone()));
        canonical_json(&Value::Object(map))
    }
}

/// The hash of a record: hex SHA-256 of `prev` followed by the canonical JSON of `unhashed`.
fn chain_hash(prev: &str, unhashed: &Map<String, Value>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical_json(&Value::Object(unhashed.clone())).as_bytes());
    hex::encode(hasher.finalize())
}

/// Compact JSON with the keys of every object sorted by their UTF-8 bytes.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // `Value`'s Display is serde_json's compact, escaped form.
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|word| key.contains(word))
}

/// Replace, at any depth, the value of every key containing `secret`, `password`, `passwd`,
/// `token`, `credential`, `private` or `value` (ASCII case-insensitive) with `"[redacted]"`.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if is_sensitive(key) {
                    *item = Value::String(REDACTED.to_string());
                } else {
                    redact(item);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// What is wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A line is not a well-formed record: not UTF-8, not JSON, a field missing or unknown, or
    /// `prev`/`hash` not 64 lower-case hex digits. The message says which.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// An empty line; the writer never produces one, so the file was edited.
    #[error("blank line")]
    BlankLine,
    /// The last line has no trailing newline: an append was cut short or the file truncated.
    #[error("incomplete last line (no trailing newline): an append was cut short or the file was truncated")]
    Incomplete,
    /// A record's content no longer matches its own hash: the record was edited.
    #[error("record seq {seq} was edited: stored hash {stored}, computed {computed}")]
    HashMismatch {
        /// The edited record's seq.
        seq: u64,
        /// The hash written on the line.
        stored: String,
        /// The hash its content has now.
        computed: String,
    },
    /// A record's hash matches but the line is not in canonical form (reformatted, keys
    /// reordered): the line was edited.
    #[error("record seq {seq} is not in canonical form: the line was edited")]
    NotCanonical {
        /// The record's seq.
        seq: u64,
    },
    /// A record appears before its turn: records were moved.
    #[error("expected seq {expected}, found seq {found}: records are out of order (seq {expected} is on line {expected_on_line})")]
    Reordered {
        /// The seq this line should have held.
        expected: u64,
        /// The seq it holds.
        found: u64,
        /// The 1-based line where the expected record was found later in the file.
        expected_on_line: u64,
    },
    /// The seq jumps forward and the skipped records are nowhere in the file: they were deleted.
    #[error("expected seq {expected}, found seq {found}: {} record(s) deleted before this line", .found - .expected)]
    Deleted {
        /// The first missing seq.
        expected: u64,
        /// The seq found instead; `found - expected` records are missing.
        found: u64,
    },
    /// The seq goes backwards or repeats: records were duplicated or moved.
    #[error(
        "expected seq {expected}, found seq {found} again: records duplicated or out of order"
    )]
    Repeated {
        /// The seq this line should have held.
        expected: u64,
        /// The earlier seq it holds.
        found: u64,
    },
    /// A record's `prev` is not the hash of the record before it: the chain is broken (a record
    /// was replaced, or the log spliced from two chains).
    #[error("record seq {seq} does not chain to the record before it: prev {prev}, but that record's hash is {expected}")]
    PrevMismatch {
        /// The record whose `prev` is wrong.
        seq: u64,
        /// The `prev` it holds.
        prev: String,
        /// The hash of the record before it.
        expected: String,
    },
    /// The head file is gone while the log holds more than one record, so a deletion at the end
    /// could not be detected.
    #[error("head file {head} is missing but the log holds {records} records: records at the end may have been deleted")]
    HeadMissing {
        /// The head file's path.
        head: String,
        /// Records in the log.
        records: u64,
    },
    /// The head names a later record than the log's last: records were deleted from the end.
    #[error("head file says the last record is seq {head_seq}, but the log ends at seq {last_seq}: {} record(s) deleted from the end", .head_seq - .last_seq)]
    HeadAhead {
        /// The seq the head file records.
        head_seq: u64,
        /// The last seq in the log.
        last_seq: u64,
    },
    /// The head and the last record disagree in a way no interrupted append explains (the log's
    /// end or the head was replaced).
    #[error("head file (seq {head_seq}, hash {head_hash}) does not match the last record (seq {last_seq}, hash {last_hash})")]
    HeadMismatch {
        /// The seq the head file records.
        head_seq: u64,
        /// The hash the head file records.
        head_hash: String,
        /// The log's last seq.
        last_seq: u64,
        /// The log's last hash.
        last_hash: String,
    },
    /// The head file is not `{"hash":"<64 hex>","seq":N}`.
    #[error("malformed head file {head}: {reason}")]
    HeadMalformed {
        /// The head file's path.
        head: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// An error reading, appending to or verifying the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file system refused: the log or its head cannot be created, opened, locked, read,
    /// written or synced. Nothing says the log itself is damaged.
    #[error("audit log {}: cannot {action}: {source}", .path.display())]
    Io {
        /// The log or head file the operation was on.
        path: PathBuf,
        /// What was being done, as a phrase after "cannot" (`lock`, `read the head file`, ...).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The log fails verification; `line` is 1-based when the problem is on a line.
    #[error("{}{}: {violation}", .path.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Integrity {
        /// The log or head file that is not intact.
        path: PathBuf,
        /// The 1-based line of the violation; `None` when it is not tied to a line (a malformed
        /// head file, or the check of the log's end before an append).
        line: Option<u64>,
        /// What is wrong.
        violation: Violation,
    },
    /// An asynchronous append never ran (the runtime is shutting down).
    #[error("audit log: {0}")]
    Interrupted(#[from] super::blocking::Interrupted),
}

impl AuditError {
    /// The integrity violation, when the log was read but is not intact.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            AuditError::Integrity { violation, .. } => Some(violation),
            AuditError::Io { .. } | AuditError::Interrupted(_) => None,
        }
    }

    /// The 1-based line of the violation, when it is on a line.
    pub fn line(&self) -> Option<u64> {
        match self {
            AuditError::Integrity { line, .. } => *line,
            AuditError::Io { .. } | AuditError::Interrupted(_) => None,
        }
    }
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> AuditError {
    let path = path.to_path_buf();
    move |source| AuditError::Io {
        path,
        action,
        source,
    }
}

/// The outcome of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records in the log.
    pub records: u64,
    /// The last record's seq (0 for an empty log).
    pub last_seq: u64,
    /// The last record's hash ([`GENESIS`] for an empty log).
    pub last_hash: String,
    /// Benign findings, e.g. a head one record behind after an interrupted append.
    pub warnings: Vec<String>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.records == 0 {
            write!(f, "ok: empty log (0 records)")?;
        } else {
            write!(
                f,
                "ok: {} record{}, hash chain intact, head matches (last seq {}, hash {})",
                self.records,
                if self.records == 1 { "" } else { "s" },
                self.last_seq,
                self.last_hash
            )?;
        }
        for warning in &self.warnings {
            write!(f, "; warning: {warning}")?;
        }
        Ok(())
    }
}

/// The content of the head file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    hash: String,
    seq: u64,
}

/// How the head relates to the last record.
enum HeadState {
    Matches,
    /// The head is one record behind: an append was interrupted before the head was replaced.
    OneBehind,
}

fn head_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".head");
    PathBuf::from(name)
}

fn read_head(head: &Path) -> Result<Option<Head>, AuditError> {
    let text = match std::fs::read_to_string(head) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(head, "read the head file")(e)),
    };
    let malformed = |reason: String| AuditError::Integrity {
        path: head.to_path_buf(),
        line: None,
        violation: Violation::HeadMalformed {
            head: head.display().to_string(),
            reason,
        },
    };
    let parsed: Head =
        serde_json::from_str(text.trim_end()).map_err(|e| malformed(e.to_string()))?;
    if !is_hex64(&parsed.hash) {
        return Err(malformed("hash is not 64 lower-case hex digits".into()));
    }
    Ok(Some(parsed))
}

/// Compare the head with the last record of the log (`None` for an empty log).
fn compare_head(
    head_file: &Path,
    head: Option<&Head>,
    last: Option<(u64, &str, &str)>,
) -> Result<HeadState, Violation> {
    // A missing head reads as "no records yet".
    let (head_seq, head_hash) = head.map_or((0, GENESIS), |h| (h.seq, h.hash.as_str()));
    let (last_seq, last_hash, last_prev) = last.unwrap_or((0, GENESIS, GENESIS));
    if head_seq == last_seq && head_hash == last_hash {
        return Ok(HeadState::Matches);
    }
    if head_seq + 1 == last_seq && head_hash == last_prev {
        return Ok(HeadState::OneBehind);
    }
    if head.is_none() {
        return Err(Violation::HeadMissing {
            head: head_file.display().to_string(),
            records: last_seq,
        });
    }
    if head_seq > last_seq {
        return Err(Violation::HeadAhead { head_seq, last_seq });
    }
    Err(Violation::HeadMismatch {
        head_seq,
        head_hash: head_hash.to_string(),
        last_seq,
        last_hash: last_hash.to_string(),
    })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parse and self-check one line (without its newline): well-formed, hash matches the content,
/// canonical form.
fn check_line(line: &[u8]) -> Result<AuditRecord, Violation> {
    if line.is_empty() {
        return Err(Violation::BlankLine);
    }
    let text =
        std::str::from_utf8(line).map_err(|e| Violation::Malformed(format!("not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| Violation::Malformed(format!("invalid JSON at column {}: {e}", e.column())))?;
    let Value::Object(mut map) = value.clone() else {
        return Err(Violation::Malformed("not a JSON object".into()));
    };
    let record: AuditRecord =
        serde_json::from_value(value.clone()).map_err(|e| Violation::Malformed(e.to_string()))?;
    for (field, v) in [("prev", &record.prev), ("hash", &record.hash)] {
        if !is_hex64(v) {
            return Err(Violation::Malformed(format!(
                "{field} is not 64 lower-case hex digits"
            )));
        }
    }
    map.remove("hash");
    let computed = chain_hash(&record.prev, &map);
    if computed != record.hash {
        return Err(Violation::HashMismatch {
            seq: record.seq,
            stored: record.hash,
            computed,
        });
    }
    if canonical_json(&value) != text {
        return Err(Violation::NotCanonical { seq: record.seq });
    }
    Ok(record)
}

/// The last line of a file, without its newline, and whether it ended with one. `None` when the
/// file is empty.
fn read_last_line(file: &mut File) -> io::Result<Option<(Vec<u8>, bool)>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    const CHUNK: u64 = 8192;
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        let terminated = tail.last() == Some(&b'\n');
        let body = if terminated {
            &tail[..tail.len() - 1]
        } else {
            &tail[..]
        };
        if let Some(newline) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some((body[newline + 1..].to_vec(), terminated)));
        }
        if start == 0 {
            return Ok(Some((body.to_vec(), terminated)));
        }
    }
}

/// Make a rename durable by syncing the directory that holds it (Unix; a no-op elsewhere).
fn sync_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A handle on an audit log. Cheap; every append opens, locks and closes the file, so handles
/// in several threads or processes append to one chain.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    head: PathBuf,
}

impl AuditLog {
    /// Open (creating it and its parent directories when missing) the log at `path`. The chain is
    /// not verified here; [`AuditLog::append`] checks the last record and the head.
    pub fn open(path: impl AsRef<Path>) -> Result<AuditLog, AuditError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err(&path, "create its directory"))?;
        }
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err(&path, "open for appending"))?;
        let head = head_path(&path);
        Ok(AuditLog { path, head })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head file, `<path>.head`.
    pub fn head_path(&self) -> &Path {
        &self.head
    }

    /// Append one record, chained to the last one. `details` is redacted first. Refuses (with
    /// [`AuditError::Integrity`]) to append to a log whose last record or head is not intact, so
    /// a deletion at the end is never papered over by new records.
    pub fn append(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let path = &self.path;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path, "open for appending"))?;
        file.lock().map_err(io_err(path, "lock"))?;
        // The lock is released when `file` is closed, on every path out of this function.

        let integrity = |violation: Violation| AuditError::Integrity {
            path: path.clone(),
            line: None,
            violation,
        };
        let last = match read_last_line(&mut file).map_err(io_err(path, "read the last record"))? {
            None => None,
            Some((_, false)) => return Err(integrity(Violation::Incomplete)),
            Some((line, true)) => Some(check_line(&line).map_err(integrity)?),
        };
        let head = read_head(&self.head)?;
        compare_head(
            &self.head,
            head.as_ref(),
            last.as_ref()
                .map(|r| (r.seq, r.hash.as_str(), r.prev.as_str())),
        )
        .map_err(integrity)?;

        let (seq, prev) = last.map_or((1, GENESIS.to_string()), |r| (r.seq + 1, r.hash));
        let now = Utc::now();
        let at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let mut details = entry.details;
        redact(&mut details);
        let mut record = AuditRecord {
            seq,
            at,
            actor: entry.actor,
            event: entry.event,
            run: entry.run,
            identity: entry.identity,
            details,
            prev,
            hash: String::new(),
        };
        record.hash = chain_hash(&record.prev, &record.unhashed());
        let mut line = record.to_line();
        line.push('\n');
        file.write_all(line.as_bytes())
            .map_err(io_err(path, "append a record"))?;
        file.sync_data().map_err(io_err(path, "fsync"))?;
        self.write_head(&Head {
            hash: record.hash.clone(),
            seq: record.seq,
        })?;
        drop(file);
        Ok(record)
    }

    /// [`AuditLog::append`] off the async runtime (it locks the file and fsyncs it and its head;
    /// see [`super::blocking`]).
    pub async fn append_async(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let log = self.clone();
        super::blocking::off_runtime(move || log.append(entry)).await
    }

    /// Replace the head file atomically. Called with the log's exclusive lock held, so the
    /// temporary file's name is ours alone.
    fn write_head(&self, head: &Head) -> Result<(), AuditError> {
        let mut tmp = self.head.as_os_str().to_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let text = format!(
            "{}\n",
            canonical_json(&serde_json::json!({"hash": head.hash, "seq": head.seq}))
        );
        let err = io_err(
            &self.head,
            "write the head file (the record itself was appended)",
        );
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.head)?;
            sync_dir(&self.head)
        };
        write().map_err(err)
    }
}

/// Verify the whole log at `path`: every line well-formed and canonical, every hash matching its
/// record, `seq` counting 1, 2, 3, ..., every `prev` equal to the hash before it, and the head file
/// matching the last record. A missing or empty log (with no head, or a head one record behind
/// nothing) verifies as 0 records. The first problem found is returned with its line.
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    let path = path.as_ref();
    let head_file = head_path(path);
    let integrity = |line: Option<u64>, violation: Violation| AuditError::Integrity {
        path: path.to_path_buf(),
        line,
        violation,
    };
    let file = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut records = 0u64;
    let mut last: Option<AuditRecord> = None;
    let mut line_no = 0u64;
    // Hold the shared lock (if the file exists) until the head has been read too.
    let _guard = match file {
        None => None,
        Some(file) => {
            file.lock_shared().map_err(io_err(path, "lock"))?;
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader
                    .read_until(b'\n', &mut buf)
                    .map_err(io_err(path, "read"))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                let at = Some(line_no);
                if buf.last() != Some(&b'\n') {
                    return Err(integrity(at, Violation::Incomplete));
                }
                let record = check_line(&buf[..buf.len() - 1]).map_err(|v| integrity(at, v))?;
                let expected = last.as_ref().map_or(1, |r| r.seq + 1);
                if record.seq > expected {
                    let violation = match find_seq_line(path, expected)? {
                        Some(expected_on_line) => Violation::Reordered {
                            expected,
                            found: record.seq,
                            expected_on_line,
                        },
                        None => Violation::Deleted {
                            expected,
                            found: record.seq,
                        },
                    };
                    return Err(integrity(at, violation));
                }
                if record.seq < expected {
                    let violation = Violation::Repeated {
                        expected,
                        found: record.seq,
                    };
                    return Err(integrity(at, violation));
                }
                let expected_prev = last.as_ref().map_or(GENESIS, |r| r.hash.as_str());
                if record.prev != expected_prev {
                    let violation = Violation::PrevMismatch {
                        seq: record.seq,
                        prev: record.prev.clone(),
                        expected: expected_prev.to_string(),
                    };
                    return Err(integrity(at, violation));
                }
                records += 1;
                last = Some(record);
            }
            Some(reader)
        }
    };
    let head = read_head(&head_file)?;
    let last_line = (line_no > 0).then_some(line_no);
    let state = compare_head(
        &head_file,
        head.as_ref(),
        last.as_ref()
            .map(|r| (r.seq, r.hash.as_str(), r.prev.as_str())),
    )
    .map_err(|v| integrity(last_line, v))?;
    let mut warnings = Vec::new();
    if let (HeadState::OneBehind, Some(r)) = (state, &last) {
        if r.seq > 1 || head.is_some() {
            warnings.push(format!(
                "head file is one record behind (seq {} of {}): an append was interrupted before the head was updated; the next append repairs it",
                r.seq - 1,
                r.seq
            ));
        }
    }
    Ok(VerifyReport {
        records,
        last_seq: last.as_ref().map_or(0, |r| r.seq),
        last_hash: last.map_or_else(|| GENESIS.to_string(), |r| r.hash),
        warnings,
    })
}

/// The 1-based line holding the record with `seq`, for telling a reorder from a deletion.
fn find_seq_line(path: &Path, seq: u64) -> Result<Option<u64>, AuditError> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    let file = File::open(path).map_err(io_err(path, "open"))?;
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(io_err(path, "read"))?;
        if let Ok(found) = serde_json::from_slice::<SeqOnly>(&line) {
            if found.seq == seq {
                return Ok(Some(index as u64 + 1));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(event: &str, details: Value) -> AuditEntry {
        AuditEntry {
            actor: "tester".into(),
            event: event.into(),
            run: Some("run-1".into()),
            identity: Some("E1001".into()),
            details,
        }
    }

    /// A log with `n` records in a fresh temp dir.
    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::open(dir.path().join("nested/audit.jsonl")).expect("open");
        for i in 0..n {
            log.append(entry(
                &format!("event.{i}"),
                json!({"i": i, "b": [1, {"z": 1, "a": 2}]}),
            ))
            .expect("append");
        }
        (dir, log)
    }

    fn lines(log: &AuditLog) -> Vec<String> {
        std::fs::read_to_string(log.path())
            .expect("read")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write_lines(log: &AuditLog, lines: &[String]) {
        let mut text = lines.join("\n");
        if !lines.is_empty() {
            text.push('\n');
        }
        std::fs::write(log.path(), text).expect("write");
    }

    fn verify_err(log: &AuditLog) -> AuditError {
        match verify(log.path()) {
            Ok(report) => panic!("expected a violation, got {report}"),
            Err(e) => e,
        }
    }

    #[test]
    fn append_chains_and_verifies() {
        let (_dir, log) = log_with(3);
        let all = lines(&log);
        assert_eq!(all.len(), 3);
        let records: Vec<AuditRecord> = all
            .iter()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect();
        assert_eq!(records[0].seq, 1);
        assert_eq!(records[0].prev, GENESIS);
        assert_eq!(records[1].prev, records[0].hash);
        assert_eq!(records[2].prev, records[1].hash);
        assert_eq!(records[2].run.as_deref(), Some("run-1"));
        let report = verify(log.path()).expect("verifies");
        assert_eq!(report.records, 3);
        assert_eq!(report.last_seq, 3);
        assert_eq!(report.last_hash, records[2].hash);
        assert!(report.warnings.is_empty());
        assert!(report.to_string().starts_with("ok: 3 records"), "{report}");
        let head = std::fs::read_to_string(log.head_path()).expect("head");
        assert_eq!(
            head,
            format!("{{\"hash\":\"{}\",\"seq\":3}}\n", records[2].hash)
        );
        // Reopening continues the chain.
        let again = AuditLog::open(log.path()).expect("reopen");
        let r = again.append(entry("more", json!({}))).expect("append");
        assert_eq!((r.seq, r.prev.as_str()), (4, records[2].hash.as_str()));
        assert_eq!(verify(log.path()).expect("verifies").records, 4);
    }

    #[test]
    fn line_format_and_hash_are_as_documented() {
        let (_dir, log) = log_with(2);
        let line = &lines(&log)[1];
        assert!(
            line.starts_with("{\"actor\":\"tester\",\"at\":\""),
            "{line}"
        );
        assert!(
            line.contains("\"details\":{\"b\":[1,{\"a\":2,\"z\":1}],\"i\":1}"),
            "{line}"
        );
        // Recompute the hash independently: sha256(prev hex || line without the hash field).
        let mut value: Value = serde_json::from_str(line).expect("json");
        let map = value.as_object_mut().expect("object");
        let hash = map
            .remove("hash")
            .and_then(|h| h.as_str().map(str::to_string))
            .expect("hash");
        let prev = map
            .get("prev")
            .and_then(Value::as_str)
            .expect("prev")
            .to_string();
        let without: String = serde_json::to_string(&value).expect("to_string");
        let mut hasher = Sha256::new();
        hasher.update(prev.as_bytes());
        hasher.update(canonical_json(&serde_json::from_str(&without).expect("reparse")).as_bytes());
        assert_eq!(hex::encode(hasher.finalize()), hash);
        let at = value.get("at").and_then(Value::as_str).expect("at");
        assert!(
            at.ends_with('Z') && at.len() == "2026-05-01T12:00:00.123456Z".len(),
            "{at}"
        );
    }

    #[test]
    fn missing_or_empty_log_verifies_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("never.jsonl");
        let report = verify(&path).expect("missing log");
        assert_eq!((report.records, report.last_hash.as_str()), (0, GENESIS));
        assert_eq!(report.to_string(), "ok: empty log (0 records)");
        let log = AuditLog::open(&path).expect("open creates the file");
        assert!(path.exists());
        assert_eq!(verify(log.path()).expect("empty log").records, 0);
    }

    #[test]
    fn edited_field_is_detected_at_its_line() {
        let (_dir, log) = log_with(4);
        let mut all = lines(&log);
        all[2] = all[2].replace("\"actor\":\"tester\"", "\"actor\":\"mallory\"");
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(3));
        assert!(
            matches!(e.violation(), Some(Violation::HashMismatch { seq: 3, .. })),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("audit.jsonl:3: record seq 3 was edited"),
            "{e}"
        );
    }

    #[test]
    fn edited_record_with_recomputed_hash_breaks_the_next_link() {
        let (_dir, log) = log_with(3);
        let mut all = lines(&log);
        let mut rec: AuditRecord = serde_json::from_str(&all[1]).expect("record");
        rec.actor = "mallory".into();
        rec.hash = chain_hash(&rec.prev, &rec.unhashed());
        all[1] = rec.to_line();
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(3));
        assert!(
            matches!(e.violation(), Some(Violation::PrevMismatch { seq: 3, .. })),
            "{e}"
        );
    }

    #[test]
    fn non_canonical_line_is_detected() {
        let (_dir, log) = log_with(2);
        let mut all = lines(&log);
        all[0] = all[0].replacen(':', ": ", 1);
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(1));
        assert_eq!(e.violation(), Some(&Violation::NotCanonical { seq: 1 }));
    }

    #[test]
    fn swapped_lines_are_detected_as_reordered() {
        let (_dir, log) = log_with(4);
        let mut all = lines(&log);
        all.swap(1, 2);
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(2));
        assert_eq!(
            e.violation(),
            Some(&Violation::Reordered {
                expected: 2,
                found: 3,
                expected_on_line: 3
            })
        );
        assert!(e.to_string().contains("out of order"), "{e}");
    }

    #[test]
    fn deleted_middle_and_first_lines_are_detected() {
        let (_dir, log) = log_with(4);
        let mut all = lines(&log);
        all.remove(1);
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(2));
        assert_eq!(
            e.violation(),
            Some(&Violation::Deleted {
                expected: 2,
                found: 3
            })
        );
        assert!(
            e.to_string()
                .ends_with("1 record(s) deleted before this line"),
            "{e}"
        );

        let (_dir, log) = log_with(3);
        let mut all = lines(&log);
        all.remove(0);
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(1));
        assert_eq!(
            e.violation(),
            Some(&Violation::Deleted {
                expected: 1,
                found: 2
            })
        );
    }

    #[test]
    fn duplicated_line_is_detected() {
        let (_dir, log) = log_with(3);
        let mut all = lines(&log);
        all.insert(2, all[1].clone());
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(3));
        assert_eq!(
            e.violation(),
            Some(&Violation::Repeated {
                expected: 3,
                found: 2
            })
        );
    }

    #[test]
    fn deleted_last_lines_are_detected_by_the_head() {
        let (_dir, log) = log_with(4);
        let mut all = lines(&log);
        all.truncate(2);
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(2));
        assert_eq!(
            e.violation(),
            Some(&Violation::HeadAhead {
                head_seq: 4,
                last_seq: 2
            })
        );
        assert!(
            e.to_string().contains("2 record(s) deleted from the end"),
            "{e}"
        );
        // Appending must not paper over the deletion.
        let e = log.append(entry("after", json!({}))).expect_err("refused");
        assert!(
            matches!(e.violation(), Some(Violation::HeadAhead { .. })),
            "{e}"
        );

        // Emptying the log entirely is caught too.
        write_lines(&log, &[]);
        let e = verify_err(&log);
        assert_eq!(
            e.violation(),
            Some(&Violation::HeadAhead {
                head_seq: 4,
                last_seq: 0
            })
        );
    }

    #[test]
    fn deleted_head_file_and_rewritten_head_are_detected() {
        let (_dir, log) = log_with(3);
        std::fs::remove_file(log.head_path()).expect("rm head");
        let e = verify_err(&log);
        assert!(
            matches!(
                e.violation(),
                Some(Violation::HeadMissing { records: 3, .. })
            ),
            "{e}"
        );
        assert!(log.append(entry("after", json!({}))).is_err());

        let (_dir, log) = log_with(2);
        std::fs::write(
            log.head_path(),
            format!("{{\"hash\":\"{}\",\"seq\":2}}\n", "a".repeat(64)),
        )
        .expect("write");
        let e = verify_err(&log);
        assert!(
            matches!(
                e.violation(),
                Some(Violation::HeadMismatch { head_seq: 2, .. })
            ),
            "{e}"
        );
        std::fs::write(log.head_path(), "not json").expect("write");
        let e = verify_err(&log);
        assert!(
            matches!(e.violation(), Some(Violation::HeadMalformed { .. })),
            "{e}"
        );
    }

    #[test]
    fn interrupted_append_is_a_warning_and_the_next_append_repairs_it() {
        let (_dir, log) = log_with(3);
        let records: Vec<AuditRecord> = lines(&log)
            .iter()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect();
        // The state after a crash between the log's fsync and the head's rename.
        std::fs::write(
            log.head_path(),
            format!("{{\"hash\":\"{}\",\"seq\":2}}\n", records[1].hash),
        )
        .expect("write");
        let report = verify(log.path()).expect("tolerated");
        assert_eq!(report.records, 3);
        assert_eq!(report.warnings.len(), 1, "{report}");
        log.append(entry("next", json!({})))
            .expect("append repairs");
        let report = verify(log.path()).expect("ok");
        assert_eq!((report.records, report.warnings.len()), (4, 0));

        // A crash before the very first head was written leaves one record and no head.
        let (_dir, log) = log_with(1);
        std::fs::remove_file(log.head_path()).expect("rm head");
        assert_eq!(verify(log.path()).expect("one record, no head").records, 1);
    }

    #[test]
    fn malformed_and_incomplete_lines_are_named() {
        let (_dir, log) = log_with(3);
        let mut all = lines(&log);
        all[1] = "{\"seq\":2,".into();
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert_eq!(e.line(), Some(2));
        assert!(
            matches!(e.violation(), Some(Violation::Malformed(_))),
            "{e}"
        );
        assert!(
            e.to_string().contains(":2: malformed record: invalid JSON"),
            "{e}"
        );

        let (_dir, log) = log_with(2);
        let mut all = lines(&log);
        all.insert(1, String::new());
        write_lines(&log, &all);
        assert_eq!(verify_err(&log).violation(), Some(&Violation::BlankLine));

        let (_dir, log) = log_with(2);
        let mut all = lines(&log);
        all[0] = all[0].replacen("{", "{\"extra\":1,", 1);
        write_lines(&log, &all);
        let e = verify_err(&log);
        assert!(
            matches!(e.violation(), Some(Violation::Malformed(m)) if m.contains("extra")),
            "{e}"
        );

        let (_dir, log) = log_with(2);
        let text = std::fs::read_to_string(log.path()).expect("read");
        std::fs::write(log.path(), &text[..text.len() - 10]).expect("truncate");
        let e = verify_err(&log);
        assert_eq!(
            (e.line(), e.violation()),
            (Some(2), Some(&Violation::Incomplete))
        );
        assert!(matches!(
            log.append(entry("x", json!({})))
                .err()
                .and_then(|e| e.violation().cloned()),
            Some(Violation::Incomplete)
        ));
    }

    #[test]
    fn concurrent_appends_form_one_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        const THREADS: usize = 8;
        const EACH: usize = 25;
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let path = path.clone();
                s.spawn(move || {
                    // Each thread has its own handle and file descriptions, as separate processes do.
                    let log = AuditLog::open(&path).expect("open");
                    for i in 0..EACH {
                        log.append(entry("concurrent", json!({"thread": t, "i": i})))
                            .expect("append");
                    }
                });
            }
        });
        let report = verify(&path).expect("valid chain");
        assert_eq!(report.records, (THREADS * EACH) as u64);
        assert!(report.warnings.is_empty());
    }

    /// Set in a child process of [`appends_from_several_processes_form_one_chain`].
    const CHILD_LOG: &str = "CLOSEOUT_TEST_AUDIT_CHILD_LOG";

    #[test]
    fn appends_from_several_processes_form_one_chain() {
        const PROCESSES: usize = 4;
        const EACH: usize = 20;
        if let Some(path) = std::env::var_os(CHILD_LOG) {
            let log = AuditLog::open(PathBuf::from(path)).expect("child open");
            for i in 0..EACH {
                log.append(entry("process", json!({"pid": std::process::id(), "i": i})))
                    .expect("child append");
            }
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let exe = std::env::current_exe().expect("test binary");
        let children: Vec<std::process::Child> = (0..PROCESSES)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "store::audit::tests::appends_from_several_processes_form_one_chain",
                        "--test-threads=1",
                    ])
                    .env(CHILD_LOG, &path)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("spawn child")
            })
            .collect();
        for mut child in children {
            assert!(child.wait().expect("wait").success());
        }
        let report = verify(&path).expect("valid chain");
        assert_eq!(report.records, (PROCESSES * EACH) as u64);
        let pids: std::collections::BTreeSet<String> = lines(&AuditLog::open(&path).expect("open"))
            .iter()
            .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
            .map(|r| r.details["pid"].to_string())
            .collect();
        assert_eq!(pids.len(), PROCESSES);
    }

    #[test]
    fn redact_replaces_sensitive_keys_at_any_depth() {
        let mut v = json!({
            "Password": "p", "client_secret": 1, "AccessToken": {"x": "y"},
            "credentials": ["a"], "private_key": "k", "SecretValue": "s", "new_value": "v",
            "key": "run-1/stage/step", "verb": "rotate",
            "nested": [{"db_PASSWORD": "p2", "ok": "fine"}],
        });
        redact(&mut v);
        assert_eq!(
            v,
            json!({
                "Password": REDACTED, "client_secret": REDACTED, "AccessToken": REDACTED,
                "credentials": REDACTED, "private_key": REDACTED, "SecretValue": REDACTED,
                "new_value": REDACTED, "key": "run-1/stage/step", "verb": "rotate",
                "nested": [{"db_PASSWORD": REDACTED, "ok": "fine"}],
            })
        );
    }

    #[test]
    fn canary_secret_never_reaches_the_log() {
        const CANARY: &str = "CANARY-7f3a9c-do-not-log";
        let (_dir, log) = log_with(0);
        let record = log
            .append(entry(
                "secret.rotated",
                json!({
                    "secret": "db-password",
                    "outcome": {"NewSecretValue": CANARY, "versions": [{"token": CANARY}]},
                    "Private": {"pem": CANARY},
                }),
            ))
            .expect("append");
        assert!(!record.to_line().contains(CANARY));
        let text = std::fs::read_to_string(log.path()).expect("read");
        assert!(!text.contains(CANARY), "{text}");
        assert!(text.contains(REDACTED));
        assert_eq!(verify(log.path()).expect("ok").records, 1);
    }
}
