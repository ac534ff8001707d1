//! A release is all or nothing across a crash: a release interrupted after its intent was
//! written, or after its uploads moved to quarantine, is undone at the next start — the files
//! are back, the device keeps its state, the audit log says what happened, nothing is orphaned.
//! The crash is simulated by doing a release's first steps through the store and never the rest.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use polyprov_model::Mac;
use polyprov_server::Settings;
use polyprov_store::{DeviceState, Inventory, Uploads};
use std::path::Path;

const MAC: &str = "0004f2aa814c";

fn settings(data: &Path) -> Settings {
    Settings::loopback(data.to_path_buf())
}

/// An assigned device with an override and a directory, and the server stopped.
async fn assigned_device_with_uploads(data: &Path) {
    let server = polyprov_server::start(settings(data)).await.unwrap();
    let mac: Mac = MAC.parse().unwrap();
    server
        .core
        .assign(mac, &polyprov_store::Assignment::default(), "test")
        .await
        .unwrap();
    for (name, body) in [
        (format!("/{MAC}-phone.cfg"), "<PHONE_CONFIG/>"),
        (format!("/{MAC}-directory.xml"), "<directory/>"),
    ] {
        let req = polyprov_server::core::Request {
            door: polyprov_server::core::Door::Http,
            path: &name,
            user_agent: None,
            user_agent_memo: None,
            peer: [127, 0, 0, 1].into(),
            credential: polyprov_server::core::Credential::Valid,
        };
        server.core.upload(&req, body.into()).await.unwrap();
    }
    server.shutdown().await;
}

/// The kinds of upload a device holds.
async fn held_kinds(core: &polyprov_server::core::Core, mac: Mac) -> Vec<String> {
    let mut kinds: Vec<String> = core
        .uploads_of(mac)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.kind)
        .collect();
    kinds.sort();
    kinds
}

/// Release intents left in the database of a stopped server.
async fn intents_left(data: &Path) -> usize {
    let inv = Inventory::open_sqlite(&data.join("polyprov.db"))
        .await
        .unwrap();
    let n = inv.release_intents().await.unwrap().len();
    inv.close().await;
    n
}

/// The first steps of a release, as `Core::release` takes them, then a "crash".
async fn interrupted_release(data: &Path, move_files: bool) -> String {
    let mac: Mac = MAC.parse().unwrap();
    let inv = Inventory::open_sqlite(&data.join("polyprov.db"))
        .await
        .unwrap();
    let id = polyprov_store::uploads::new_quarantine_id();
    inv.begin_release(mac, &id).await.unwrap();
    if move_files {
        let uploads = Uploads::open(&data.join("uploads"), Default::default()).unwrap();
        assert!(uploads.quarantine_as(mac, &id).unwrap().is_some());
    }
    inv.close().await;
    id
}

async fn check_undone(data: &Path, id: &str) {
    let server = polyprov_server::start(settings(data)).await.unwrap();
    let mac: Mac = MAC.parse().unwrap();
    let core = server.core.clone();
    let d = core.device(mac).await.unwrap().unwrap();
    assert_eq!(d.state, DeviceState::Assigned);
    assert!(
        core.quarantine_sets(mac).await.unwrap().is_empty(),
        "orphaned set"
    );
    assert_eq!(held_kinds(&core, mac).await, ["directory.xml", "phone.cfg"]);
    let history = core.history(mac).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.action, "release-undone");
    assert!(last.detail.as_deref().unwrap().contains(id), "{last:?}");
    // And the device can be released for real now.
    let released = core.release(mac, "test", "").await.unwrap();
    assert!(released.quarantine.is_some());
    server.shutdown().await;
    assert_eq!(intents_left(data).await, 0);
}

#[tokio::test]
async fn a_release_interrupted_after_its_files_moved_is_undone_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assigned_device_with_uploads(&data).await;
    let id = interrupted_release(&data, true).await;
    check_undone(&data, &id).await;
}

#[tokio::test]
async fn a_release_interrupted_before_its_files_moved_is_undone_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assigned_device_with_uploads(&data).await;
    let id = interrupted_release(&data, false).await;
    check_undone(&data, &id).await;
}

/// A release that completes leaves no intent, and a restart changes nothing.
#[tokio::test]
async fn a_finished_release_leaves_nothing_to_undo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assigned_device_with_uploads(&data).await;
    let mac: Mac = MAC.parse().unwrap();
    let server = polyprov_server::start(settings(&data)).await.unwrap();
    let r = server.core.release(mac, "test", "").await.unwrap();
    server.shutdown().await;
    assert_eq!(intents_left(&data).await, 0);
    let server = polyprov_server::start(settings(&data)).await.unwrap();
    let core = server.core.clone();
    assert_eq!(
        core.device(mac).await.unwrap().unwrap().state,
        DeviceState::Released
    );
    let sets = core.quarantine_sets(mac).await.unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(Some(&sets[0].id), r.quarantine.as_ref());
    assert!(
        core.history(mac)
            .await
            .unwrap()
            .iter()
            .all(|e| e.action != "release-undone")
    );
    server.shutdown().await;
}
