//! Files phones upload, kept per device outside the served boot root.
//!
//! Layout under the uploads directory:
//! ```text
//! <mac>/phone.cfg/v000001, v000002, …   every version of the phone-menu override
//! <mac>/web.cfg/v000001, …              every version of the web-UI override
//! <mac>/directory.xml/v…                the last `keep_versions` versions
//! logs/<mac>-app.log, <mac>-app.log.1, … logs: appended, rotated at `log_cap_bytes`
//! .tmp/                                 files being written; renamed into place when complete
//! ```
//! Logs are files of one folder, named as the phone names them (`LOG_FILE_DIRECTORY` on a
//! plain FTP server looks the same): a phone's boot then makes no directory at all. A device's
//! folder is made by its first upload of settings (overrides, directory, call lists, licence),
//! which most phones in a boot storm never make — creating a directory per new phone was ~10% of
//! the server's CPU in a storm of new phones, and each directory created was a third of it
//! before logs left their own folders. Logs of earlier layouts (`<mac>/app.log/current…`, then
//! `<mac>/app.log`, `app.log.N`) are moved here when the store is opened; `.layout` records that
//! this was done.
//! A file appears under its final name only when complete (write, fsync, rename), so a reader —
//! a phone, the admin API — never sees part of an upload. Version files never change once there.
//! Logs skip the fsync: every boot of every phone appends to them, and in a boot storm an fsync
//! per log line costs more than the logs are worth after a crash.

use polyprov_model::{Mac, UploadKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

/// Size limits and retention for uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadLimits {
    /// Largest override (`-phone.cfg`, `-web.cfg`) or licence accepted, in bytes.
    pub max_config_bytes: u64,
    /// Largest directory or call list accepted, in bytes.
    pub max_list_bytes: u64,
    /// Largest single log upload accepted, in bytes.
    pub max_log_upload_bytes: u64,
    /// A log is rotated when appending would make it larger than this.
    pub log_cap_bytes: u64,
    /// Rotated logs kept (`current.1` … `current.N`).
    pub log_rotations: u32,
    /// Versions kept of directories, call lists and licences (overrides keep every version).
    pub keep_versions: u32,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_config_bytes: 256 * 1024,
            max_list_bytes: 2 * 1024 * 1024,
            max_log_upload_bytes: 1024 * 1024,
            log_cap_bytes: 4 * 1024 * 1024,
            log_rotations: 3,
            keep_versions: 20,
        }
    }
}

impl UploadLimits {
    /// The largest body accepted for `kind`.
    pub fn max_bytes(&self, kind: UploadKind) -> u64 {
        match kind {
            UploadKind::PhoneOverride | UploadKind::WebOverride | UploadKind::License => {
                self.max_config_bytes
            }
            UploadKind::Directory | UploadKind::CallLists => self.max_list_bytes,
            UploadKind::AppLog | UploadKind::BootLog => self.max_log_upload_bytes,
        }
    }

    /// The largest body accepted for any kind.
    pub fn max_any(&self) -> u64 {
        UploadKind::ALL
            .into_iter()
            .map(|k| self.max_bytes(k))
            .max()
            .unwrap_or(0)
    }
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{kind} upload of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        kind: UploadKind,
        size: u64,
        limit: u64,
    },
    #[error("upload storage: {0}")]
    Io(#[from] io::Error),
    #[error("upload storage: {0}")]
    Database(crate::InventoryError),
}

/// One stored upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    /// The kind, as the file-name suffix (`web.cfg`, `app.log`, …).
    pub kind: String,
    /// Version number; for logs 0 is the current log and N the N-th rotation.
    pub version: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, Unix seconds.
    pub modified: i64,
    /// Where the bytes are on disk.
    #[serde(skip)]
    pub path: PathBuf,
    /// Modification time in nanoseconds, for entity tags.
    #[serde(skip)]
    pub modified_nanos: u128,
    /// The bytes, when they are kept in the database rather than at `path`.
    #[serde(skip)]
    pub body: Option<bytes::Bytes>,
}

/// One release's quarantined files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineSet {
    /// Identifier (sortable by time): give it to `restore` to bring these files back.
    pub id: String,
    pub files: Vec<UploadInfo>,
}

/// The upload store.
pub struct Uploads {
    dir: PathBuf,
    /// Where released devices' files wait: `<quarantine>/<mac>/<set id>/<kind>/v…`.
    quarantine: PathBuf,
    limits: UploadLimits,
    /// Striped locks: writers to the same device and kind are serialised, others run in parallel.
    locks: Vec<Mutex<()>>,
    /// Which versioned kinds each device may have (bit `kind as u8`), read from disk the first
    /// time a device is asked about: most requests for `<mac>-phone.cfg` and its kind find
    /// nothing, and answering that from memory saves a directory lookup each.
    present: Vec<Mutex<HashMap<Mac, u8>>>,
}

const STRIPES: usize = 64;

/// A presence entry of a device whose folder exists but was not read yet (one bit per kind
/// below it).
const UNREAD: u8 = 0x80;

/// The layout version `.layout` records (see the module documentation).
const LAYOUT: &str = "3";

/// The folder of every device's logs, in the uploads directory.
pub const LOGS_DIR: &str = "logs";

impl Uploads {
    /// Opens (creating) the upload store in `dir`, and clears files a crash left half-written.
    pub fn open(dir: &Path, limits: UploadLimits) -> io::Result<Uploads> {
        fs::create_dir_all(dir.join(".tmp"))?;
        fs::create_dir_all(dir.join(LOGS_DIR))?;
        let quarantine = dir.with_file_name("quarantine");
        fs::create_dir_all(&quarantine)?;
        for e in fs::read_dir(dir.join(".tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        let uploads = Uploads {
            dir: dir.to_path_buf(),
            quarantine,
            limits,
            locks: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            present: (0..STRIPES).map(|_| Mutex::new(HashMap::new())).collect(),
        };
        uploads.upgrade_layout()?;
        // Which devices have a folder: any other has none, known without a lookup.
        for e in fs::read_dir(dir)? {
            let e = e?;
            if let Some(mac) = e.file_name().to_str().and_then(Mac::recognise)
                && e.file_type()?.is_dir()
            {
                uploads.presence(mac).insert(mac, UNREAD);
            }
        }
        Ok(uploads)
    }

    /// Moves logs of earlier layouts to `logs/`, once: `.layout` says it was done. Safe to
    /// interrupt: each file moves with one rename, and the next open moves the rest.
    fn upgrade_layout(&self) -> io::Result<()> {
        let marker = self.dir.join(".layout");
        if fs::read_to_string(&marker).is_ok_and(|v| v.trim() == LAYOUT) {
            return Ok(());
        }
        for e in fs::read_dir(&self.dir)? {
            let e = e?;
            let Some(mac) = e.file_name().to_str().and_then(Mac::recognise) else {
                continue;
            };
            if e.file_type()?.is_dir() {
                self.move_old_logs(mac)?;
            }
        }
        let tmp = self.dir.join(".tmp").join("layout");
        let mut f = fs::File::create(&tmp)?;
        f.write_all(LAYOUT.as_bytes())?;
        f.sync_all()?;
        fs::rename(tmp, marker)
    }

    /// A device's logs from its folder to `logs/`: the first layout's `<kind>/current` and
    /// `current.N`, the second's `<kind>` and `<kind>.N` (and `<kind>.moving`, a current log an
    /// upgrade from the first left on its way). The folder goes when nothing else is in it.
    fn move_old_logs(&self, mac: Mac) -> io::Result<()> {
        let device = self.dir.join(mac.to_string());
        let logs = || UploadKind::ALL.into_iter().filter(|k| k.is_log());
        for kind in logs() {
            let old = device.join(kind.suffix());
            if old.is_dir() {
                for e in fs::read_dir(&old)? {
                    let e = e?;
                    if let Some(n) = rotation_of(&e.file_name(), "current") {
                        fs::rename(e.path(), self.log_file(mac, kind, n))?;
                    }
                }
                fs::remove_dir(&old)?;
            }
        }
        for e in fs::read_dir(&device)? {
            let e = e?;
            for kind in logs() {
                if let Some(n) = rotation_of(&e.file_name(), kind.suffix()) {
                    fs::rename(e.path(), self.log_file(mac, kind, n))?;
                }
            }
        }
        // Fails, as it should, when the device has settings in its folder.
        let _ = fs::remove_dir(&device);
        Ok(())
    }

    /// The limits in force.
    pub fn limits(&self) -> &UploadLimits {
        &self.limits
    }

    fn kind_dir(&self, mac: Mac, kind: UploadKind) -> PathBuf {
        self.dir.join(mac.to_string()).join(kind.suffix())
    }

    /// A log's file: `0` the current log, `N` its N-th rotation.
    fn log_file(&self, mac: Mac, kind: UploadKind, rotation: u64) -> PathBuf {
        let dir = self.dir.join(LOGS_DIR);
        match rotation {
            0 => dir.join(format!("{mac}-{}", kind.suffix())),
            n => dir.join(format!("{mac}-{}.{n}", kind.suffix())),
        }
    }

    fn stripe(&self, mac: Mac, kind: UploadKind) -> std::sync::MutexGuard<'_, ()> {
        let stripe = (mac
            .bytes()
            .iter()
            .fold(kind as usize, |h, b| h * 31 + *b as usize))
            % STRIPES;
        self.locks[stripe].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn presence(&self, mac: Mac) -> std::sync::MutexGuard<'_, HashMap<Mac, u8>> {
        let shard = mac.bytes().iter().fold(0usize, |h, b| h * 31 + *b as usize) % STRIPES;
        self.present[shard]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `kind` may have versions for `mac` (false only when it certainly has none). A
    /// device with no entry has no folder: none when the store was opened, and none made since
    /// (each is recorded by [`Uploads::mark`]) — a new phone's requests for its settings read
    /// nothing. A folder is read once; the shard's lock is held while it is read, so a
    /// concurrent write that marks its kind is either seen on disk or recorded after the read.
    fn may_have(&self, mac: Mac, kind: UploadKind) -> io::Result<bool> {
        let mut map = self.presence(mac);
        match map.get(&mac) {
            None => return Ok(false),
            Some(bits) if bits & UNREAD == 0 => return Ok(bits & (1 << kind as u8) != 0),
            Some(_) => {}
        }
        let mut bits = 0u8;
        match fs::read_dir(self.dir.join(mac.to_string())) {
            Ok(entries) => {
                for e in entries {
                    let name = e?.file_name();
                    if let Some(k) = UploadKind::ALL.into_iter().find(|k| *name == *k.suffix()) {
                        bits |= 1 << k as u8;
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        map.insert(mac, bits);
        Ok(bits & (1 << kind as u8) != 0)
    }

    /// Records that `kind` now has versions for `mac` — called before the folder it makes can
    /// hold one — or may have none (`false`: cleared only if its folder is gone, checked under
    /// the shard's lock so a racing write is not hidden).
    fn mark(&self, mac: Mac, kind: UploadKind, has: bool) {
        let mut map = self.presence(mac);
        match map.get_mut(&mac) {
            Some(bits) if has => *bits |= 1 << kind as u8,
            Some(bits) if !self.kind_dir(mac, kind).exists() => *bits &= !(1 << kind as u8),
            Some(_) => {}
            None if has => {
                map.insert(mac, 1 << kind as u8);
            }
            None => {}
        }
    }

    /// Stores an upload: a new version, or for logs an append (rotating at the cap).
    /// Nothing is written when the body is over the limit.
    pub fn put(&self, mac: Mac, kind: UploadKind, body: &[u8]) -> Result<UploadInfo, UploadError> {
        let limit = self.limits.max_bytes(kind);
        if body.len() as u64 > limit {
            return Err(UploadError::TooLarge {
                kind,
                size: body.len() as u64,
                limit,
            });
        }
        let _guard = self.stripe(mac, kind);
        if kind.is_log() {
            return self.append_log(mac, kind, body);
        }
        let dir = self.kind_dir(mac, kind);
        fs::create_dir_all(&dir)?;
        self.mark(mac, kind, true);
        self.add_version(&dir, kind, body)
    }

    fn add_version(
        &self,
        dir: &Path,
        kind: UploadKind,
        body: &[u8],
    ) -> Result<UploadInfo, UploadError> {
        let mut versions = versions_in(dir)?;
        let next = versions.last().map_or(1, |(v, _)| v + 1);
        let path = dir.join(version_name(next));
        self.write_atomically(&path, body)?;
        versions.push((next, path.clone()));
        let keeps_all = matches!(kind, UploadKind::PhoneOverride | UploadKind::WebOverride);
        if !keeps_all && self.limits.keep_versions > 0 {
            let excess = versions
                .len()
                .saturating_sub(self.limits.keep_versions as usize);
            for (_, old) in versions.iter().take(excess) {
                fs::remove_file(old)?;
            }
        }
        info(kind, next, &path)
    }

    /// Appends to the current log in place (rotating at the cap): one `write` into the page
    /// cache, which a killed server cannot take back — no new file, no rename. (Writing a new
    /// file per upload made ext4's inode allocation the storm's hottest path.) A server killed
    /// in the middle of the write may leave the start of that unacknowledged upload at the end
    /// of the log; an acknowledged one is always whole.
    fn append_log(
        &self,
        mac: Mac,
        kind: UploadKind,
        body: &[u8],
    ) -> Result<UploadInfo, UploadError> {
        let current = self.log_file(mac, kind, 0);
        let open = || {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&current)
        };
        let mut f = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `logs/` removed while serving.
                fs::create_dir_all(self.dir.join(LOGS_DIR))?;
                open()?
            }
            Err(e) => return Err(e.into()),
        };
        let mut len = f.metadata()?.len();
        if len > 0 && len + body.len() as u64 > self.limits.log_cap_bytes {
            drop(f);
            self.rotate(mac, kind)?;
            f = open()?;
            len = 0;
        }
        f.write_all(body)?;
        let since_epoch = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(UploadInfo {
            kind: kind.suffix().to_string(),
            version: 0,
            size: len + body.len() as u64,
            modified: since_epoch.as_secs() as i64,
            path: current,
            modified_nanos: since_epoch.as_nanos(),
            body: None,
        })
    }

    fn rotate(&self, mac: Mac, kind: UploadKind) -> io::Result<()> {
        let n = u64::from(self.limits.log_rotations);
        if n == 0 {
            return Ok(());
        }
        for i in (0..n).rev() {
            match fs::rename(self.log_file(mac, kind, i), self.log_file(mac, kind, i + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A new file, whole or not at all: written to a temp file, fsynced, renamed into place —
    /// a reader sees the old file or the new one, and a phone's settings survive a power cut.
    fn write_atomically(&self, target: &Path, body: &[u8]) -> io::Result<()> {
        let tmp = self
            .dir
            .join(".tmp")
            .join(format!("{:016x}", rand::random::<u64>()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(body)?;
            f.sync_all()?;
            fs::rename(&tmp, target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Whether a file can be created in the store now (a health check: a full or read-only
    /// disk answers here before a phone's upload fails).
    pub fn check_writable(&self) -> io::Result<()> {
        let probe = self
            .dir
            .join(".tmp")
            .join(format!("health-{:016x}", rand::random::<u64>()));
        let written = fs::File::create(&probe).and_then(|mut f| f.write_all(b"ok"));
        let _ = fs::remove_file(&probe);
        written
    }

    /// The newest stored upload of a kind (for logs, the current log).
    pub fn latest(&self, mac: Mac, kind: UploadKind) -> io::Result<Option<UploadInfo>> {
        if kind.is_log() {
            return self.version(mac, kind, 0);
        }
        if !self.may_have(mac, kind)? {
            return Ok(None);
        }
        match versions_in(&self.kind_dir(mac, kind))?.pop() {
            Some((v, p)) => info(kind, v, &p).map(Some).map_err(into_io),
            None => Ok(None),
        }
    }

    /// One stored version (for logs: 0 current, N the N-th rotation).
    pub fn version(
        &self,
        mac: Mac,
        kind: UploadKind,
        version: u64,
    ) -> io::Result<Option<UploadInfo>> {
        let p = if kind.is_log() {
            self.log_file(mac, kind, version)
        } else {
            self.kind_dir(mac, kind).join(version_name(version))
        };
        match info(kind, version, &p) {
            Ok(i) => Ok(Some(i)),
            Err(UploadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(into_io(e)),
        }
    }

    /// Everything stored for a device, by kind then version.
    pub fn list(&self, mac: Mac) -> io::Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        for kind in UploadKind::ALL {
            if kind.is_log() {
                for v in 0..=u64::from(self.limits.log_rotations) {
                    if let Some(i) = self.version(mac, kind, v)? {
                        out.push(i);
                    }
                }
            } else {
                for (v, p) in versions_in(&self.kind_dir(mac, kind))? {
                    out.push(info(kind, v, &p).map_err(into_io)?);
                }
            }
        }
        Ok(out)
    }
}

/// Kinds a release quarantines: what a phone would download back. Logs stay where they are.
pub const QUARANTINED: [UploadKind; 5] = [
    UploadKind::PhoneOverride,
    UploadKind::WebOverride,
    UploadKind::Directory,
    UploadKind::CallLists,
    UploadKind::License,
];

impl Uploads {
    /// Moves a device's overrides, directory, call lists and licence into a new quarantine set
    /// (one rename per kind; nothing is copied or deleted). Returns the set's id, or `None` when
    /// there was nothing to move.
    pub fn quarantine(&self, mac: Mac) -> io::Result<Option<String>> {
        self.quarantine_as(mac, &new_quarantine_id())
    }

    /// [`Uploads::quarantine`] into a set with an id chosen beforehand (a release records it
    /// in its intent first, so that a crash halfway can be undone).
    pub fn quarantine_as(&self, mac: Mac, id: &str) -> io::Result<Option<String>> {
        let present: Vec<UploadKind> = QUARANTINED
            .into_iter()
            .filter(|k| self.kind_dir(mac, *k).is_dir())
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        let set = self.quarantine.join(mac.to_string()).join(id);
        fs::create_dir_all(&set)?;
        for (i, k) in present.iter().enumerate() {
            if let Err(e) = fs::rename(self.kind_dir(mac, *k), set.join(k.suffix())) {
                // Put back what already moved: a release is all or nothing.
                for done in &present[..i] {
                    let _ = fs::rename(set.join(done.suffix()), self.kind_dir(mac, *done));
                }
                let _ = fs::remove_dir(&set);
                return Err(e);
            }
        }
        for k in present {
            self.mark(mac, k, false);
        }
        Ok(Some(id.to_string()))
    }

    /// Moves a quarantine set back (undoing a release that failed later, or that a crash
    /// interrupted: a set only partly made, or never made, is fine). Returns how many kinds
    /// came back.
    pub fn unquarantine(&self, mac: Mac, id: &str) -> io::Result<usize> {
        let set = self.quarantine.join(mac.to_string()).join(id);
        let mut moved = 0;
        for k in QUARANTINED {
            let from = set.join(k.suffix());
            if from.is_dir() {
                fs::create_dir_all(self.dir.join(mac.to_string()))?;
                self.mark(mac, k, true);
                fs::rename(from, self.kind_dir(mac, k))?;
                moved += 1;
            }
        }
        match fs::remove_dir(&set) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(moved),
        }
    }

    /// The quarantine sets of a device, oldest first.
    pub fn quarantined(&self, mac: Mac) -> io::Result<Vec<QuarantineSet>> {
        let base = self.quarantine.join(mac.to_string());
        let mut ids: Vec<String> = match fs::read_dir(&base) {
            Ok(e) => e
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let mut files = Vec::new();
                for k in QUARANTINED {
                    for (v, p) in versions_in(&base.join(&id).join(k.suffix()))? {
                        files.push(info(k, v, &p).map_err(into_io)?);
                    }
                }
                Ok(QuarantineSet { id, files })
            })
            .collect()
    }

    /// Brings a quarantine set (the newest when `id` is `None`) back to the device: each file
    /// becomes the newest version of its kind, after anything uploaded since. Returns the set's
    /// id and how many files came back.
    pub fn restore(&self, mac: Mac, id: Option<&str>) -> io::Result<Option<(String, usize)>> {
        let sets = self.quarantined(mac)?;
        let Some(set) = (match id {
            Some(id) => sets.into_iter().find(|s| s.id == id),
            None => sets.into_iter().last(),
        }) else {
            return Ok(None);
        };
        let base = self.quarantine.join(mac.to_string()).join(&set.id);
        let mut n = 0;
        for k in QUARANTINED {
            let from_dir = base.join(k.suffix());
            let files = versions_in(&from_dir)?;
            if files.is_empty() {
                continue;
            }
            let dir = self.kind_dir(mac, k);
            fs::create_dir_all(&dir)?;
            self.mark(mac, k, true);
            let first = versions_in(&dir)?.last().map_or(1, |(v, _)| v + 1);
            for (version, (_, p)) in (first..).zip(files) {
                fs::rename(&p, dir.join(version_name(version)))?;
                n += 1;
            }
            fs::remove_dir(&from_dir)?;
        }
        fs::remove_dir(&base)?;
        Ok(Some((set.id, n)))
    }
}

impl Uploads {
    /// Devices with anything a phone downloads back in this folder: their own files or
    /// quarantine sets.
    pub fn devices_with_files(&self) -> io::Result<Vec<Mac>> {
        let mut macs = std::collections::BTreeSet::new();
        for base in [&self.dir, &self.quarantine] {
            for e in fs::read_dir(base)? {
                let Some(mac) = e?.file_name().to_str().and_then(Mac::recognise) else {
                    continue;
                };
                let own = QUARANTINED
                    .into_iter()
                    .any(|k| self.kind_dir(mac, k).is_dir());
                if own || base == &self.quarantine {
                    macs.insert(mac);
                }
            }
        }
        Ok(macs.into_iter().collect())
    }

    /// Writes one file of quarantine set `id` as the next version of its kind there (bringing a
    /// set back from a shared database).
    pub fn put_quarantined(
        &self,
        mac: Mac,
        id: &str,
        kind: UploadKind,
        body: &[u8],
    ) -> io::Result<()> {
        let dir = self
            .quarantine
            .join(mac.to_string())
            .join(id)
            .join(kind.suffix());
        fs::create_dir_all(&dir)?;
        let next = versions_in(&dir)?.last().map_or(1, |(v, _)| v + 1);
        self.write_atomically(&dir.join(version_name(next)), body)
    }

    /// Moves a device's own files a phone downloads back, and its quarantine sets, out of the
    /// way into `.in-database/<mac>/` (kept, never deleted) once they were copied into a shared
    /// database.
    pub fn set_aside(&self, mac: Mac) -> io::Result<()> {
        let aside = self.dir.join(".in-database").join(mac.to_string());
        fs::create_dir_all(&aside)?;
        for k in QUARANTINED {
            let from = self.kind_dir(mac, k);
            if from.is_dir() {
                fs::rename(from, aside.join(k.suffix()))?;
                self.mark(mac, k, false);
            }
        }
        let sets = self.quarantine.join(mac.to_string());
        if sets.is_dir() {
            fs::rename(sets, aside.join("quarantine"))?;
        }
        Ok(())
    }
}

/// A new quarantine set id: time-ordered to the nanosecond, so that sets sort in the order
/// they were made.
pub fn new_quarantine_id() -> String {
    format!(
        "{:020}",
        std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    )
}

fn into_io(e: UploadError) -> io::Error {
    match e {
        UploadError::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

fn version_name(v: u64) -> String {
    format!("v{v:06}")
}

/// Version files in `dir`, oldest first. A missing directory has none.
fn versions_in(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        let name = e.file_name();
        if let Some(v) = name
            .to_str()
            .and_then(|n| n.strip_prefix('v'))
            .and_then(|n| n.parse().ok())
        {
            out.push((v, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Which log file `name` is, of the log named `base` in an earlier layout: `base` and
/// `base.moving` the current log (0), `base.N` its N-th rotation.
fn rotation_of(name: &std::ffi::OsStr, base: &str) -> Option<u64> {
    let rest = name.to_str()?.strip_prefix(base)?;
    if rest.is_empty() || rest == ".moving" {
        return Some(0);
    }
    let n = rest.strip_prefix('.')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn info(kind: UploadKind, version: u64, path: &Path) -> Result<UploadInfo, UploadError> {
    let md = fs::metadata(path)?;
    let since_epoch = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    Ok(UploadInfo {
        kind: kind.suffix().to_string(),
        version,
        size: md.len(),
        modified: since_epoch.as_secs() as i64,
        path: path.to_path_buf(),
        modified_nanos: since_epoch.as_nanos(),
        body: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> Mac {
        "0004f2aa814c".parse().unwrap()
    }

    fn store(limits: UploadLimits) -> (tempfile::TempDir, Uploads) {
        let d = tempfile::tempdir().unwrap();
        let u = Uploads::open(&d.path().join("uploads"), limits).unwrap();
        (d, u)
    }

    #[test]
    fn every_override_version_is_kept() {
        let (_d, u) = store(UploadLimits {
            keep_versions: 1,
            ..Default::default()
        });
        for i in 0..5 {
            u.put(
                mac(),
                UploadKind::WebOverride,
                format!("<a v=\"{i}\"/>").as_bytes(),
            )
            .unwrap();
        }
        let latest = u.latest(mac(), UploadKind::WebOverride).unwrap().unwrap();
        assert_eq!(latest.version, 5);
        assert_eq!(fs::read_to_string(&latest.path).unwrap(), "<a v=\"4\"/>");
        assert_eq!(u.list(mac()).unwrap().len(), 5);
    }

    #[test]
    fn an_upload_after_a_lookup_that_found_nothing_is_found() {
        let (_d, u) = store(UploadLimits::default());
        let m = mac();
        assert!(u.latest(m, UploadKind::PhoneOverride).unwrap().is_none());
        u.put(m, UploadKind::AppLog, b"log").unwrap();
        assert!(u.latest(m, UploadKind::WebOverride).unwrap().is_none());
        u.put(m, UploadKind::PhoneOverride, b"<a/>").unwrap();
        u.put(m, UploadKind::WebOverride, b"<b/>").unwrap();
        assert_eq!(
            u.latest(m, UploadKind::PhoneOverride)
                .unwrap()
                .unwrap()
                .version,
            1
        );
        assert_eq!(
            u.latest(m, UploadKind::WebOverride)
                .unwrap()
                .unwrap()
                .version,
            1
        );
    }

    #[test]
    fn a_device_without_a_folder_is_known_empty() {
        let (_d, u) = store(UploadLimits::default());
        let m = mac();
        u.put(m, UploadKind::BootLog, b"booting").unwrap();
        // Logs make no device folder.
        assert!(!u.dir.join(m.to_string()).exists());
        assert!(u.latest(m, UploadKind::PhoneOverride).unwrap().is_none());
        // Known from the listing made at open: a version placed behind the store's back is not
        // looked for.
        let aside = u.kind_dir(m, UploadKind::PhoneOverride);
        fs::create_dir_all(&aside).unwrap();
        fs::write(aside.join(version_name(1)), "<a/>").unwrap();
        assert!(u.latest(m, UploadKind::PhoneOverride).unwrap().is_none());
        // What the store writes is found.
        u.put(m, UploadKind::WebOverride, b"<b/>").unwrap();
        let web = u.latest(m, UploadKind::WebOverride).unwrap().unwrap();
        assert_eq!(fs::read_to_string(web.path).unwrap(), "<b/>");
        // A store opened later reads the folder.
        let again = Uploads::open(&u.dir, UploadLimits::default()).unwrap();
        assert!(
            again
                .latest(m, UploadKind::PhoneOverride)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn uploads_racing_for_a_new_device_are_never_hidden() {
        let (_d, u) = store(UploadLimits::default());
        let u = std::sync::Arc::new(u);
        let kinds = [
            UploadKind::BootLog,
            UploadKind::AppLog,
            UploadKind::PhoneOverride,
        ];
        for round in 0..200u32 {
            let m: Mac = format!("0004f2{round:06x}").parse().unwrap();
            let mut threads: Vec<_> = kinds
                .into_iter()
                .map(|kind| {
                    let u = u.clone();
                    std::thread::spawn(move || {
                        u.put(m, kind, b"<a/>").unwrap();
                    })
                })
                .collect();
            // A phone asking for its override while it is being stored.
            let reader = u.clone();
            threads.push(std::thread::spawn(move || {
                reader.latest(m, UploadKind::PhoneOverride).unwrap();
            }));
            for t in threads {
                t.join().unwrap();
            }
            for kind in kinds {
                assert!(
                    u.latest(m, kind).unwrap().is_some(),
                    "round {round}: the {kind:?} stored is hidden"
                );
            }
        }
        let logs = fs::read_dir(u.dir.join(LOGS_DIR)).unwrap().count();
        assert_eq!(logs, 400, "every log in the logs folder");
    }

    #[test]
    fn lists_keep_only_the_newest_versions() {
        let (_d, u) = store(UploadLimits {
            keep_versions: 2,
            ..Default::default()
        });
        for i in 0..4 {
            u.put(
                mac(),
                UploadKind::CallLists,
                format!("<c n=\"{i}\"/>").as_bytes(),
            )
            .unwrap();
        }
        let versions: Vec<u64> = u.list(mac()).unwrap().iter().map(|i| i.version).collect();
        assert_eq!(versions, [3, 4]);
    }

    #[test]
    fn logs_append_and_rotate_at_the_cap() {
        let limits = UploadLimits {
            log_cap_bytes: 10,
            log_rotations: 2,
            ..Default::default()
        };
        let (_d, u) = store(limits);
        for chunk in ["aaaa", "bbbb", "cccc", "dddd", "eeee", "ffff", "gggg"] {
            u.put(mac(), UploadKind::AppLog, chunk.as_bytes()).unwrap();
        }
        let read = |v| {
            fs::read_to_string(
                u.version(mac(), UploadKind::AppLog, v)
                    .unwrap()
                    .unwrap()
                    .path,
            )
            .unwrap()
        };
        assert_eq!(read(0), "gggg");
        assert_eq!(read(1), "eeeeffff");
        assert_eq!(read(2), "ccccdddd");
        assert!(u.version(mac(), UploadKind::AppLog, 3).unwrap().is_none());
    }

    #[test]
    fn oversized_uploads_write_nothing() {
        let (d, u) = store(UploadLimits {
            max_config_bytes: 4,
            ..Default::default()
        });
        assert!(matches!(
            u.put(mac(), UploadKind::PhoneOverride, b"12345"),
            Err(UploadError::TooLarge {
                size: 5,
                limit: 4,
                ..
            })
        ));
        assert!(u.list(mac()).unwrap().is_empty());
        assert!(!d.path().join("uploads").join(mac().to_string()).exists());
    }

    #[test]
    fn quarantine_moves_settings_away_and_restore_brings_them_back() {
        let (_d, u) = store(UploadLimits::default());
        let m = mac();
        u.put(m, UploadKind::WebOverride, b"<a v=\"1\"/>").unwrap();
        u.put(m, UploadKind::WebOverride, b"<a v=\"2\"/>").unwrap();
        u.put(m, UploadKind::Directory, b"<d/>").unwrap();
        u.put(m, UploadKind::AppLog, b"log").unwrap();
        let id = u.quarantine(m).unwrap().unwrap();
        assert!(u.latest(m, UploadKind::WebOverride).unwrap().is_none());
        assert!(
            u.latest(m, UploadKind::AppLog).unwrap().is_some(),
            "logs stay"
        );
        let sets = u.quarantined(m).unwrap();
        assert_eq!(
            (sets.len(), sets[0].id.as_str(), sets[0].files.len()),
            (1, id.as_str(), 3)
        );
        assert_eq!(u.quarantine(m).unwrap(), None, "nothing left to move");
        // A new user's upload, then the old files come back after it.
        u.put(m, UploadKind::WebOverride, b"<a v=\"new\"/>")
            .unwrap();
        assert_eq!(u.restore(m, None).unwrap(), Some((id, 3)));
        let latest = u.latest(m, UploadKind::WebOverride).unwrap().unwrap();
        assert_eq!(
            (latest.version, fs::read_to_string(latest.path).unwrap()),
            (3, "<a v=\"2\"/>".to_string())
        );
        assert!(u.quarantined(m).unwrap().is_empty());
        assert_eq!(u.restore(m, None).unwrap(), None);
    }

    #[test]
    fn logs_of_earlier_layouts_move_to_the_logs_folder_on_open() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("uploads");
        let (m, n): (Mac, Mac) = ("0004f2aa0001".parse().unwrap(), mac());
        // The first layout: a folder per log.
        let dev = dir.join(m.to_string());
        fs::create_dir_all(dev.join("app.log")).unwrap();
        fs::write(dev.join("app.log/current"), "new ").unwrap();
        fs::write(dev.join("app.log/current.1"), "old").unwrap();
        // A move from it a crash interrupted: the current log waits under its temporary name.
        fs::write(dev.join("boot.log.moving"), "boot").unwrap();
        // The second layout: files in the device's folder, next to its settings.
        let dev2 = dir.join(n.to_string());
        fs::create_dir_all(dev2.join("web.cfg")).unwrap();
        fs::write(dev2.join("web.cfg").join(version_name(1)), "<w/>").unwrap();
        fs::write(dev2.join("app.log"), "two ").unwrap();
        fs::write(dev2.join("app.log.2"), "older").unwrap();
        fs::write(dev2.join("app.log.x"), "not a log").unwrap();
        fs::write(dev2.join("boot.log"), "boot2").unwrap();
        let u = Uploads::open(&dir, UploadLimits::default()).unwrap();
        let read = |mac, kind, v| {
            let i: UploadInfo = u.version(mac, kind, v).unwrap().unwrap();
            fs::read_to_string(i.path).unwrap()
        };
        assert_eq!(read(m, UploadKind::BootLog, 0), "boot");
        u.put(m, UploadKind::AppLog, b"more").unwrap();
        assert_eq!(read(m, UploadKind::AppLog, 0), "new more");
        assert_eq!(read(m, UploadKind::AppLog, 1), "old");
        assert_eq!(u.list(m).unwrap().len(), 3);
        assert!(!dev.exists(), "a folder left empty is removed");
        u.put(n, UploadKind::AppLog, b"more").unwrap();
        assert_eq!(read(n, UploadKind::AppLog, 0), "two more");
        assert_eq!(read(n, UploadKind::AppLog, 2), "older");
        assert_eq!(read(n, UploadKind::BootLog, 0), "boot2");
        assert_eq!(read(n, UploadKind::WebOverride, 1), "<w/>");
        assert!(dev2.join("app.log.x").is_file() && !dev2.join("app.log").exists());
        assert!(dir.join(LOGS_DIR).join("0004f2aa814c-app.log.2").is_file());
        // Done once: the store is not scanned again at the next open.
        fs::write(dev2.join("boot.log"), "placed later").unwrap();
        drop(u);
        Uploads::open(&dir, UploadLimits::default()).unwrap();
        assert!(dev2.join("boot.log").is_file());
    }

    #[test]
    fn half_written_files_are_cleared_on_open() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("uploads");
        fs::create_dir_all(dir.join(".tmp")).unwrap();
        fs::write(dir.join(".tmp/partial"), "x").unwrap();
        Uploads::open(&dir, UploadLimits::default()).unwrap();
        assert_eq!(fs::read_dir(dir.join(".tmp")).unwrap().count(), 0);
    }
}
