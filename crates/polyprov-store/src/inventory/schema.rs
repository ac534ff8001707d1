//! The schema: plain SQL steps, applied in order and counted by `PRAGMA user_version`, so
//! that the same steps can be carried to PostgreSQL.

use super::*;

/// Schema steps, applied in order; `PRAGMA user_version` records how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
    MIGRATION_8,
    MIGRATION_9,
];

/// The files phones download back (overrides, directory, call lists, licence) when several
/// nodes share the inventory: every version a row, `quarantine` naming the release's set that
/// holds it (NULL: the device's own). Version numbers count up per device and kind across
/// quarantine sets, so a restored file gets a new one and none is ever reused. One node keeps
/// these files in its upload folder instead; the table is made on both engines all the same.
const MIGRATION_9: &str = r#"
CREATE TABLE device_files (
    mac TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL,
    body BLOB NOT NULL,
    size INTEGER NOT NULL,
    modified_ns INTEGER NOT NULL,
    quarantine TEXT,
    PRIMARY KEY (mac, kind, version)
);
CREATE INDEX device_files_quarantine ON device_files(mac, quarantine);
"#;

/// PostgreSQL's step 8 makes every change other nodes must see announce itself and count in
/// `inventory_generation` (see [`super::postgres`]); one SQLite file has one server, nothing to
/// announce — the table is made all the same, so that both engines have the same schema.
const MIGRATION_8: &str = r#"
CREATE TABLE inventory_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO inventory_generation (id, value) VALUES (1, 0);
"#;

/// The console's fleet sorted by last seen, newest first, never-seen last: an index on the
/// same expression the query orders by.
pub(super) const MIGRATION_7: &str = r#"
CREATE INDEX devices_seen ON devices(COALESCE(last_seen, 0), mac);
"#;

/// The console's fleet filters by state and model, in MAC order: an index each, so a filtered
/// page is a range scan, not a scan of every device.
pub(super) const MIGRATION_6: &str = r#"
CREATE INDEX devices_state ON devices(state, mac);
CREATE INDEX devices_model ON devices(model, mac);
"#;

/// Each device's own provisioning login. The password is kept in clear only until the phone
/// has used it (it must be rendered into the phone's file until then); Digest needs only `ha1`,
/// Basic only `password_sha256`. The previous login stays valid until the phone uses the new one
/// or `previous_until`.
pub(super) const MIGRATION_5: &str = r#"
CREATE TABLE device_logins (
    mac TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    ha1 TEXT NOT NULL,
    password_sha256 TEXT NOT NULL,
    password TEXT,
    created_at INTEGER NOT NULL,
    adopted_at INTEGER,
    previous_user TEXT,
    previous_ha1 TEXT,
    previous_sha256 TEXT,
    previous_until INTEGER
);
"#;

/// A release in progress: written before its uploads move to quarantine, removed in the
/// transaction that records the release. One left behind at start-up is a release a crash
/// interrupted; it is undone (see the server's reconciliation).
pub(super) const MIGRATION_4: &str = r#"
CREATE TABLE release_intents (
    mac TEXT PRIMARY KEY,
    quarantine TEXT NOT NULL,
    started_at INTEGER NOT NULL
);
"#;

pub(super) const MIGRATION_3: &str = r#"
ALTER TABLE devices ADD COLUMN user_agent TEXT;
"#;

pub(super) const MIGRATION_2: &str = r#"
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

pub(super) const MIGRATION_1: &str = r#"
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

impl Inventory {
    pub(super) async fn migrate(&self) -> Result<(), InventoryError> {
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
}
