//! The inventory's schema on a real PostgreSQL (Debian's `postgresql` package, started here in a
//! temporary folder on a loopback port), against the SQLite one: the same tables, columns,
//! nullability and indexes after the same steps; the audit log append-only in both; nodes that
//! start together migrate once.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use sqlx::Row;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server of its own, stopped (immediately) when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

/// Where the server binaries are: `initdb` on the PATH, else Debian's versioned folder.
fn bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = std::fs::canonicalize(&p)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().expect(
        "PostgreSQL's server binaries (initdb, pg_ctl) were not found: install Debian's `postgresql` package (.ci/run does)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    /// A command for the server's binaries: as the `postgres` user when this runs as root
    /// (PostgreSQL refuses to run as root).
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, mut c: Command) {
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{c:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> Postgres {
        Postgres::start_with("")
    }

    /// A server with `settings` (`-c name=value …`) added to its command line.
    fn start_with(settings: &str) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("polyprov-pg")
            .tempdir()
            .unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres failed");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            bin: bin_dir(),
            dir,
            port,
        };
        let data = pg.dir.path().join("data");
        let mut init = pg.command("initdb");
        init.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "polyprov",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        pg.run(init);
        let mut start = pg.command("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(pg.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-h 127.0.0.1 -p {port} -k {} -c fsync=off {settings}",
                pg.dir.path().display()
            ))
            .arg("start");
        pg.run(start);
        pg
    }

    fn url(&self) -> String {
        format!("postgres://polyprov@127.0.0.1:{}/postgres", self.port)
    }

    async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url())
            .await
            .unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}

/// (table, column, not null, integer or text) of every column; index names.
type Schema = (
    BTreeSet<(String, String, bool, &'static str)>,
    BTreeSet<String>,
);

fn affinity(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") {
        "integer"
    } else if t.contains("text") || t.contains("char") {
        "text"
    } else {
        "other"
    }
}

async fn sqlite_schema(path: &Path) -> Schema {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut columns = BTreeSet::new();
    for t in &tables {
        for row in sqlx::query("SELECT name, type, pk, \"notnull\" FROM pragma_table_info(?1)")
            .bind(t)
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            let name: String = row.get("name");
            let declared: String = row.get("type");
            let pk: i64 = row.get("pk");
            let notnull: i64 = row.get("notnull");
            columns.insert((
                t.clone(),
                name,
                notnull == 1 || pk == 1,
                affinity(&declared),
            ));
        }
    }
    let indexes = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    (columns, indexes)
}

async fn postgres_schema(pool: &sqlx::PgPool) -> Schema {
    let mut columns = BTreeSet::new();
    for row in sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, is_nullable::text AS n, data_type::text AS d
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> 'schema_version'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        let d: String = row.get("d");
        let n: String = row.get("n");
        columns.insert((row.get("t"), row.get("c"), n == "NO", affinity(&d)));
    }
    let indexes = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    (columns, indexes)
}

#[tokio::test]
async fn both_engines_end_with_the_same_schema_and_an_append_only_audit_log() {
    let pg = Postgres::start();
    let pool = pg.pool().await;
    let steps = polyprov_store::inventory::postgres::migrate(&pool)
        .await
        .unwrap();
    assert_eq!(steps, polyprov_store::inventory::postgres::MIGRATIONS.len());
    assert_eq!(
        polyprov_store::inventory::postgres::migrate(&pool)
            .await
            .unwrap(),
        0
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inventory.db");
    drop(polyprov_store::Inventory::open_sqlite(&db).await.unwrap());
    let (lite_columns, lite_indexes) = sqlite_schema(&db).await;
    let (pg_columns, pg_indexes) = postgres_schema(&pool).await;
    assert_eq!(
        lite_columns
            .symmetric_difference(&pg_columns)
            .collect::<Vec<_>>(),
        Vec::<&(String, String, bool, &str)>::new(),
        "columns differ between SQLite and PostgreSQL"
    );
    assert_eq!(lite_indexes, pg_indexes);
    assert!(lite_columns.len() > 40, "{lite_columns:?}");

    // The audit log: rows go in, none is changed or removed, not even by TRUNCATE.
    sqlx::query(
        "INSERT INTO audit (at, actor, mac, action) VALUES (1, 'admin', '0004f2000001', 'release')",
    )
    .execute(&pool)
    .await
    .unwrap();
    for change in [
        "UPDATE audit SET actor = 'someone else'",
        "DELETE FROM audit",
        "TRUNCATE audit",
    ] {
        let e = sqlx::query(change).execute(&pool).await.unwrap_err();
        assert!(e.to_string().contains("append-only"), "{change}: {e}");
    }
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE actor = 'admin'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test]
async fn nodes_starting_together_migrate_once() {
    let pg = Postgres::start();
    let pools = [pg.pool().await, pg.pool().await, pg.pool().await];
    let runs = futures_util::future::join_all(
        pools
            .iter()
            .map(polyprov_store::inventory::postgres::migrate),
    )
    .await;
    let total: usize = runs.into_iter().map(Result::unwrap).sum();
    assert_eq!(total, polyprov_store::inventory::postgres::MIGRATIONS.len());
    let versions: Vec<i32> =
        sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&pools[0])
            .await
            .unwrap();
    assert_eq!(versions, (1..=7).collect::<Vec<i32>>());
}

/// Every statement a tracing event from `sqlx::query` reports, as sent.
#[derive(Clone, Default)]
struct Statements(std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        #[derive(Default)]
        struct Fields {
            summary: String,
            statement: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "summary" => self.summary = value.to_string(),
                    "db.statement" => self.statement = value.to_string(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.record_str(field, &format!("{value:?}"));
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let sql = if f.statement.trim().is_empty() {
            f.summary
        } else {
            f.statement
        };
        self.0.lock().unwrap().insert(sql.trim().to_string());
    }
}

/// The inventory's own statements (not the schema's, pragmas or transaction control).
fn inventory_statements(all: &BTreeSet<String>) -> Vec<String> {
    all.iter()
        .filter(|s| {
            let first = s
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            matches!(first.as_str(), "SELECT" | "INSERT" | "UPDATE" | "DELETE")
                && !s.to_ascii_uppercase().contains("PRAGMA")
                && !s.contains("sqlite_master")
        })
        .cloned()
        .collect()
}

/// Every statement the inventory sends SQLite in a tour of its operations, prepared by a real
/// PostgreSQL on the PostgreSQL schema: each one parses and refers only to what exists there
/// (the step before the inventory can run on PostgreSQL).
#[tokio::test(flavor = "current_thread")]
async fn every_inventory_statement_is_valid_on_postgres_too() {
    use polyprov_store::{
        Assignment, DeviceFilter, DeviceState, Inventory, LoginCheck, PageAfter, Sighting,
    };
    use tracing_subscriber::layer::SubscriberExt;
    let seen = Statements::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone()).with(
        tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::TRACE),
    );
    // Global: SQLite's statements run on sqlx's own worker threads. (Other tests in this binary
    // may add their statements; they are PostgreSQL's already.)
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let inv = Inventory::open_sqlite(&dir.path().join("inventory.db"))
        .await
        .unwrap();
    let mac: polyprov_model::Mac = "0004f2000001".parse().unwrap();
    let other: polyprov_model::Mac = "0004f2000002".parse().unwrap();
    let params: polyprov_model::Params = [("reg.1.label".to_string(), "x".to_string())].into();
    inv.put_profile("sales", &params).await.unwrap();
    inv.put_site_defaults(&params).await.unwrap();
    inv.profiles().await.unwrap();
    inv.profile("sales").await.unwrap();
    inv.site_defaults().await.unwrap();
    let a = Assignment {
        profile: Some("sales".into()),
        admin_password: Some("pw".into()),
        params,
    };
    inv.assign(mac, &a, "admin").await.unwrap();
    inv.assign_many(&[(other, a.clone())], "admin")
        .await
        .unwrap();
    inv.record_sightings(&[Sighting {
        mac: mac.to_string(),
        at: 10,
        addr: Some("127.0.0.1".into()),
        model: Some("VVX 411".into()),
        user_agent: Some("FileTransport".into()),
        ..Default::default()
    }])
    .await
    .unwrap();
    inv.device(mac).await.unwrap();
    inv.devices().await.unwrap();
    inv.devices_page(None, 10).await.unwrap();
    inv.models().await.unwrap();
    inv.count_by_state().await.unwrap();
    let filter = DeviceFilter {
        state: Some(DeviceState::Assigned),
        mac_digits: Some("f2".into()),
        model: Some("VVX 411".into()),
        profile: Some("sales".into()),
    };
    for after in [
        PageAfter::Mac(None),
        PageAfter::Mac(Some(mac)),
        PageAfter::Seen(None),
        PageAfter::Seen(Some((10, mac))),
    ] {
        inv.devices_in_order(&filter, &after, 10).await.unwrap();
        inv.devices_in_order(&DeviceFilter::default(), &after, 10)
            .await
            .unwrap();
    }
    let check = |u: &str| LoginCheck {
        user: u.into(),
        ha1: "a".into(),
        password_sha256: "b".into(),
    };
    inv.issue_logins(&[(mac, check("dev1"), "p1".into())], "admin")
        .await
        .unwrap();
    inv.rotate_login(mac, &check("dev2"), "p2", 100, "admin")
        .await
        .unwrap();
    inv.login_adopted(mac, 20).await.unwrap();
    inv.device_logins().await.unwrap();
    inv.suspect_reset(mac, 30, "boot log shrank").await.unwrap();
    inv.record("admin", mac, "note", "a note").await.unwrap();
    inv.history(mac).await.unwrap();
    inv.begin_release(mac, "q1").await.unwrap();
    inv.begin_release(mac, "q2").await.unwrap();
    inv.release_intents().await.unwrap();
    inv.release(mac, "admin", "handed over").await.unwrap();
    inv.end_release_intent(mac).await.unwrap();
    inv.record_rerelease("admin", mac, "again").await.unwrap();
    inv.retire(mac, "admin", "broken").await.unwrap();
    inv.delete_login(mac).await.unwrap();
    inv.remove(other, "admin").await.unwrap();
    inv.delete_profile("sales").await.unwrap_or_default();
    inv.close().await;

    let statements = inventory_statements(&seen.0.lock().unwrap());
    assert!(
        statements.len() > 25,
        "too few statements seen: {statements:#?}"
    );
    let pg = Postgres::start();
    let pool = pg.pool().await;
    polyprov_store::inventory::postgres::migrate(&pool)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let mut refused = Vec::new();
    for sql in &statements {
        use sqlx::Executor;
        if let Err(e) = (&mut *conn)
            .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
                sql.clone(),
            )))
            .await
        {
            refused.push(format!("{sql}\n  -> {e}"));
        }
    }
    assert!(
        refused.is_empty(),
        "{} of {} statements refused by PostgreSQL:\n{}",
        refused.len(),
        statements.len(),
        refused.join("\n\n")
    );
}

/// PostgreSQL's resource errors are resource errors (503, worth a retry), its faults are not.
#[tokio::test]
async fn postgres_resource_errors_are_told_from_faults() {
    use sqlx::Connection;
    let pg = Postgres::start_with("-c max_connections=3 -c superuser_reserved_connections=0");
    let mut held = Vec::new();
    let refused = loop {
        match sqlx::PgConnection::connect(&pg.url()).await {
            Ok(c) => held.push(c),
            Err(e) => break e,
        }
        assert!(held.len() <= 3, "more connections than max_connections");
    };
    let refused = polyprov_store::InventoryError::from(refused);
    assert!(refused.is_resource(), "too many connections: {refused:?}");
    let fault = sqlx::query("SELECT * FROM no_such_table")
        .execute(&mut held[0])
        .await
        .unwrap_err();
    let fault = polyprov_store::InventoryError::from(fault);
    assert!(!fault.is_resource(), "an unknown table: {fault:?}");
}
