//! The mirror against a real S3-compatible server (`s3s-fs`): new, changed and removed objects,
//! nothing downloaded twice, unsafe keys skipped, and the folder kept when the store is down.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod support;

use object_store::ObjectStore;
use object_store::path::Path as Key;
use polyprov_mirror::{Archive, Mirror, STATE_FILE};
use support::s3_server::S3;

async fn put(store: &dyn ObjectStore, key: &str, body: &'static [u8]) {
    store
        .put(&Key::from(key), body.to_vec().into())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_folder_follows_the_bucket_and_keeps_serving_when_it_is_down() {
    let mut s3 = S3::start("prov");
    let store = s3.client("prov");
    put(&*store, "site-a/000000000000.cfg", b"<APPLICATION/>").await;
    put(&*store, "site-a/firmware/sip.ld", b"image v1").await;
    put(&*store, "site-b/other.cfg", b"not ours").await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mirror = Mirror::with_store(store.clone(), "site-a/", &root);

    let r = mirror.sync().await.unwrap();
    assert_eq!(r.downloaded, ["000000000000.cfg", "firmware/sip.ld"]);
    assert_eq!(r.bytes, 22);
    assert_eq!(
        std::fs::read(root.join("firmware/sip.ld")).unwrap(),
        b"image v1"
    );
    assert!(!root.join("other.cfg").exists(), "another prefix's object");

    // Nothing changed: nothing downloaded.
    let r = mirror.sync().await.unwrap();
    assert_eq!((r.downloaded.len(), r.unchanged), (0, 2));

    // A changed object is replaced, a removed one removed, a file the admin put there kept.
    std::fs::write(root.join("local.cfg"), "kept").unwrap();
    put(&*store, "site-a/firmware/sip.ld", b"image v2, longer").await;
    store
        .delete(&Key::from("site-a/000000000000.cfg"))
        .await
        .unwrap();
    let r = mirror.sync().await.unwrap();
    assert_eq!(r.downloaded, ["firmware/sip.ld"]);
    assert_eq!(r.removed, ["000000000000.cfg"]);
    assert_eq!(
        std::fs::read(root.join("firmware/sip.ld")).unwrap(),
        b"image v2, longer"
    );
    assert!(!root.join("000000000000.cfg").exists());
    assert!(root.join("local.cfg").exists());

    // A change that keeps the size (and maybe the second) is seen by its ETag.
    put(&*store, "site-a/firmware/sip.ld", b"image v3, LONGER").await;
    assert_eq!(mirror.sync().await.unwrap().downloaded, ["firmware/sip.ld"]);
    assert_eq!(
        std::fs::read(root.join("firmware/sip.ld")).unwrap(),
        b"image v3, LONGER"
    );

    // A file deleted locally is fetched again.
    std::fs::remove_file(root.join("firmware/sip.ld")).unwrap();
    assert_eq!(mirror.sync().await.unwrap().downloaded, ["firmware/sip.ld"]);

    // Keys that would be hidden or climb out are never written.
    put(&*store, "site-a/.hidden", b"x").await;
    let r = mirror.sync().await.unwrap();
    assert_eq!(r.skipped, ["site-a/.hidden"]);
    assert!(!root.join(".hidden").exists());

    // The store down: the sync fails, the folder stays as it was.
    s3.stop();
    assert!(mirror.sync().await.is_err());
    assert_eq!(
        std::fs::read(root.join("firmware/sip.ld")).unwrap(),
        b"image v3, LONGER"
    );
    assert!(root.join(STATE_FILE).exists());
}

#[tokio::test]
async fn a_mirror_named_by_url_reaches_the_store_with_its_keys() {
    let s3 = S3::start("boot");
    put(&*s3.client("boot"), "a.cfg", b"A").await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = polyprov_mirror::StoreConfig {
        url: "s3://boot".into(),
        endpoint: Some(s3.endpoint()),
        region: None,
        allow_http: true,
        credentials: Default::default(),
    };
    // No keys in this process's environment: unsigned requests, which the store refuses.
    let e = Mirror::new(&wrong, dir.path())
        .unwrap()
        .sync()
        .await
        .unwrap_err();
    assert!(matches!(e, polyprov_mirror::MirrorError::Store(_)), "{e}");
    assert!(matches!(
        Mirror::new(
            &polyprov_mirror::StoreConfig {
                url: "http://boot".into(),
                ..wrong.clone()
            },
            dir.path()
        ),
        Err(polyprov_mirror::MirrorError::Url(_))
    ));
}

async fn get(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    store
        .get(&Key::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// A folder's logs copied to the store: each selected file once per change (a large one in
/// parts), nothing else, and a store that is down is tried again at the next sync.
#[tokio::test]
async fn an_archive_copies_each_changed_log_once() {
    let mut s3 = S3::start("logs");
    let store = s3.client("logs");
    let dir = tempfile::tempdir().unwrap();
    let uploads = dir.path().join("uploads");
    let device = uploads.join("0004f2aa0001");
    std::fs::create_dir_all(&device).unwrap();
    std::fs::create_dir_all(uploads.join(".tmp")).unwrap();
    std::fs::write(device.join("app.log"), "boot 1\n").unwrap();
    // Larger than one part: streamed in several.
    let big: Vec<u8> = (0..12 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(device.join("boot.log"), &big).unwrap();
    std::fs::write(device.join("phone.cfg"), "not a log").unwrap();
    std::fs::write(uploads.join(".tmp/partial.log"), "hidden").unwrap();
    let state = dir.path().join("archive.json");
    let archive = Archive::with_store(store.clone(), "node-a", &uploads, &state);
    let logs = |p: &str| p.ends_with(".log");

    let r = archive.sync(logs).await.unwrap();
    assert_eq!(
        r.uploaded,
        ["0004f2aa0001/app.log", "0004f2aa0001/boot.log"]
    );
    assert_eq!(r.bytes, 7 + big.len() as u64);
    assert_eq!(
        get(&*store, "node-a/0004f2aa0001/app.log").await,
        b"boot 1\n"
    );
    assert_eq!(get(&*store, "node-a/0004f2aa0001/boot.log").await, big);
    let keys: Vec<String> = futures_util::TryStreamExt::try_collect::<Vec<_>>(store.list(None))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(keys.len(), 2, "only the selected files: {keys:?}");

    // Nothing changed: nothing sent.
    let r = archive.sync(logs).await.unwrap();
    assert_eq!((r.uploaded.len(), r.unchanged), (0, 2));

    // An append is sent; while the store is down it waits for the next sync.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(device.join("app.log"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"boot 2\n").unwrap();
    s3.stop();
    let r = archive.sync(logs).await.unwrap();
    assert_eq!(r.failed, ["0004f2aa0001/app.log"]);
    s3.restart();
    let r = archive.sync(logs).await.unwrap();
    assert_eq!(r.uploaded, ["0004f2aa0001/app.log"]);
    assert_eq!(
        get(&*s3.client("logs"), "node-a/0004f2aa0001/app.log").await,
        b"boot 1\nboot 2\n"
    );

    // A file gone (a rotation dropped it, a new layout moved it) leaves no record behind.
    std::fs::remove_file(device.join("boot.log")).unwrap();
    archive.sync(logs).await.unwrap();
    let kept: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["0004f2aa0001/app.log"]);
    s3.stop();
}
