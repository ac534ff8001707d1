//! A real PostgreSQL for tests (Debian's `postgresql` package): a server in a temporary folder
//! on a loopback port, either a test's own (stopped when dropped) or one shared by a whole test
//! binary (stopped when the binary exits) with a fresh database per test.
//! Shared by the store's unit tests (`#[path]`) and its integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // Each user needs a part.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A PostgreSQL server of its own, stopped (immediately) when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    settings: String,
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

    pub fn start() -> Postgres {
        Postgres::start_with("")
    }

    /// A server with `settings` (`-c name=value …`) added to its command line.
    pub fn start_with(settings: &str) -> Postgres {
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
            settings: settings.to_string(),
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
        pg.resume();
        pg
    }

    /// Starts the server again after [`Postgres::halt`] (same data, same port).
    pub fn resume(&self) {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-h 127.0.0.1 -p {} -k {} -c fsync=off {}",
                self.port,
                self.dir.path().display(),
                self.settings
            ))
            .arg("start");
        self.run(start);
    }

    /// Stops the server at once, as a crash or an outage would.
    pub fn halt(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        self.run(stop);
    }

    pub fn url(&self) -> String {
        format!("postgres://polyprov@127.0.0.1:{}/postgres", self.port)
    }

    /// A pool through sqlx's `Any` driver, as the inventory connects.
    pub async fn any_pool(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(&self.url())
            .await
            .unwrap()
    }

    pub async fn pool(&self) -> sqlx::PgPool {
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

/// The server shared by this test binary, and what stops it.
struct Shared {
    port: u16,
    /// Held open for the binary's life: when the binary exits (even on a panic or abort) the
    /// pipe closes and the watcher stops the server and removes its folder.
    _watcher: std::process::ChildStdin,
    /// Reaped by the system when the binary exits (the watcher outlives it on purpose).
    _watcher_process: std::process::Child,
}

static SHARED: std::sync::OnceLock<Shared> = std::sync::OnceLock::new();
static DATABASES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A fresh, empty database on the server this test binary shares; returns its URL.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let shared = SHARED.get_or_init(|| {
        let pg = Postgres::start();
        let data = pg.dir.path().join("data");
        let stop = format!(
            "cat >/dev/null; {} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            if is_root() {
                format!("runuser -u postgres -- {}", pg.bin.join("pg_ctl").display())
            } else {
                pg.bin.join("pg_ctl").display().to_string()
            },
            data.display(),
            pg.dir.path().display()
        );
        let mut watcher = Command::new("sh")
            .args(["-c", &stop])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let port = pg.port;
        // The watcher stops it now, not a drop (a static is never dropped anyway).
        std::mem::forget(pg);
        Shared {
            port,
            _watcher: watcher.stdin.take().unwrap(),
            _watcher_process: watcher,
        }
    });
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let admin = format!("postgres://polyprov@127.0.0.1:{}/postgres", shared.port);
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    format!("postgres://polyprov@127.0.0.1:{}/{name}", shared.port)
}

/// [`fresh_database`] for a test without a runtime of its own.
pub fn fresh_database_blocking() -> String {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(fresh_database())
}
