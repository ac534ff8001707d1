//! Backups of a data directory while its server keeps serving, and their restore.
//!
//! A backup is a gzip'd tar: `polyprov.db` as SQLite's `VACUUM INTO` makes it (one consistent
//! snapshot, read beside the running server's writes thanks to WAL), every other file of the
//! data directory (secrets, certificates, the boot root, uploads, quarantine) read whole — each
//! upload is a finished file or an append-only log, so what a phone had been told was stored
//! before the backup began is in it — the settings file when given, and last `MANIFEST.json`
//! with every file's size and SHA-256. A restore writes into a new folder beside the target,
//! checks every file against the manifest, and only then renames it into place: a damaged or
//! truncated backup restores nothing.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

/// The archive format this code writes and reads.
pub const FORMAT: u32 = 1;
/// Where the settings file goes inside a backup.
pub const SETTINGS_ENTRY: &str = "settings/polyprov.toml";
const MANIFEST: &str = "MANIFEST.json";
const DB: &str = "polyprov.db";

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("the inventory snapshot: {0}")]
    Snapshot(String),
    #[error("not a polyprov backup, or a damaged one: {0}")]
    Damaged(String),
    #[error("{0} exists and is not empty: restore into a new folder")]
    NotEmpty(PathBuf),
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub size: u64,
    pub sha256: String,
}

/// What a backup holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub polyprov_version: String,
    pub created_at: i64,
    /// The inventory's schema version (`PRAGMA user_version`) in the snapshot.
    pub schema_version: i64,
    pub files: BTreeMap<String, Entry>,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a snapshot of the inventory at `db` to `to` (which must not exist), beside a server
/// that keeps writing.
pub async fn snapshot_inventory(db: &Path, to: &Path) -> Result<i64, BackupError> {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    let snap = |e: sqlx::Error| BackupError::Snapshot(e.to_string());
    let mut conn = SqliteConnectOptions::new()
        .filename(db)
        .read_only(true)
        .busy_timeout(std::time::Duration::from_secs(30))
        .connect()
        .await
        .map_err(snap)?;
    let target = to
        .to_str()
        .ok_or_else(|| BackupError::Snapshot("the snapshot path is not UTF-8".into()))?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await
        .map_err(snap)?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut conn)
        .await
        .map_err(snap)?;
    Ok(version)
}

/// The files of `data` to back up, relative, sorted: everything but the live database files
/// (the snapshot stands for them) and the upload store's scratch folder.
fn data_files(data: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(data.join(&rel))? {
            let e = e?;
            let name = rel.join(e.file_name());
            let text = name.to_string_lossy();
            if text.starts_with("polyprov.db") || text == "uploads/.tmp" {
                continue;
            }
            let kind = e.file_type()?;
            if kind.is_dir() {
                stack.push(name);
            } else if kind.is_file() {
                out.push(name);
            }
            // Links and special files are not part of a data directory polyprov makes.
        }
    }
    out.sort();
    Ok(out)
}

/// Backs up `data` (and the settings file, when given) into `out` (created 0600, replaced only
/// once whole). Returns the manifest.
pub async fn backup(
    data: &Path,
    settings: Option<&Path>,
    out: &Path,
    version: &str,
) -> Result<Manifest, BackupError> {
    let scratch = out.with_extension(format!("partial-{:08x}", rand::random::<u32>()));
    let snapshot = scratch.with_extension("db");
    let schema_version = snapshot_inventory(&data.join(DB), &snapshot).await?;
    let data = data.to_path_buf();
    let settings = settings.map(Path::to_path_buf);
    let out = out.to_path_buf();
    let version = version.to_string();
    tokio::task::spawn_blocking(move || {
        let r = write_archive(
            &data,
            settings.as_deref(),
            &snapshot,
            &scratch,
            schema_version,
            &version,
        );
        let _ = fs::remove_file(&snapshot);
        match r {
            Ok(m) => {
                fs::rename(&scratch, &out)?;
                Ok(m)
            }
            Err(e) => {
                let _ = fs::remove_file(&scratch);
                Err(e)
            }
        }
    })
    .await
    .map_err(|e| BackupError::Io(io::Error::other(e.to_string())))?
}

fn write_archive(
    data: &Path,
    settings: Option<&Path>,
    snapshot: &Path,
    to: &Path,
    schema_version: i64,
    version: &str,
) -> Result<Manifest, BackupError> {
    let file = {
        let mut o = fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(to)?
    };
    let gz = flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut files = BTreeMap::new();
    let mut add = |tar: &mut tar::Builder<_>, name: &str, path: &Path| -> Result<(), BackupError> {
        // Read whole, then written with its exact length: a log a phone appends to meanwhile
        // is taken as it was at this moment, never torn.
        let bytes = fs::read(path)?;
        let meta = fs::metadata(path)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(permissions(&meta));
        h.set_mtime(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, bytes.as_slice())?;
        files.insert(
            name.to_string(),
            Entry {
                size: bytes.len() as u64,
                sha256: hex(&Sha256::digest(&bytes)),
            },
        );
        Ok(())
    };
    add(&mut tar, DB, snapshot)?;
    for rel in data_files(data)? {
        let name = rel.to_string_lossy().replace('\\', "/");
        match add(&mut tar, &name, &data.join(&rel)) {
            Ok(()) => {}
            // Moved by a release or rotated between the listing and the read: it is in its
            // new place, which the listing has or which happened after the backup began.
            Err(BackupError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(s) = settings {
        add(&mut tar, SETTINGS_ENTRY, s)?;
    }
    let manifest = Manifest {
        format: FORMAT,
        polyprov_version: version.to_string(),
        created_at: crate::inventory::now(),
        schema_version,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| io::Error::other(e.to_string()))?;
    let mut h = tar::Header::new_gnu();
    h.set_size(text.len() as u64);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, MANIFEST, text.as_slice())?;
    let gz = tar.into_inner()?;
    let mut buf = gz.finish()?;
    buf.flush()?;
    buf.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(manifest)
}

#[cfg(unix)]
fn permissions(m: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn permissions(_m: &fs::Metadata) -> u32 {
    0o600
}

/// A name from an archive as a relative path with no `..`, root or prefix; `None` otherwise.
fn safe_relative(name: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// Restores `archive` into `data` (absent or empty). The settings file, when the backup holds
/// one and `settings_to` is given, is written there (not over an existing file). Returns the
/// manifest.
pub fn restore(
    archive: &Path,
    data: &Path,
    settings_to: Option<&Path>,
) -> Result<Manifest, BackupError> {
    if data.exists() && fs::read_dir(data)?.next().is_some() {
        return Err(BackupError::NotEmpty(data.to_path_buf()));
    }
    if let Some(s) = settings_to
        && s.exists()
    {
        return Err(BackupError::NotEmpty(s.to_path_buf()));
    }
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let staging = parent.join(format!(
        ".{}.restoring-{:08x}",
        data.file_name()
            .map_or("data".into(), |n| n.to_string_lossy()),
        rand::random::<u32>()
    ));
    let result = unpack(archive, &staging);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let settings = staging.join(SETTINGS_ENTRY);
    if let Some(to) = settings_to
        && settings.is_file()
    {
        fs::copy(&settings, to)?;
    }
    let _ = fs::remove_dir_all(staging.join("settings"));
    if data.exists() {
        fs::remove_dir(data)?;
    }
    fs::rename(&staging, data)?;
    Ok(manifest)
}

fn unpack(archive: &Path, to: &Path) -> Result<Manifest, BackupError> {
    let damaged = |s: String| BackupError::Damaged(s);
    fs::create_dir_all(to)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(to, fs::Permissions::from_mode(0o700))?;
    }
    let gz = flate2::read::GzDecoder::new(io::BufReader::new(fs::File::open(archive)?));
    let mut tar = tar::Archive::new(gz);
    let mut seen: BTreeMap<String, Entry> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for entry in tar.entries().map_err(|e| damaged(e.to_string()))? {
        let mut entry = entry.map_err(|e| damaged(e.to_string()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(damaged("it holds something other than plain files".into()));
        }
        let name = entry
            .path()
            .map_err(|e| damaged(e.to_string()))?
            .into_owned();
        let rel = safe_relative(&name)
            .ok_or_else(|| damaged(format!("unsafe path {}", name.display())))?;
        let key = rel.to_string_lossy().replace('\\', "/");
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| damaged(format!("{key}: {e}")))?;
        if key == MANIFEST {
            manifest = Some(
                serde_json::from_slice(&bytes).map_err(|e| damaged(format!("manifest: {e}")))?,
            );
            continue;
        }
        let path = to.join(&rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let mode = entry.header().mode().unwrap_or(0o600) & 0o777;
        let mut o = fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
        o.open(&path)?.write_all(&bytes)?;
        seen.insert(
            key,
            Entry {
                size: bytes.len() as u64,
                sha256: hex(&Sha256::digest(&bytes)),
            },
        );
    }
    let manifest = manifest.ok_or_else(|| damaged("no manifest (a truncated backup?)".into()))?;
    if manifest.format != FORMAT {
        return Err(damaged(format!(
            "format {} (this polyprov reads {FORMAT})",
            manifest.format
        )));
    }
    if seen != manifest.files {
        let missing: Vec<&String> = manifest
            .files
            .keys()
            .filter(|k| seen.get(*k) != manifest.files.get(*k))
            .take(5)
            .collect();
        return Err(damaged(format!(
            "files missing or changed against the manifest: {missing:?}"
        )));
    }
    // The directories polyprov makes private stay private.
    #[cfg(unix)]
    for dir in ["uploads", "quarantine", "tls"] {
        use std::os::unix::fs::PermissionsExt;
        let p = to.join(dir);
        if p.is_dir() {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o700))?;
        }
    }
    fs::create_dir_all(to.join("uploads/.tmp"))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_that_leave_the_folder_are_refused() {
        assert_eq!(
            safe_relative(Path::new("uploads/a/b")),
            Some(PathBuf::from("uploads/a/b"))
        );
        assert_eq!(safe_relative(Path::new("./x")), Some(PathBuf::from("x")));
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", ""] {
            assert_eq!(safe_relative(Path::new(bad)), None, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn names_from_an_archive_never_leave_the_folder(name in "[a-z./\\\\]{0,30}") {
            if let Some(p) = safe_relative(Path::new(&name)) {
                proptest::prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
            }
        }

        #[test]
        fn any_bytes_restore_nothing_or_a_whole_folder(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            let archive = dir.path().join("in.tgz");
            fs::write(&archive, &bytes).unwrap();
            let target = dir.path().join("data");
            let r = restore(&archive, &target, None);
            proptest::prop_assert!(r.is_err(), "random bytes are not a backup");
            let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            proptest::prop_assert_eq!(left, vec![std::ffi::OsString::from("in.tgz")]);
        }
    }
}
