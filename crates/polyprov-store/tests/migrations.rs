//! An inventory made by the previous release opens with this one: the schema is brought
//! forward at open and every device, profile, login and audit entry is still there.

#![allow(clippy::unwrap_used)]

use polyprov_store::{DeviceFilter, DeviceState, Inventory, PageAfter};

#[tokio::test]
async fn a_schema_6_inventory_is_migrated_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("polyprov.db");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/schema6.db"),
        &db,
    )
    .unwrap();
    let inv = Inventory::open_sqlite(&db).await.unwrap();

    let one = inv
        .device("0004f2aa0001".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.state, DeviceState::Assigned);
    assert_eq!(one.assignment.profile.as_deref(), Some("sales"));
    assert_eq!(one.assignment.admin_password.as_deref(), Some("Adm1n!"));
    assert_eq!(
        one.assignment
            .params
            .get("reg.1.auth.password")
            .map(String::as_str),
        Some("linesecret")
    );
    assert!(one.last_seen.is_some(), "its fetch was recorded");
    let two = inv
        .device("0004f2aa0002".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two.state, DeviceState::Released);
    let sales = inv.profile("sales").await.unwrap().unwrap();
    assert_eq!(
        sales
            .params
            .get("reg.1.server.1.address")
            .map(String::as_str),
        Some("pbx.example.com")
    );
    let history = inv.history("0004f2aa0002".parse().unwrap()).await.unwrap();
    assert!(
        history.iter().any(|e| e.action == "release"
            && e.detail.as_deref().is_some_and(|d| d.contains("desk move"))),
        "{history:?}"
    );
    // Migration 7's order works on the old rows: last seen first, never-seen last.
    let page = inv
        .devices_in_order(&DeviceFilter::default(), &PageAfter::Seen(None), 10)
        .await
        .unwrap();
    assert_eq!(page[0].mac, "0004f2aa0001");
    // Opening again is a no-op: the schema is current.
    drop(inv);
    let again = Inventory::open_sqlite(&db).await.unwrap();
    assert_eq!(again.devices().await.unwrap().len(), 2);
}
