//! A folder's files copied to a prefix of an object store, each time they change: how the logs
//! phones upload to one node (appended at every boot, kept on that node's disk) also end up
//! where every node and the admin can read them, and outlive the node.
//!
//! [`Archive::sync`] walks the folder, uploads each selected file whose size or modification
//! time changed since it was last uploaded — streamed, in parts when large, never read whole
//! into memory — and remembers what it uploaded in a state file outside the walked names. A
//! file that changes while it is read is uploaded again at the next sync. Nothing is ever
//! deleted from the store: a rotated log keeps its copy under its new name at the next sync.

use super::{MirrorError, StoreConfig, io, open_store};
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// What one [`Archive::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveReport {
    /// Files uploaded because they were new or had changed (relative paths).
    pub uploaded: Vec<String>,
    /// Files already in the store as they are.
    pub unchanged: usize,
    /// Files that could not be uploaded this time (tried again at the next sync).
    pub failed: Vec<String>,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// A folder whose selected files are copied to a prefix of an object store.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: Option<StorePath>,
    dir: PathBuf,
    state_file: PathBuf,
    /// One sync at a time.
    running: tokio::sync::Mutex<()>,
}

/// What was uploaded: relative path → "size-mtime_ns".
type State = BTreeMap<String, String>;

impl Archive {
    /// An archive of `dir` into `config`'s prefix; `state_file` remembers what was uploaded.
    pub fn new(
        config: &StoreConfig,
        dir: &Path,
        state_file: &Path,
    ) -> Result<Archive, MirrorError> {
        let (store, prefix) = open_store(config)?;
        Ok(Archive::with_store(store, &prefix, dir, state_file))
    }

    /// An archive of `dir` into `store` under `prefix`.
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        dir: &Path,
        state_file: &Path,
    ) -> Archive {
        let prefix = prefix.trim_matches('/');
        Archive {
            store,
            prefix: (!prefix.is_empty()).then(|| StorePath::from(prefix)),
            dir: dir.to_path_buf(),
            state_file: state_file.to_path_buf(),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// Uploads the files under the folder (two levels: `<folder>/<name>` and
    /// `<folder>/<dir>/<name>`, hidden names skipped) that `select` takes (given the relative
    /// path) and that changed since their last upload.
    pub async fn sync(&self, select: impl Fn(&str) -> bool) -> Result<ArchiveReport, MirrorError> {
        let _one = self.running.lock().await;
        let mut state: State = match tokio::fs::read(&self.state_file).await {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => State::new(),
        };
        let mut report = ArchiveReport::default();
        let files = self.files(&select).await?;
        // What is no longer there needs no record (a rotation dropped it, a layout moved it).
        {
            let listed: std::collections::BTreeSet<&str> = files
                .iter()
                .map(|(relative, _)| relative.as_str())
                .collect();
            state.retain(|relative, _| listed.contains(relative.as_str()));
        }
        for (relative, path) in files {
            let Ok(meta) = tokio::fs::metadata(&path).await else {
                continue; // gone since the listing (a rotation)
            };
            let stamp = format!(
                "{}-{}",
                meta.len(),
                meta.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos())
            );
            if state.get(&relative) == Some(&stamp) {
                report.unchanged += 1;
                continue;
            }
            match self.upload(&path, &relative).await {
                Ok(n) => {
                    report.bytes += n;
                    report.uploaded.push(relative.clone());
                    state.insert(relative, stamp);
                }
                Err(e) => {
                    tracing::debug!(file = %relative, error = %e, "cannot archive a file; trying again at the next sync");
                    report.failed.push(relative);
                }
            }
        }
        let tmp = self.state_file.with_extension("tmp");
        let json = serde_json::to_vec(&state).unwrap_or_default();
        tokio::fs::write(&tmp, json).await.map_err(io(&tmp))?;
        tokio::fs::rename(&tmp, &self.state_file)
            .await
            .map_err(io(&self.state_file))?;
        Ok(report)
    }

    /// The selected files, two levels deep, sorted.
    async fn files(
        &self,
        select: &impl Fn(&str) -> bool,
    ) -> Result<Vec<(String, PathBuf)>, MirrorError> {
        let mut out = Vec::new();
        let mut dirs = vec![(String::new(), self.dir.clone(), 0)];
        while let Some((base, dir, depth)) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&dir)(e)),
            };
            while let Some(e) = entries.next_entry().await.map_err(io(&dir))? {
                let Ok(name) = e.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let relative = if base.is_empty() {
                    name
                } else {
                    format!("{base}/{name}")
                };
                let Ok(kind) = e.file_type().await else {
                    continue;
                };
                if kind.is_dir() && depth == 0 {
                    dirs.push((relative, e.path(), depth + 1));
                } else if kind.is_file() && select(&relative) {
                    out.push((relative, e.path()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Streams one file to its key; returns the bytes sent.
    async fn upload(&self, path: &Path, relative: &str) -> Result<u64, MirrorError> {
        let key = match &self.prefix {
            Some(p) => StorePath::from(format!("{p}/{relative}")),
            None => StorePath::from(relative),
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io(path))?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), key);
        let sent = match tokio::io::copy(&mut file, &mut writer).await {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(io(path)(e));
            }
        };
        writer.shutdown().await.map_err(io(path))?;
        Ok(sent)
    }
}
