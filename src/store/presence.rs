//! A `closeout serve` running on a SQLite store says so: it holds an exclusive lock (`flock` on
//! Unix) on `<store>.serve.lock` beside the store file for as long as it runs, with its process
//! id written in the file. A second `serve` on the same store refuses to start (it would put the
//! first one's in-flight events back to pending and run them again), and `store migrate` refuses
//! while a `serve` runs, even an idle one that holds no lease (whatever it stored after the copy
//! would stay in the SQLite file only). The lock goes with the process: a killed `serve` leaves
//! the file but not the lock. PostgreSQL replicas share their store by design and take no such
//! lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why the presence lock could not be taken or read.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    /// Another `closeout serve` holds the lock.
    #[error(
        "another `closeout serve` ({holder}) uses the SQLite store {}: one process per SQLite \
         store (several replicas need PostgreSQL, docs/serve.md \"Deployment\")",
        .store.display()
    )]
    Held {
        /// The store file.
        store: PathBuf,
        /// Who holds it, as written in the lock file ("process N"), or "unknown".
        holder: String,
    },
    /// The lock file cannot be opened, locked or written.
    #[error("cannot use the serve lock file {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// The lock held by a running `serve`; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct ServeLock {
    _file: File,
}

/// The lock file of the SQLite store at `store`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".serve.lock");
    PathBuf::from(name)
}

fn open(path: &Path) -> Result<File, PresenceError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| PresenceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| PresenceError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Who the lock file names (its holder writes "process N").
fn holder(file: &mut File) -> String {
    let mut text = String::new();
    match file.read_to_string(&mut text) {
        Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
        _ => "unknown".to_string(),
    }
}

/// Take the lock for a `serve` on the SQLite store at `store`, or say who holds it.
pub fn lock_for_serve(store: &Path) -> Result<ServeLock, PresenceError> {
    let path = lock_path(store);
    let io = |source| PresenceError::Io {
        path: path.clone(),
        source,
    };
    let mut file = open(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(PresenceError::Held {
                store: store.to_path_buf(),
                holder: holder(&mut file),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    write!(file, "process {}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(ServeLock { _file: file })
}

/// Whether a `serve` runs on the SQLite store at `store` now: `Some(holder)` if so.
pub fn serve_running(store: &Path) -> Result<Option<String>, PresenceError> {
    let path = lock_path(store);
    if !path.exists() {
        return Ok(None);
    }
    let mut file = open(&path)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(std::fs::TryLockError::WouldBlock) => Ok(Some(holder(&mut file))),
        Err(std::fs::TryLockError::Error(source)) => Err(PresenceError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_serve_is_refused_naming_the_first_and_the_lock_goes_with_its_holder() {
        let dir = tempfile::tempdir().expect("dir");
        let store = dir.path().join("state/closeout.db");
        assert_eq!(serve_running(&store).expect("read"), None);
        let first = lock_for_serve(&store).expect("the first serve locks");
        let who = format!("process {}", std::process::id());
        assert_eq!(serve_running(&store).expect("read"), Some(who.clone()));
        match lock_for_serve(&store) {
            Err(e @ PresenceError::Held { .. }) => {
                assert!(e.to_string().contains(&who), "{e}");
                assert!(
                    e.to_string().contains("one process per SQLite store"),
                    "{e}"
                );
            }
            other => panic!("a second serve must be refused: {other:?}"),
        }
        drop(first);
        assert_eq!(serve_running(&store).expect("read"), None);
        let _again = lock_for_serve(&store).expect("free again once the first is gone");
    }
}
