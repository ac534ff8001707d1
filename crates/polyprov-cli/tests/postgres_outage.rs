//! The inventory's PostgreSQL goes away under a running `polyprov serve`, and comes back: what
//! was rendered keeps being served, what needs the database is answered 503 (never 404: a
//! phone told 404 boots without the file), a phone's log is still stored (logs are files of the
//! node) while an upload kept in the database is refused with 503 (never acknowledged, so never
//! lost), an admin change is refused — and once the database is back, everything works again
//! without a restart.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../polyprov-store/tests/support/postgres_server.rs"]
mod postgres_server;

use common::{admin_env, phone_get, phone_url, run, serve_on_store, until};
use std::process::Command;
use std::time::Duration;

const D1: &str = "0004f2cd0001";
const D2: &str = "0004f2cd0002";
const D3: &str = "0004f2cd0003";

#[test]
fn a_database_outage_is_served_through_and_recovered_from() {
    let pg = postgres_server::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let (served, data) = serve_on_store(dir.path(), "data", &pg.url());
    // A phone's upload through the shared login: the HTTP status.
    let put = |file: &str, body: &str| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
            .args(["-A", "PolycomVVX-VVX_500-UA/5.9.7.4477"])
            .args(["--data-binary", body])
            .arg(format!("{}{file}", phone_url(&served, &data)))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let env = admin_env(&served, &data);
    for (mac, pw) in [(D1, "D1-secret"), (D2, "D2-secret")] {
        let (code, out) = run(&["device", "assign", mac, "--admin-password", pw], &env);
        assert_eq!(code, 0, "{out}");
    }
    let own = |mac: &str| phone_get(&served, &data, &format!("{mac}-polyprov.cfg"));
    let (status, body) = own(D1);
    assert_eq!(status, "200");
    assert!(body.contains("D1-secret"));
    let first = r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="1"/></PHONE_CONFIG>"#;
    let heard_before = changes_heard(&served.admin);
    assert!(put(&format!("{D1}-phone.cfg"), first).starts_with('2'));
    // Once the node has heard its own upload announced, what it reads next stays cached.
    until("the upload is heard", Duration::from_millis(20), || {
        changes_heard(&served.admin) > heard_before
    });
    let override_of = |mac: &str| phone_get(&served, &data, &format!("{mac}-phone.cfg"));
    assert_eq!(override_of(D1), ("200".to_string(), first.to_string()));

    pg.halt();
    let outage = std::time::Instant::now();
    // Rendered before the outage: still served, from memory.
    let (status, body) = own(D1);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("D1-secret"));
    // Needs the database: 503, never 404.
    let (status, body) = own(D2);
    assert_eq!(status, "503", "{body}");
    eprintln!("503 after {:?} into the outage", outage.elapsed());
    // The override it had is served from this node's cache.
    assert_eq!(override_of(D1), ("200".to_string(), first.to_string()));
    // A phone's log is stored (logs are files of this node)…
    let status = put(&format!("{D1}-app.log"), "a log line\n");
    assert!(status.starts_with('2'), "a log during the outage: {status}");
    // …an override (kept in the database, for every node) is refused, not acknowledged.
    let second = r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="2"/></PHONE_CONFIG>"#;
    let status = put(&format!("{D1}-phone.cfg"), second);
    assert_eq!(status, "503", "an override during the outage");
    // An admin change is refused, and says why.
    let (code, out) = run(&["device", "assign", D3], &env);
    assert_ne!(code, 0, "{out}");
    eprintln!(
        "admin change refused after {:?} into the outage: {out}",
        outage.elapsed()
    );

    pg.resume();
    let back = std::time::Instant::now();
    until(
        "admin changes work again",
        Duration::from_millis(200),
        || run(&["device", "assign", D3], &env).0 == 0,
    );
    until(
        "D2's file is served again",
        Duration::from_millis(200),
        || own(D2).0 == "200",
    );
    eprintln!(
        "all working again {:?} after the database came back",
        back.elapsed()
    );
    assert!(put(&format!("{D1}-phone.cfg"), second).starts_with('2'));
    assert_eq!(override_of(D1), ("200".to_string(), second.to_string()));
    let log =
        std::fs::read_to_string(data.join("uploads/logs").join(format!("{D1}-app.log"))).unwrap();
    assert_eq!(log, "a log line\n");
}

/// Changes to devices' files `polyprov serve` at `admin` has heard from the shared inventory (metrics).
fn changes_heard(admin: &str) -> u64 {
    let out = Command::new("curl")
        .arg("-s")
        .arg(format!("{admin}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("polyprov_inventory_changes_heard_total{result=\"device_files\"} ")
        })
        .map_or(0, |n| n.trim().parse().unwrap())
}
