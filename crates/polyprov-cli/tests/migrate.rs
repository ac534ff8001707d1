//! `polyprov migrate`: an installation's SQLite inventory copied to a real PostgreSQL, served
//! from there, and copied back; refusals for a destination that is not empty and for sources
//! that do not exist.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../polyprov-store/tests/support/postgres_server.rs"]
mod postgres_server;

use common::{admin_env, phone_get, phone_put, run, serve, serve_on_store};

const OVERRIDE: &str =
    r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="3"/></PHONE_CONFIG>"#;

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn an_installation_moves_to_postgres_and_back() {
    let pg = postgres_server::fresh_database_blocking();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = format!("sqlite:{}", data.join("polyprov.db").display());
    {
        let served = serve(&data);
        let env = admin_env(&served, &data);
        for args in [
            &["profile", "set", "sales", "--param", "reg.1.label=Sales"][..],
            &["device", "assign", "0004f2aa0001", "--profile", "sales"],
            &[
                "device",
                "assign",
                "0004f2aa0002",
                "--admin-password",
                "Pw2",
            ],
            &["device", "release", "0004f2aa0002", "--reason", "left"],
        ] {
            let (code, out) = run(args, &env);
            assert_eq!(code, 0, "{args:?}: {out}");
        }
        // An override the phone uploaded, kept in this node's folder.
        let status = phone_put(&served, &data, "0004f2aa0001-phone.cfg", OVERRIDE);
        assert!(status.starts_with('2'), "{status}");
    }

    let (code, out) = run(&["migrate", "--from", &db, "--to", &pg, "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let copied = json(&out);
    assert_eq!(copied["tables"]["devices"], 2, "{copied}");
    assert_eq!(copied["tables"]["profiles"], 1, "{copied}");
    assert!(copied["tables"]["audit"].as_i64().unwrap() >= 4, "{copied}");
    assert_eq!(copied["checked"], true);

    // Twice is refused: the destination is no longer empty.
    let (code, out) = run(&["migrate", "--from", &db, "--to", &pg], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not empty"), "{out}");

    // The same data folder served from PostgreSQL says what it said.
    std::fs::remove_file(data.join("polyprov.db")).unwrap();
    {
        let (served, _) = serve_on_store(dir.path(), "data", &pg);
        let env = admin_env(&served, &data);
        let (code, out) = run(&["device", "list", "--json"], &env);
        assert_eq!(code, 0, "{out}");
        let list = json(&out);
        let states: Vec<(String, String)> = list["devices"]
            .as_array()
            .or(list.as_array())
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["mac"].as_str().unwrap().to_string(),
                    d["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                ("0004f2aa0001".to_string(), "assigned".to_string()),
                ("0004f2aa0002".to_string(), "released".to_string())
            ]
        );
        let (code, out) = run(&["device", "history", "0004f2aa0002"], &env);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("left"), "{out}");
        assert!(!data.join("polyprov.db").exists(), "SQLite was used");
        // The folder's override moved into the database at start-up, and is served from it.
        let served_override = phone_get(&served, &data, "0004f2aa0001-phone.cfg");
        assert_eq!(served_override, ("200".to_string(), OVERRIDE.to_string()));
        assert!(
            data.join("uploads/.in-database/0004f2aa0001/phone.cfg")
                .is_dir(),
            "the folder's copy is set aside, not deleted"
        );
    }

    let back = format!("sqlite:{}", dir.path().join("back.db").display());
    let (code, out) = run(&["migrate", "--from", &pg, "--to", &back, "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let mut tables = json(&out)["tables"].clone();
    assert_eq!(tables["device_files"], 1, "{tables}");
    tables["device_files"] = copied["tables"]["device_files"].clone();
    assert_eq!(tables, copied["tables"]);
    // One node on SQLite again: the override moves back into its folder, and is served.
    {
        let (served, data) = serve_on_store(dir.path(), "back", &back);
        let served_override = phone_get(&served, &data, "0004f2aa0001-phone.cfg");
        assert_eq!(served_override, ("200".to_string(), OVERRIDE.to_string()));
        assert!(data.join("uploads/0004f2aa0001/phone.cfg").is_dir());
    }

    let missing = format!("sqlite:{}", dir.path().join("missing.db").display());
    let (code, out) = run(&["migrate", "--from", &missing, "--to", &back], &[]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = run(&["migrate", "--from", "mysql://x/y", "--to", &back], &[]);
    assert_eq!(code, 2, "{out}");
}
