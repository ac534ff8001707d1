//! Hearing the changes every node makes to a shared PostgreSQL inventory, so that what this
//! node keeps in memory — which devices are assigned, the generation its rendered files are
//! cached under, and (through [`InventoryChange`]) the server's copy of the device logins —
//! follows them. The announcements are made by triggers in the writing transaction (schema
//! step 8 in [`super::postgres`]), so a change is heard exactly when it commits.

use super::{Engine, Inventory, InventoryError, postgres};
use polyprov_model::Mac;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A change to the inventory, as heard (every node hears every change, its own included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryChange {
    /// One device's assignment, state, admin password, parameters or login changed.
    Device(Mac),
    /// One device's files kept in the database (an upload, a quarantine, a restore) changed.
    DeviceFiles(Mac),
    /// Anything may have changed: a profile or the site defaults, or this node was not
    /// listening for a while (changes are not replayed) — reload everything kept in memory.
    All,
}

/// How many changes a slow subscriber may fall behind before it is told to reload everything.
const BACKLOG: usize = 4096;
/// Announcements taken as one batch at most, and how long to wait for the next of a batch.
const BATCH_MAX: usize = 10_000;
const BATCH_GAP: Duration = Duration::from_millis(2);
/// Devices in one batch re-read one by one; more, and the assigned set is reloaded whole.
const PER_DEVICE_MAX: usize = 64;
/// How long a request waits for [`Inventory::confirm_assigned`]'s round trip…
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(500);
/// …and, once it failed, how long requests answer from what was heard without asking.
const UNCONFIRMABLE_PAUSE_MS: u64 = 1_000;

/// The shared confirmation queries of [`Inventory::confirm_heard`].
#[derive(Default)]
pub(super) struct Confirms {
    /// Queries started so far (each one's index is the count after it started).
    started: std::sync::atomic::AtomicU64,
    one_at_a_time: tokio::sync::Mutex<()>,
    /// The index of the last query that completed, and the count it read.
    last: std::sync::Mutex<(u64, i64)>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Inventory {
    /// On PostgreSQL, starts following the changes every node makes and returns a receiver of
    /// them (for what the caller keeps in memory beside the inventory's own). `None` on
    /// SQLite, which has one server. The follower stops when the inventory is dropped.
    pub fn follow_changes(
        self: &Arc<Self>,
    ) -> Option<tokio::sync::broadcast::Receiver<InventoryChange>> {
        let url = match (&self.engine, &self.url) {
            (Engine::Postgres, Some(url)) => url.clone(),
            _ => return None,
        };
        let (tx, rx) = tokio::sync::broadcast::channel(BACKLOG);
        tokio::spawn(follow(Arc::downgrade(self), url, tx));
        Some(rx)
    }

    /// Acts on a batch of announcements (each: the count it made `inventory_generation`
    /// reach, then `*` or a device's MAC): re-reads each device named, or — past
    /// [`PER_DEVICE_MAX`] devices, as after a bulk import on another node — the whole assigned
    /// set in one query; then bumps the generation once for the batch.
    async fn heard(&self, payloads: &[String]) -> Result<Vec<InventoryChange>, InventoryError> {
        let mut count = 0i64;
        let mut all = false;
        let mut macs = std::collections::BTreeSet::new();
        let mut files = std::collections::BTreeSet::new();
        for p in payloads {
            let (n, what) = p.split_once(' ').unwrap_or(("0", p));
            count = count.max(n.parse().unwrap_or(0));
            if let Some(mac) = what
                .strip_prefix("files:")
                .and_then(|m| m.parse::<Mac>().ok())
            {
                files.insert(mac);
                continue;
            }
            match what.parse::<Mac>() {
                Ok(mac) => {
                    macs.insert(mac);
                }
                Err(_) => all = true,
            }
        }
        let mut changes = Vec::new();
        if macs.len() > PER_DEVICE_MAX {
            self.load_assigned().await?;
            all = true;
        } else {
            for mac in macs {
                self.reread_assigned(mac).await?;
                changes.push(InventoryChange::Device(mac));
            }
        }
        if all {
            changes = vec![InventoryChange::All];
        }
        if !changes.is_empty() {
            self.bump();
        }
        if files.len() > PER_DEVICE_MAX || (all && !files.is_empty()) {
            self.load_with_files().await?;
        } else {
            for mac in &files {
                self.reread_with_files(*mac).await?;
            }
        }
        if !files.is_empty() || all {
            self.bump_files();
            if !all {
                changes.extend(files.into_iter().map(InventoryChange::DeviceFiles));
            }
        }
        self.heard.fetch_max(count, Ordering::AcqRel);
        Ok(changes)
    }

    /// Re-reads whether one device is assigned.
    async fn reread_assigned(&self, mac: Mac) -> Result<bool, InventoryError> {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM devices WHERE mac = $1")
            .bind(mac.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let assigned = state.as_deref() == Some("assigned");
        let mut set = self.assigned_set();
        if assigned {
            set.insert(mac);
        } else {
            set.remove(&mac);
        }
        Ok(assigned)
    }

    /// The count of announced changes committed so far, read by a query that started after
    /// this call did — shared by every call waiting meanwhile: in a boot storm a thousand
    /// requests confirming at once cost a few round trips, not a thousand, and each still sees
    /// every change committed before it asked. Queries run one at a time; a caller that finds
    /// a query started after it arrived and completed takes that query's count.
    async fn committed_since_asked(&self) -> Result<i64, InventoryError> {
        let arrived = self.confirms.started.load(Ordering::Acquire);
        let _turn = self.confirms.one_at_a_time.lock().await;
        let (done, count) = *self.confirms.last.lock().unwrap_or_else(|p| p.into_inner());
        if done > arrived {
            return Ok(count);
        }
        let index = self.confirms.started.fetch_add(1, Ordering::AcqRel) + 1;
        let count = self.committed().await?;
        *self.confirms.last.lock().unwrap_or_else(|p| p.into_inner()) = (index, count);
        Ok(count)
    }

    /// The count of announced changes committed so far.
    async fn committed(&self) -> Result<i64, InventoryError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM inventory_generation WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Reloads what is kept in memory after a time of not listening.
    async fn resync(&self) -> Result<InventoryChange, InventoryError> {
        // Counted before the reload: what commits after it is heard again, not missed.
        let count = self.committed().await?;
        self.load_assigned().await?;
        self.load_with_files().await?;
        self.bump();
        self.bump_files();
        self.heard.fetch_max(count, Ordering::AcqRel);
        Ok(InventoryChange::All)
    }

    /// Whether `mac` is assigned, for serving it its own files. On a shared PostgreSQL (with
    /// [`Inventory::set_check_before_serving`] on, the default) this node first makes sure it
    /// has heard every change committed anywhere — one round trip, and one more when it has
    /// not, to re-read this device — so a file a release through another node withdrew is never
    /// served, not even in the milliseconds before the announcement arrives. On SQLite, or
    /// with the check off: what this node knows, no round trip.
    pub async fn confirm_assigned(&self, mac: Mac) -> Result<bool, InventoryError> {
        if self.confirm_heard().await {
            return Ok(self.is_assigned(mac));
        }
        let before = self.is_assigned(mac);
        let now = self.reread_assigned(mac).await?;
        if now != before {
            self.bump();
        }
        Ok(now)
    }

    /// Whether this node has heard every change committed anywhere, so that what it keeps in
    /// memory under the current [`Inventory::generation`] may be served: one round trip on a
    /// shared PostgreSQL with the check on; otherwise (SQLite, the check off, or the database
    /// unreachable — nothing can be committed there then either) true without asking.
    pub async fn confirm_heard(&self) -> bool {
        if self.engine != Engine::Postgres || !self.check_before_serving.load(Ordering::Relaxed) {
            return true;
        }
        let now_ms = now_ms();
        if self.unconfirmable_until.load(Ordering::Relaxed) > now_ms {
            return true;
        }
        match tokio::time::timeout(CONFIRM_TIMEOUT, self.committed_since_asked()).await {
            Ok(Ok(count)) => count <= self.heard.load(Ordering::Acquire),
            failed => {
                // The database is unreachable or stalled: nothing can be committed there
                // either, so what this node last heard is the best answer (the follower reports
                // the outage) — and for a moment the next requests do not wait to learn it again.
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {CONFIRM_TIMEOUT:?}"),
                };
                tracing::debug!(error = %why, "cannot confirm with the database; answering from what was heard");
                self.unconfirmable_until
                    .store(now_ms + UNCONFIRMABLE_PAUSE_MS, Ordering::Relaxed);
                true
            }
        }
    }

    /// Whether [`Inventory::confirm_assigned`] asks the database (PostgreSQL only).
    pub fn set_check_before_serving(&self, on: bool) {
        self.check_before_serving.store(on, Ordering::Relaxed);
    }
}

async fn follow(
    inventory: Weak<Inventory>,
    url: String,
    changes: tokio::sync::broadcast::Sender<InventoryChange>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut l = sqlx::postgres::PgListener::connect(&url).await?;
            l.listen(postgres::CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        match connected {
            Ok(mut listener) => {
                // Changes committed while nobody listened are not replayed.
                let mut need_resync = true;
                loop {
                    let Some(inv) = inventory.upgrade() else {
                        return;
                    };
                    if need_resync {
                        match inv.resync().await {
                            Ok(c) => {
                                let _ = changes.send(c);
                                need_resync = false;
                                backoff = Duration::from_millis(100);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot reload the inventory after a gap; trying again");
                                break;
                            }
                        }
                    }
                    drop(inv);
                    // Wake now and then to notice an inventory dropped while all was quiet.
                    let heard =
                        tokio::time::timeout(Duration::from_secs(5), listener.try_recv()).await;
                    let Some(inv) = inventory.upgrade() else {
                        return;
                    };
                    match heard {
                        Err(_) => continue,
                        Ok(Ok(Some(n))) => {
                            // What arrives right behind it (a bulk change) is one batch.
                            let mut batch = vec![n.payload().to_string()];
                            while batch.len() < BATCH_MAX {
                                match tokio::time::timeout(BATCH_GAP, listener.try_recv()).await {
                                    Ok(Ok(Some(m))) => batch.push(m.payload().to_string()),
                                    Ok(Ok(None)) | Ok(Err(_)) => {
                                        need_resync = true;
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            match inv.heard(&batch).await {
                                Ok(heard) => {
                                    for c in heard {
                                        let _ = changes.send(c);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot read a change another node made; reloading");
                                    need_resync = true;
                                }
                            }
                        }
                        Ok(Ok(None)) => {
                            tracing::warn!(
                                "lost the connection that hears other nodes' changes; reconnecting"
                            );
                            need_resync = true;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "cannot hear other nodes' changes; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes; trying again");
            }
        }
        if inventory.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyprov_model::UploadKind;

    /// Requests confirming at once share the round trips, and each still learns of a change
    /// committed before it asked.
    #[tokio::test(flavor = "current_thread")]
    async fn requests_confirming_at_once_share_the_round_trips() {
        let url = super::super::postgres_server::fresh_database().await;
        let writer = Inventory::open(&url).await.unwrap();
        // A node that has not heard anything yet (it does not follow).
        let node = Arc::new(Inventory::open(&url).await.unwrap());
        assert!(node.confirm_heard().await, "nothing committed yet");
        let mac: Mac = "0004f2aa0001".parse().unwrap();
        writer
            .put_device_file(mac, UploadKind::WebOverride, b"<a/>", None)
            .await
            .unwrap();
        let before = node.confirms.started.load(Ordering::Acquire);
        // A query in flight: every call below arrives while it runs.
        let in_flight = node.confirms.one_at_a_time.lock().await;
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move { node.confirm_heard().await })
            })
            .collect();
        // One thread: each spawned call runs until it waits for its turn before this resumes.
        tokio::task::yield_now().await;
        drop(in_flight);
        for c in calls {
            assert!(!c.await.unwrap(), "a committed change was not seen");
        }
        let queries = node.confirms.started.load(Ordering::Acquire) - before;
        // One query, started after every call arrived, answers them all.
        assert_eq!(queries, 1);
    }

    /// A node answers "no files" for a device from memory only while it has heard every
    /// change: another node's upload is found by the query the check forces, and once heard,
    /// from memory.
    #[tokio::test]
    async fn a_device_s_first_file_on_another_node_is_never_missed() {
        let url = super::super::postgres_server::fresh_database().await;
        let writer = Inventory::open(&url).await.unwrap();
        let node = Inventory::open(&url).await.unwrap();
        let mac: Mac = "0004f2aa0002".parse().unwrap();
        assert!(!node.may_have_files(mac));
        writer
            .put_device_file(mac, UploadKind::PhoneOverride, b"<a/>", None)
            .await
            .unwrap();
        assert!(writer.may_have_files(mac), "its own upload");
        assert!(
            !node.confirm_heard().await,
            "behind: the caller must ask the database"
        );
        let count = writer.committed().await.unwrap();
        let changes = node.heard(&[format!("{count} files:{mac}")]).await.unwrap();
        assert_eq!(changes, vec![InventoryChange::DeviceFiles(mac)]);
        assert!(node.confirm_heard().await);
        assert!(node.may_have_files(mac));
        writer.remove_device_files(mac).await.unwrap();
        let count = writer.committed().await.unwrap();
        node.heard(&[format!("{count} files:{mac}")]).await.unwrap();
        assert!(!node.may_have_files(mac));
    }
}
