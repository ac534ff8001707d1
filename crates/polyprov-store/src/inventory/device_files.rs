//! The files phones download back — overrides, directory, call lists, licence — kept in the
//! inventory's database (`device_files`, schema step 9) when several nodes share it: every node
//! then serves the same versions, and a release on any node quarantines them in one statement.
//! The semantics follow the upload folder's ([`crate::uploads`]): every override version kept,
//! the last `keep_versions` of the others; a quarantine set named by the release that made it;
//! a restored file becomes the newest version of its kind. Logs are not kept here (they are
//! appended at every boot and never served back: each node keeps its own).

use super::{Engine, Inventory, InventoryError};
use crate::uploads::{QUARANTINED, QuarantineSet, UploadInfo};
use polyprov_model::{Mac, UploadKind};
use sqlx::Row;

/// First key of the advisory locks that hold a device across nodes (the second is the device's).
const DEVICE_LOCKS: i32 = 0x7070_6476; // "ppdv"

/// A device held, on PostgreSQL, across every node until [`DeviceHold::unlock`] (or, if it is
/// dropped instead, until its connection is closed). Uploads of the device's files wait for it.
pub struct DeviceHold {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    key: i32,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl DeviceHold {
    /// Lets other nodes have the device again.
    pub async fn unlock(mut self) -> Result<(), InventoryError> {
        if let Some(mut conn) = self.conn.take() {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(DEVICE_LOCKS)
                .bind(self.key)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // Whether the lock is still held is unknown: the session ends, and it with it.
                conn.close_on_drop();
            }
            unlocked?;
        }
        Ok(())
    }
}

impl Drop for DeviceHold {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            // Not unlocked: ending the session releases the lock.
            conn.close_on_drop();
        }
    }
}

fn device_key(mac: Mac) -> i32 {
    let b = mac.bytes();
    i32::from_be_bytes([b[2], b[3], b[4], b[5]])
}

/// One row's columns, without the body.
const META: &str = "kind, version, size, modified_ns";

fn info(row: &sqlx::any::AnyRow, with_body: bool) -> Result<UploadInfo, InventoryError> {
    let modified_ns: i64 = row.try_get("modified_ns")?;
    let body = if with_body {
        Some(bytes::Bytes::from(row.try_get::<Vec<u8>, _>("body")?))
    } else {
        None
    };
    Ok(UploadInfo {
        kind: row.try_get("kind")?,
        version: row.try_get::<i64, _>("version")? as u64,
        size: row.try_get::<i64, _>("size")? as u64,
        modified: modified_ns / 1_000_000_000,
        path: Default::default(),
        modified_nanos: modified_ns.max(0) as u128,
        body,
    })
}

fn rank(kind: &str) -> usize {
    QUARANTINED
        .iter()
        .position(|k| k.suffix() == kind)
        .unwrap_or(usize::MAX)
}

/// Inserts `body` as the next version of a device's file of `kind` (numbers count up across
/// quarantine sets, never reused); returns the version.
async fn insert_next_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    mac: Mac,
    kind: UploadKind,
    body: &[u8],
    modified_ns: i64,
    quarantine: Option<&str>,
) -> Result<i64, InventoryError> {
    let (m, k) = (mac.to_string(), kind.suffix());
    let last: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM device_files WHERE mac = $1 AND kind = $2")
            .bind(&m)
            .bind(k)
            .fetch_one(&mut **tx)
            .await?;
    let version = last.unwrap_or(0) + 1;
    sqlx::query(
        "INSERT INTO device_files (mac, kind, version, body, size, modified_ns, quarantine)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&m)
    .bind(k)
    .bind(version)
    .bind(body.to_vec())
    .bind(body.len() as i64)
    .bind(modified_ns)
    .bind(quarantine)
    .execute(&mut **tx)
    .await?;
    Ok(version)
}

impl Inventory {
    /// Whether a device may have files kept here (false only when it certainly has none, as
    /// far as this node has heard: see [`Inventory::confirm_heard`]).
    pub fn may_have_files(&self, mac: Mac) -> bool {
        self.with_files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&mac)
    }

    fn with_files_set(&self) -> std::sync::RwLockWriteGuard<'_, std::collections::HashSet<Mac>> {
        self.with_files.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads which devices have files kept here.
    pub(super) async fn load_with_files(&self) -> Result<(), InventoryError> {
        let macs = self.devices_with_files().await?;
        *self.with_files_set() = macs.into_iter().collect();
        Ok(())
    }

    /// Re-reads whether one device has files kept here (after another node changed them).
    pub(super) async fn reread_with_files(&self, mac: Mac) -> Result<(), InventoryError> {
        let any: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM device_files WHERE mac = $1 LIMIT 1")
                .bind(mac.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let mut set = self.with_files_set();
        if any.is_some() {
            set.insert(mac);
        } else {
            set.remove(&mac);
        }
        Ok(())
    }

    /// On PostgreSQL, holds `mac` across every node (a session advisory lock) until the hold is
    /// unlocked: a release's steps then never interleave with another node's upload or release
    /// of the same device. `None` on SQLite, whose one server's own lock is enough.
    pub async fn hold_device(&self, mac: Mac) -> Result<Option<DeviceHold>, InventoryError> {
        if self.engine != Engine::Postgres {
            return Ok(None);
        }
        // Waits while half the pool holds devices: releases in parallel must not take every
        // connection and leave none for their own statements.
        let turn = self
            .holds
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let mut conn = self.pool.acquire().await?;
        let mut hold = DeviceHold {
            conn: None,
            key: device_key(mac),
            _turn: turn,
        };
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_lock($1, $2)) AS held")
            .bind(DEVICE_LOCKS)
            .bind(hold.key)
            .execute(&mut *conn)
            .await?;
        hold.conn = Some(conn);
        Ok(Some(hold))
    }

    /// A write transaction that first waits, on PostgreSQL, for any [`DeviceHold`] on `mac`
    /// (shared: uploads of one device on several nodes do not wait for each other).
    async fn device_write_tx(
        &self,
        mac: Mac,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.engine != Engine::Postgres {
            return self.write_tx().await;
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock_shared($1, $2)) AS held")
            .bind(DEVICE_LOCKS)
            .bind(device_key(mac))
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS held")
            .bind(super::WRITER_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// Stores a new version of a device's file; keeps the last `keep` versions of the device's
    /// own (all when `None`). Quarantined versions are never pruned.
    pub async fn put_device_file(
        &self,
        mac: Mac,
        kind: UploadKind,
        body: &[u8],
        keep: Option<u32>,
    ) -> Result<UploadInfo, InventoryError> {
        // Marked first: a request between the commit and the mark must not answer "none".
        self.with_files_set().insert(mac);
        let mut tx = self.device_write_tx(mac).await?;
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let version = insert_next_version(&mut tx, mac, kind, body, now_ns, None).await?;
        let (m, k) = (mac.to_string(), kind.suffix());
        if let Some(keep) = keep.filter(|k| *k > 0) {
            sqlx::query(
                "DELETE FROM device_files WHERE mac = $1 AND kind = $2 AND quarantine IS NULL
                 AND version <= $3",
            )
            .bind(&m)
            .bind(k)
            .bind(version - i64::from(keep))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.bump_files();
        Ok(UploadInfo {
            kind: k.to_string(),
            version: version as u64,
            size: body.len() as u64,
            modified: now_ns / 1_000_000_000,
            path: Default::default(),
            modified_nanos: now_ns.max(0) as u128,
            body: Some(bytes::Bytes::copy_from_slice(body)),
        })
    }

    /// Copies one file from a node's upload folder (a version of the device's own, or of
    /// quarantine set `quarantine`) as the next version of its kind, keeping its time.
    pub async fn adopt_device_file(
        &self,
        mac: Mac,
        kind: UploadKind,
        body: &[u8],
        modified_ns: i64,
        quarantine: Option<&str>,
    ) -> Result<u64, InventoryError> {
        self.with_files_set().insert(mac);
        let mut tx = self.device_write_tx(mac).await?;
        let version =
            insert_next_version(&mut tx, mac, kind, body, modified_ns, quarantine).await?;
        tx.commit().await?;
        self.bump_files();
        Ok(version as u64)
    }

    /// Devices with any file kept here (their own or quarantined).
    pub async fn devices_with_files(&self) -> Result<Vec<Mac>, InventoryError> {
        let macs: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT mac FROM device_files ORDER BY mac")
                .fetch_all(&self.pool)
                .await?;
        Ok(macs.iter().filter_map(|m| m.parse().ok()).collect())
    }

    /// Every file kept here for a device, with its bytes and the quarantine set holding it (if
    /// any): oldest version first.
    pub async fn every_device_file(
        &self,
        mac: Mac,
    ) -> Result<Vec<(Option<String>, UploadInfo)>, InventoryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT quarantine, {META}, body FROM device_files WHERE mac = $1 ORDER BY version"
        )))
        .bind(mac.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("quarantine")?, info(r, true)?)))
            .collect()
    }

    /// Deletes a device's files kept here, once they are safely elsewhere (an upload folder).
    pub async fn remove_device_files(&self, mac: Mac) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM device_files WHERE mac = $1")
            .bind(mac.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.with_files_set().remove(&mac);
        self.bump_files();
        Ok(())
    }

    /// The newest version of a device's own file of `kind`, with its bytes.
    pub async fn latest_device_file(
        &self,
        mac: Mac,
        kind: UploadKind,
    ) -> Result<Option<UploadInfo>, InventoryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {META}, body FROM device_files
             WHERE mac = $1 AND kind = $2 AND quarantine IS NULL ORDER BY version DESC LIMIT 1"
        )))
        .bind(mac.to_string())
        .bind(kind.suffix())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| info(&r, true)).transpose()
    }

    /// One version of a device's own file, with its bytes.
    pub async fn device_file(
        &self,
        mac: Mac,
        kind: UploadKind,
        version: u64,
    ) -> Result<Option<UploadInfo>, InventoryError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {META}, body FROM device_files
             WHERE mac = $1 AND kind = $2 AND version = $3 AND quarantine IS NULL"
        )))
        .bind(mac.to_string())
        .bind(kind.suffix())
        .bind(version as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| info(&r, true)).transpose()
    }

    /// Every version of a device's own files (without their bytes), by kind then version.
    pub async fn device_files(&self, mac: Mac) -> Result<Vec<UploadInfo>, InventoryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {META} FROM device_files WHERE mac = $1 AND quarantine IS NULL"
        )))
        .bind(mac.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| info(r, false))
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|i| (rank(&i.kind), i.version));
        Ok(out)
    }

    /// Moves a device's own files into quarantine set `id` (one statement). Like the other
    /// lifecycle steps below it does not wait for a [`DeviceHold`]: its caller holds the device. `None` when there
    /// was nothing to move.
    pub async fn quarantine_device_files(
        &self,
        mac: Mac,
        id: &str,
    ) -> Result<Option<String>, InventoryError> {
        let mut tx = self.write_tx().await?;
        let moved = sqlx::query(
            "UPDATE device_files SET quarantine = $2 WHERE mac = $1 AND quarantine IS NULL",
        )
        .bind(mac.to_string())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        self.bump_files();
        Ok((moved > 0).then(|| id.to_string()))
    }

    /// Gives quarantine set `id` back as the device's own files, versions unchanged (undoing a
    /// release that failed or that a crash interrupted). Returns how many kinds came back.
    pub async fn unquarantine_device_files(
        &self,
        mac: Mac,
        id: &str,
    ) -> Result<usize, InventoryError> {
        let mut tx = self.write_tx().await?;
        let kinds: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT kind FROM device_files WHERE mac = $1 AND quarantine = $2",
        )
        .bind(mac.to_string())
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE device_files SET quarantine = NULL WHERE mac = $1 AND quarantine = $2")
            .bind(mac.to_string())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.bump_files();
        Ok(kinds.len())
    }

    /// A device's quarantine sets (files without their bytes), oldest first.
    pub async fn quarantined_device_files(
        &self,
        mac: Mac,
    ) -> Result<Vec<QuarantineSet>, InventoryError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT quarantine, {META} FROM device_files
             WHERE mac = $1 AND quarantine IS NOT NULL"
        )))
        .bind(mac.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut sets: std::collections::BTreeMap<String, Vec<UploadInfo>> = Default::default();
        for r in &rows {
            sets.entry(r.try_get("quarantine")?)
                .or_default()
                .push(info(r, false)?);
        }
        Ok(sets
            .into_iter()
            .map(|(id, mut files)| {
                files.sort_by_key(|i| (rank(&i.kind), i.version));
                QuarantineSet { id, files }
            })
            .collect())
    }

    /// Brings a quarantine set (the newest when `id` is `None`) back: each file becomes the
    /// newest version of its kind, after anything uploaded since. Returns the set's id and how
    /// many files came back.
    pub async fn restore_device_files(
        &self,
        mac: Mac,
        id: Option<&str>,
    ) -> Result<Option<(String, usize)>, InventoryError> {
        let mut tx = self.write_tx().await?;
        let m = mac.to_string();
        let set: Option<String> = match id {
            Some(id) => sqlx::query_scalar(
                "SELECT quarantine FROM device_files WHERE mac = $1 AND quarantine = $2 LIMIT 1",
            )
            .bind(&m)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?,
            None => sqlx::query_scalar(
                "SELECT MAX(quarantine) FROM device_files WHERE mac = $1 AND quarantine IS NOT NULL",
            )
            .bind(&m)
            .fetch_one(&mut *tx)
            .await?,
        };
        let Some(set) = set else {
            return Ok(None);
        };
        let files: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, version FROM device_files WHERE mac = $1 AND quarantine = $2
             ORDER BY kind, version",
        )
        .bind(&m)
        .bind(&set)
        .fetch_all(&mut *tx)
        .await?;
        let mut next: std::collections::HashMap<String, i64> = Default::default();
        for (kind, version) in &files {
            if !next.contains_key(kind) {
                let last: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(version) FROM device_files WHERE mac = $1 AND kind = $2",
                )
                .bind(&m)
                .bind(kind)
                .fetch_one(&mut *tx)
                .await?;
                next.insert(kind.clone(), last.unwrap_or(0) + 1);
            }
            let to = next.get_mut(kind).map_or(0, |n| {
                *n += 1;
                *n - 1
            });
            sqlx::query(
                "UPDATE device_files SET version = $4, quarantine = NULL
                 WHERE mac = $1 AND kind = $2 AND version = $3",
            )
            .bind(&m)
            .bind(kind)
            .bind(version)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.bump_files();
        Ok(Some((set, files.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::engines;
    use super::*;

    fn mac() -> Mac {
        "0004f2aa814c".parse().unwrap()
    }

    #[tokio::test]
    async fn versions_count_up_and_only_the_last_few_lists_are_kept() {
        for inv in engines().await {
            for i in 1..=5u8 {
                let put = inv
                    .put_device_file(mac(), UploadKind::Directory, &[b'a', i], Some(2))
                    .await
                    .unwrap();
                assert_eq!(put.version, u64::from(i));
                inv.put_device_file(mac(), UploadKind::WebOverride, &[i], None)
                    .await
                    .unwrap();
            }
            let latest = inv
                .latest_device_file(mac(), UploadKind::Directory)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (latest.version, latest.body.as_deref()),
                (5, Some(&b"a\x05"[..]))
            );
            let listed: Vec<(String, u64)> = inv
                .device_files(mac())
                .await
                .unwrap()
                .into_iter()
                .map(|i| (i.kind, i.version))
                .collect();
            let web = |v| ("web.cfg".to_string(), v);
            let dir = |v| ("directory.xml".to_string(), v);
            assert_eq!(
                listed,
                vec![web(1), web(2), web(3), web(4), web(5), dir(4), dir(5)]
            );
            assert!(
                inv.device_file(mac(), UploadKind::Directory, 3)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
    }

    #[tokio::test]
    async fn a_quarantined_file_is_not_served_and_comes_back_as_the_newest() {
        for inv in engines().await {
            let m = mac();
            assert!(
                inv.quarantine_device_files(m, "q1")
                    .await
                    .unwrap()
                    .is_none()
            );
            inv.put_device_file(m, UploadKind::PhoneOverride, b"old", None)
                .await
                .unwrap();
            assert_eq!(
                inv.quarantine_device_files(m, "q1")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("q1")
            );
            assert!(
                inv.latest_device_file(m, UploadKind::PhoneOverride)
                    .await
                    .unwrap()
                    .is_none()
            );
            // The next user's phone uploads its own; the old one waits in quarantine.
            let new = inv
                .put_device_file(m, UploadKind::PhoneOverride, b"new", None)
                .await
                .unwrap();
            assert_eq!(
                new.version, 2,
                "a quarantined version number is never reused"
            );
            let sets = inv.quarantined_device_files(m).await.unwrap();
            assert_eq!(sets.len(), 1);
            assert_eq!((sets[0].id.as_str(), sets[0].files.len()), ("q1", 1));
            assert_eq!(
                inv.restore_device_files(m, None).await.unwrap(),
                Some(("q1".to_string(), 1))
            );
            let latest = inv
                .latest_device_file(m, UploadKind::PhoneOverride)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (latest.version, latest.body.as_deref()),
                (3, Some(&b"old"[..]))
            );
            assert!(inv.quarantined_device_files(m).await.unwrap().is_empty());
            assert!(inv.restore_device_files(m, None).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn an_interrupted_release_gives_its_files_back_unchanged() {
        for inv in engines().await {
            let m = mac();
            inv.put_device_file(m, UploadKind::WebOverride, b"w", None)
                .await
                .unwrap();
            inv.put_device_file(m, UploadKind::Directory, b"d", Some(20))
                .await
                .unwrap();
            inv.quarantine_device_files(m, "q").await.unwrap();
            assert_eq!(inv.unquarantine_device_files(m, "q").await.unwrap(), 2);
            assert_eq!(inv.device_files(m).await.unwrap().len(), 2);
            assert_eq!(inv.unquarantine_device_files(m, "q").await.unwrap(), 0);
        }
    }

    /// A device held by one connection keeps other connections' uploads of it waiting, and
    /// only of it.
    #[tokio::test]
    async fn a_held_device_waits_for_its_holder_on_postgres() {
        let pg = super::super::postgres_server::fresh_database().await;
        let a = Inventory::open(&pg).await.unwrap();
        let b = Inventory::open(&pg).await.unwrap();
        let hold = a.hold_device(mac()).await.unwrap().unwrap();
        let other: Mac = "0004f2aa814d".parse().unwrap();
        b.put_device_file(other, UploadKind::WebOverride, b"x", None)
            .await
            .unwrap();
        let upload = tokio::spawn(async move {
            b.put_device_file(mac(), UploadKind::WebOverride, b"y", None)
                .await
                .unwrap()
        });
        // Still waiting after the holder has had time to finish anything of its own.
        a.quarantine_device_files(mac(), "q").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(!upload.is_finished());
        assert!(a.device_files(mac()).await.unwrap().is_empty());
        hold.unlock().await.unwrap();
        assert_eq!(upload.await.unwrap().version, 1);
        // A hold dropped without unlocking ends with its session.
        let dropped = a.hold_device(mac()).await.unwrap();
        drop(dropped);
        let c = Inventory::open(&pg).await.unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.put_device_file(mac(), UploadKind::WebOverride, b"z", None),
        )
        .await
        .expect("the dropped hold's session ended")
        .unwrap();
    }

    /// Many devices released at once through one node: each holds a connection for its whole
    /// release and needs another for its statements — holds never take the whole pool.
    #[tokio::test]
    async fn many_holds_at_once_leave_connections_for_their_work() {
        let pg = super::super::postgres_server::fresh_database().await;
        let inv = std::sync::Arc::new(Inventory::open(&pg).await.unwrap());
        let releases: Vec<_> = (0..24u8)
            .map(|i| {
                let inv = inv.clone();
                tokio::spawn(async move {
                    let mac: Mac = format!("0004f2bb00{i:02x}").parse().unwrap();
                    inv.put_device_file(mac, UploadKind::WebOverride, b"w", None)
                        .await
                        .unwrap();
                    let hold = inv.hold_device(mac).await.unwrap().unwrap();
                    let id = format!("q{i}");
                    let moved = inv.quarantine_device_files(mac, &id).await.unwrap();
                    assert_eq!(moved, Some(id));
                    hold.unlock().await.unwrap();
                })
            })
            .collect();
        for r in releases {
            r.await.unwrap();
        }
    }
}
