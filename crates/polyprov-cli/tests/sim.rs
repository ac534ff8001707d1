//! The vendor FAQ's story told with `polyprov sim` against `polyprov serve`, as a shell script
//! would: the phone finds the server through DHCP option 160.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../polyprov-store/tests/support/postgres_server.rs"]
mod postgres_server;

use common::{admin_env, run, serve, serve_on_store, serve_with};
use std::path::Path;

fn admin_password(state: &Path) -> (String, String) {
    let (code, out) = run(
        &["sim", "show", "--json", "--state", state.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["admin_password"]["value"].as_str().unwrap().to_string(),
        v["admin_password"]["source"].as_str().unwrap().to_string(),
    )
}

#[test]
fn the_seed_story_with_the_sim_commands() {
    seed_story(None);
}

/// The same story with the inventory on a real PostgreSQL (`[store] url`).
#[test]
fn the_seed_story_with_the_inventory_on_postgres() {
    let url = postgres_server::fresh_database_blocking();
    seed_story(Some(&url));
}

fn seed_story(store_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let (served, data) = match store_url {
        Some(url) => serve_on_store(dir.path(), "data", url),
        None => (serve(&dir.path().join("data")), dir.path().join("data")),
    };
    if store_url.is_some() {
        assert!(!data.join("polyprov.db").exists(), "SQLite was used");
    }
    let env = admin_env(&served, &data);
    let pw = std::fs::read_to_string(data.join("provisioning.password")).unwrap();
    let url = format!("160=http://PlcmSpIp:{}@{}/", pw.trim(), served.phones);
    let state = dir.path().join("phone");
    let st = state.to_str().unwrap();

    assert_eq!(
        run(
            &["device", "assign", "0004f2aa814c", "--admin-password", "P1"],
            &env
        )
        .0,
        0
    );
    let (code, out) = run(
        &[
            "sim",
            "init",
            "--state",
            st,
            "--mac",
            "00:04:f2:aa:81:4c",
            "--model",
            "VVX 410",
            "--firmware",
            "5.9.7.4477",
            "--dhcp-option",
            &url,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["sim", "boot", "--state", st], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("(from DHCP option 160)") && out.contains("0004f2aa814c-polyprov.cfg"),
        "{out}"
    );
    assert_eq!(admin_password(&state).0, "P1");

    // Reset to Factory: back with P1, not 456.
    assert_eq!(
        run(
            &["sim", "reset", "--state", st, "factory", "--password", "P1"],
            &[]
        )
        .0,
        0
    );
    assert_eq!(admin_password(&state).0, "456");
    run(&["sim", "boot", "--state", st], &[]);
    assert_eq!(admin_password(&state).0, "P1");

    // P2 in the web UI, then the key combination with the MAC typed on the keypad: back with P2.
    let (code, out) = run(
        &["sim", "set-password", "--state", st, "--via", "web", "P2"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PUT 0004f2aa814c-web.cfg → 201"), "{out}");
    assert_eq!(
        run(
            &["sim", "keys-reset", "--state", st, "--password", "WRONG"],
            &[]
        )
        .0,
        1
    );
    let (code, out) = run(
        &[
            "sim",
            "keys-reset",
            "--state",
            st,
            "--password",
            "00-04-F2-AA-81-4C",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(admin_password(&state).0, "456");
    run(&["sim", "boot", "--state", st], &[]);
    let (value, source) = admin_password(&state);
    assert_eq!(value, "P2");
    assert!(source.starts_with("web override"), "{source}");

    // doctor names the web override; release; the next reset sticks; restore brings P2 back.
    let (code, out) = run(&["doctor", "0004f2aa814c"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "admin password       \"P2\" from web override (web UI) (0004f2aa814c-web.cfg"
        ),
        "{out}"
    );
    assert!(
        out.contains("fix: polyprov device release 0004f2aa814c"),
        "{out}"
    );
    let (code, out) = run(
        &["device", "release", "0004f2aa814c", "--reason", "new user"],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("quarantine set"), "{out}");
    run(
        &["sim", "reset", "--state", st, "factory", "--password", "P2"],
        &[],
    );
    run(&["sim", "boot", "--state", st], &[]);
    assert_eq!(admin_password(&state).0, "456");
    let (_, out) = run(&["doctor", "0004f2aa814c", "--json"], &env);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kind"] != "returns"),
        "{v}"
    );
    let (code, out) = run(&["device", "history", "0004f2aa814c"], &env);
    assert_eq!(code, 0);
    assert!(
        out.contains("release") && out.contains("assigned → released") && out.contains("new user"),
        "{out}"
    );
    let (code, out) = run(&["device", "restore", "0004f2aa814c"], &env);
    assert_eq!(code, 0, "{out}");
    run(&["sim", "boot", "--state", st], &[]);
    assert_eq!(admin_password(&state).0, "P2");
    assert_eq!(run(&["device", "retire", "0004f2aa814c"], &env).0, 0);
    assert_eq!(
        run(&["device", "assign", "0004f2aa814c"], &env).0,
        1,
        "a retired device cannot be assigned"
    );

    // Reset to Factory is not in the menu before 4.0.0.
    let old = dir.path().join("old");
    run(
        &[
            "sim",
            "init",
            "--state",
            old.to_str().unwrap(),
            "--mac",
            "0004f2000009",
            "--model",
            "SoundPoint IP 650",
            "--firmware",
            "3.2.7",
        ],
        &[],
    );
    let (code, out) = run(
        &[
            "sim",
            "reset",
            "--state",
            old.to_str().unwrap(),
            "factory",
            "--password",
            "456",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(out.contains("before UC Software 4.0.0"), "{out}");
}

#[test]
fn a_storm_against_polyprov_reports_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let pw = std::fs::read_to_string(data.join("provisioning.password")).unwrap();
    let url = format!("http://PlcmSpIp:{}@{}/", pw.trim(), served.phones);
    let (code, out) = run(
        &[
            "sim",
            "storm",
            "--server",
            &url,
            "--phones",
            "40",
            "--concurrency",
            "8",
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["phones_booted"].as_u64(), v["error_count"].as_u64()),
        (Some(40), Some(0))
    );
    assert!(v["latency"]["master"]["p99"].as_u64().is_some());
}

/// `sim init --ca-file` with the CA `tls init` made: the emulated phone boots over HTTPS, and a
/// storm over HTTPS reports no errors.
#[test]
fn the_emulated_phone_boots_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out) = run(
        &[
            "tls",
            "init",
            "--data",
            data.to_str().unwrap(),
            "--host",
            "localhost",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let served = serve_with(&data, None, &["--https", "127.0.0.1:0"]);
    let port = served
        .summary
        .lines()
        .find(|l| l.trim_start().starts_with("phones (HTTPS)"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|a| a.trim_end_matches(',').rsplit(':').next())
        .unwrap()
        .to_string();
    let pw = std::fs::read_to_string(data.join("provisioning.password")).unwrap();
    let url = format!("https://PlcmSpIp:{}@localhost:{port}/", pw.trim());
    let ca = data.join("tls/ca.pem");
    let state = dir.path().join("phone");
    let (code, out) = run(
        &[
            "sim",
            "init",
            "--state",
            state.to_str().unwrap(),
            "--mac",
            "0004f2aa7001",
            "--model",
            "VVX 500",
            "--dhcp-option",
            &format!("160={url}"),
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(
        &["sim", "boot", "--json", "--state", state.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let v = &v["boot"];
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    assert!(
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == "0004f2aa7001.cfg" && r["status"] == 200),
        "{v}"
    );
    let (code, out) = run(
        &[
            "sim",
            "storm",
            "--server",
            &url,
            "--phones",
            "20",
            "--concurrency",
            "4",
            "--ca-file",
            ca.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["phones_booted"].as_u64(), v["error_count"].as_u64()),
        (Some(20), Some(0)),
        "{v}"
    );
}
