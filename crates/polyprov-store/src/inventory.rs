//! The inventory: devices, profiles and site defaults, in SQLite.
//!
//! Times are stored as integer Unix seconds and parameter maps as JSON text, so the schema moves
//! to PostgreSQL unchanged. Every write that can change what a phone is served bumps
//! [`Inventory::generation`], which the server uses to invalidate rendered files.

use polyprov_model::{Mac, Params};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Why an inventory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("profile {0:?} does not exist")]
    NoSuchProfile(String),
    #[error("profile {0:?} is used by {1} device(s)")]
    ProfileInUse(String, i64),
    #[error("device {mac} is {state}: {what} is not allowed")]
    InvalidTransition {
        mac: String,
        state: &'static str,
        what: &'static str,
    },
    #[error("no device {0}")]
    NoSuchDevice(String),
}

impl InventoryError {
    /// Whether the database failed for want of a resource (disk full, busy or locked, cannot
    /// open a file, no connection in time) rather than a fault: worth a retry, a 503 not a 500.
    pub fn is_resource(&self) -> bool {
        match self {
            InventoryError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => true,
            InventoryError::Db(sqlx::Error::Io(_)) => true,
            InventoryError::Db(sqlx::Error::Database(d)) => {
                // SQLite primary result codes: BUSY 5, LOCKED 6, NOMEM 7, IOERR 10, FULL 13,
                // CANTOPEN 14 (extended codes carry the primary one in the low byte).
                d.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6 | 7 | 10 | 13 | 14))
            }
            _ => false,
        }
    }
}

/// Where a device is in its life: `unassigned` → `assigned` → `released` → (`assigned` again |
/// `retired`). Only `assigned` devices get anything of their own; the others are served exactly
/// what a never-seen phone is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Seen by the server, never given anything of its own.
    Unassigned,
    /// Has an assignment: it gets a generated master and per-device file.
    Assigned,
    /// Its assignment was withdrawn and its uploads quarantined, ready for a new user.
    Released,
    /// Out of service; it can no longer be assigned.
    Retired,
}

impl DeviceState {
    /// The stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Unassigned => "unassigned",
            DeviceState::Assigned => "assigned",
            DeviceState::Released => "released",
            DeviceState::Retired => "retired",
        }
    }

    fn parse(s: &str) -> DeviceState {
        match s {
            "assigned" => DeviceState::Assigned,
            "released" => DeviceState::Released,
            "retired" => DeviceState::Retired,
            _ => DeviceState::Unassigned,
        }
    }
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    /// Who: the admin token's name, or `phone` for what a phone's requests caused.
    pub actor: String,
    pub mac: String,
    /// `assign`, `release`, `retire`, `restore`, `remove`, `reset-suspected`, …
    pub action: String,
    /// The device before and after (admin password masked), as JSON.
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    /// Free text: the reason given, the quarantine set, …
    pub detail: Option<String>,
}

/// A device as the audit log shows it: the admin password never appears.
fn audit_view(d: &Device) -> serde_json::Value {
    let mut v = serde_json::to_value(d).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        if o.get("admin_password").is_some_and(|p| !p.is_null()) {
            o.insert(
                "admin_password".into(),
                serde_json::Value::String("***".into()),
            );
        }
        for secret in o
            .get_mut("params")
            .and_then(|p| p.as_object_mut())
            .into_iter()
            .flat_map(|p| p.iter_mut())
            .filter(|(k, _)| polyprov_model::lint::is_secret(k))
        {
            *secret.1 = serde_json::Value::String("***".into());
        }
    }
    v
}

/// What an admin decides for a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Profile whose parameters apply under the device's own.
    pub profile: Option<String>,
    /// Rendered as `device.auth.localAdminPassword` with its gates.
    pub admin_password: Option<String>,
    /// Any further parameters; they win over the profile and the site defaults.
    pub params: Params,
}

/// What the server last saw of a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sighting {
    pub mac: String,
    pub at: i64,
    pub addr: Option<String>,
    pub model: Option<String>,
    pub family: Option<String>,
    pub firmware: Option<String>,
    pub stage: Option<String>,
    pub serial: Option<String>,
    pub last_fetch: Option<String>,
    pub last_upload: Option<String>,
    pub user_agent: Option<String>,
}

/// A device as the inventory holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub mac: String,
    pub state: DeviceState,
    #[serde(flatten)]
    pub assignment: Assignment,
    pub model: Option<String>,
    pub family: Option<String>,
    pub firmware: Option<String>,
    pub stage: Option<String>,
    pub serial: Option<String>,
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    pub last_addr: Option<String>,
    pub last_fetch: Option<String>,
    pub last_upload: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was last released.
    pub released_at: Option<i64>,
    /// When its requests last looked like a factory reset (see the server's reset heuristics).
    pub reset_suspected_at: Option<i64>,
    /// The User-Agent of its last request, as sent (cut at 256 characters): what the phone said,
    /// including shapes polyprov could not read.
    pub user_agent: Option<String>,
}

/// A named set of parameters shared by many devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    pub params: Params,
    pub updated_at: i64,
}

/// Schema steps, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2, MIGRATION_3, MIGRATION_4];

/// A release in progress: written before its uploads move to quarantine, removed in the
/// transaction that records the release. One left behind at start-up is a release a crash
/// interrupted; it is undone (see the server's reconciliation).
const MIGRATION_4: &str = r#"
CREATE TABLE release_intents (
    mac TEXT PRIMARY KEY,
    quarantine TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
"#;

const MIGRATION_3: &str = r#"
ALTER TABLE devices ADD COLUMN user_agent TEXT;
"#;

const MIGRATION_2: &str = r#"
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    mac TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT,
    detail TEXT
);
CREATE INDEX audit_mac ON audit(mac, id);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
ALTER TABLE devices ADD COLUMN released_at INTEGER;
ALTER TABLE devices ADD COLUMN reset_suspected_at INTEGER;
"#;

const MIGRATION_1: &str = r#"
CREATE TABLE devices (
    mac TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    profile TEXT,
    admin_password TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    model TEXT, family TEXT, firmware TEXT, stage TEXT, serial TEXT,
    first_seen INTEGER, last_seen INTEGER, last_addr TEXT,
    last_fetch TEXT, last_upload TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX devices_profile ON devices(profile);
CREATE TABLE profiles (
    name TEXT PRIMARY KEY,
    params TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE site (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    params TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

/// The inventory database.
pub struct Inventory {
    pool: SqlitePool,
    generation: AtomicU64,
    /// MACs with an assignment, kept in memory so that a storm of unknown phones never queries
    /// the database (one process owns the database; several nodes will need a shared signal).
    assigned: std::sync::RwLock<std::collections::HashSet<Mac>>,
}

async fn clear_release_intent(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    mac: Mac,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM release_intents WHERE mac = ?1")
        .bind(mac.to_string())
        .execute(&mut **tx)
        .await
        .map(|_| ())
}

/// The connection pool. A connection whose transaction could not be ended (a COMMIT or
/// ROLLBACK that failed, as on a full disk: SQLite may already have rolled back by itself,
/// and then the driver's ROLLBACK fails too) is closed instead of going back to the pool —
/// otherwise every later write on it fails with "begin_with at non-zero transaction depth"
/// until the process restarts.
fn pool_options() -> SqlitePoolOptions {
    use sqlx::Connection;
    SqlitePoolOptions::new()
        .max_connections(4)
        .after_release(|conn, _meta| {
            Box::pin(async move {
                // A dropped transaction's ROLLBACK is queued on the connection's worker: the
                // ping runs after it, so the depth read next is the settled one.
                conn.ping().await?;
                let clean = !conn.is_in_transaction();
                if !clean {
                    tracing::warn!("closing a database connection left inside a transaction");
                }
                Ok(clean)
            })
        })
}

/// Current Unix time in seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

macro_rules! select_devices {
    ($tail:literal) => {
        concat!(
            "SELECT mac, state, profile, admin_password, params, model, family, firmware, stage, ",
            "serial, first_seen, last_seen, last_addr, last_fetch, last_upload, created_at, ",
            "updated_at, released_at, reset_suspected_at, user_agent FROM devices ",
            $tail
        )
    };
}

impl Inventory {
    /// Opens (creating if needed) the SQLite inventory at `path` and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Inventory, InventoryError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = pool_options().connect_with(opts).await?;
        Inventory::from_pool(pool).await
    }

    async fn from_pool(pool: SqlitePool) -> Result<Inventory, InventoryError> {
        let inv = Inventory {
            pool,
            generation: AtomicU64::new(1),
            assigned: Default::default(),
        };
        inv.migrate().await?;
        let macs: Vec<String> =
            sqlx::query_scalar("SELECT mac FROM devices WHERE state = 'assigned'")
                .fetch_all(&inv.pool)
                .await?;
        *inv.assigned_set() = macs.iter().filter_map(|m| m.parse().ok()).collect();
        Ok(inv)
    }

    async fn migrate(&self) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await?;
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            sqlx::raw_sql(*step).execute(&mut *tx).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PRAGMA user_version = {}",
                i + 1
            )))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    fn assigned_set(&self) -> std::sync::RwLockWriteGuard<'_, std::collections::HashSet<Mac>> {
        self.assigned.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A write transaction that takes the write lock at once (`BEGIN IMMEDIATE`). A deferred
    /// transaction that reads first and writes later fails with SQLITE_BUSY when another writer
    /// (the sightings flush) committed in between; an immediate one waits its turn instead.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Whether a device has an assignment, without a database query.
    pub fn is_assigned(&self, mac: Mac) -> bool {
        self.assigned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&mac)
    }

    /// A number that changes whenever anything a phone is served from the inventory changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Closes the pool, waiting for running queries.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One device, if known.
    pub async fn device(&self, mac: Mac) -> Result<Option<Device>, InventoryError> {
        let row = sqlx::query(select_devices!("WHERE mac = ?"))
            .bind(mac.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| device_from_row(&r)).transpose()
    }

    /// Every device, by MAC.
    pub async fn devices(&self) -> Result<Vec<Device>, InventoryError> {
        let rows = sqlx::query(select_devices!("ORDER BY mac"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Number of devices in each state.
    pub async fn count_by_state(&self) -> Result<Vec<(DeviceState, i64)>, InventoryError> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM devices GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (DeviceState::parse(r.get::<&str, _>(0)), r.get::<i64, _>(1)))
            .collect())
    }

    /// Gives a device its assignment (creating the device if new). The profile must exist; a
    /// retired device cannot be assigned.
    pub async fn assign(
        &self,
        mac: Mac,
        a: &Assignment,
        actor: &str,
    ) -> Result<Device, InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = fetch_device(&mut tx, mac).await?;
        if before
            .as_ref()
            .is_some_and(|d| d.state == DeviceState::Retired)
        {
            return Err(InventoryError::InvalidTransition {
                mac: mac.to_string(),
                state: "retired",
                what: "assign",
            });
        }
        if let Some(p) = &a.profile {
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM profiles WHERE name = ?")
                .bind(p)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(InventoryError::NoSuchProfile(p.clone()));
            }
        }
        let t = now();
        sqlx::query(
            "INSERT INTO devices (mac, state, profile, admin_password, params, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(mac) DO UPDATE SET state = ?2, profile = ?3, admin_password = ?4,
                 params = ?5, updated_at = ?6",
        )
        .bind(mac.to_string())
        .bind(DeviceState::Assigned.as_str())
        .bind(&a.profile)
        .bind(&a.admin_password)
        .bind(serde_json::to_string(&a.params)?)
        .bind(t)
        .execute(&mut *tx)
        .await?;
        let after = existing_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            "assign",
            before.as_ref(),
            Some(&after),
            None,
        )
        .await?;
        tx.commit().await?;
        self.assigned_set().insert(mac);
        self.bump();
        Ok(after)
    }

    /// Withdraws a device's assignment: from now on it is served what a never-seen phone is.
    /// Idempotent: releasing a released device changes nothing and returns `false`.
    /// `detail` goes to the audit log (the reason, the quarantine set).
    pub async fn release(
        &self,
        mac: Mac,
        actor: &str,
        detail: &str,
    ) -> Result<(Device, bool), InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = existing_device(&mut tx, mac).await?;
        match before.state {
            DeviceState::Released => return Ok((before, false)),
            DeviceState::Retired => {
                return Err(InventoryError::InvalidTransition {
                    mac: mac.to_string(),
                    state: "retired",
                    what: "release",
                });
            }
            DeviceState::Unassigned | DeviceState::Assigned => {}
        }
        let t = now();
        sqlx::query(
            "UPDATE devices SET state = 'released', profile = NULL, admin_password = NULL,
                 params = '{}', released_at = ?2, updated_at = ?2 WHERE mac = ?1",
        )
        .bind(mac.to_string())
        .bind(t)
        .execute(&mut *tx)
        .await?;
        let after = existing_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            "release",
            Some(&before),
            Some(&after),
            Some(detail),
        )
        .await?;
        clear_release_intent(&mut tx, mac).await?;
        tx.commit().await?;
        self.assigned_set().remove(&mac);
        self.bump();
        Ok((after, true))
    }

    /// Takes a released (or never assigned) device out of service.
    pub async fn retire(
        &self,
        mac: Mac,
        actor: &str,
        detail: &str,
    ) -> Result<Device, InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = existing_device(&mut tx, mac).await?;
        if before.state == DeviceState::Assigned {
            return Err(InventoryError::InvalidTransition {
                mac: mac.to_string(),
                state: "assigned",
                what: "retire (release it first)",
            });
        }
        sqlx::query("UPDATE devices SET state = 'retired', updated_at = ?2 WHERE mac = ?1")
            .bind(mac.to_string())
            .bind(now())
            .execute(&mut *tx)
            .await?;
        let after = existing_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            "retire",
            Some(&before),
            Some(&after),
            Some(detail),
        )
        .await?;
        tx.commit().await?;
        self.bump();
        Ok(after)
    }

    /// Appends an entry to the audit log (for actions outside the inventory: restore, …).
    pub async fn record(
        &self,
        actor: &str,
        mac: Mac,
        action: &str,
        detail: &str,
    ) -> Result<(), InventoryError> {
        self.record_ending_intent(actor, mac, action, detail, false)
            .await
    }

    /// [`Inventory::record`], ending the device's release intent in the same transaction when
    /// `end_intent` (a release whose record is what makes it happen).
    async fn record_ending_intent(
        &self,
        actor: &str,
        mac: Mac,
        action: &str,
        detail: &str,
        end_intent: bool,
    ) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        let d = fetch_device(&mut tx, mac).await?;
        audit(
            &mut tx,
            actor,
            mac,
            action,
            d.as_ref(),
            d.as_ref(),
            Some(detail),
        )
        .await?;
        if end_intent {
            clear_release_intent(&mut tx, mac).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a release intent before a release moves anything: `quarantine` is the id its
    /// quarantine set will have.
    pub async fn begin_release(&self, mac: Mac, quarantine: &str) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT OR REPLACE INTO release_intents (mac, quarantine, started_at) VALUES (?1, ?2, ?3)",
        )
        .bind(mac.to_string())
        .bind(quarantine)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audits the release of uploads made since an earlier release (the device stays
    /// released), and ends its release intent in the same transaction.
    pub async fn record_rerelease(
        &self,
        actor: &str,
        mac: Mac,
        detail: &str,
    ) -> Result<(), InventoryError> {
        self.record_ending_intent(actor, mac, "release", detail, true)
            .await
    }

    /// Ends a release intent whose release did not happen (it failed, or it was undone).
    pub async fn end_release_intent(&self, mac: Mac) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        clear_release_intent(&mut tx, mac).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Release intents left behind: releases a crash interrupted, with their quarantine ids.
    pub async fn release_intents(&self) -> Result<Vec<(Mac, String)>, InventoryError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT mac, quarantine FROM release_intents ORDER BY mac")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(m, q)| Some((m.parse().ok()?, q)))
            .collect())
    }

    /// Marks a device as probably factory-reset at `at`, with the evidence in the audit log.
    pub async fn suspect_reset(
        &self,
        mac: Mac,
        at: i64,
        evidence: &str,
    ) -> Result<(), InventoryError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE devices SET reset_suspected_at = ?2 WHERE mac = ?1")
            .bind(mac.to_string())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        audit(
            &mut tx,
            "phone",
            mac,
            "reset-suspected",
            None,
            None,
            Some(evidence),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A device's audit log, oldest first.
    pub async fn history(&self, mac: Mac) -> Result<Vec<AuditEntry>, InventoryError> {
        let rows = sqlx::query("SELECT id, at, actor, mac, action, before, after, detail FROM audit WHERE mac = ? ORDER BY id")
            .bind(mac.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let json = |c: &str| -> Result<Option<serde_json::Value>, InventoryError> {
                    let t: Option<String> = r.try_get(c)?;
                    Ok(t.map(|t| serde_json::from_str(&t)).transpose()?)
                };
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    mac: r.try_get("mac")?,
                    action: r.try_get("action")?,
                    before: json("before")?,
                    after: json("after")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// Deletes a device's record (its audit log stays). Returns whether it existed.
    pub async fn remove(&self, mac: Mac, actor: &str) -> Result<bool, InventoryError> {
        let mut tx = self.write_tx().await?;
        let before = fetch_device(&mut tx, mac).await?;
        let n = sqlx::query("DELETE FROM devices WHERE mac = ?")
            .bind(mac.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if before.is_some() {
            audit(&mut tx, actor, mac, "remove", before.as_ref(), None, None).await?;
        }
        tx.commit().await?;
        self.assigned_set().remove(&mac);
        self.bump();
        Ok(n > 0)
    }

    /// Records what the server saw, many devices in one transaction. Unknown devices are created
    /// `unassigned`; `None` fields keep their stored value.
    pub async fn record_sightings(&self, batch: &[Sighting]) -> Result<(), InventoryError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for s in batch {
            sqlx::query(
                "INSERT INTO devices (mac, state, model, family, firmware, stage, serial,
                     first_seen, last_seen, last_addr, last_fetch, last_upload, created_at, updated_at,
                     user_agent)
                 VALUES (?1, 'unassigned', ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10, ?7, ?7, ?11)
                 ON CONFLICT(mac) DO UPDATE SET
                     model = COALESCE(?2, model), family = COALESCE(?3, family),
                     firmware = COALESCE(?4, firmware), stage = COALESCE(?5, stage),
                     serial = COALESCE(?6, serial),
                     first_seen = COALESCE(first_seen, ?7), last_seen = MAX(COALESCE(last_seen, 0), ?7),
                     last_addr = COALESCE(?8, last_addr), last_fetch = COALESCE(?9, last_fetch),
                     last_upload = COALESCE(?10, last_upload),
                     user_agent = COALESCE(?11, user_agent)",
            )
            .bind(&s.mac)
            .bind(&s.model)
            .bind(&s.family)
            .bind(&s.firmware)
            .bind(&s.stage)
            .bind(&s.serial)
            .bind(s.at)
            .bind(&s.addr)
            .bind(&s.last_fetch)
            .bind(&s.last_upload)
            .bind(&s.user_agent)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every profile, by name.
    pub async fn profiles(&self) -> Result<Vec<Profile>, InventoryError> {
        let rows = sqlx::query("SELECT name, params, updated_at FROM profiles ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    /// One profile.
    pub async fn profile(&self, name: &str) -> Result<Option<Profile>, InventoryError> {
        let row = sqlx::query("SELECT name, params, updated_at FROM profiles WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(profile_from_row).transpose()
    }

    /// Creates or replaces a profile.
    pub async fn put_profile(
        &self,
        name: &str,
        params: &Params,
    ) -> Result<Profile, InventoryError> {
        let t = now();
        sqlx::query(
            "INSERT INTO profiles (name, params, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET params = ?2, updated_at = ?3",
        )
        .bind(name)
        .bind(serde_json::to_string(params)?)
        .bind(t)
        .execute(&self.pool)
        .await?;
        self.bump();
        Ok(Profile {
            name: name.to_string(),
            params: params.clone(),
            updated_at: t,
        })
    }

    /// Deletes a profile no device uses. Returns whether it existed.
    pub async fn delete_profile(&self, name: &str) -> Result<bool, InventoryError> {
        let mut tx = self.write_tx().await?;
        let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE profile = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if users > 0 {
            return Err(InventoryError::ProfileInUse(name.to_string(), users));
        }
        let n = sqlx::query("DELETE FROM profiles WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        self.bump();
        Ok(n > 0)
    }

    /// The site defaults: parameters every assigned device gets unless its profile or its own
    /// parameters say otherwise.
    pub async fn site_defaults(&self) -> Result<Params, InventoryError> {
        let text: Option<String> = sqlx::query_scalar("SELECT params FROM site WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match text {
            Some(t) => serde_json::from_str(&t)?,
            None => Params::new(),
        })
    }

    /// Replaces the site defaults.
    pub async fn put_site_defaults(&self, params: &Params) -> Result<(), InventoryError> {
        sqlx::query(
            "INSERT INTO site (id, params, updated_at) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET params = ?1, updated_at = ?2",
        )
        .bind(serde_json::to_string(params)?)
        .bind(now())
        .execute(&self.pool)
        .await?;
        self.bump();
        Ok(())
    }
}

async fn fetch_device(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    mac: Mac,
) -> Result<Option<Device>, InventoryError> {
    let row = sqlx::query(select_devices!("WHERE mac = ?"))
        .bind(mac.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| device_from_row(&r)).transpose()
}

/// A device that must exist: `NoSuchDevice` otherwise.
async fn existing_device(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    mac: Mac,
) -> Result<Device, InventoryError> {
    fetch_device(tx, mac)
        .await?
        .ok_or_else(|| InventoryError::NoSuchDevice(mac.to_string()))
}

async fn audit(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    actor: &str,
    mac: Mac,
    action: &str,
    before: Option<&Device>,
    after: Option<&Device>,
    detail: Option<&str>,
) -> Result<(), InventoryError> {
    sqlx::query("INSERT INTO audit (at, actor, mac, action, before, after, detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(now())
        .bind(actor)
        .bind(mac.to_string())
        .bind(action)
        .bind(before.map(|d| audit_view(d).to_string()))
        .bind(after.map(|d| audit_view(d).to_string()))
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn device_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Device, InventoryError> {
    Ok(Device {
        mac: r.try_get("mac")?,
        state: DeviceState::parse(r.try_get("state")?),
        assignment: Assignment {
            profile: r.try_get("profile")?,
            admin_password: r.try_get("admin_password")?,
            params: serde_json::from_str(r.try_get("params")?)?,
        },
        model: r.try_get("model")?,
        family: r.try_get("family")?,
        firmware: r.try_get("firmware")?,
        stage: r.try_get("stage")?,
        serial: r.try_get("serial")?,
        first_seen: r.try_get("first_seen")?,
        last_seen: r.try_get("last_seen")?,
        last_addr: r.try_get("last_addr")?,
        last_fetch: r.try_get("last_fetch")?,
        last_upload: r.try_get("last_upload")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        released_at: r.try_get("released_at")?,
        reset_suspected_at: r.try_get("reset_suspected_at")?,
        user_agent: r.try_get("user_agent")?,
    })
}

fn profile_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<Profile, InventoryError> {
    Ok(Profile {
        name: r.try_get("name")?,
        params: serde_json::from_str(r.try_get("params")?)?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    async fn open() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open_sqlite(&dir.path().join("inv.db"))
            .await
            .unwrap();
        (dir, inv)
    }

    /// After "database or disk is full", once there is room again every write succeeds: no
    /// pooled connection is left inside a transaction (found by a fault run: 20 of 40 assigns
    /// failed until restart).
    #[tokio::test]
    async fn a_full_database_leaves_no_connection_inside_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SqliteConnectOptions::new()
            .filename(dir.path().join("inv.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        // Two connections, so that a bad one can go back to the pool beside a good one.
        let pool = pool_options()
            .max_connections(2)
            .connect_with(opts)
            .await
            .unwrap();
        let inv = Inventory::from_pool(pool).await.unwrap();
        let set_max_pages = |n: i64| {
            let pool = inv.pool.clone();
            async move {
                // Both connections get the limit (a pragma is per connection).
                let mut a = pool.acquire().await.unwrap();
                let mut b = pool.acquire().await.unwrap();
                for c in [&mut a, &mut b] {
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {n}")))
                        .execute(&mut **c)
                        .await
                        .unwrap();
                }
            }
        };
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&inv.pool)
            .await
            .unwrap();
        set_max_pages(pages).await;
        let big = Assignment {
            admin_password: Some("x".repeat(3000)),
            ..Default::default()
        };
        let mut full = 0;
        for i in 0..200u32 {
            let m = mac(&format!("0004f2{i:06x}"));
            if let Err(e) = inv.assign(m, &big, "test").await {
                assert!(e.is_resource(), "{e}");
                full += 1;
            }
        }
        assert!(full > 0, "the database never filled up");
        set_max_pages(1 << 30).await;
        for i in 0..40u32 {
            let m = mac(&format!("0004f3{i:06x}"));
            inv.assign(m, &big, "test")
                .await
                .unwrap_or_else(|e| panic!("write {i} after space came back: {e}"));
        }
    }

    #[tokio::test]
    async fn sightings_create_unassigned_devices_and_keep_known_fields() {
        let (_d, inv) = open().await;
        let m = mac("0004f2aa814c");
        let mut s = Sighting {
            mac: m.to_string(),
            at: 10,
            model: Some("VVX_500".into()),
            ..Default::default()
        };
        inv.record_sightings(std::slice::from_ref(&s))
            .await
            .unwrap();
        s.at = 20;
        s.model = None;
        s.addr = Some("127.0.0.1".into());
        inv.record_sightings(&[s]).await.unwrap();
        let d = inv.device(m).await.unwrap().unwrap();
        assert_eq!(d.state, DeviceState::Unassigned);
        assert_eq!((d.first_seen, d.last_seen), (Some(10), Some(20)));
        assert_eq!(d.model.as_deref(), Some("VVX_500"));
        assert_eq!(d.last_addr.as_deref(), Some("127.0.0.1"));
    }

    #[tokio::test]
    async fn assignment_needs_an_existing_profile_and_bumps_the_generation() {
        let (_d, inv) = open().await;
        let m = mac("0004f2aa814c");
        let a = Assignment {
            profile: Some("sales".into()),
            ..Default::default()
        };
        assert!(matches!(
            inv.assign(m, &a, "test").await,
            Err(InventoryError::NoSuchProfile(_))
        ));
        assert!(inv.device(m).await.unwrap().is_none());
        let g = inv.generation();
        inv.put_profile("sales", &Params::new()).await.unwrap();
        let d = inv.assign(m, &a, "test").await.unwrap();
        assert_eq!(d.state, DeviceState::Assigned);
        assert!(inv.generation() > g);
        assert!(inv.is_assigned(m));
        assert!(matches!(
            inv.delete_profile("sales").await,
            Err(InventoryError::ProfileInUse(_, 1))
        ));
        assert!(inv.remove(m, "test").await.unwrap());
        assert!(!inv.is_assigned(m));
        assert!(inv.delete_profile("sales").await.unwrap());
    }

    #[tokio::test]
    async fn the_lifecycle_is_validated_and_audited() {
        let (_d, inv) = open().await;
        let m = mac("0004f2aa814c");
        let a = Assignment {
            admin_password: Some("P1".into()),
            ..Default::default()
        };
        inv.assign(m, &a, "alice").await.unwrap();
        let (d, changed) = inv.release(m, "alice", "new user").await.unwrap();
        assert_eq!(
            (d.state, changed, d.assignment.admin_password.clone()),
            (DeviceState::Released, true, None)
        );
        assert!(!inv.is_assigned(m));
        let (_, changed) = inv.release(m, "alice", "again").await.unwrap();
        assert!(!changed, "release is idempotent");
        inv.retire(m, "bob", "broken screen").await.unwrap();
        assert!(matches!(
            inv.assign(m, &a, "bob").await,
            Err(InventoryError::InvalidTransition { .. })
        ));
        assert!(matches!(
            inv.release(mac("0004f2000001"), "bob", "").await,
            Err(InventoryError::NoSuchDevice(_))
        ));
        let h = inv.history(m).await.unwrap();
        let actions: Vec<(&str, &str)> = h
            .iter()
            .map(|e| (e.actor.as_str(), e.action.as_str()))
            .collect();
        assert_eq!(
            actions,
            [("alice", "assign"), ("alice", "release"), ("bob", "retire")]
        );
        assert_eq!(h[0].after.as_ref().unwrap()["admin_password"], "***");
        assert_eq!(h[1].detail.as_deref(), Some("new user"));
        // Append-only, even for SQL.
        assert!(
            sqlx::query("DELETE FROM audit")
                .execute(&inv.pool)
                .await
                .is_err()
        );
        assert!(
            sqlx::query("UPDATE audit SET actor = 'x'")
                .execute(&inv.pool)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn schema_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("inv.db");
        let inv = Inventory::open_sqlite(&p).await.unwrap();
        let params: Params = [("a.b".to_string(), "1".to_string())].into();
        inv.put_site_defaults(&params).await.unwrap();
        inv.close().await;
        let inv = Inventory::open_sqlite(&p).await.unwrap();
        assert_eq!(inv.site_defaults().await.unwrap(), params);
    }
}
