//! What the provider remembers of a run's first resolution, so that verification's resolution
//! (run with [`Reuse::SinceLastRead`](closeout_contract::reuse::Reuse)) reads live only what can
//! have changed, instead of every entity, KV key and token of the server again.
//!
//! - **Tokens** (no audit log needed): a token's entity, metadata and creation time are fixed
//!   when it is created (Vault has no call that changes them), and a token is the person's, or a
//!   candidate of the audit-log attribution, by those fields alone. So an accessor looked up
//!   before whose remembered token is neither is not looked up again: if its token still exists
//!   it is the same token and still not the person's; if it is gone it is nothing. Every other
//!   accessor is looked up live: the person's, the candidates, and every accessor new since.
//! - **Entities and KV v2 metadata** (only when a file audit log is configured): each is reused
//!   only when the audit log, read from where it ended before the first resolution began, shows
//!   no request that can have changed it (`Written`): any non-read request on
//!   `identity/entity/id/<id>` or `identity/entity/name/<name>` marks that entity, any other
//!   non-read request under `identity/entity` (creation by name, aliases, merges, batch deletes)
//!   marks every entity; a non-read request on `<mount><anything>/<key>` marks that KV key, one
//!   on `sys/mounts` or `sys/remount` every key. Vault writes a request's audit entry before it
//!   acts and its response entry after, and refuses a request no audit device can record, so a
//!   change that landed after the first read is in the log past the mark. The entity list's
//!   `key_info` (names and aliases) is always live; an entity whose name or aliases differ, a
//!   new one, and every entity that is the person's or names the person as owner is read live.
//!   A KV key the person owns, reads through a policy, or could grant herself, and every new key,
//!   is read live. The KV tree itself is listed again.
//!
//! The log is read after the verification's own entity listing and trusted only if that
//! listing's request (by Vault's request id) is in it: it is then the server's live log up to
//! that moment. If it is not, or the log is shorter than the mark (rotated or truncated), no
//! entity or KV metadata is reused.

use crate::model::{Entity, KvMetadata, TokenInfo};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

/// What a run's earlier resolution read.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// Every token looked up, by accessor (only the accessors of the latest listing are kept),
    /// with only the fields that decide whether it is the person's or a candidate: accessor,
    /// entity id, metadata, creation time.
    pub tokens: BTreeMap<String, TokenInfo>,
    /// The entities and KV metadata, with the audit log's length when their reading began;
    /// `None` without an audit log.
    pub reads: Option<Reads>,
}

/// Entities and KV v2 metadata read by one resolution.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reads {
    /// The audit log's length (bytes) before the first of these reads was sent.
    pub mark: u64,
    pub entities: BTreeMap<String, Entity>,
    /// KV v2 metadata by `<mount>metadata/<key>`.
    pub kv: BTreeMap<String, KvMetadata>,
}

/// One resolution's KV v2 metadata: what it may reuse (`prior`, where `written` is known and
/// marks no change) and what it read or reused (`read`, by `<mount>metadata/<key>`).
pub(crate) struct KvSession<'a> {
    pub prior: &'a BTreeMap<String, KvMetadata>,
    pub written: Option<&'a Written>,
    pub read: BTreeMap<String, KvMetadata>,
}

impl KvSession<'_> {
    /// The remembered metadata of `key` of `mount`, when it may be reused: the log is known and
    /// shows no request that can have changed it.
    pub fn reusable(&self, mount: &str, key: &str) -> Option<&KvMetadata> {
        let written = self.written?;
        if written.kv_key(mount, key) {
            return None;
        }
        self.prior.get(&format!("{mount}metadata/{key}"))
    }
}

/// The non-read requests the audit log holds past a mark, as far as they can change what
/// [`Reads`] remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Written {
    /// Every entity may have changed.
    pub all_entities: bool,
    pub entity_ids: BTreeSet<String>,
    pub entity_names: BTreeSet<String>,
    /// Every KV key may have changed (a mount was created, moved or removed).
    pub all_kv: bool,
    /// The request paths of every other non-read request (KV keys are matched against them).
    pub paths: BTreeSet<String>,
}

impl Written {
    /// Everything may have changed (the log cannot tell).
    pub fn everything() -> Written {
        Written {
            all_entities: true,
            all_kv: true,
            ..Written::default()
        }
    }

    /// Whether the remembered entity `e` may have changed.
    pub fn entity(&self, e: &Entity) -> bool {
        self.all_entities
            || self.entity_ids.contains(&e.id)
            || self.entity_names.contains(&e.name.to_ascii_lowercase())
    }

    /// Whether the metadata of KV v2 key `key` of `mount` (`secret/`) may have changed: a
    /// non-read request on `<mount><segment>/<key>` (`metadata/`, `data/`, `delete/`,
    /// `destroy/`, `undelete/`, ...).
    pub fn kv_key(&self, mount: &str, key: &str) -> bool {
        self.all_kv
            || self.paths.iter().any(|p| {
                p.strip_prefix(mount)
                    .and_then(|rest| rest.split_once('/'))
                    .is_some_and(|(_, k)| k.trim_end_matches('/') == key)
            })
    }
}

#[derive(serde::Deserialize)]
struct Entry {
    #[serde(default)]
    request: Option<Request>,
}

#[derive(serde::Deserialize)]
struct Request {
    #[serde(default)]
    id: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    operation: String,
}

/// The non-read requests of an audit log's entries (request and response entries alike), if the
/// log holds the request `witness` (Vault's request id of a call made just before it is read):
/// otherwise it is not the live log, and everything is marked. A line that is not an audit entry
/// marks everything too: the log cannot be trusted to tell.
pub(crate) fn written(log: impl BufRead, witness: &str) -> std::io::Result<Written> {
    let mut out = Written::default();
    let mut witnessed = false;
    for line in log.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(entry) = serde_json::from_str::<Entry>(&line) else {
            return Ok(Written::everything());
        };
        let Some(r) = entry.request else {
            continue;
        };
        witnessed |= !witness.is_empty() && r.id == witness;
        if matches!(r.operation.as_str(), "read" | "list") {
            continue;
        }
        let path = r.path.trim_start_matches('/');
        if let Some(rest) = path.strip_prefix("identity/entity") {
            if let Some(id) = rest.strip_prefix("/id/") {
                out.entity_ids.insert(id.trim_end_matches('/').to_string());
            } else if let Some(name) = rest.strip_prefix("/name/") {
                out.entity_names
                    .insert(name.trim_end_matches('/').to_ascii_lowercase());
            } else {
                out.all_entities = true;
            }
        } else if path.starts_with("sys/mounts") || path.starts_with("sys/remount") {
            out.all_kv = true;
        } else {
            out.paths.insert(path.to_string());
        }
    }
    Ok(if witnessed {
        out
    } else {
        Written::everything()
    })
}

/// The audit log's length now; `None` when it cannot be read.
pub(crate) fn log_len(log: &std::path::Path) -> Option<u64> {
    std::fs::metadata(log).ok().map(|m| m.len())
}

/// What the audit log at `log` holds past `mark` ([`written`], with its `witness`); everything
/// when it is shorter than the mark (rotated or truncated) or cannot be read.
pub(crate) fn written_since(log: &std::path::Path, mark: u64, witness: &str) -> Written {
    use std::io::{Seek, SeekFrom};
    let read = || -> std::io::Result<Written> {
        let mut file = std::fs::File::open(log)?;
        if file.metadata()?.len() < mark {
            return Ok(Written::everything());
        }
        file.seek(SeekFrom::Start(mark))?;
        written(std::io::BufReader::new(file), witness)
    };
    read().unwrap_or_else(|_| Written::everything())
}

/// Whether the remembered entity `before` may stand for the listed one: same name and the same
/// aliases (the list's `key_info`, always live), and nothing in the log since.
pub(crate) fn entity_unchanged(
    before: &Entity,
    name: &str,
    aliases: &[crate::model::Alias],
    written: &Written,
) -> bool {
    let key = |a: &crate::model::Alias| {
        (
            a.id.clone(),
            a.name.clone(),
            a.mount_accessor.clone(),
            a.mount_path.clone(),
        )
    };
    before.name == name
        && before.aliases.iter().map(key).collect::<BTreeSet<_>>()
            == aliases.iter().map(key).collect::<BTreeSet<_>>()
        && !written.entity(before)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request id of the caller's own listing, made just before the log is read.
    const WITNESS: &str = "req-own-listing";

    fn req(kind: &str, op: &str, path: &str) -> String {
        format!(
            r#"{{"type":"{kind}","time":"2026-12-07T18:00:00Z","request":{{"id":"req-{op}-{path}","operation":"{op}","path":"{path}"}}}}"#
        )
    }

    fn witness() -> String {
        format!(
            r#"{{"type":"request","time":"2026-12-07T18:00:01Z","request":{{"id":"{WITNESS}","operation":"list","path":"identity/entity/id"}}}}"#
        )
    }

    /// `lines` then the witness.
    fn log(lines: &[&str]) -> Written {
        let mut all: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        all.push(witness());
        written(std::io::Cursor::new(all.join("\n")), WITNESS).expect("read")
    }

    #[test]
    fn reads_and_lists_change_nothing_and_writes_name_what_they_change() {
        let w = log(&[
            &req("request", "read", "identity/entity/id/e1"),
            &req("response", "list", "secret/metadata/"),
            &req("request", "update", "identity/entity/id/e2"),
            &req("response", "update", "identity/entity/name/Bob"),
            &req("response", "update", "secret/metadata/people/x"),
            &req("request", "create", "secret/data/people/y"),
            &req("request", "delete", "secret/destroy/z"),
        ]);
        assert!(!w.all_entities && !w.all_kv);
        assert_eq!(w.entity_ids, BTreeSet::from(["e2".to_string()]));
        assert_eq!(w.entity_names, BTreeSet::from(["bob".to_string()]));
        assert!(w.kv_key("secret/", "people/x"));
        assert!(w.kv_key("secret/", "people/y"));
        assert!(w.kv_key("secret/", "z"));
        assert!(!w.kv_key("secret/", "people"));
        assert!(!w.kv_key("secret/", "people/xx"));
        assert!(!w.kv_key("kv/", "people/x"));
    }

    #[test]
    fn a_write_that_does_not_name_one_entity_or_key_marks_them_all() {
        assert!(log(&[&req("request", "update", "identity/entity")]).all_entities);
        assert!(log(&[&req("request", "update", "identity/entity-alias")]).all_entities);
        assert!(log(&[&req("request", "update", "identity/entity/merge")]).all_entities);
        assert!(log(&[&req("request", "update", "sys/mounts/kv2")]).all_kv);
        assert!(log(&[&req("request", "update", "sys/remount")]).all_kv);
        // An operation the log does not name is taken for a write.
        assert!(log(&[&req("request", "", "identity/entity/batch-delete")]).all_entities);
        // A line that is not an audit entry: the log cannot tell, so everything.
        assert_eq!(log(&["{not json"]), Written::everything());
    }

    #[test]
    fn a_log_without_the_callers_own_request_is_not_the_live_log_and_marks_everything() {
        let lines = [req("request", "read", "sys/health")];
        let w = written(std::io::Cursor::new(lines.join("\n")), WITNESS).expect("read");
        assert_eq!(w, Written::everything());
        // Nor does an empty witness (no request id came back) match an entry without an id.
        let no_id =
            r#"{"type":"request","request":{"operation":"list","path":"identity/entity/id"}}"#;
        assert_eq!(
            written(std::io::Cursor::new(no_id), "").expect("read"),
            Written::everything()
        );
    }

    #[test]
    fn a_log_shorter_than_the_mark_or_missing_reuses_nothing() {
        let dir = std::env::temp_dir().join(format!("closeout-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("audit.log");
        std::fs::write(&path, witness() + "\n").expect("write");
        assert_eq!(written_since(&path, 10_000, WITNESS), Written::everything());
        assert_eq!(
            written_since(&dir.join("none"), 0, WITNESS),
            Written::everything()
        );
        let len = log_len(&path).expect("len");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str(&(req("response", "update", "identity/entity/id/e9") + "\n"));
        text.push_str(&(witness() + "\n"));
        std::fs::write(&path, text).expect("append");
        let w = written_since(&path, len, WITNESS);
        assert_eq!(w.entity_ids, BTreeSet::from(["e9".to_string()]));
        assert!(!w.all_entities);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
