//! The inventory's PostgreSQL goes away under a running `polyprov serve`, and comes back: what
//! was rendered keeps being served, what needs the database is answered 503 (never 404: a
//! phone told 404 boots without the file), a phone's upload is still stored, an admin change is
//! refused — and once the database is back, everything works again without a restart.

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
    let env = admin_env(&served, &data);
    for (mac, pw) in [(D1, "D1-secret"), (D2, "D2-secret")] {
        let (code, out) = run(&["device", "assign", mac, "--admin-password", pw], &env);
        assert_eq!(code, 0, "{out}");
    }
    let own = |mac: &str| phone_get(&served, &data, &format!("{mac}-polyprov.cfg"));
    let (status, body) = own(D1);
    assert_eq!(status, "200");
    assert!(body.contains("D1-secret"));

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
    // A phone's upload is stored (uploads are files of this node).
    let put = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args(["-A", "PolycomVVX-VVX_500-UA/5.9.7.4477"])
        .args([
            "--data-binary",
            r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="1"/></PHONE_CONFIG>"#,
        ])
        .arg(format!("{}{D1}-phone.cfg", phone_url(&served, &data)))
        .output()
        .unwrap();
    let put = String::from_utf8_lossy(&put.stdout).into_owned();
    assert!(put.starts_with('2'), "the upload during the outage: {put}");
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
    let (status, body) = phone_get(&served, &data, &format!("{D1}-phone.cfg"));
    assert_eq!(status, "200");
    assert!(body.contains("idleIntensity"), "{body}");
}
