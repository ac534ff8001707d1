//! Where a server keeps what phones upload: every kind in its upload folder ([`Uploads`]) when
//! it is the only node, or — when several nodes share a PostgreSQL inventory — the kinds phones
//! download back (overrides, directory, call lists, licence) in the inventory's database, so
//! that every node serves the same versions and a release on any node quarantines them. Logs
//! stay in each node's folder either way: they are appended at every boot and never served back.
//!
//! Files kept in the database are cached per node under the inventory's files generation (the
//! rule the rendered files follow, with a counter of its own): a phone asking for its override, as every phone does at every
//! boot, costs no query once its answer — most often "none" — is cached, and a change on any
//! node is never served stale while [`Inventory::confirm_heard`] checks before serving.

use crate::inventory::Inventory;
use crate::uploads::{QuarantineSet, UploadError, UploadInfo, UploadLimits, Uploads};
use polyprov_model::{Mac, UploadKind};
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

/// A file larger than this is not kept in the cache (it is read from the database each time).
const CACHED_FILE_MAX: u64 = 64 * 1024;
/// The cache is emptied when the bytes it holds would pass this.
const CACHE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// The upload store a server uses (see the module documentation).
#[derive(Clone)]
pub struct UploadStore {
    folder: Arc<Uploads>,
    database: Option<Arc<Inventory>>,
    cache: Arc<Mutex<Cache>>,
}

#[derive(Default)]
struct Cache {
    /// The newest version of a device's file of a kind (or that there is none), and the
    /// inventory generation it was read under.
    latest: HashMap<(Mac, UploadKind), (u64, Option<UploadInfo>)>,
    bytes: u64,
}

fn database_error(e: crate::InventoryError) -> UploadError {
    UploadError::Database(e)
}

impl UploadStore {
    /// Every kind in `folder`.
    pub fn in_folder(folder: Arc<Uploads>) -> UploadStore {
        UploadStore {
            folder,
            database: None,
            cache: Default::default(),
        }
    }

    /// The kinds phones download back in `inventory`'s database, logs in `folder`.
    pub fn shared(folder: Arc<Uploads>, inventory: Arc<Inventory>) -> UploadStore {
        UploadStore {
            database: Some(inventory),
            ..UploadStore::in_folder(folder)
        }
    }

    /// The node's upload folder (logs, and everything on one node).
    pub fn folder(&self) -> &Arc<Uploads> {
        &self.folder
    }

    /// Whether the files phones download back are in the database.
    pub fn is_shared(&self) -> bool {
        self.database.is_some()
    }

    /// The limits in force.
    pub fn limits(&self) -> &UploadLimits {
        self.folder.limits()
    }

    fn database_for(&self, kind: UploadKind) -> Option<&Arc<Inventory>> {
        self.database.as_ref().filter(|_| !kind.is_log())
    }

    /// Stores an upload (see [`Uploads::put`]). In the folder it runs on the blocking pool.
    pub async fn put(
        &self,
        mac: Mac,
        kind: UploadKind,
        body: bytes::Bytes,
    ) -> Result<UploadInfo, UploadError> {
        let Some(db) = self.database_for(kind) else {
            let folder = self.folder.clone();
            return tokio::task::spawn_blocking(move || folder.put(mac, kind, &body))
                .await
                .map_err(|e| UploadError::Io(io::Error::other(e)))?;
        };
        let limit = self.limits().max_bytes(kind);
        if body.len() as u64 > limit {
            return Err(UploadError::TooLarge {
                kind,
                size: body.len() as u64,
                limit,
            });
        }
        let keep = match kind {
            UploadKind::PhoneOverride | UploadKind::WebOverride => None,
            _ => Some(self.limits().keep_versions),
        };
        db.put_device_file(mac, kind, &body, keep)
            .await
            .map_err(database_error)
    }

    /// The newest stored upload of a kind (for logs, the current log). From the folder it is
    /// read right here (a small directory lookup on local disk costs less than a hand-off);
    /// from the database through the cache.
    pub async fn latest(
        &self,
        mac: Mac,
        kind: UploadKind,
    ) -> Result<Option<UploadInfo>, UploadError> {
        let Some(db) = self.database_for(kind) else {
            return Ok(self.folder.latest(mac, kind)?);
        };
        // Confirmed before the generation is read: a change heard meanwhile makes the entry
        // read below stale, never the other way round.
        let confirmed = db.confirm_heard().await;
        if confirmed && !db.may_have_files(mac) {
            // Most devices never upload a file of these kinds: no query for them.
            return Ok(None);
        }
        let generation = db.files_generation();
        if confirmed
            && let Some((g, info)) = self.cache().latest.get(&(mac, kind))
            && *g == generation
        {
            return Ok(info.clone());
        }
        let info = db
            .latest_device_file(mac, kind)
            .await
            .map_err(database_error)?;
        if confirmed {
            self.remember(mac, kind, generation, &info);
        }
        Ok(info)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remember(&self, mac: Mac, kind: UploadKind, generation: u64, info: &Option<UploadInfo>) {
        let size = info.as_ref().map_or(0, |i| i.size);
        if size > CACHED_FILE_MAX {
            return;
        }
        let mut cache = self.cache();
        if cache.bytes + size > CACHE_BYTES_MAX {
            *cache = Cache::default();
        }
        let old = cache.latest.insert((mac, kind), (generation, info.clone()));
        let old_size = old.and_then(|(_, i)| i).map_or(0, |i| i.size);
        cache.bytes = cache.bytes.saturating_sub(old_size) + size;
    }

    /// One stored version (for logs: 0 current, N the N-th rotation), with the means to read it.
    pub async fn version(
        &self,
        mac: Mac,
        kind: UploadKind,
        version: u64,
    ) -> Result<Option<UploadInfo>, UploadError> {
        match self.database_for(kind) {
            Some(db) => db
                .device_file(mac, kind, version)
                .await
                .map_err(database_error),
            None => self.blocking(move |f| f.version(mac, kind, version)).await,
        }
    }

    /// Everything stored for a device, by kind then version (logs from this node's folder).
    pub async fn list(&self, mac: Mac) -> Result<Vec<UploadInfo>, UploadError> {
        let mut all = self.blocking(move |f| f.list(mac)).await?;
        if let Some(db) = &self.database {
            let mut files = db.device_files(mac).await.map_err(database_error)?;
            // The folder holds only logs then (and anything it kept from before).
            all.retain(|i| UploadKind::from_suffix(&i.kind).is_some_and(|k| k.is_log()));
            files.append(&mut all);
            all = files;
        }
        Ok(all)
    }

    /// Moves a device's files phones download back into quarantine set `id` (see
    /// [`Uploads::quarantine_as`]).
    pub async fn quarantine_as(&self, mac: Mac, id: &str) -> Result<Option<String>, UploadError> {
        match &self.database {
            Some(db) => db
                .quarantine_device_files(mac, id)
                .await
                .map_err(database_error),
            None => {
                let id = id.to_string();
                self.blocking(move |f| f.quarantine_as(mac, &id)).await
            }
        }
    }

    /// Gives quarantine set `id` back (undoing a release); how many kinds came back.
    /// (On a shared inventory the set is in the database: a set a crash left in the folder was
    /// copied there at start-up, before interrupted releases are undone.)
    pub async fn unquarantine(&self, mac: Mac, id: &str) -> Result<usize, UploadError> {
        match &self.database {
            Some(db) => db
                .unquarantine_device_files(mac, id)
                .await
                .map_err(database_error),
            None => {
                let id = id.to_string();
                self.blocking(move |f| f.unquarantine(mac, &id)).await
            }
        }
    }

    /// A device's quarantine sets, oldest first.
    pub async fn quarantined(&self, mac: Mac) -> Result<Vec<QuarantineSet>, UploadError> {
        match &self.database {
            Some(db) => db
                .quarantined_device_files(mac)
                .await
                .map_err(database_error),
            None => self.blocking(move |f| f.quarantined(mac)).await,
        }
    }

    /// Brings a quarantine set (the newest when `id` is `None`) back (see [`Uploads::restore`]).
    pub async fn restore(
        &self,
        mac: Mac,
        id: Option<String>,
    ) -> Result<Option<(String, usize)>, UploadError> {
        match &self.database {
            Some(db) => db
                .restore_device_files(mac, id.as_deref())
                .await
                .map_err(database_error),
            None => self.blocking(move |f| f.restore(mac, id.as_deref())).await,
        }
    }

    /// Copies into the shared database what this node's folder holds of the files phones
    /// download back — each device's own versions, oldest first, then its quarantine sets — and
    /// sets the folder's copies aside (`.in-database/`, never deleted): a node that joins a
    /// shared inventory (after `polyprov migrate`) keeps serving its phones' overrides. Runs at
    /// start-up; nothing to do on one node. Returns how many files were copied. A crash halfway
    /// may copy a device's files twice on the next start (as extra versions); none is lost.
    pub async fn adopt_folder(&self) -> Result<usize, UploadError> {
        let Some(db) = &self.database else {
            return Ok(0);
        };
        let mut copied = 0;
        for mac in self.blocking(|f| f.devices_with_files()).await? {
            let own = self.blocking(move |f| f.list(mac)).await?;
            let sets = self.blocking(move |f| f.quarantined(mac)).await?;
            let files = own
                .into_iter()
                .map(|i| (None, i))
                .chain(sets.into_iter().flat_map(|s| {
                    let id = s.id;
                    s.files.into_iter().map(move |i| (Some(id.clone()), i))
                }));
            for (set, info) in files {
                let Some(kind) = UploadKind::from_suffix(&info.kind).filter(|k| !k.is_log()) else {
                    continue;
                };
                let body = self.bytes(&info).await?;
                let modified_ns = i64::try_from(info.modified_nanos).unwrap_or(i64::MAX);
                db.adopt_device_file(mac, kind, &body, modified_ns, set.as_deref())
                    .await
                    .map_err(database_error)?;
                copied += 1;
            }
            self.blocking(move |f| f.set_aside(mac)).await?;
        }
        Ok(copied)
    }

    /// The other way: an inventory that was shared (moved back to SQLite with `polyprov
    /// migrate`) may hold files phones download back; on one node they belong in the folder.
    /// Each device's are written there (own versions through [`Uploads::put`], quarantine sets
    /// into theirs), and only then deleted from the database. Returns how many files.
    pub async fn adopt_database(&self, inventory: &Inventory) -> Result<usize, UploadError> {
        if self.database.is_some() {
            return Ok(0);
        }
        let mut moved = 0;
        for mac in inventory
            .devices_with_files()
            .await
            .map_err(database_error)?
        {
            let files = inventory
                .every_device_file(mac)
                .await
                .map_err(database_error)?;
            moved += files.len();
            self.blocking(move |f| {
                for (set, info) in files {
                    let (Some(kind), Some(body)) = (UploadKind::from_suffix(&info.kind), info.body)
                    else {
                        continue;
                    };
                    match set {
                        Some(id) => f.put_quarantined(mac, &id, kind, &body)?,
                        None => {
                            f.put(mac, kind, &body).map_err(|e| match e {
                                UploadError::Io(e) => e,
                                other => io::Error::other(other.to_string()),
                            })?;
                        }
                    }
                }
                Ok(())
            })
            .await?;
            inventory
                .remove_device_files(mac)
                .await
                .map_err(database_error)?;
        }
        Ok(moved)
    }

    /// The bytes of a stored upload, from memory or from disk.
    pub async fn bytes(&self, info: &UploadInfo) -> Result<Vec<u8>, UploadError> {
        match &info.body {
            Some(b) => Ok(b.to_vec()),
            None => Ok(tokio::fs::read(&info.path).await?),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Uploads) -> io::Result<T> + Send + 'static,
    ) -> Result<T, UploadError> {
        let folder = self.folder.clone();
        Ok(tokio::task::spawn_blocking(move || f(&folder))
            .await
            .map_err(io::Error::other)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> Mac {
        "0004f2aa814c".parse().unwrap()
    }

    async fn shared() -> (tempfile::TempDir, UploadStore) {
        let d = tempfile::tempdir().unwrap();
        let folder =
            Arc::new(Uploads::open(&d.path().join("uploads"), Default::default()).unwrap());
        let inv = Arc::new(Inventory::open_in_memory().await.unwrap());
        (d, UploadStore::shared(folder, inv))
    }

    /// The bytes of one stored version (for logs: 0 the current log).
    async fn stored(store: &UploadStore, kind: UploadKind, version: u64) -> Vec<u8> {
        let info = store.version(mac(), kind, version).await.unwrap().unwrap();
        store.bytes(&info).await.unwrap()
    }

    /// The bytes of the newest version, if any.
    async fn newest(store: &UploadStore, kind: UploadKind) -> Option<Vec<u8>> {
        let info = store.latest(mac(), kind).await.unwrap()?;
        Some(store.bytes(&info).await.unwrap())
    }

    #[tokio::test]
    async fn overrides_go_to_the_database_and_logs_to_the_folder() {
        let (d, store) = shared().await;
        assert!(
            store
                .latest(mac(), UploadKind::WebOverride)
                .await
                .unwrap()
                .is_none()
        );
        store
            .put(mac(), UploadKind::WebOverride, "<a/>".into())
            .await
            .unwrap();
        store
            .put(mac(), UploadKind::AppLog, "line\n".into())
            .await
            .unwrap();
        // The cached "none" is not served after the upload.
        assert_eq!(
            newest(&store, UploadKind::WebOverride).await.as_deref(),
            Some(&b"<a/>"[..])
        );
        assert!(
            !d.path()
                .join("uploads")
                .join(mac().to_string())
                .join("web.cfg")
                .exists()
        );
        let kinds: Vec<String> = store
            .list(mac())
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.kind)
            .collect();
        assert_eq!(kinds, ["web.cfg", "app.log"]);
        assert_eq!(stored(&store, UploadKind::AppLog, 0).await, b"line\n");
    }

    #[tokio::test]
    async fn a_quarantined_override_is_not_served_from_the_cache() {
        let (_d, store) = shared().await;
        store
            .put(mac(), UploadKind::PhoneOverride, "<old/>".into())
            .await
            .unwrap();
        assert!(
            store
                .latest(mac(), UploadKind::PhoneOverride)
                .await
                .unwrap()
                .is_some()
        );
        store.quarantine_as(mac(), "q").await.unwrap().unwrap();
        assert!(
            store
                .latest(mac(), UploadKind::PhoneOverride)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.quarantined(mac()).await.unwrap().len(), 1);
        store.restore(mac(), None).await.unwrap().unwrap();
        assert!(
            store
                .latest(mac(), UploadKind::PhoneOverride)
                .await
                .unwrap()
                .is_some()
        );
    }

    /// A node that joins a shared inventory keeps serving what its folder held, and the folder
    /// keeps a copy set aside.
    #[tokio::test]
    async fn a_folder_s_files_move_into_the_database_once() {
        let d = tempfile::tempdir().unwrap();
        let folder =
            Arc::new(Uploads::open(&d.path().join("uploads"), Default::default()).unwrap());
        folder
            .put(mac(), UploadKind::WebOverride, b"<v1/>")
            .unwrap();
        folder
            .put(mac(), UploadKind::WebOverride, b"<v2/>")
            .unwrap();
        folder.quarantine_as(mac(), "q0").unwrap();
        folder
            .put(mac(), UploadKind::WebOverride, b"<v3/>")
            .unwrap();
        folder.put(mac(), UploadKind::AppLog, b"log\n").unwrap();
        let inv = Arc::new(Inventory::open_in_memory().await.unwrap());
        let store = UploadStore::shared(folder, inv);
        assert_eq!(store.adopt_folder().await.unwrap(), 3);
        assert_eq!(store.adopt_folder().await.unwrap(), 0, "once");
        assert_eq!(
            newest(&store, UploadKind::WebOverride).await.as_deref(),
            Some(&b"<v3/>"[..])
        );
        let sets = store.quarantined(mac()).await.unwrap();
        assert_eq!((sets[0].id.as_str(), sets[0].files.len()), ("q0", 2));
        let aside = d
            .path()
            .join("uploads/.in-database")
            .join(mac().to_string());
        assert!(aside.join("web.cfg").is_dir() && aside.join("quarantine/q0").is_dir());
        // The log stays where it was.
        assert_eq!(stored(&store, UploadKind::AppLog, 0).await, b"log\n");
    }

    /// And back: one node on SQLite finds a shared database's files in its folder.
    #[tokio::test]
    async fn a_database_s_files_move_into_the_folder_on_one_node() {
        let (d, shared) = shared().await;
        shared
            .put(mac(), UploadKind::PhoneOverride, "<old/>".into())
            .await
            .unwrap();
        shared.quarantine_as(mac(), "q1").await.unwrap();
        shared
            .put(mac(), UploadKind::PhoneOverride, "<new/>".into())
            .await
            .unwrap();
        let inv = shared.database.clone().unwrap();
        let folder = Arc::new(Uploads::open(&d.path().join("one"), Default::default()).unwrap());
        let one = UploadStore::in_folder(folder);
        assert_eq!(one.adopt_database(&inv).await.unwrap(), 2);
        assert_eq!(one.adopt_database(&inv).await.unwrap(), 0, "once");
        assert_eq!(
            newest(&one, UploadKind::PhoneOverride).await.as_deref(),
            Some(&b"<new/>"[..])
        );
        let sets = one.quarantined(mac()).await.unwrap();
        assert_eq!((sets[0].id.as_str(), sets[0].files.len()), ("q1", 1));
        assert!(inv.devices_with_files().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_size_limit_holds_for_the_database_too() {
        let (_d, store) = shared().await;
        let big = bytes::Bytes::from(vec![b'x'; 300 * 1024]);
        assert!(matches!(
            store.put(mac(), UploadKind::WebOverride, big).await,
            Err(UploadError::TooLarge { .. })
        ));
        assert!(store.list(mac()).await.unwrap().is_empty());
    }
}
