//! Small boot-root files kept in memory (masters, shared `.cfg` files, directory seeds), checked
//! against their size and modification time on every request: a storm of phones reading the
//! same few files costs one `stat` each, not an open, reads and a close. Large files (firmware)
//! are streamed from disk as before.

use super::*;

/// Files up to this size are kept.
pub(super) const MAX_FILE: u64 = 256 * 1024;
/// All kept files together; past it the cache starts over.
const MAX_TOTAL: usize = 64 * 1024 * 1024;

#[derive(Default)]
pub(super) struct SmallFiles {
    /// Keyed by the admin's file paths (a fast hash: not a phone's input).
    files: HashMap<PathBuf, (Stamp, Bytes), foldhash::fast::RandomState>,
    total: usize,
}

impl Core {
    /// The bytes of a small file whose stat said `stamp`: from memory when the stamp still
    /// matches, else read (inline: small, and on the boot root's local disk) and kept if the
    /// file did not change while it was read. `None` when it vanished meanwhile.
    pub(super) fn small_file(&self, path: &Path, stamp: Stamp) -> std::io::Result<Option<Bytes>> {
        if let Some((s, b)) = lock(&self.small_files).files.get(path)
            && *s == stamp
        {
            return Ok(Some(b.clone()));
        }
        let body = match std::fs::read(path) {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let after = fetch::file_stamp(path)?;
        if after == Some(stamp) && body.len() as u64 == stamp.0 {
            let mut cache = lock(&self.small_files);
            if cache.total + body.len() > MAX_TOTAL {
                cache.files.clear();
                cache.total = 0;
            }
            cache.total += body.len();
            if let Some((_, old)) = cache
                .files
                .insert(path.to_path_buf(), (stamp, body.clone()))
            {
                cache.total -= old.len();
            }
        }
        Ok(Some(body))
    }
}
