//! Two `polyprov serve` nodes on one real PostgreSQL inventory: a device assigned through one
//! node's admin API is served its own file by the other (the test prints how soon), and once
//! released there, is not — from the other node's very first answer after the release.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../polyprov-store/tests/support/postgres_server.rs"]
mod postgres_server;

use common::{Served, admin_env, phone_get, run, serve_with, until};
use std::path::Path;
use std::time::Duration;

const MAC: &str = "0004f2ab0001";

fn node(dir: &Path, name: &str, url: &str) -> (Served, std::path::PathBuf) {
    let data = dir.join(name);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    let served = serve_with(&data, None, &["--config", config.to_str().unwrap()]);
    (served, data)
}

/// The phone's own file as node `served` answers it now: (status, body).
fn own_file(served: &Served, data: &Path) -> (String, String) {
    phone_get(served, data, &format!("{MAC}-polyprov.cfg"))
}

#[test]
fn a_release_on_one_node_withdraws_the_file_on_the_other() {
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(postgres_server::fresh_database());
    let dir = tempfile::tempdir().unwrap();
    let (a, a_data) = node(dir.path(), "a", &url);
    let (b, b_data) = node(dir.path(), "b", &url);
    let env_a = admin_env(&a, &a_data);

    assert_eq!(own_file(&b, &b_data).0, "404", "nothing of its own yet");
    let (code, out) = run(
        &["device", "assign", MAC, "--admin-password", "Node-A-Secret"],
        &env_a,
    );
    assert_eq!(code, 0, "{out}");
    let took = until(
        "B serves the file A's assignment made",
        Duration::from_millis(2),
        || {
            let (status, body) = own_file(&b, &b_data);
            status == "200" && body.contains("Node-A-Secret")
        },
    );
    eprintln!("assignment through node A served by node B after {took:?}");

    // The window after a release is zero: B confirms with the database before serving a
    // device its own file ([store] check_before_serving, on by default), so its very first
    // answer after A's release returned is already without the file.
    let (code, out) = run(&["device", "release", MAC, "--reason", "new user"], &env_a);
    assert_eq!(code, 0, "{out}");
    let (status, body) = own_file(&b, &b_data);
    assert_eq!(status, "404", "B served the withdrawn file: {body}");

    // B's admin API reads the same inventory.
    let (code, out) = run(&["device", "show", MAC, "--json"], &admin_env(&b, &b_data));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"released\""), "{out}");
}
