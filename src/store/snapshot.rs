//! The copy of the HR export that the file-source scheduler diffed last (`closeout serve`,
//! `[serve] source_poll_secs`): the next poll diffs the export against it and stores the
//! joiner, mover and leaver events of the difference.
//!
//! On SQLite it is a file beside the store (`source-snapshot.<ext>` next to `[store] path`), as it
//! always was; on PostgreSQL it is a row of the database, so a replica that takes the scheduler
//! over from another (on another host) diffs against what the previous leader last saw. Losing
//! the snapshot would make the next poll a first poll, which only takes a snapshot: the changes
//! since the last one would make no event (a leaver missed), so it must live where every
//! replica reads it.

use super::pg::{PgConn, PgError, PgStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The snapshot file beside the SQLite store.
    #[error("source snapshot {}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The PostgreSQL store.
    #[error("source snapshot: {0}")]
    Postgres(#[from] PgError),
    /// A query on the PostgreSQL store.
    #[error("source snapshot: {0}")]
    Sql(#[from] postgres::Error),
}

/// Where the snapshot of one HR export is kept.
pub enum SourceSnapshot {
    /// A file (SQLite store): replaced atomically.
    File(PathBuf),
    /// A row of the PostgreSQL store, keyed by the export's file name.
    Postgres {
        /// The connection (boxed: it holds a mutex and a client, much larger than a path).
        conn: Box<PgConn>,
        /// The export's file name (`hr.csv`).
        name: String,
    },
}

impl SourceSnapshot {
    /// The snapshot of the export at `source` for a SQLite store at `store_path`: the file
    /// `source-snapshot.<ext of source>` beside it.
    pub fn beside(store_path: &Path, source: &Path) -> SourceSnapshot {
        let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("csv");
        let dir = store_path.parent().map(PathBuf::from).unwrap_or_default();
        SourceSnapshot::File(dir.join(format!("source-snapshot.{ext}")))
    }

    /// The snapshot of the export at `source` in a PostgreSQL store.
    pub fn postgres(store: &Arc<PgStore>, source: &Path) -> SourceSnapshot {
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| source.display().to_string());
        SourceSnapshot::Postgres {
            conn: Box::new(PgConn::new(store)),
            name,
        }
    }

    /// The last snapshot, or `None` before the first poll.
    pub fn read(&self) -> Result<Option<Vec<u8>>, SnapshotError> {
        match self {
            SourceSnapshot::File(path) => match std::fs::read(path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(SnapshotError::File {
                    path: path.clone(),
                    source,
                }),
            },
            SourceSnapshot::Postgres { conn, name } => conn.with(|c| {
                let row = c.query_opt(
                    "SELECT content FROM source_snapshot WHERE name = $1",
                    &[name],
                )?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            }),
        }
    }

    /// Replace the snapshot with `bytes` (durably: fsync and rename, or a commit).
    pub fn write(&self, bytes: &[u8]) -> Result<(), SnapshotError> {
        match self {
            SourceSnapshot::File(path) => {
                write_atomically(path, bytes).map_err(|source| SnapshotError::File {
                    path: path.clone(),
                    source,
                })
            }
            SourceSnapshot::Postgres { conn, name } => conn.with(|c| {
                c.execute(
                    "INSERT INTO source_snapshot (name, content) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET content = excluded.content, taken_at = now()",
                    &[name, &bytes],
                )?;
                Ok(())
            }),
        }
    }
}

/// Replace `to` with `bytes` atomically (create its directory, write, fsync, rename).
fn write_atomically(to: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = to.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(snapshot: &SourceSnapshot) {
        assert_eq!(snapshot.read().expect("read"), None, "no snapshot yet");
        snapshot.write(b"id,email\nE1,a@x\n").expect("write");
        assert_eq!(
            snapshot.read().expect("read").as_deref(),
            Some(&b"id,email\nE1,a@x\n"[..])
        );
        snapshot.write(b"id,email\n").expect("replace");
        assert_eq!(
            snapshot.read().expect("read").as_deref(),
            Some(&b"id,email\n"[..])
        );
    }

    #[test]
    fn a_file_snapshot_is_read_back_and_replaced_and_its_directory_made() {
        let dir = tempfile::tempdir().expect("dir");
        let snapshot = SourceSnapshot::beside(
            &dir.path().join("state/closeout.db"),
            Path::new("/hr/export.json"),
        );
        round_trip(&snapshot);
        assert!(dir.path().join("state/source-snapshot.json").exists());
    }

    #[test]
    fn a_postgres_snapshot_is_shared_by_every_handle_on_the_database() {
        let (_dir, store) = crate::store::pg::testing::fresh();
        let a = SourceSnapshot::postgres(&store, Path::new("/a/hr.csv"));
        round_trip(&a);
        // Another replica (another handle, another host's path to the same export name).
        let b = SourceSnapshot::postgres(&store, Path::new("/b/hr.csv"));
        assert_eq!(b.read().expect("read").as_deref(), Some(&b"id,email\n"[..]));
    }
}
