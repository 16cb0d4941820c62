//! The evidence bundle of one run: the files an auditor needs to check what a run did without
//! trusting Closeout or reaching any provider, and a manifest of their SHA-256 digests signed
//! with the audit key.
//!
//! # Layout (a directory, or the same files in a `.tar.gz`)
//!
//! | file | what |
//! | --- | --- |
//! | `manifest.json` | `{"format":"closeout-evidence-v1","run":..,"files":{name:{"sha256","bytes"}},..}`, canonical JSON |
//! | `manifest.sig` | `{"key":"<key id>","sig":"<hex>"}`: Ed25519 over `closeout-evidence-manifest-v1\n` + `manifest.json` |
//! | `README.txt` | how to verify |
//! | `run.json` | the run: identity, trigger, times, who started and approved it |
//! | `playbook.yaml` | the playbook text whose SHA-256 the run recorded (omitted when the file changed since; `run.json` says so) |
//! | `graph-before.json`, `graph-after.json` | the access graph resolved when planning and by the last verification |
//! | `plan.json` | the plan exactly as journaled (its SHA-256 is in the signed `run.started` record, or in the `run.planned` record of a run that contained ahead of discovery) |
//! | `actions.json` | every action: stage, step, finding, verb, the provider's answer (status, detail, error), attempts, times |
//! | `probes.json` | each credential probe with its raw outcome |
//! | `report.json` | the closure report exactly as journaled (its SHA-256 is in the signed `run.finished` record) |
//! | `audit.jsonl` | the run's records of the audit log, verbatim (each signed) |
//!
//! [`verify`] checks, offline, with only public keys: the manifest's signature; every file's
//! digest (and no file added or missing); every audit record's hash and signature; and that the
//! plan, the report and the playbook are the ones the signed audit records name.

use crate::store::audit::{canonical_json, check_record_line, check_signature, AuditRecord};
use crate::store::signing::{Domain, KeyRing, PrivateKey, SignatureCheck};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The bundle format's name, in the manifest.
pub const FORMAT: &str = "closeout-evidence-v1";
/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The manifest signature's file name.
pub const SIGNATURE: &str = "manifest.sig";
/// Largest file read from a bundle (a bundle is small; this bounds a hostile one).
const MAX_FILE: u64 = 256 * 1024 * 1024;

/// An error reading or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The file system refused.
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The output exists and is not an empty directory.
    #[error("{} already exists: give a new directory or FILE.tar.gz", .0.display())]
    Exists(PathBuf),
    /// A name in the bundle is not a plain file name.
    #[error("bundle entry {0:?} is not a plain file name")]
    BadEntry(String),
}

fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> EvidenceError {
    let path = path.to_path_buf();
    move |source| EvidenceError::Io {
        path,
        action,
        source,
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A bundle's files by name (plain names, no directories).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundle {
    files: BTreeMap<String, Vec<u8>>,
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Bundle {
    /// An empty bundle.
    pub fn new() -> Bundle {
        Bundle::default()
    }

    /// Add (or replace) a file.
    pub fn add(&mut self, name: &str, bytes: impl Into<Vec<u8>>) {
        self.files.insert(name.to_string(), bytes.into());
    }

    /// Add a JSON document, pretty-printed.
    pub fn add_json(&mut self, name: &str, value: &Value) {
        let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        text.push('\n');
        self.add(name, text);
    }

    /// A file's bytes.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// The file names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.files.keys().map(String::as_str).collect()
    }

    /// Remove a file (for tests of tampering).
    pub fn remove(&mut self, name: &str) -> Option<Vec<u8>> {
        self.files.remove(name)
    }

    /// Write `manifest.json` (digests of every other file, plus `header`'s fields) and
    /// `manifest.sig` (signed with `key`).
    pub fn seal(&mut self, header: Value, key: &PrivateKey) {
        self.files.remove(MANIFEST);
        self.files.remove(SIGNATURE);
        let files: serde_json::Map<String, Value> = self
            .files
            .iter()
            .map(|(name, bytes)| {
                (
                    name.clone(),
                    json!({"sha256": sha256_hex(bytes), "bytes": bytes.len()}),
                )
            })
            .collect();
        let mut manifest = match header {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        manifest.insert("format".into(), Value::from(FORMAT));
        manifest.insert("signing_key".into(), Value::from(key.id()));
        manifest.insert("files".into(), Value::Object(files));
        let mut text = canonical_json(&Value::Object(manifest));
        text.push('\n');
        let sig = key.sign(Domain::Manifest, &text);
        let signature = canonical_json(&json!({"key": key.id(), "sig": sig}));
        self.add(MANIFEST, text);
        self.add(SIGNATURE, format!("{signature}\n"));
    }

    /// Write the bundle to `path`: a `.tar.gz` file when the name ends so, else a new (or empty)
    /// directory.
    pub fn write(&self, path: &Path) -> Result<(), EvidenceError> {
        if is_tar_gz(path) {
            if path.exists() {
                return Err(EvidenceError::Exists(path.to_path_buf()));
            }
            return self.write_tar_gz(path);
        }
        if path.exists() {
            let empty = std::fs::read_dir(path)
                .map_err(io(path, "read the directory"))?
                .next()
                .is_none();
            if !empty {
                return Err(EvidenceError::Exists(path.to_path_buf()));
            }
        }
        std::fs::create_dir_all(path).map_err(io(path, "create the directory"))?;
        for (name, bytes) in &self.files {
            let file = path.join(name);
            std::fs::write(&file, bytes).map_err(io(&file, "write"))?;
        }
        Ok(())
    }

    fn write_tar_gz(&self, path: &Path) -> Result<(), EvidenceError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir, "create the directory"))?;
        }
        let file = std::fs::File::create(path).map_err(io(path, "create"))?;
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let root = bundle_root(path);
        for (name, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, format!("{root}/{name}"), bytes.as_slice())
                .map_err(io(path, "write"))?;
        }
        let gz = tar.into_inner().map_err(io(path, "write"))?;
        let file = gz.finish().map_err(io(path, "write"))?;
        file.sync_all().map_err(io(path, "fsync"))?;
        Ok(())
    }

    /// Read a bundle from a directory or a `.tar.gz`. Only plain file names are accepted (a
    /// `.tar.gz`'s files may sit in one top-level directory); nothing is written to disk.
    pub fn read(path: &Path) -> Result<Bundle, EvidenceError> {
        let mut bundle = Bundle::new();
        if path.is_dir() {
            for entry in std::fs::read_dir(path).map_err(io(path, "read the directory"))? {
                let entry = entry.map_err(io(path, "read the directory"))?;
                let name = entry.file_name().to_string_lossy().to_string();
                if !plain_name(&name) {
                    return Err(EvidenceError::BadEntry(name));
                }
                let file = entry.path();
                let mut bytes = Vec::new();
                std::fs::File::open(&file)
                    .map_err(io(&file, "open"))?
                    .take(MAX_FILE)
                    .read_to_end(&mut bytes)
                    .map_err(io(&file, "read"))?;
                bundle.add(&name, bytes);
            }
            return Ok(bundle);
        }
        let file = std::fs::File::open(path).map_err(io(path, "open"))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().map_err(io(path, "read the archive"))? {
            let mut entry = entry.map_err(io(path, "read the archive"))?;
            if entry.header().entry_type().is_dir() {
                continue;
            }
            let name = entry
                .path()
                .map_err(io(path, "read the archive"))?
                .to_string_lossy()
                .to_string();
            let base = match name.split_once('/') {
                Some((_, rest)) => rest.to_string(),
                None => name.clone(),
            };
            if !plain_name(&base) {
                return Err(EvidenceError::BadEntry(name));
            }
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_FILE)
                .read_to_end(&mut bytes)
                .map_err(io(path, "read the archive"))?;
            bundle.add(&base, bytes);
        }
        Ok(bundle)
    }
}

fn is_tar_gz(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// The directory name inside a `.tar.gz`: the file name without its extension.
fn bundle_root(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "evidence".into());
    name.trim_end_matches(".tar.gz")
        .trim_end_matches(".tgz")
        .to_string()
}

/// One check of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it holds.
    pub ok: bool,
    /// Why not (or a note when it holds).
    pub detail: String,
}

/// The result of [`verify`]: every check, in order.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verdict {
    /// The run the manifest names.
    pub run: Option<String>,
    /// Every check made.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// Whether every check holds.
    pub fn is_valid(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The failed checks.
    pub fn problems(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| !c.ok).collect()
    }

    fn pass(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok: true,
            detail: detail.into(),
        });
    }

    fn fail(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            ok: false,
            detail: detail.into(),
        });
    }

    /// One line per check: `ok   what: detail` or `FAIL what: detail`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            out.push_str(if c.ok { "ok   " } else { "FAIL " });
            out.push_str(&c.what);
            if !c.detail.is_empty() {
                out.push_str(": ");
                out.push_str(&c.detail);
            }
            out.push('\n');
        }
        out.push_str(if self.is_valid() {
            "bundle verified\n"
        } else {
            "bundle NOT verified\n"
        });
        out
    }
}

/// Verify a bundle offline against trusted public keys.
pub fn verify(bundle: &Bundle, keys: &KeyRing) -> Verdict {
    let mut v = Verdict::default();
    let Some(manifest_bytes) = bundle.get(MANIFEST) else {
        v.fail(MANIFEST, "missing: this is not an evidence bundle");
        return v;
    };
    let manifest_text = String::from_utf8_lossy(manifest_bytes).to_string();
    let manifest: Value = match serde_json::from_str(&manifest_text) {
        Ok(m) => m,
        Err(e) => {
            v.fail(MANIFEST, format!("not JSON: {e}"));
            return v;
        }
    };
    v.run = manifest["run"].as_str().map(str::to_string);
    // The signature over the manifest's exact bytes.
    let signature: Option<Value> = bundle
        .get(SIGNATURE)
        .and_then(|b| serde_json::from_slice(b).ok());
    let key = signature.as_ref().and_then(|s| s["key"].as_str());
    let sig = signature.as_ref().and_then(|s| s["sig"].as_str());
    match keys.check(Domain::Manifest, &manifest_text, key, sig) {
        SignatureCheck::Valid => v.pass(
            "manifest signature",
            format!("signed by key {}", key.unwrap_or_default()),
        ),
        SignatureCheck::Unsigned => v.fail(
            "manifest signature",
            format!("{SIGNATURE} is missing or malformed"),
        ),
        SignatureCheck::UnknownKey => v.fail(
            "manifest signature",
            format!(
                "signed by key {}, which is not among the public keys given ({})",
                key.unwrap_or_default(),
                keys.ids().join(", ")
            ),
        ),
        SignatureCheck::Invalid => v.fail(
            "manifest signature",
            format!(
                "does not verify with key {}: {MANIFEST} was changed after it was signed",
                key.unwrap_or_default()
            ),
        ),
    }
    if manifest["format"] != FORMAT {
        v.fail(
            "format",
            format!("expected {FORMAT}, found {}", manifest["format"]),
        );
    }
    // Every listed file present with its digest; nothing unlisted.
    let listed = manifest["files"].as_object().cloned().unwrap_or_default();
    for (name, entry) in &listed {
        let expected = entry["sha256"].as_str().unwrap_or_default();
        match bundle.get(name) {
            None => v.fail(
                format!("file {name}"),
                "listed in the manifest but missing from the bundle",
            ),
            Some(bytes) => {
                let actual = sha256_hex(bytes);
                if actual == expected {
                    v.pass(format!("file {name}"), format!("sha256 {actual}"));
                } else {
                    v.fail(
                        format!("file {name}"),
                        format!("SHA-256 is {actual} but the manifest says {expected}: the file was changed after export"),
                    );
                }
            }
        }
    }
    for name in bundle.names() {
        if name != MANIFEST && name != SIGNATURE && !listed.contains_key(name) {
            v.fail(
                format!("file {name}"),
                "not in the manifest: added after export",
            );
        }
    }
    // The audit slice: each record intact and signed; the documents are the ones it names.
    let run = v.run.clone().unwrap_or_default();
    let records = audit_slice(bundle, keys, &run, &mut v);
    let recorded = |event: &str, field: &str| -> Option<String> {
        records
            .iter()
            .rev()
            .find(|r| r.event == event)
            .and_then(|r| r.details[field].as_str().map(str::to_string))
    };
    // A run that contained ahead of discovery started with its contain-only plan; the plan it
    // ran is the one its `run.planned` record names.
    let (plan_sha256, plan_event) = match recorded("run.planned", "plan_sha256") {
        Some(sha) => (Some(sha), "run.planned"),
        None => (recorded("run.started", "plan_sha256"), "run.started"),
    };
    cross_check(bundle, &mut v, "plan.json", plan_sha256, plan_event);
    cross_check(
        bundle,
        &mut v,
        "report.json",
        recorded("run.finished", "report_sha256"),
        "run.finished",
    );
    if bundle.get("playbook.yaml").is_some() {
        cross_check(
            bundle,
            &mut v,
            "playbook.yaml",
            recorded("run.started", "playbook_digest"),
            "run.started",
        );
    }
    v
}

fn audit_slice(bundle: &Bundle, keys: &KeyRing, run: &str, v: &mut Verdict) -> Vec<AuditRecord> {
    let Some(bytes) = bundle.get("audit.jsonl") else {
        v.fail("audit.jsonl", "missing");
        return Vec::new();
    };
    let text = String::from_utf8_lossy(bytes);
    let mut records: Vec<AuditRecord> = Vec::new();
    let mut ok = true;
    for (index, line) in text.lines().enumerate() {
        let what = format!("audit.jsonl line {}", index + 1);
        let record = match check_record_line(line) {
            Ok(r) => r,
            Err(e) => {
                v.fail(what, e.to_string());
                ok = false;
                continue;
            }
        };
        if let Err(e) = check_signature(&record, keys) {
            v.fail(what.clone(), e.to_string());
            ok = false;
        }
        if record.run.as_deref() != Some(run) {
            v.fail(
                what.clone(),
                format!(
                    "record seq {} belongs to run {:?}, not {run}",
                    record.seq, record.run
                ),
            );
            ok = false;
        }
        if let Some(prev) = records.last() {
            if record.seq <= prev.seq {
                v.fail(
                    what,
                    format!(
                        "record seq {} follows seq {}: records reordered or duplicated",
                        record.seq, prev.seq
                    ),
                );
                ok = false;
            }
        }
        records.push(record);
    }
    if ok {
        v.pass(
            "audit records",
            format!(
                "{} records of run {run}, each hash intact and signed",
                records.len()
            ),
        );
    }
    records
}

fn cross_check(
    bundle: &Bundle,
    v: &mut Verdict,
    file: &str,
    recorded: Option<String>,
    event: &str,
) {
    let what = format!("{file} matches the audit log");
    let Some(bytes) = bundle.get(file) else {
        v.fail(what, "the file is missing");
        return;
    };
    let actual = sha256_hex(bytes);
    match recorded {
        None => v.fail(
            what,
            format!("no signed {event} record in audit.jsonl records its SHA-256"),
        ),
        Some(expected) if expected == actual => {
            v.pass(what, format!("SHA-256 recorded in the signed {event} record"))
        }
        Some(expected) => v.fail(
            what,
            format!("SHA-256 is {actual} but the signed {event} record says {expected}: not the document the run used"),
        ),
    }
}
