//! Boot-root directory listings for doors that list (FTP), without per-device names.

use super::*;

/// One entry of a boot-root directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    pub name: String,
    pub len: u64,
    pub modified: std::time::SystemTime,
    pub is_dir: bool,
}

impl Core {
    /// Whether `path` names a directory of the boot root (FTP `CWD`).
    pub async fn is_shared_dir(&self, path: &str) -> bool {
        match self.shared_dir(path) {
            Some(dir) => tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()),
            None => false,
        }
    }

    /// The boot-root directory `path` would be, if its segments are acceptable at all.
    pub(super) fn shared_dir(&self, path: &str) -> Option<PathBuf> {
        // The same path rules as every request (`RequestPath`), and dot-directories stay hidden.
        let dir = RequestPath::parse_dir(path).ok()?;
        if dir.segments().iter().any(|s| s.starts_with('.')) {
            return None;
        }
        Some(
            dir.segments()
                .iter()
                .fold(self.root.clone(), |d, s| d.join(s)),
        )
    }

    /// The shared entries of a boot-root directory (`/`, `/firmware`), for doors that list
    /// (FTP `LIST`, `CWD`). Per-device names and dot files are never listed: a listing must not
    /// tell a scanner which phones exist.
    pub async fn shared_listing(&self, path: &str) -> Result<Vec<SharedEntry>, Refusal> {
        let dir = self.shared_dir(path).ok_or(Refusal::NotFound)?;
        tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|_| Refusal::NotFound)? {
                let Ok(entry) = entry else { continue };
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                let is_dir = meta.is_dir();
                if name.starts_with('.')
                    || !(is_dir || meta.is_file())
                    || (!is_dir && FileKind::of(&name) != FileKind::Shared)
                {
                    continue;
                }
                entries.push(SharedEntry {
                    name,
                    len: if is_dir { 0 } else { meta.len() },
                    modified: meta.modified().unwrap_or(UNIX_EPOCH),
                    is_dir,
                });
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
        .map_err(|e| Refusal::Internal(e.to_string()))?
    }
}
