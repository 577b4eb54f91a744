//! The allowlist as the admin API changes it: swapped whole into the
//! detector's handle, and written to `detect.allowlist_file` (atomically,
//! by rename) so a restart keeps it.

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::detect::{Allowlist, AllowlistError, AllowlistHandle, Entry};

#[derive(Debug, thiserror::Error)]
pub enum AllowlistFileError {
    #[error("allowlist file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("allowlist file {path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// Reads the file; a missing file is an empty list.
pub fn load_file(path: &Path) -> Result<Allowlist, AllowlistFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Allowlist::default()),
        Err(source) => {
            return Err(AllowlistFileError::Io {
                path: path.into(),
                source,
            })
        }
    };
    let entries: Vec<Entry> =
        serde_json::from_str(&text).map_err(|e| AllowlistFileError::Invalid {
            path: path.into(),
            why: e.to_string(),
        })?;
    Allowlist::new(entries).map_err(|e| AllowlistFileError::Invalid {
        path: path.into(),
        why: e.to_string(),
    })
}

pub struct AllowlistStore {
    pub handle: AllowlistHandle,
    file: Option<PathBuf>,
    /// Serialises read-modify-write of the list and its file.
    write: Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Invalid(#[from] AllowlistError),
    #[error("no allowlist entry with id {0:?}")]
    NotFound(String),
    #[error(transparent)]
    File(#[from] AllowlistFileError),
}

impl AllowlistStore {
    pub fn new(handle: AllowlistHandle, file: Option<PathBuf>) -> AllowlistStore {
        AllowlistStore {
            handle,
            file,
            write: Mutex::new(()),
        }
    }

    pub async fn add(&self, e: Entry) -> Result<Entry, ChangeError> {
        let _g = self.write.lock().await;
        let next = self.handle.load().with(e.clone())?;
        let added = next
            .entries()
            .iter()
            .find(|x| x.id == e.id)
            .cloned()
            .expect("just added");
        self.commit(next).await?;
        Ok(added)
    }

    pub async fn remove(&self, id: &str) -> Result<Entry, ChangeError> {
        let _g = self.write.lock().await;
        let cur = self.handle.load_full();
        let removed = cur
            .entries()
            .iter()
            .find(|x| x.id == id)
            .cloned()
            .ok_or_else(|| ChangeError::NotFound(id.to_owned()))?;
        let next = cur.without(id).expect("entry exists");
        self.commit(next).await?;
        Ok(removed)
    }

    /// Writes the file first: a change that cannot be kept is not made.
    async fn commit(&self, next: Allowlist) -> Result<(), AllowlistFileError> {
        if let Some(path) = &self.file {
            let text = serde_json::to_vec_pretty(next.entries()).expect("entries serialise");
            let tmp = path.with_extension("tmp");
            let io = |source| AllowlistFileError::Io {
                path: path.clone(),
                source,
            };
            tokio::fs::write(&tmp, text).await.map_err(io)?;
            tokio::fs::rename(&tmp, path).await.map_err(io)?;
        }
        self.handle.store(std::sync::Arc::new(next));
        Ok(())
    }
}
