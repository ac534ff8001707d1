//! The inventory's schema on PostgreSQL: the same steps as SQLite's ([`super::schema`]), one
//! for one and in the same order, in PostgreSQL's dialect — so an installation can move between
//! the engines and several nodes can share one database.
//!
//! What differs, and why: times are `BIGINT` (PostgreSQL's `INTEGER` is 32 bits); the audit
//! log's id is an identity column and its append-only rule is a trigger function that also
//! refuses `TRUNCATE` (SQLite has none); `user` is a reserved word and is quoted; an expression
//! index needs its own parentheses. The version is kept in `schema_version` (PostgreSQL has no
//! `user_version`), and migrations hold an advisory lock, so nodes starting together migrate
//! once, one after the other.
//!
//! Step 8's triggers have no SQLite counterpart: they count, in `inventory_generation`, and
//! announce on the [`CHANNEL`] channel every change another node must act on — a device's
//! assignment, state, admin password or parameters and its login (payload: the new count and
//! the MAC), a profile or the site defaults (the count and `*`) — in the writing transaction,
//! so an announcement goes out exactly when the change commits, whoever made it (a node,
//! `polyprov migrate`, an admin with `psql`).
//! Step 9's trigger announces, the same way, every change to the files phones download back
//! (`device_files`: an upload, a release's quarantine, a restore; payload: the count and
//! `files:` and the MAC), so every node's cache of them follows — without invalidating the
//! rendered files. What phones merely did (sightings, logs) is not announced. The tests run both schemas against real
//! servers and compare them.

use super::InventoryError;

/// Schema steps, one for each of SQLite's [`super::schema::MIGRATIONS`], in the same order.
pub const MIGRATIONS: &[&str] = &[
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

/// The channel inventory changes are announced on (`LISTEN polyprov_inventory`).
pub const CHANNEL: &str = "polyprov_inventory";

/// Key of the advisory lock held while migrating (any constant; "polyprov" in ASCII).
const MIGRATION_LOCK: i64 = 0x706f_6c79_7072_6f76;

const MIGRATION_1: &str = r#"
CREATE TABLE devices (
    mac TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    profile TEXT,
    admin_password TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    model TEXT, family TEXT, firmware TEXT, stage TEXT, serial TEXT,
    first_seen BIGINT, last_seen BIGINT, last_addr TEXT,
    last_fetch TEXT, last_upload TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX devices_profile ON devices(profile);
CREATE TABLE profiles (
    name TEXT PRIMARY KEY,
    params TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE site (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    params TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

const MIGRATION_2: &str = r#"
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    mac TEXT NOT NULL,
    action TEXT NOT NULL,
    before TEXT,
    after TEXT,
    detail TEXT
);
CREATE INDEX audit_mac ON audit(mac, id);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
ALTER TABLE devices ADD COLUMN released_at BIGINT;
ALTER TABLE devices ADD COLUMN reset_suspected_at BIGINT;
"#;

const MIGRATION_3: &str = r#"
ALTER TABLE devices ADD COLUMN user_agent TEXT;
"#;

const MIGRATION_4: &str = r#"
CREATE TABLE release_intents (
    mac TEXT PRIMARY KEY,
    quarantine TEXT NOT NULL,
    started_at BIGINT NOT NULL
);
"#;

const MIGRATION_5: &str = r#"
CREATE TABLE device_logins (
    mac TEXT PRIMARY KEY,
    "user" TEXT NOT NULL,
    ha1 TEXT NOT NULL,
    password_sha256 TEXT NOT NULL,
    password TEXT,
    created_at BIGINT NOT NULL,
    adopted_at BIGINT,
    previous_user TEXT,
    previous_ha1 TEXT,
    previous_sha256 TEXT,
    previous_until BIGINT
);
"#;

const MIGRATION_6: &str = r#"
CREATE INDEX devices_state ON devices(state, mac);
CREATE INDEX devices_model ON devices(model, mac);
"#;

const MIGRATION_7: &str = r#"
CREATE INDEX devices_seen ON devices((COALESCE(last_seen, 0)), mac);
"#;

const MIGRATION_8: &str = r#"
CREATE TABLE inventory_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO inventory_generation (id, value) VALUES (1, 0);
CREATE FUNCTION polyprov_announce(what TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
DECLARE
    g BIGINT;
BEGIN
    UPDATE inventory_generation SET value = value + 1 WHERE id = 1 RETURNING value INTO g;
    PERFORM pg_notify('polyprov_inventory', g || ' ' || what);
END $$;
CREATE FUNCTION polyprov_announce_device() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM polyprov_announce(OLD.mac);
    ELSE
        PERFORM polyprov_announce(NEW.mac);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION polyprov_announce_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM polyprov_announce('*');
    RETURN NULL;
END $$;
CREATE TRIGGER devices_announce_insert AFTER INSERT ON devices
    FOR EACH ROW WHEN (NEW.state <> 'unassigned') EXECUTE FUNCTION polyprov_announce_device();
CREATE TRIGGER devices_announce_update AFTER UPDATE OF state, profile, admin_password, params ON devices
    FOR EACH ROW WHEN ((OLD.state, OLD.profile, OLD.admin_password, OLD.params)
        IS DISTINCT FROM (NEW.state, NEW.profile, NEW.admin_password, NEW.params))
    EXECUTE FUNCTION polyprov_announce_device();
CREATE TRIGGER devices_announce_delete AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION polyprov_announce_device();
CREATE TRIGGER device_logins_announce AFTER INSERT OR UPDATE OR DELETE ON device_logins
    FOR EACH ROW EXECUTE FUNCTION polyprov_announce_device();
CREATE TRIGGER profiles_announce AFTER INSERT OR UPDATE OR DELETE ON profiles
    FOR EACH STATEMENT EXECUTE FUNCTION polyprov_announce_all();
CREATE TRIGGER site_announce AFTER INSERT OR UPDATE OR DELETE ON site
    FOR EACH STATEMENT EXECUTE FUNCTION polyprov_announce_all();
"#;

const MIGRATION_9: &str = r#"
CREATE TABLE device_files (
    mac TEXT NOT NULL,
    kind TEXT NOT NULL,
    version BIGINT NOT NULL,
    body BYTEA NOT NULL,
    size BIGINT NOT NULL,
    modified_ns BIGINT NOT NULL,
    quarantine TEXT,
    PRIMARY KEY (mac, kind, version)
);
CREATE INDEX device_files_quarantine ON device_files(mac, quarantine);
CREATE FUNCTION polyprov_announce_files() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM polyprov_announce('files:' || OLD.mac);
    ELSE
        PERFORM polyprov_announce('files:' || NEW.mac);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER device_files_announce AFTER INSERT OR UPDATE OR DELETE ON device_files
    FOR EACH ROW EXECUTE FUNCTION polyprov_announce_files();
"#;

/// Brings the database at `pool` to the newest schema; returns how many steps ran. Safe to
/// call from several nodes at once: the steps run in one transaction under an advisory lock.
pub async fn migrate(pool: &sqlx::AnyPool) -> Result<usize, InventoryError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .execute(&mut *tx)
        .await?;
    let version: Option<i32> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let version = usize::try_from(version.unwrap_or(0)).unwrap_or(0);
    let mut ran = 0;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        sqlx::raw_sql(*step).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(i32::try_from(i + 1).unwrap_or(i32::MAX))
            .execute(&mut *tx)
            .await?;
        ran += 1;
    }
    tx.commit().await?;
    Ok(ran)
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_step_for_each_of_sqlites() {
        assert_eq!(
            super::MIGRATIONS.len(),
            super::super::schema::MIGRATIONS.len()
        );
    }
}
