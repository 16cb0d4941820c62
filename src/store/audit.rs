//! The append-only, hash-chained audit log: a JSON-lines file, or a table of the PostgreSQL store.
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
//! # Backends
//!
//! [`AuditLog::for_store`] picks where the chain lives: the file above (`[audit] path`) on the
//! SQLite store, or, when `[store] url` names a PostgreSQL store, its `audit_log` table
//! (migration `V3__audit.sql`), so every `closeout serve` replica appends to one chain. A row
//! holds the record's line exactly as the file would (same canonical JSON, hash, redaction and
//! signature: [`AuditLog::append`] seals a record the same way for both), with `seq`, `at`,
//! `event`, `run`, `identity` and `hash` repeated in columns for queries. An append is one
//! transaction: an advisory lock serialises appenders across replicas, the last row and the
//! `audit_head` row are checked as the file and its head are, and the new row and the head row
//! (the head file's part: a deleted last row is detected) commit together — so, unlike the
//! file, a head one record behind is a violation, not an interrupted append. [`AuditLog::verify`]
//! reads the table in one snapshot in `seq` order with the file's checks (a row's position in
//! `seq` order plays the line number), plus every row's columns agreeing with its record;
//! [`AuditLog::export`] prints the rows as the file's lines.
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

use super::pg::{PgConn, PgError, PgStore};
use super::signing::{Domain, KeyRing, PrivateKey, SignatureCheck};
use crate::config::{AuditConfig, StoreConfig};
use std::sync::Arc;

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
    /// field and without `sig`.
    pub hash: String,
    /// The id of the key that signed the record (covered by `hash`); absent on an unsigned
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Ed25519 signature (128 hex digits) of `closeout-audit-record-v1\n<hash>` by `key`; absent
    /// on an unsigned record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
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
        if let Some(key) = &self.key {
            map.insert("key".into(), Value::String(key.clone()));
        }
        map
    }

    /// The record's line in the log, without the trailing newline.
    pub fn to_line(&self) -> String {
        let mut map = self.unhashed();
        map.insert("hash".into(), Value::String(self.hash.clone()));
        if let Some(sig) = &self.sig {
            map.insert("sig".into(), Value::String(sig.clone()));
        }
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
    /// A record carries no signature although the log is verified against public keys: it was
    /// written without a signing key, or forged (appended or inserted by someone without it).
    #[error(
        "record seq {seq} is not signed: it was written without the audit signing key, or forged"
    )]
    Unsigned {
        /// The record.
        seq: u64,
    },
    /// A record names a key that is not among the public keys given.
    #[error("record seq {seq} is signed by key {key}, which is not among the public keys given ({known})")]
    UnknownKey {
        /// The record.
        seq: u64,
        /// The key id it names.
        key: String,
        /// The key ids given, comma-separated.
        known: String,
    },
    /// A record's signature does not verify: its content was changed and its hash (and the
    /// chain after it) recomputed, or the record was forged.
    #[error("record seq {seq}: signature by key {key} does not verify: the record was edited and the chain recomputed, or forged")]
    BadSignature {
        /// The record.
        seq: u64,
        /// The key id it names.
        key: String,
    },
    /// The head file is not signed by a known key although the log is verified against public
    /// keys: it was rewritten, so records at the end may have been cut.
    #[error("head file {head} {reason}: it was rewritten, so records at the end of the log may have been cut")]
    HeadSignature {
        /// The head file's path.
        head: String,
        /// What is wrong (`is not signed`, `is signed by unknown key K`, `signature does not verify`).
        reason: String,
    },
    /// The head file is not `{"hash":"<64 hex>","seq":N}`.
    #[error("malformed head file {head}: {reason}")]
    HeadMalformed {
        /// The head file's path.
        head: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A row of the PostgreSQL `audit_log` table has a column that says something else than the
    /// record it holds: the row was edited.
    #[error("record seq {seq}: the row's {column} column disagrees with the record it holds: the row was edited")]
    RowDisagrees {
        /// The record's seq.
        seq: u64,
        /// The column.
        column: &'static str,
    },
}

/// Where an audit log lives, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogName {
    /// The JSON-lines file.
    File(PathBuf),
    /// The `audit_log` table of the PostgreSQL store `user@host:port/database`.
    Table(String),
}

impl fmt::Display for LogName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogName::File(path) => write!(f, "{}", path.display()),
            LogName::Table(target) => write!(f, "table audit_log of PostgreSQL {target}"),
        }
    }
}

/// `log` and the position of a violation: `path:LINE` for the file, `..., row N` (in `seq`
/// order) for the table.
fn located(log: &LogName, line: &Option<u64>) -> String {
    match (log, line) {
        (_, None) => log.to_string(),
        (LogName::File(_), Some(n)) => format!("{log}:{n}"),
        (LogName::Table(_), Some(n)) => format!("{log}, row {n}"),
    }
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
    /// The log fails verification; `line` is 1-based when the problem is on a line (a row, in
    /// `seq` order, of the PostgreSQL table).
    #[error("{}: {violation}", located(.log, .line))]
    Integrity {
        /// The log (or head file) that is not intact.
        log: LogName,
        /// The 1-based line (row) of the violation; `None` when it is not tied to one (a
        /// malformed head, or the check of the log's end before an append).
        line: Option<u64>,
        /// What is wrong.
        violation: Violation,
    },
    /// The log's last record is signed but this handle has no signing key: appending an unsigned
    /// record would break verification against the public keys.
    #[error("audit log {log}: its records are signed (key {key}) but no signing key is configured ([audit] signing_key_file or CLOSEOUT_AUDIT_KEY)")]
    SigningKeyRequired {
        /// The log.
        log: LogName,
        /// The key id of the last record.
        key: String,
    },
    /// An asynchronous append never ran (the runtime is shutting down).
    #[error("audit log: {0}")]
    Interrupted(#[from] super::blocking::Interrupted),
    /// The PostgreSQL store holding the log failed (connect, statement).
    #[error("audit log: {0}")]
    Store(#[from] PgError),
    /// The exported records could not be written out.
    #[error("audit log: cannot write the exported records: {0}")]
    Export(#[source] io::Error),
}

impl From<postgres::Error> for AuditError {
    fn from(e: postgres::Error) -> Self {
        AuditError::Store(PgError::Sql(e))
    }
}

impl AuditError {
    /// The integrity violation, when the log was read but is not intact.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            AuditError::Integrity { violation, .. } => Some(violation),
            AuditError::Io { .. }
            | AuditError::SigningKeyRequired { .. }
            | AuditError::Interrupted(_)
            | AuditError::Store(_)
            | AuditError::Export(_) => None,
        }
    }

    /// The 1-based line of the violation, when it is on a line.
    pub fn line(&self) -> Option<u64> {
        match self {
            AuditError::Integrity { line, .. } => *line,
            AuditError::Io { .. }
            | AuditError::SigningKeyRequired { .. }
            | AuditError::Interrupted(_)
            | AuditError::Store(_)
            | AuditError::Export(_) => None,
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
    /// Whether every record's and the head's signature was checked against public keys.
    pub signatures_checked: bool,
    /// The ids of the keys that signed records, sorted.
    pub signed_by: Vec<String>,
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
            if self.signatures_checked {
                write!(
                    f,
                    ", every record and the head signed (key {})",
                    self.signed_by.join(", ")
                )?;
            }
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

/// What the head's signature covers: `<seq>\n<hash>` in the [`Domain::Head`] domain.
fn head_body(seq: u64, hash: &str) -> String {
    format!("{seq}\n{hash}")
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
        log: LogName::File(head.to_path_buf()),
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
    head_name: &str,
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
            head: head_name.to_string(),
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
    map.remove("sig");
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

/// Advisory-lock key serialising appends to the PostgreSQL audit log across replicas
/// ("closaudt" in ASCII); taken per transaction, released at its commit or rollback.
const AUDIT_LOCK: i64 = 0x636c_6f73_6175_6474;

/// Rows read per query when the PostgreSQL audit log is verified or exported.
const PAGE: i64 = 1000;

/// A handle on an audit log: the JSON-lines file at `[audit] path`, or, when `[store] url` names
/// a PostgreSQL store, its `audit_log` table ([`AuditLog::for_store`] picks). Cheap to clone.
/// Every file append opens, locks and closes the file, and every table append is one
/// transaction under an advisory lock, so handles in several threads, processes or replicas
/// append to one chain.
#[derive(Clone)]
pub struct AuditLog {
    backend: Backend,
    signer: Option<PrivateKey>,
}

/// Where the records go.
#[derive(Clone)]
enum Backend {
    /// The JSON-lines file and its head file.
    File { path: PathBuf, head: PathBuf },
    /// The PostgreSQL store's `audit_log` table and its `audit_head` row.
    Table(Arc<PgConn>),
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("log", &self.name())
            .field("key", &self.key_id())
            .finish()
    }
}

/// The head's name in messages: `<log>.head`, or the table's `audit_head` row.
fn head_name(log: &LogName) -> String {
    match log {
        LogName::File(path) => head_path(path).display().to_string(),
        LogName::Table(target) => format!("the audit_head row of PostgreSQL {target}"),
    }
}

impl AuditLog {
    /// Open (creating it and its parent directories when missing) the log file at `path`. The
    /// chain is not verified here; [`AuditLog::append`] checks the last record and the head.
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
        Ok(AuditLog {
            backend: Backend::File { path, head },
            signer: None,
        })
    }

    /// The log in the PostgreSQL store's `audit_log` table (schema version 3): one chain for
    /// every replica sharing the store.
    pub fn open_postgres(store: &Arc<PgStore>) -> AuditLog {
        AuditLog {
            backend: Backend::Table(Arc::new(PgConn::new(store))),
            signer: None,
        }
    }

    /// The audit log of a configuration: the table of the PostgreSQL store when `[store] url`
    /// is set, else the file at `[audit] path`. Every caller (the engine, `audit verify` and
    /// `export`) opens the log through this. Unsigned: see [`AuditLog::with_signer`].
    pub fn for_store(audit: &AuditConfig, store: &StoreConfig) -> Result<AuditLog, AuditError> {
        if store.url.is_some() {
            Ok(AuditLog::open_postgres(&PgStore::open(store)?))
        } else {
            AuditLog::open(&audit.path)
        }
    }

    /// Sign every record this handle appends, and the head, with `key`.
    pub fn with_signer(mut self, key: PrivateKey) -> AuditLog {
        self.signer = Some(key);
        self
    }

    /// The key this handle signs with, if any.
    pub fn signer(&self) -> Option<&PrivateKey> {
        self.signer.as_ref()
    }

    /// The id of the key this handle signs with, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.signer.as_ref().map(PrivateKey::id)
    }

    /// Where the log lives.
    pub fn name(&self) -> LogName {
        match &self.backend {
            Backend::File { path, .. } => LogName::File(path.clone()),
            Backend::Table(conn) => LogName::Table(conn.store().target().to_string()),
        }
    }

    /// The log file, when the log is a file.
    pub fn file(&self) -> Option<&Path> {
        match &self.backend {
            Backend::File { path, .. } => Some(path),
            Backend::Table(_) => None,
        }
    }

    /// Append one record, chained to the last one. `details` is redacted first. Refuses (with
    /// [`AuditError::Integrity`]) to append to a log whose last record or head is not intact, so
    /// a deletion at the end is never papered over by new records.
    pub fn append(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        match &self.backend {
            Backend::File { path, head } => self.append_file(path, head, entry),
            Backend::Table(conn) => self.append_table(conn, entry),
        }
    }

    /// [`AuditLog::append`] off the async runtime (it locks the file and fsyncs it and its head,
    /// or waits for the table's lock; see [`super::blocking`]).
    pub async fn append_async(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let log = self.clone();
        super::blocking::off_runtime(move || log.append(entry)).await
    }

    /// The record that follows `last` (the log's last record, checked) for `entry`, and the
    /// head naming it: seq, prev, redaction, hash and signatures, the same for both backends.
    fn seal(
        &self,
        log: &LogName,
        last: Option<AuditRecord>,
        entry: AuditEntry,
    ) -> Result<(AuditRecord, Head), AuditError> {
        if let (None, Some(key)) = (&self.signer, last.as_ref().and_then(|r| r.key.clone())) {
            return Err(AuditError::SigningKeyRequired {
                log: log.clone(),
                key,
            });
        }
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
            key: self.signer.as_ref().map(|k| k.id().to_string()),
            sig: None,
        };
        record.hash = chain_hash(&record.prev, &record.unhashed());
        record.sig = self
            .signer
            .as_ref()
            .map(|k| k.sign(Domain::Record, &record.hash));
        let head = Head {
            hash: record.hash.clone(),
            seq: record.seq,
            key: self.signer.as_ref().map(|k| k.id().to_string()),
            sig: self
                .signer
                .as_ref()
                .map(|k| k.sign(Domain::Head, &head_body(record.seq, &record.hash))),
        };
        Ok((record, head))
    }

    fn append_file(
        &self,
        path: &Path,
        head_file: &Path,
        entry: AuditEntry,
    ) -> Result<AuditRecord, AuditError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path, "open for appending"))?;
        file.lock().map_err(io_err(path, "lock"))?;
        // The lock is released when `file` is closed, on every path out of this function.

        let log = LogName::File(path.to_path_buf());
        let integrity = |violation: Violation| AuditError::Integrity {
            log: log.clone(),
            line: None,
            violation,
        };
        let last = match read_last_line(&mut file).map_err(io_err(path, "read the last record"))? {
            None => None,
            Some((_, false)) => return Err(integrity(Violation::Incomplete)),
            Some((line, true)) => Some(check_line(&line).map_err(integrity)?),
        };
        let head = read_head(head_file)?;
        compare_head(
            &head_name(&log),
            head.as_ref(),
            last.as_ref()
                .map(|r| (r.seq, r.hash.as_str(), r.prev.as_str())),
        )
        .map_err(integrity)?;

        let (record, head) = self.seal(&log, last, entry)?;
        let mut line = record.to_line();
        line.push('\n');
        file.write_all(line.as_bytes())
            .map_err(io_err(path, "append a record"))?;
        file.sync_data().map_err(io_err(path, "fsync"))?;
        write_head(head_file, &head)?;
        drop(file);
        Ok(record)
    }

    /// One transaction: the advisory lock (one appender at a time across every replica), the
    /// last row and the head row checked as the file's are, the new row and the head row
    /// written. A head one record behind is refused here: no interrupted append explains it,
    /// since both rows commit together.
    fn append_table(&self, conn: &PgConn, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let log = LogName::Table(conn.store().target().to_string());
        conn.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])?;
            let integrity = |violation: Violation| AuditError::Integrity {
                log: log.clone(),
                line: None,
                violation,
            };
            let last =
                match tx.query_opt("SELECT line FROM audit_log ORDER BY seq DESC LIMIT 1", &[])? {
                    None => None,
                    Some(row) => {
                        let line: String = row.try_get(0)?;
                        Some(check_line(line.as_bytes()).map_err(integrity)?)
                    }
                };
            let head = table_head(&mut tx, &log)?;
            strict_head(&log, head.as_ref(), last.as_ref()).map_err(integrity)?;
            let (record, head) = self.seal(&log, last, entry)?;
            let seq = i64::try_from(record.seq)
                .map_err(|_| integrity(Violation::Malformed("seq beyond 2^63".into())))?;
            tx.execute(
                "INSERT INTO audit_log (seq, at, event, run, identity, hash, line) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &seq,
                    &format_at(&record.at),
                    &record.event,
                    &record.run,
                    &record.identity,
                    &record.hash,
                    &record.to_line(),
                ],
            )?;
            tx.execute(
                "INSERT INTO audit_head (id, seq, hash, key, sig) VALUES (TRUE, $1, $2, $3, $4) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
                 key = excluded.key, sig = excluded.sig",
                &[&seq, &head.hash, &head.key, &head.sig],
            )?;
            tx.commit()?;
            Ok(record)
        })
    }

    /// Verify the whole log as [`verify`] (no `keys`) or [`verify_signed`] do, on either
    /// backend. The table is read in one repeatable-read snapshot, in `seq` order; besides the
    /// file's checks, every row's columns must agree with the record it holds, and the head row
    /// must name the last record exactly.
    pub fn verify(&self, keys: Option<&KeyRing>) -> Result<VerifyReport, AuditError> {
        match &self.backend {
            Backend::File { path, .. } => verify_file(path, keys),
            Backend::Table(conn) => verify_table(conn, keys),
        }
    }

    /// The lines of the records of `run` (see [`run_slice`]), on either backend.
    pub fn run_slice(&self, run: &str, keys: &KeyRing) -> Result<Vec<String>, AuditError> {
        match &self.backend {
            Backend::File { path, .. } => run_slice(path, run, keys),
            Backend::Table(conn) => {
                verify_table(conn, None)?;
                run_slice_table(conn, run, keys)
            }
        }
    }

    /// Write every record, in order, as the log file's lines (`\n`-terminated JSON lines,
    /// canonical, as stored) to `out`; the number written. Checks nothing: [`AuditLog::verify`]
    /// does. The table is read in one snapshot.
    pub fn export(&self, out: &mut (dyn Write + Send)) -> Result<u64, AuditError> {
        match &self.backend {
            Backend::File { path, .. } => export_file(path, out),
            Backend::Table(conn) => conn.with(|c| {
                let mut tx = c
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let mut n = 0u64;
                table_pages(&mut tx, |_, line| {
                    out.write_all(line.as_bytes())
                        .and_then(|()| out.write_all(b"\n"))
                        .map_err(AuditError::Export)?;
                    n += 1;
                    Ok(true)
                })?;
                tx.commit()?;
                out.flush().map_err(AuditError::Export)?;
                Ok(n)
            }),
        }
    }
}

/// Replace the head file atomically. Called with the log's exclusive lock held, so the
/// temporary file's name is ours alone.
fn write_head(head_file: &Path, head: &Head) -> Result<(), AuditError> {
    let mut tmp = head_file.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut map = Map::new();
    map.insert("hash".into(), Value::String(head.hash.clone()));
    map.insert("seq".into(), Value::from(head.seq));
    if let (Some(key), Some(sig)) = (&head.key, &head.sig) {
        map.insert("key".into(), Value::String(key.clone()));
        map.insert("sig".into(), Value::String(sig.clone()));
    }
    let text = format!("{}\n", canonical_json(&Value::Object(map)));
    let err = io_err(
        head_file,
        "write the head file (the record itself was appended)",
    );
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, head_file)?;
        sync_dir(head_file)
    };
    write().map_err(err)
}

/// The table's head row, `None` when there is none (no append yet, or deleted).
fn table_head(
    c: &mut impl postgres::GenericClient,
    log: &LogName,
) -> Result<Option<Head>, AuditError> {
    let Some(row) = c.query_opt("SELECT seq, hash, key, sig FROM audit_head WHERE id", &[])? else {
        return Ok(None);
    };
    let malformed = |reason: String| AuditError::Integrity {
        log: log.clone(),
        line: None,
        violation: Violation::HeadMalformed {
            head: head_name(log),
            reason,
        },
    };
    let seq: i64 = row.try_get(0)?;
    let hash: String = row.try_get(1)?;
    let seq = u64::try_from(seq).map_err(|_| malformed(format!("seq {seq} is negative")))?;
    if !is_hex64(&hash) {
        return Err(malformed("hash is not 64 lower-case hex digits".into()));
    }
    Ok(Some(Head {
        hash,
        seq,
        key: row.try_get(2)?,
        sig: row.try_get(3)?,
    }))
}

/// [`compare_head`] for the table, where the head commits with its record: one record behind
/// is a violation too (a row inserted without the head, or the head set back).
fn strict_head(
    log: &LogName,
    head: Option<&Head>,
    last: Option<&AuditRecord>,
) -> Result<(), Violation> {
    let last = last.map(|r| (r.seq, r.hash.as_str(), r.prev.as_str()));
    match compare_head(&head_name(log), head, last)? {
        HeadState::Matches => Ok(()),
        HeadState::OneBehind => Err(one_behind(log, head, last)),
    }
}

/// The violation a head one record behind is where no interrupted append explains it.
fn one_behind(log: &LogName, head: Option<&Head>, last: Option<(u64, &str, &str)>) -> Violation {
    let (last_seq, last_hash, _) = last.unwrap_or((0, GENESIS, GENESIS));
    match head {
        None => Violation::HeadMissing {
            head: head_name(log),
            records: last_seq,
        },
        Some(head) => Violation::HeadMismatch {
            head_seq: head.seq,
            head_hash: head.hash.clone(),
            last_seq,
            last_hash: last_hash.to_string(),
        },
    }
}

/// Call `f(position, line)` for every row of the table in `seq` order (position 1-based), page
/// by page, until it answers `false`.
fn table_pages(
    c: &mut impl postgres::GenericClient,
    mut f: impl FnMut(u64, &str) -> Result<bool, AuditError>,
) -> Result<(), AuditError> {
    let (mut after, mut position) = (i64::MIN, 0u64);
    loop {
        let rows = c.query(
            "SELECT seq, line FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &PAGE],
        )?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.try_get(0)?;
        for row in &rows {
            position += 1;
            let line: String = row.try_get(1)?;
            if !f(position, &line)? {
                return Ok(());
            }
        }
    }
}

/// The row position (in `seq` order) holding the record with `seq`, for telling a reorder from
/// a deletion.
fn table_find_seq(
    c: &mut impl postgres::GenericClient,
    seq: u64,
) -> Result<Option<u64>, AuditError> {
    #[derive(Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    let mut found = None;
    table_pages(c, |position, line| {
        if serde_json::from_str::<SeqOnly>(line).is_ok_and(|r| r.seq == seq) {
            found = Some(position);
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(found)
}

/// The first column of a row of `audit_log` that disagrees with the record in its `line`.
fn disagreeing_column(
    row: &postgres::Row,
    record: &AuditRecord,
) -> Result<Option<&'static str>, postgres::Error> {
    let seq: i64 = row.try_get("seq")?;
    if u64::try_from(seq).ok() != Some(record.seq) {
        return Ok(Some("seq"));
    }
    if row.try_get::<_, String>("at")? != format_at(&record.at) {
        return Ok(Some("at"));
    }
    if row.try_get::<_, String>("event")? != record.event {
        return Ok(Some("event"));
    }
    if row.try_get::<_, Option<String>>("run")? != record.run {
        return Ok(Some("run"));
    }
    if row.try_get::<_, Option<String>>("identity")? != record.identity {
        return Ok(Some("identity"));
    }
    if row.try_get::<_, String>("hash")? != record.hash {
        return Ok(Some("hash"));
    }
    Ok(None)
}

fn verify_table(conn: &PgConn, keys: Option<&KeyRing>) -> Result<VerifyReport, AuditError> {
    let target = conn.store().target().to_string();
    conn.with(|c| {
        // One snapshot: appends committed meanwhile are not half-seen.
        let mut tx = c
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let report = verify_table_in(&mut tx, &target, keys)?;
        tx.commit()?;
        Ok(report)
    })
}

/// [`AuditLog::verify`] of the `audit_log` table and `audit_head` row of the PostgreSQL store
/// `target` (user@host:port/database, for messages) as `c` sees them: inside a transaction that
/// has not committed yet, its own rows (`closeout store migrate` verifies the copied chain
/// before it commits).
pub fn verify_table_in(
    c: &mut impl postgres::GenericClient,
    target: &str,
    keys: Option<&KeyRing>,
) -> Result<VerifyReport, AuditError> {
    let log = LogName::Table(target.to_string());
    let mut checker = Checker::new(log.clone(), keys);
    let mut after = i64::MIN;
    loop {
        let rows = c.query(
            "SELECT seq, at, event, run, identity, hash, line FROM audit_log \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&after, &PAGE],
        )?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        for row in &rows {
            let line: String = row.try_get("line")?;
            let record = checker.next(line.as_bytes(), true, |seq| table_find_seq(c, seq))?;
            if let Some(column) = disagreeing_column(row, record)? {
                let seq = record.seq;
                return Err(checker.integrity(
                    Some(checker.position),
                    Violation::RowDisagrees { seq, column },
                ));
            }
        }
    }
    let head = table_head(c, &log)?;
    checker.finish(head, true)
}

/// The audit log file, locked against appends (an exclusive lock, as an appender takes) for as
/// long as this lives: `closeout store migrate` holds it until its copy has committed, so no
/// record appended meanwhile is left behind in the file.
#[derive(Debug)]
pub struct FileLock {
    _file: Option<File>,
}

/// What [`copy_file_to_table`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedLog {
    /// Records copied (the file's lines).
    pub records: u64,
    /// The last record's seq (0 for an empty log).
    pub last_seq: u64,
}

/// Copy the audit log file at `path` and its head into the PostgreSQL store's `audit_log` table
/// and `audit_head` row through `tx` (which the caller commits): every line as it is (the same
/// text, hashes and signatures), its columns filled as an append fills them, and the head row
/// from the head file (its signature kept). The file is first checked as `audit verify` checks
/// it (no signature check); a head one record behind (an interrupted append, a warning for the
/// file) is refused, since the table requires the head to name the last record. The table must
/// be empty (the caller checks). The file is left as it is, locked until the returned
/// [`FileLock`] is dropped. A missing file is an empty log.
pub fn copy_file_to_table(
    path: &Path,
    tx: &mut impl postgres::GenericClient,
) -> Result<(CopiedLog, FileLock), AuditError> {
    let log = LogName::File(path.to_path_buf());
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let head = read_head(&head_path(path))?;
            Checker::new(log, None).finish(head, true)?;
            return Ok((
                CopiedLog {
                    records: 0,
                    last_seq: 0,
                },
                FileLock { _file: None },
            ));
        }
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    file.lock().map_err(io_err(path, "lock"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(path, "read"))?;
    let mut checker = Checker::new(log, None);
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The text after the last newline: empty when the file ends with one.
    let tail = lines.pop().unwrap_or_default();
    for line in &lines {
        let find = |seq: u64| -> Result<Option<u64>, AuditError> {
            #[derive(Deserialize)]
            struct SeqOnly {
                seq: u64,
            }
            Ok(lines
                .iter()
                .position(|l| serde_json::from_slice::<SeqOnly>(l).is_ok_and(|r| r.seq == seq))
                .map(|i| i as u64 + 1))
        };
        let record = checker.next(line, true, find)?.clone();
        let seq = i64::try_from(record.seq).map_err(|_| {
            checker.integrity(
                Some(checker.position),
                Violation::Malformed("seq beyond 2^63".into()),
            )
        })?;
        let text = std::str::from_utf8(line).map_err(|e| {
            checker.integrity(
                Some(checker.position),
                Violation::Malformed(format!("not UTF-8: {e}")),
            )
        })?;
        tx.execute(
            "INSERT INTO audit_log (seq, at, event, run, identity, hash, line) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &seq,
                &format_at(&record.at),
                &record.event,
                &record.run,
                &record.identity,
                &record.hash,
                &text,
            ],
        )?;
    }
    if !tail.is_empty() {
        checker.next(tail, false, |_| Ok(None))?;
    }
    let head = read_head(&head_path(path))?;
    let report = checker.finish(head.clone(), true)?;
    if let Some(head) = head.filter(|_| report.records > 0) {
        let seq = i64::try_from(head.seq).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO audit_head (id, seq, hash, key, sig) VALUES (TRUE, $1, $2, $3, $4)",
            &[&seq, &head.hash, &head.key, &head.sig],
        )?;
    }
    Ok((
        CopiedLog {
            records: report.records,
            last_seq: report.last_seq,
        },
        FileLock { _file: Some(file) },
    ))
}

fn run_slice_table(conn: &PgConn, run: &str, keys: &KeyRing) -> Result<Vec<String>, AuditError> {
    let log = LogName::Table(conn.store().target().to_string());
    conn.with(|c| {
        let rows = c.query(
            "SELECT seq, line FROM audit_log WHERE run = $1 ORDER BY seq",
            &[&run],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, line): (i64, String) = (row.try_get(0)?, row.try_get(1)?);
            // The chain was verified: rows are 1, 2, 3, ... in seq order, so the row is the seq.
            let integrity = |violation: Violation| AuditError::Integrity {
                log: log.clone(),
                line: u64::try_from(seq).ok(),
                violation,
            };
            let record = check_line(line.as_bytes()).map_err(integrity)?;
            if record.run.as_deref() != Some(run) {
                return Err(integrity(Violation::RowDisagrees {
                    seq: record.seq,
                    column: "run",
                }));
            }
            if record.key.as_deref().is_some_and(|k| keys.get(k).is_some()) {
                check_record_signature(&record, keys).map_err(integrity)?;
            }
            out.push(line);
        }
        Ok(out)
    })
}

fn export_file(path: &Path, out: &mut (dyn Write + Send)) -> Result<u64, AuditError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    file.lock_shared().map_err(io_err(path, "lock"))?;
    let mut reader = BufReader::new(file);
    let (mut buf, mut n) = (Vec::new(), 0u64);
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .map_err(io_err(path, "read"))?
            == 0
        {
            break;
        }
        out.write_all(&buf).map_err(AuditError::Export)?;
        n += 1;
    }
    out.flush().map_err(AuditError::Export)?;
    Ok(n)
}

/// Verify the whole log at `path`: every line well-formed and canonical, every hash matching its
/// record, `seq` counting 1, 2, 3, ..., every `prev` equal to the hash before it, and the head file
/// matching the last record. A missing or empty log (with no head, or a head one record behind
/// nothing) verifies as 0 records. The first problem found is returned with its line.
///
/// Without public keys this cannot tell a genuine log from one re-chained by someone who edited
/// a record and recomputed every hash: use [`verify_signed`].
pub fn verify(path: impl AsRef<Path>) -> Result<VerifyReport, AuditError> {
    verify_file(path.as_ref(), None)
}

/// [`verify`], and every record and the head signed by one of `keys`: detects an edited record
/// whose hash and everything after it was recomputed (a re-chain), a forged appended record, and
/// a head rewritten after cutting records from the end.
pub fn verify_signed(path: impl AsRef<Path>, keys: &KeyRing) -> Result<VerifyReport, AuditError> {
    verify_file(path.as_ref(), Some(keys))
}

fn check_record_signature(record: &AuditRecord, keys: &KeyRing) -> Result<(), Violation> {
    match keys.check(
        Domain::Record,
        &record.hash,
        record.key.as_deref(),
        record.sig.as_deref(),
    ) {
        SignatureCheck::Valid => Ok(()),
        SignatureCheck::Unsigned => Err(Violation::Unsigned { seq: record.seq }),
        SignatureCheck::UnknownKey => Err(Violation::UnknownKey {
            seq: record.seq,
            key: record.key.clone().unwrap_or_default(),
            known: keys.ids().join(", "),
        }),
        SignatureCheck::Invalid => Err(Violation::BadSignature {
            seq: record.seq,
            key: record.key.clone().unwrap_or_default(),
        }),
    }
}

fn check_head_signature(head_name: &str, head: &Head, keys: &KeyRing) -> Result<(), Violation> {
    let reason = match keys.check(
        Domain::Head,
        &head_body(head.seq, &head.hash),
        head.key.as_deref(),
        head.sig.as_deref(),
    ) {
        SignatureCheck::Valid => return Ok(()),
        SignatureCheck::Unsigned => "is not signed".to_string(),
        SignatureCheck::UnknownKey => format!(
            "is signed by key {}, not among the public keys given",
            head.key.as_deref().unwrap_or_default()
        ),
        SignatureCheck::Invalid => "has a signature that does not verify".to_string(),
    };
    Err(Violation::HeadSignature {
        head: head_name.to_string(),
        reason,
    })
}

/// The checks of a chain, record by record in log order, then its head: one implementation for
/// the file's lines and the table's rows.
struct Checker<'k> {
    log: LogName,
    keys: Option<&'k KeyRing>,
    /// Lines (rows) read so far.
    position: u64,
    records: u64,
    last: Option<AuditRecord>,
    signed_by: Vec<String>,
}

impl<'k> Checker<'k> {
    fn new(log: LogName, keys: Option<&'k KeyRing>) -> Checker<'k> {
        Checker {
            log,
            keys,
            position: 0,
            records: 0,
            last: None,
            signed_by: Vec::new(),
        }
    }

    fn integrity(&self, line: Option<u64>, violation: Violation) -> AuditError {
        AuditError::Integrity {
            log: self.log.clone(),
            line,
            violation,
        }
    }

    /// Check the next line (without its newline; `terminated` says whether it had one) against
    /// the records before it. `find_seq` gives the line holding a seq, to tell records moved
    /// from records deleted.
    fn next(
        &mut self,
        line: &[u8],
        terminated: bool,
        find_seq: impl FnOnce(u64) -> Result<Option<u64>, AuditError>,
    ) -> Result<&AuditRecord, AuditError> {
        self.position += 1;
        let at = Some(self.position);
        if !terminated {
            return Err(self.integrity(at, Violation::Incomplete));
        }
        let record = check_line(line).map_err(|v| self.integrity(at, v))?;
        let expected = self.last.as_ref().map_or(1, |r| r.seq + 1);
        if record.seq > expected {
            let violation = match find_seq(expected)? {
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
            return Err(self.integrity(at, violation));
        }
        if record.seq < expected {
            let violation = Violation::Repeated {
                expected,
                found: record.seq,
            };
            return Err(self.integrity(at, violation));
        }
        let expected_prev = self.last.as_ref().map_or(GENESIS, |r| r.hash.as_str());
        if record.prev != expected_prev {
            let violation = Violation::PrevMismatch {
                seq: record.seq,
                prev: record.prev.clone(),
                expected: expected_prev.to_string(),
            };
            return Err(self.integrity(at, violation));
        }
        if let Some(keys) = self.keys {
            check_record_signature(&record, keys).map_err(|v| self.integrity(at, v))?;
        }
        if let Some(key) = &record.key {
            if !self.signed_by.contains(key) {
                self.signed_by.push(key.clone());
            }
        }
        self.records += 1;
        Ok(self.last.insert(record))
    }

    /// Compare the head with the last record (and check its signature when keys were given).
    /// `strict`: a head one record behind is a violation, not an interrupted append's trace.
    fn finish(self, head: Option<Head>, strict: bool) -> Result<VerifyReport, AuditError> {
        let head_name = head_name(&self.log);
        let last_line = (self.position > 0).then_some(self.position);
        let last = self
            .last
            .as_ref()
            .map(|r| (r.seq, r.hash.as_str(), r.prev.as_str()));
        let state = compare_head(&head_name, head.as_ref(), last)
            .map_err(|v| self.integrity(last_line, v))?;
        if let (HeadState::OneBehind, true) = (&state, strict) {
            let violation = one_behind(&self.log, head.as_ref(), last);
            return Err(self.integrity(last_line, violation));
        }
        if let (Some(keys), true) = (self.keys, self.records > 0) {
            let head = head.as_ref().ok_or_else(|| {
                self.integrity(
                    last_line,
                    Violation::HeadMissing {
                        head: head_name.clone(),
                        records: self.records,
                    },
                )
            })?;
            check_head_signature(&head_name, head, keys)
                .map_err(|v| self.integrity(last_line, v))?;
        }
        let mut warnings = Vec::new();
        if self.keys.is_none() && !self.signed_by.is_empty() {
            warnings.push(format!(
                "the records are signed (key {}) but no public key was given, so no signature was checked and a re-chained log would pass: verify with --public-key",
                self.signed_by.join(", ")
            ));
        }
        if let (HeadState::OneBehind, Some(r)) = (state, &self.last) {
            if r.seq > 1 || head.is_some() {
                warnings.push(format!(
                    "head file is one record behind (seq {} of {}): an append was interrupted before the head was updated; the next append repairs it",
                    r.seq - 1,
                    r.seq
                ));
            }
        }
        let mut signed_by = self.signed_by;
        signed_by.sort();
        Ok(VerifyReport {
            records: self.records,
            last_seq: self.last.as_ref().map_or(0, |r| r.seq),
            last_hash: self.last.map_or_else(|| GENESIS.to_string(), |r| r.hash),
            warnings,
            signatures_checked: self.keys.is_some(),
            signed_by,
        })
    }
}

fn verify_file(path: &Path, keys: Option<&KeyRing>) -> Result<VerifyReport, AuditError> {
    let head_file = head_path(path);
    let mut checker = Checker::new(LogName::File(path.to_path_buf()), keys);
    let file = match File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(path, "open")(e)),
    };
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
                let terminated = buf.last() == Some(&b'\n');
                let line = if terminated {
                    &buf[..buf.len() - 1]
                } else {
                    &buf[..]
                };
                checker.next(line, terminated, |seq| find_seq_line(path, seq))?;
            }
            Some(reader)
        }
    };
    let head = read_head(&head_file)?;
    checker.finish(head, false)
}

/// Parse and self-check one record line (without its newline): well-formed, canonical, its hash
/// matching its content. What an evidence bundle's audit slice is checked with, record by record.
pub fn check_record_line(line: &str) -> Result<AuditRecord, Violation> {
    check_line(line.as_bytes())
}

/// Check one record's signature against `keys` (see [`verify_signed`]).
pub fn check_signature(record: &AuditRecord, keys: &KeyRing) -> Result<(), Violation> {
    check_record_signature(record, keys)
}

/// The lines (without newlines) of the records of `run`, in log order, after checking the whole
/// log's chain and head with [`verify`] and the signature of every record of `run` that names a
/// key in `keys` (records signed with a key rotated out earlier are passed through: whoever
/// verifies them brings that key).
pub fn run_slice(path: &Path, run: &str, keys: &KeyRing) -> Result<Vec<String>, AuditError> {
    verify(path)?;
    let text = std::fs::read_to_string(path).map_err(io_err(path, "read"))?;
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let record = check_line(line.as_bytes()).map_err(|violation| AuditError::Integrity {
            log: LogName::File(path.to_path_buf()),
            line: Some(index as u64 + 1),
            violation,
        })?;
        if record.run.as_deref() == Some(run) {
            if record.key.as_deref().is_some_and(|k| keys.get(k).is_some()) {
                check_record_signature(&record, keys).map_err(|violation| {
                    AuditError::Integrity {
                        log: LogName::File(path.to_path_buf()),
                        line: Some(index as u64 + 1),
                        violation,
                    }
                })?;
            }
            out.push(line.to_string());
        }
    }
    Ok(out)
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

    /// The file and head of a file-backed log (the tests below tamper with them).
    trait FilePaths {
        fn path(&self) -> &Path;
        fn head_path(&self) -> &Path;
    }

    impl FilePaths for AuditLog {
        fn path(&self) -> &Path {
            match &self.backend {
                Backend::File { path, .. } => path,
                Backend::Table(_) => panic!("not a file"),
            }
        }
        fn head_path(&self) -> &Path {
            match &self.backend {
                Backend::File { head, .. } => head,
                Backend::Table(_) => panic!("not a file"),
            }
        }
    }

    impl AuditLog {
        fn backend_store(&self) -> &Arc<PgStore> {
            match &self.backend {
                Backend::Table(conn) => conn.store(),
                Backend::File { .. } => panic!("not a table"),
            }
        }
    }

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
    /// A signed log of `n` records and its key ring.
    fn signed_log(n: usize) -> (tempfile::TempDir, AuditLog, PrivateKey, KeyRing) {
        let (dir, log) = log_with(0);
        let key = PrivateKey::generate();
        let log = log.with_signer(key.clone());
        for i in 0..n {
            log.append(entry(&format!("event.{i}"), json!({"i": i})))
                .expect("append");
        }
        let ring = KeyRing::new([key.public()]);
        (dir, log, key, ring)
    }

    fn signed_err(log: &AuditLog, ring: &KeyRing) -> AuditError {
        match verify_signed(log.path(), ring) {
            Ok(report) => panic!("expected a violation, got {report}"),
            Err(e) => e,
        }
    }

    /// What an attacker does with the documented algorithm: recompute every `hash` (and `prev`)
    /// from the first line on, keeping or dropping the signatures, and rewrite the head.
    fn rechain(log: &AuditLog, lines: &[String], keep_sigs: bool) -> Vec<String> {
        let mut prev = GENESIS.to_string();
        let mut out = Vec::new();
        let mut last_seq = 0;
        for line in lines {
            let mut value: Value = serde_json::from_str(line).expect("json");
            let map = value.as_object_mut().expect("object");
            map.remove("hash");
            let sig = map.remove("sig");
            if !keep_sigs {
                map.remove("key");
            }
            map.insert("prev".into(), Value::String(prev.clone()));
            let mut hasher = Sha256::new();
            hasher.update(prev.as_bytes());
            hasher.update(canonical_json(&value).as_bytes());
            let hash = hex::encode(hasher.finalize());
            let map = value.as_object_mut().expect("object");
            map.insert("hash".into(), Value::String(hash.clone()));
            if keep_sigs {
                if let Some(sig) = sig {
                    map.insert("sig".into(), sig);
                }
            }
            last_seq = map["seq"].as_u64().expect("seq");
            out.push(canonical_json(&value));
            prev = hash;
        }
        write_lines(log, &out);
        std::fs::write(
            log.head_path(),
            format!("{{\"hash\":\"{prev}\",\"seq\":{last_seq}}}\n"),
        )
        .expect("head");
        out
    }

    #[test]
    fn signed_log_verifies_and_names_its_key() {
        let (_dir, log, key, ring) = signed_log(3);
        let report = verify_signed(log.path(), &ring).expect("verifies");
        assert!(report.signatures_checked);
        assert_eq!(report.signed_by, vec![key.id().to_string()]);
        assert!(
            report
                .to_string()
                .contains("every record and the head signed"),
            "{report}"
        );
        for line in lines(&log) {
            let record: AuditRecord = serde_json::from_str(&line).expect("record");
            assert_eq!(record.key.as_deref(), Some(key.id()));
            assert_eq!(record.sig.as_ref().map(String::len), Some(128));
        }
        let head = std::fs::read_to_string(log.head_path()).expect("head");
        assert!(
            head.contains(key.id()) && head.contains("\"sig\""),
            "{head}"
        );
        // Without keys the chain still verifies, with a warning that nothing was checked.
        let plain = verify(log.path()).expect("chain");
        assert!(!plain.signatures_checked);
        assert_eq!(plain.warnings.len(), 1, "{plain}");
        assert!(plain.to_string().contains("--public-key"), "{plain}");
        // An unsigned log fails signed verification at its first record.
        let (_dir, unsigned) = log_with(2);
        let e = signed_err(&unsigned, &ring);
        assert_eq!(e.violation(), Some(&Violation::Unsigned { seq: 1 }));
    }

    #[test]
    fn rechained_log_is_detected_at_the_edited_record() {
        for keep_sigs in [true, false] {
            let (_dir, log, _key, ring) = signed_log(5);
            let mut all = lines(&log);
            all[2] = all[2].replace("\"actor\":\"tester\"", "\"actor\":\"mallory\"");
            rechain(&log, &all, keep_sigs);
            // The chain alone is intact again: exactly the attack of issue 18.
            assert_eq!(verify(log.path()).expect("chain recomputed").records, 5);
            let e = signed_err(&log, &ring);
            assert_eq!(e.line(), Some(if keep_sigs { 3 } else { 1 }), "{e}");
            let expected = if keep_sigs {
                Violation::BadSignature {
                    seq: 3,
                    key: _key.id().to_string(),
                }
            } else {
                Violation::Unsigned { seq: 1 }
            };
            assert_eq!(e.violation(), Some(&expected), "{e}");
        }
    }

    #[test]
    fn signed_log_tampering_is_detected_and_named() {
        // Edited in place.
        let (_dir, log, _key, ring) = signed_log(4);
        let mut all = lines(&log);
        all[1] = all[1].replace("\"i\":1", "\"i\":9");
        write_lines(&log, &all);
        let e = signed_err(&log, &ring);
        assert!(
            matches!(e.violation(), Some(Violation::HashMismatch { seq: 2, .. })),
            "{e}"
        );

        // Reordered.
        let (_dir, log, _key, ring) = signed_log(4);
        let mut all = lines(&log);
        all.swap(1, 2);
        write_lines(&log, &all);
        let e = signed_err(&log, &ring);
        assert!(
            matches!(
                e.violation(),
                Some(Violation::Reordered {
                    expected: 2,
                    found: 3,
                    ..
                })
            ),
            "{e}"
        );

        // Deleted from the middle.
        let (_dir, log, _key, ring) = signed_log(4);
        let mut all = lines(&log);
        all.remove(2);
        write_lines(&log, &all);
        let e = signed_err(&log, &ring);
        assert!(
            matches!(
                e.violation(),
                Some(Violation::Deleted {
                    expected: 3,
                    found: 4
                })
            ),
            "{e}"
        );

        // Deleted from the middle and re-chained.
        let (_dir, log, _key, ring) = signed_log(4);
        let mut all = lines(&log);
        all.remove(1);
        let all: Vec<String> = all
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut v: Value = serde_json::from_str(l).expect("json");
                v["seq"] = Value::from(i as u64 + 1);
                canonical_json(&v)
            })
            .collect();
        rechain(&log, &all, true);
        let e = signed_err(&log, &ring);
        assert!(
            matches!(e.violation(), Some(Violation::BadSignature { seq: 2, .. })),
            "{e}"
        );
    }

    #[test]
    fn forged_appended_record_is_detected() {
        // An attacker appends a chained record (with or without a copied signature) and
        // rewrites the head to match.
        for copy_sig in [false, true] {
            let (_dir, log, _key, ring) = signed_log(3);
            let mut all = lines(&log);
            let mut forged: Value = serde_json::from_str(&all[2]).expect("json");
            forged["seq"] = Value::from(4u64);
            forged["event"] = Value::from("run.approved");
            forged["actor"] = Value::from("mallory");
            if !copy_sig {
                forged.as_object_mut().expect("obj").remove("sig");
                forged.as_object_mut().expect("obj").remove("key");
            }
            all.push(canonical_json(&forged));
            rechain(&log, &all, true);
            let e = signed_err(&log, &ring);
            assert_eq!(e.line(), Some(4), "{e}");
            let expected = if copy_sig {
                Violation::BadSignature {
                    seq: 4,
                    key: _key.id().to_string(),
                }
            } else {
                Violation::Unsigned { seq: 4 }
            };
            assert_eq!(e.violation(), Some(&expected), "{e}");
        }
    }

    #[test]
    fn truncated_signed_log_is_detected_even_with_a_rewritten_head() {
        // Cut, head left alone: the head is ahead.
        let (_dir, log, _key, ring) = signed_log(4);
        let mut all = lines(&log);
        all.truncate(2);
        write_lines(&log, &all);
        let e = signed_err(&log, &ring);
        assert!(
            matches!(
                e.violation(),
                Some(Violation::HeadAhead {
                    head_seq: 4,
                    last_seq: 2
                })
            ),
            "{e}"
        );

        // Cut and the head rewritten to the new end, unsigned or with the last record's
        // signature copied: the head's signature gives it away.
        for copy in [false, true] {
            let (_dir, log, _key, ring) = signed_log(4);
            let mut all = lines(&log);
            all.truncate(2);
            write_lines(&log, &all);
            let last: AuditRecord = serde_json::from_str(&all[1]).expect("record");
            let head = if copy {
                format!(
                    "{{\"hash\":\"{}\",\"key\":\"{}\",\"seq\":2,\"sig\":\"{}\"}}\n",
                    last.hash,
                    last.key.as_deref().unwrap_or_default(),
                    last.sig.as_deref().unwrap_or_default()
                )
            } else {
                format!("{{\"hash\":\"{}\",\"seq\":2}}\n", last.hash)
            };
            std::fs::write(log.head_path(), head).expect("head");
            assert_eq!(
                verify(log.path()).expect("the chain alone passes").records,
                2
            );
            let e = signed_err(&log, &ring);
            assert!(
                matches!(e.violation(), Some(Violation::HeadSignature { .. })),
                "{e}"
            );
            assert!(e.to_string().contains("may have been cut"), "{e}");
        }

        // Cut and the head deleted.
        let (_dir, log, _key, ring) = signed_log(3);
        let mut all = lines(&log);
        all.truncate(1);
        write_lines(&log, &all);
        std::fs::remove_file(log.head_path()).expect("rm");
        let e = signed_err(&log, &ring);
        assert!(
            matches!(e.violation(), Some(Violation::HeadMissing { .. })),
            "{e}"
        );
    }

    #[test]
    fn key_rotation_keeps_old_records_verifiable() {
        let (_dir, log, old, _ring) = signed_log(2);
        let new = PrivateKey::generate();
        let log = log.with_signer(new.clone());
        log.append(entry("after.rotation", json!({})))
            .expect("append");
        let both = KeyRing::new([old.public(), new.public()]);
        let report = verify_signed(log.path(), &both).expect("both keys");
        let mut ids = vec![old.id().to_string(), new.id().to_string()];
        ids.sort();
        assert_eq!(report.signed_by, ids);
        let only_new = KeyRing::new([new.public()]);
        let e = signed_err(&log, &only_new);
        assert!(
            matches!(e.violation(), Some(Violation::UnknownKey { seq: 1, .. })),
            "{e}"
        );
    }

    #[test]
    fn a_signed_log_refuses_unsigned_appends() {
        let (_dir, log, key, _ring) = signed_log(1);
        let unsigned = AuditLog::open(log.path()).expect("open");
        let e = unsigned.append(entry("x", json!({}))).expect_err("refused");
        assert!(
            matches!(&e, AuditError::SigningKeyRequired { key: k, .. } if k == key.id()),
            "{e}"
        );
    }

    #[test]
    fn a_run_slice_checks_the_current_key_and_passes_older_keys_through() {
        let (_dir, log, old, _ring) = signed_log(2);
        let new = PrivateKey::generate();
        let log = log.with_signer(new.clone());
        log.append(entry("after.rotation", json!({})))
            .expect("append");
        let mut other = entry("other.run", json!({}));
        other.run = Some("run-2".into());
        log.append(other).expect("append");
        let ring = KeyRing::new([new.public()]);
        let slice = run_slice(log.path(), "run-1", &ring).expect("slice");
        assert_eq!(slice.len(), 3, "{slice:?}");
        assert!(slice[0].contains(old.id()) && slice[2].contains(new.id()));
        // A record of the run signed with the current key but edited and re-chained is refused.
        let mut all = lines(&log);
        all[2] = all[2].replace("after.rotation", "after.rotation!");
        rechain(&log, &all, true);
        let e = run_slice(log.path(), "run-1", &ring).expect_err("refused");
        assert!(
            matches!(e.violation(), Some(Violation::BadSignature { seq: 3, .. })),
            "{e}"
        );
    }

    /// The PostgreSQL backend: the same records, hashes, redaction and signatures in the store's
    /// `audit_log` table, tampering done with SQL as someone with write access to the database
    /// would.
    mod table {
        use super::*;
        use crate::store::pg::testing;

        /// A table log in a fresh database with `n` records, and a connection for tampering.
        fn table_with(
            n: usize,
            signer: Option<&PrivateKey>,
        ) -> (tempfile::TempDir, AuditLog, postgres::Client) {
            let (dir, store) = testing::fresh();
            let mut log = AuditLog::open_postgres(&store);
            if let Some(key) = signer {
                log = log.with_signer(key.clone());
            }
            for i in 0..n {
                log.append(entry(
                    &format!("event.{i}"),
                    json!({"i": i, "b": [1, {"z": 1, "a": 2}]}),
                ))
                .expect("append");
            }
            let client = store.connect().expect("connect");
            (dir, log, client)
        }

        fn exported(log: &AuditLog) -> Vec<String> {
            let mut out = Vec::new();
            let n = log.export(&mut out).expect("export");
            let text = String::from_utf8(out).expect("UTF-8");
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            assert_eq!(n, lines.len() as u64);
            lines
        }

        fn table_err(log: &AuditLog, keys: Option<&KeyRing>) -> AuditError {
            match log.verify(keys) {
                Ok(report) => panic!("expected a violation, got {report}"),
                Err(e) => e,
            }
        }

        fn sql(client: &mut postgres::Client, statement: &str) {
            client.batch_execute(statement).expect(statement);
        }

        #[test]
        fn table_appends_chain_verify_and_export_the_file_format() {
            let (dir, log, mut client) = table_with(3, None);
            log.append(entry(
                "secret.rotated",
                json!({"password": "hunter2-canary", "target": "db"}),
            ))
            .expect("append");
            let report = log.verify(None).expect("verifies");
            assert_eq!((report.records, report.last_seq), (4, 4));
            assert!(report.warnings.is_empty(), "{report}");
            // The rows hold the file's lines: exported, with a head file, they verify as a file.
            let lines = exported(&log);
            assert_eq!(lines.len(), 4);
            for (n, line) in lines.iter().enumerate() {
                let record = check_record_line(line).expect("a record line");
                assert_eq!(record.seq, n as u64 + 1);
            }
            let path = dir.path().join("exported.jsonl");
            std::fs::write(&path, format!("{}\n", lines.join("\n"))).expect("write");
            std::fs::write(
                head_path(&path),
                format!("{{\"hash\":\"{}\",\"seq\":4}}\n", report.last_hash),
            )
            .expect("head");
            let as_file = verify(&path).expect("the export verifies as a file");
            assert_eq!(as_file.last_hash, report.last_hash);
            // Redaction is the file's: the secret never reaches the table.
            assert!(lines[3].contains(REDACTED), "{}", lines[3]);
            let leaked: i64 = client
                .query_one(
                    "SELECT count(*) FROM audit_log WHERE line LIKE '%hunter2-canary%'",
                    &[],
                )
                .expect("count")
                .get(0);
            assert_eq!(leaked, 0);
            // The columns repeat the record's fields; the head row names the last record.
            let row = client
                .query_one(
                    "SELECT event, run, identity, hash FROM audit_log WHERE seq = 4",
                    &[],
                )
                .expect("row");
            assert_eq!(row.get::<_, String>(0), "secret.rotated");
            assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("run-1"));
            assert_eq!(row.get::<_, String>(3), report.last_hash);
            let head = client
                .query_one("SELECT seq, hash FROM audit_head", &[])
                .expect("head row");
            assert_eq!(head.get::<_, i64>(0), 4);
            assert_eq!(head.get::<_, String>(1), report.last_hash);
            assert_eq!(log.run_slice("run-1", &KeyRing::new([])).unwrap().len(), 4);
        }

        #[test]
        fn an_empty_table_verifies_and_exports_nothing() {
            let (_dir, log, _client) = table_with(0, None);
            assert_eq!(log.verify(None).expect("empty").records, 0);
            assert!(exported(&log).is_empty());
        }

        #[test]
        fn changed_details_are_detected_at_their_row() {
            let (_dir, log, mut client) = table_with(5, None);
            sql(
                &mut client,
                r#"UPDATE audit_log SET line = replace(line, '"i":2', '"i":7') WHERE seq = 3"#,
            );
            let e = table_err(&log, None);
            assert!(
                matches!(e.violation(), Some(Violation::HashMismatch { seq: 3, .. })),
                "{e}"
            );
            assert_eq!(e.line(), Some(3));
            assert!(e.to_string().contains("table audit_log"), "{e}");
            assert!(e.to_string().contains("row 3"), "{e}");
            // An append refuses nothing here (the last row is intact) but verify keeps failing.
        }

        #[test]
        fn an_edited_column_is_detected() {
            let (_dir, log, mut client) = table_with(3, None);
            sql(
                &mut client,
                "UPDATE audit_log SET identity = 'E9999' WHERE seq = 2",
            );
            let e = table_err(&log, None);
            assert!(
                matches!(
                    e.violation(),
                    Some(Violation::RowDisagrees {
                        seq: 2,
                        column: "identity"
                    })
                ),
                "{e}"
            );
        }

        #[test]
        fn a_deleted_last_row_is_detected_by_the_head_row_and_blocks_appends() {
            let (_dir, log, mut client) = table_with(5, None);
            sql(&mut client, "DELETE FROM audit_log WHERE seq = 5");
            let e = table_err(&log, None);
            assert!(
                matches!(
                    e.violation(),
                    Some(Violation::HeadAhead {
                        head_seq: 5,
                        last_seq: 4
                    })
                ),
                "{e}"
            );
            let refused = log
                .append(entry("after", json!({})))
                .expect_err("no append over a cut log");
            assert!(
                matches!(refused.violation(), Some(Violation::HeadAhead { .. })),
                "{refused}"
            );
            // Cutting the head row as well is seen too.
            sql(&mut client, "DELETE FROM audit_head");
            let e = table_err(&log, None);
            assert!(
                matches!(
                    e.violation(),
                    Some(Violation::HeadMissing { records: 4, .. })
                ),
                "{e}"
            );
        }

        #[test]
        fn a_deleted_middle_row_is_detected() {
            let (_dir, log, mut client) = table_with(5, None);
            sql(&mut client, "DELETE FROM audit_log WHERE seq = 3");
            let e = table_err(&log, None);
            assert!(
                matches!(
                    e.violation(),
                    Some(Violation::Deleted {
                        expected: 3,
                        found: 4
                    })
                ),
                "{e}"
            );
            assert_eq!(e.line(), Some(3));
        }

        #[test]
        fn reordered_seqs_are_detected() {
            let (_dir, log, mut client) = table_with(5, None);
            sql(
                &mut client,
                "UPDATE audit_log SET seq = -2 WHERE seq = 2; \
                 UPDATE audit_log SET seq = 2 WHERE seq = 3; \
                 UPDATE audit_log SET seq = 3 WHERE seq = -2;",
            );
            let e = table_err(&log, None);
            assert!(
                matches!(
                    e.violation(),
                    Some(Violation::Reordered {
                        expected: 2,
                        found: 3,
                        expected_on_line: 3
                    })
                ),
                "{e}"
            );
        }

        #[test]
        fn a_head_set_back_or_a_row_added_without_it_is_detected() {
            let (_dir, log, mut client) = table_with(4, None);
            // What an interrupted file append leaves is tolerated in the file, not here: the
            // table's head commits with its record.
            sql(
                &mut client,
                "UPDATE audit_head SET seq = 3, \
                 hash = (SELECT hash FROM audit_log WHERE seq = 3)",
            );
            let e = table_err(&log, None);
            assert!(
                matches!(
                    e.violation(),
                    Some(Violation::HeadMismatch {
                        head_seq: 3,
                        last_seq: 4,
                        ..
                    })
                ),
                "{e}"
            );
        }

        #[test]
        fn signed_table_verifies_and_signature_tampering_is_detected() {
            let key = PrivateKey::generate();
            let ring = KeyRing::new([key.public()]);
            let (_dir, log, mut client) = table_with(3, Some(&key));
            let report = log.verify(Some(&ring)).expect("signed chain verifies");
            assert!(report.signatures_checked);
            assert_eq!(report.signed_by, vec![key.id().to_string()]);
            for line in exported(&log) {
                let record = check_record_line(&line).expect("record");
                check_signature(&record, &ring).expect("each exported record's signature");
            }
            let other = KeyRing::new([PrivateKey::generate().public()]);
            let e = table_err(&log, Some(&other));
            assert!(
                matches!(e.violation(), Some(Violation::UnknownKey { seq: 1, .. })),
                "{e}"
            );
            // Someone without the key cannot append: the handle refuses, and a forged unsigned
            // record is named.
            let unsigned = AuditLog::open_postgres(log.backend_store());
            let refused = unsigned
                .append(entry("forged", json!({})))
                .expect_err("unsigned append to a signed table");
            assert!(
                matches!(refused, AuditError::SigningKeyRequired { .. }),
                "{refused}"
            );
            // The evidence bundle's slice: the run's rows, their signatures checked.
            let slice = log.run_slice("run-1", &ring).expect("slice");
            assert_eq!(slice, exported(&log));
            // A head row stripped of its signature (rewritten) is detected.
            sql(&mut client, "UPDATE audit_head SET sig = NULL, key = NULL");
            let e = table_err(&log, Some(&ring));
            assert!(
                matches!(e.violation(), Some(Violation::HeadSignature { .. })),
                "{e}"
            );
        }

        #[test]
        fn concurrent_appenders_form_one_gap_free_chain() {
            const THREADS: usize = 4;
            const EACH: usize = 25;
            let key = PrivateKey::generate();
            let (dir, store) = testing::fresh();
            // One handle (one connection) per thread, as replicas have.
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let log = AuditLog::open_postgres(&store).with_signer(key.clone());
                    std::thread::spawn(move || {
                        for i in 0..EACH {
                            log.append(entry("concurrent", json!({"thread": t, "i": i})))
                                .expect("append");
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("appender");
            }
            let log = AuditLog::open_postgres(&store);
            let report = log
                .verify(Some(&KeyRing::new([key.public()])))
                .expect("one valid chain");
            assert_eq!(report.records, (THREADS * EACH) as u64);
            let seqs: Vec<u64> = exported(&log)
                .iter()
                .map(|l| check_record_line(l).expect("record").seq)
                .collect();
            assert_eq!(seqs, (1..=(THREADS * EACH) as u64).collect::<Vec<_>>());
            drop(dir);
        }

        #[test]
        fn for_store_picks_the_table_with_a_url_and_the_file_without() {
            let (dir, config, _db) = testing::fresh_config();
            let audit = AuditConfig {
                path: dir.path().join("audit.jsonl"),
                signing_key_file: None,
            };
            let log = AuditLog::for_store(&audit, &config).expect("table");
            assert!(matches!(log.name(), LogName::Table(_)));
            log.append(entry("e", json!({}))).expect("append");
            assert!(!audit.path.exists(), "nothing went to the file");
            let file = AuditLog::for_store(&audit, &StoreConfig::default()).expect("file");
            assert_eq!(file.file(), Some(audit.path.as_path()));
        }
    }
}
