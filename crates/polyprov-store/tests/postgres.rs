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
                "-h 127.0.0.1 -p {port} -k {} -c fsync=off",
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
