//! The inventory's schema on a real PostgreSQL (Debian's `postgresql` package, started here in a
//! temporary folder on a loopback port), against the SQLite one: the same tables, columns,
//! nullability and indexes after the same steps; the audit log append-only in both; nodes that
//! start together migrate once.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod support;

use sqlx::Row;
use std::collections::BTreeSet;
use std::path::Path;
use support::postgres_server::Postgres;

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
    let any = pg.any_pool().await;
    let steps = polyprov_store::inventory::postgres::migrate(&any)
        .await
        .unwrap();
    assert_eq!(steps, polyprov_store::inventory::postgres::MIGRATIONS.len());
    assert_eq!(
        polyprov_store::inventory::postgres::migrate(&any)
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
    let pools = [
        pg.any_pool().await,
        pg.any_pool().await,
        pg.any_pool().await,
    ];
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
    assert_eq!(
        versions,
        (1..=polyprov_store::inventory::postgres::MIGRATIONS.len() as i32).collect::<Vec<i32>>()
    );
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
        .map(|s| numbered_placeholders(s))
        .collect()
}

/// `sql` with each anonymous `?` (outside quotes) numbered `$1`, `$2`, … in order — the same
/// values, as PostgreSQL spells them. SQLite gets `?`s where a statement binds many values (a
/// batch of sightings) and `$n` elsewhere.
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

#[test]
fn anonymous_placeholders_are_numbered_outside_quotes() {
    assert_eq!(
        numbered_placeholders("SELECT '?', ? FROM t WHERE a = ? AND b = 'x?y'"),
        "SELECT '?', $1 FROM t WHERE a = $2 AND b = 'x?y'"
    );
    assert_eq!(numbered_placeholders("SELECT $1"), "SELECT $1");
}

/// Every statement the inventory sends SQLite in a tour of its operations, prepared by a real
/// PostgreSQL on the PostgreSQL schema: each one parses and refers only to what exists there
/// (the step before the inventory can run on PostgreSQL).
#[tokio::test(flavor = "current_thread")]
async fn every_inventory_statement_is_valid_on_postgres_too() {
    use polyprov_store::Inventory;
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
    tour(&inv).await;
    inv.close().await;

    let statements = inventory_statements(&seen.0.lock().unwrap());
    assert!(
        statements.len() > 25,
        "too few statements seen: {statements:#?}"
    );
    let pg = Postgres::start();
    let pool = pg.pool().await;
    polyprov_store::inventory::postgres::migrate(&pg.any_pool().await)
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

/// Every operation of the inventory once, in an order that is valid for the lifecycle; each
/// must succeed.
async fn tour(inv: &polyprov_store::Inventory) {
    use polyprov_store::{Assignment, DeviceFilter, DeviceState, LoginCheck, PageAfter, Sighting};
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
}

/// The same tour, run on PostgreSQL through the inventory itself: every statement executes and
/// every row decodes there.
#[tokio::test]
async fn the_inventory_runs_every_operation_on_postgres() {
    let url = support::postgres_server::fresh_database().await;
    let inv = polyprov_store::Inventory::open(&url).await.unwrap();
    assert_eq!(inv.engine(), polyprov_store::Engine::Postgres);
    tour(&inv).await;
    inv.close().await;
    // Reopening finds the schema in place and runs no step again.
    let inv = polyprov_store::Inventory::open(&url).await.unwrap();
    assert!(
        inv.history("0004f2000001".parse().unwrap())
            .await
            .unwrap()
            .len()
            >= 5
    );
}

/// Everything an inventory says, for comparing two.
async fn contents(inv: &polyprov_store::Inventory) -> String {
    let mut out = format!("{:?}\n", inv.row_counts().await.unwrap());
    out += &format!("{:?}\n", inv.profiles().await.unwrap());
    out += &format!("{:?}\n", inv.site_defaults().await.unwrap());
    out += &format!("{:?}\n", inv.device_logins().await.unwrap());
    out += &format!("{:?}\n", inv.release_intents().await.unwrap());
    for d in inv.devices().await.unwrap() {
        out += &format!("{d:?}\n");
        out += &format!("{:?}\n", inv.history(d.mac.parse().unwrap()).await.unwrap());
    }
    out
}

/// `polyprov migrate`'s work: a used SQLite inventory copied to PostgreSQL and back says
/// exactly what it said, and a copy into an inventory that is not empty is refused.
#[tokio::test]
async fn an_inventory_copies_to_postgres_and_back_unchanged() {
    use polyprov_store::{Inventory, InventoryError};
    let dir = tempfile::tempdir().unwrap();
    let lite = Inventory::open_sqlite(&dir.path().join("a.db"))
        .await
        .unwrap();
    tour(&lite).await;
    let m: polyprov_model::Mac = "0004f2000003".parse().unwrap();
    lite.assign(m, &Default::default(), "admin").await.unwrap();
    let before = contents(&lite).await;
    assert!(before.contains("0004f2000003"), "{before}");

    let pg = Inventory::open(&support::postgres_server::fresh_database().await)
        .await
        .unwrap();
    let mut heard = Vec::new();
    let copied = lite
        .copy_into(&pg, |t, n| heard.push((t, n)))
        .await
        .unwrap();
    assert_eq!(copied, lite.row_counts().await.unwrap());
    assert!(copied.iter().find(|(t, _)| *t == "audit").unwrap().1 >= 10);
    assert!(heard.contains(&("devices", 2)), "{heard:?}");
    assert_eq!(contents(&pg).await, before);
    assert!(pg.is_assigned(m));
    // New audit rows continue after the copied ones.
    pg.record("admin", m, "note", "after the move")
        .await
        .unwrap();
    let h = pg.history(m).await.unwrap();
    assert_eq!(h.last().unwrap().detail.as_deref(), Some("after the move"));

    assert!(matches!(
        lite.copy_into(&pg, |_, _| {}).await,
        Err(InventoryError::NotEmpty(_, n)) if n > 0
    ));

    let back = Inventory::open_sqlite(&dir.path().join("b.db"))
        .await
        .unwrap();
    pg.copy_into(&back, |_, _| {}).await.unwrap();
    let after_move = contents(&pg).await;
    assert_eq!(contents(&back).await, after_move);
}

/// Waits (bounded) until `cond` holds; returns how long it took.
async fn within_5s(mut cond: impl FnMut() -> bool, what: &str) -> std::time::Duration {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "not within 5 s: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// Two nodes on one PostgreSQL: what one commits, the other hears — an assignment, a release,
/// a login, a profile — and what phones merely did is not announced. After the listening
/// connection is cut, changes made in the gap are picked up by a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_is_heard_by_the_other() {
    use polyprov_store::{Inventory, InventoryChange, LoginCheck, Sighting};
    use std::sync::Arc;
    let url = support::postgres_server::fresh_database().await;
    let a = Arc::new(Inventory::open(&url).await.unwrap());
    let b = Arc::new(Inventory::open(&url).await.unwrap());
    let mut heard = b.follow_changes().expect("PostgreSQL follows changes");
    assert_eq!(heard.recv().await.unwrap(), InventoryChange::All); // the first load
    let m: polyprov_model::Mac = "0004f2000010".parse().unwrap();

    let g = b.generation();
    a.assign(m, &Default::default(), "admin").await.unwrap();
    let took = within_5s(|| b.is_assigned(m), "B sees the assignment").await;
    eprintln!("assignment on A seen by B after {took:?}");
    assert!(b.generation() > g);
    assert_eq!(heard.recv().await.unwrap(), InventoryChange::Device(m));

    a.release(m, "admin", "new user").await.unwrap();
    let took = within_5s(|| !b.is_assigned(m), "B sees the release").await;
    eprintln!("release on A seen by B after {took:?}");
    assert_eq!(heard.recv().await.unwrap(), InventoryChange::Device(m));

    let check = LoginCheck {
        user: "0004f2000010".into(),
        ha1: "h".into(),
        password_sha256: "s".into(),
    };
    a.issue_logins(&[(m, check, "pw".into())], "admin")
        .await
        .unwrap();
    assert_eq!(heard.recv().await.unwrap(), InventoryChange::Device(m));
    a.put_profile("sales", &Default::default()).await.unwrap();
    assert_eq!(heard.recv().await.unwrap(), InventoryChange::All);

    // Sightings (what phones did) are not announced: up to a marker change made after them,
    // nothing is heard of the sighted device.
    let sighted: polyprov_model::Mac = "0004f2000011".parse().unwrap();
    a.record_sightings(&[Sighting {
        mac: sighted.to_string(),
        at: 5,
        ..Default::default()
    }])
    .await
    .unwrap();
    let marker: polyprov_model::Mac = "0004f2000013".parse().unwrap();
    a.assign(marker, &Default::default(), "admin")
        .await
        .unwrap();
    loop {
        let c = heard.recv().await.unwrap();
        assert_ne!(
            c,
            InventoryChange::Device(sighted),
            "a sighting was announced"
        );
        if c == InventoryChange::Device(marker) {
            break;
        }
    }

    // Cut B's listening connection; what A commits in the gap is picked up by a reload.
    let other: polyprov_model::Mac = "0004f2000012".parse().unwrap();
    let admin = pg_admin(&url).await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "no listening connection found");
    a.assign(other, &Default::default(), "admin").await.unwrap();
    within_5s(
        || b.is_assigned(other),
        "B sees a change made while it was cut off",
    )
    .await;

    // A bulk change is heard as one batch: B reloads its assigned set in one query instead of
    // re-reading 500 devices one by one.
    while heard.try_recv().is_ok() {}
    let many: Vec<(polyprov_model::Mac, polyprov_store::Assignment)> = (0..500u32)
        .map(|i| {
            (
                format!("0004f3{i:06x}").parse().unwrap(),
                Default::default(),
            )
        })
        .collect();
    a.assign_many(&many, "admin").await.unwrap();
    within_5s(
        || many.iter().all(|(m, _)| b.is_assigned(*m)),
        "B sees a bulk assignment",
    )
    .await;
    let mut per_device = 0;
    while let Ok(c) = heard.try_recv() {
        if c != InventoryChange::All {
            per_device += 1;
        }
    }
    assert!(per_device < 100, "{per_device} devices re-read one by one");
}

/// A plain connection pool to the database at `url` (for what a test does behind the nodes).
async fn pg_admin(url: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap()
}

/// The window closed: a node that has not heard a release (its follower is not even running)
/// still never answers from before it — one round trip shows it is behind, a second re-reads
/// the device. With the check off it answers from what it heard, which is the window.
#[tokio::test]
async fn a_node_that_has_not_heard_a_release_still_never_serves_from_before_it() {
    use polyprov_store::Inventory;
    let url = support::postgres_server::fresh_database().await;
    let a = Inventory::open(&url).await.unwrap();
    let b = Inventory::open(&url).await.unwrap();
    let m: polyprov_model::Mac = "0004f2000020".parse().unwrap();
    a.assign(m, &Default::default(), "admin").await.unwrap();
    assert!(
        b.confirm_assigned(m).await.unwrap(),
        "B re-reads an assignment it did not hear"
    );
    a.release(m, "admin", "new user").await.unwrap();
    let g = b.generation();
    assert!(
        !b.confirm_assigned(m).await.unwrap(),
        "B answered from before the release"
    );
    assert!(b.generation() > g, "B's rendered files are re-rendered");

    a.assign(m, &Default::default(), "admin").await.unwrap();
    b.set_check_before_serving(false);
    assert!(
        !b.confirm_assigned(m).await.unwrap(),
        "unchecked: what B last heard"
    );
    b.set_check_before_serving(true);
    assert!(b.confirm_assigned(m).await.unwrap());
}
