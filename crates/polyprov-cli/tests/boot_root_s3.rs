//! A boot root kept in a real S3-compatible object store (`s3s-fs`): `polyprov serve` with
//! `[boot_root] url = "s3://…"` serves what the bucket holds, follows changes and removals,
//! and keeps serving its local copy when the store goes away.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../polyprov-mirror/tests/support/s3_server.rs"]
mod s3_server;

use common::{phone_get, serve_with_env, until};
use object_store::path::Path as Key;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `polyprov serve` on `dir/data` with `section` (one settings section naming a bucket of `s3`),
/// reaching `s3` with its keys.
fn serve_with_s3(dir: &Path, s3: &s3_server::S3, section: &str) -> (common::Served, PathBuf) {
    let data = dir.join("data");
    let config = dir.join("polyprov.toml");
    std::fs::write(
        &config,
        format!(
            "{section}endpoint = \"{}\"\nallow_http = true\n",
            s3.endpoint()
        ),
    )
    .unwrap();
    let served = serve_with_env(
        &data,
        None,
        &["--config", config.to_str().unwrap()],
        &[
            ("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY),
        ],
    );
    (served, data)
}

#[test]
fn the_boot_root_follows_its_bucket_and_outlives_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut s3 = s3_server::S3::start("prov");
    let store = s3.client("prov");
    let put = |key: &str, body: &str| {
        rt.block_on(store.put(&Key::from(key), body.as_bytes().to_vec().into()))
            .unwrap();
    };
    put(
        "site-1/site.cfg",
        r#"<polycomConfig><reg reg.1.label="v1"/></polycomConfig>"#,
    );
    put("site-1/firmware/sip.ld", "POLYPROV-SIM-IMAGE 6.4.3.5018\n");
    let dir = tempfile::tempdir().unwrap();
    let (served, data) = serve_with_s3(
        dir.path(),
        &s3,
        "[boot_root]\nurl = \"s3://prov/site-1\"\nsync_interval_secs = 1\n",
    );

    // Synced before the server answered its first phone.
    let (status, body) = phone_get(&served, &data, "site.cfg");
    assert_eq!(status, "200");
    assert!(body.contains("v1"), "{body}");
    assert_eq!(phone_get(&served, &data, "firmware/sip.ld").0, "200");

    put(
        "site-1/site.cfg",
        r#"<polycomConfig><reg reg.1.label="v2"/></polycomConfig>"#,
    );
    until(
        "the changed object is served",
        Duration::from_millis(100),
        || phone_get(&served, &data, "site.cfg").1.contains("v2"),
    );
    rt.block_on(store.delete(&Key::from("site-1/firmware/sip.ld")))
        .unwrap();
    until(
        "the removed object is gone",
        Duration::from_millis(100),
        || phone_get(&served, &data, "firmware/sip.ld").0 == "404",
    );

    // The store goes away: phones are served the local copy, no error.
    s3.stop();
    until("a sync fails", Duration::from_millis(100), || {
        let metrics = Command::new("curl")
            .args(["-s"])
            .arg(format!("{}/metrics", served.admin))
            .output()
            .unwrap();
        String::from_utf8_lossy(&metrics.stdout)
            .contains("polyprov_boot_root_syncs_total{result=\"failed\"}")
    });
    let (status, body) = phone_get(&served, &data, "site.cfg");
    assert_eq!(status, "200");
    assert!(body.contains("v2"), "{body}");
}

/// `[log_archive]`: a log a phone uploads lands in the bucket under this node's name, and an
/// append to it follows.
#[test]
fn the_logs_phones_upload_are_copied_to_the_archive() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s3 = s3_server::S3::start("logs");
    let store = s3.client("logs");
    let dir = tempfile::tempdir().unwrap();
    let (served, data) = serve_with_s3(
        dir.path(),
        &s3,
        "[log_archive]\nurl = \"s3://logs/site-1\"\nnode = \"node-a\"\ninterval_secs = 1\n",
    );
    let archived = || {
        rt.block_on(async {
            match store
                .get(&Key::from("site-1/node-a/0004f2aa0001-app.log"))
                .await
            {
                Ok(got) => String::from_utf8(got.bytes().await.unwrap().to_vec()).unwrap(),
                Err(_) => String::new(),
            }
        })
    };
    for line in ["first boot\n", "second boot\n"] {
        let status = common::phone_put(&served, &data, "0004f2aa0001-app.log", line);
        assert!(status.starts_with('2'), "{status}");
        until(
            "the log is in the archive",
            Duration::from_millis(100),
            || archived().ends_with(line),
        );
    }
    assert_eq!(archived(), "first boot\nsecond boot\n");
}
