//! The core at its boundary: a `Core` over a temporary boot root and upload store and an
//! in-memory SQLite inventory (the real schema and SQL), driven with `Request`s
//! as any door would, no socket in between. Door tests keep only what is about their protocol.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use super::*;

const MAC: &str = "0004f2aa814c";

struct Fixture {
    _dir: tempfile::TempDir,
    core: Core,
}

async fn core() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(SHARED_MASTER), STARTER_MASTER).unwrap();
    let inventory = Inventory::open_in_memory().await.unwrap();
    let uploads = Uploads::open(&dir.path().join("uploads"), Default::default()).unwrap();
    let core = Core::new(
        root,
        Arc::new(inventory),
        Arc::new(uploads),
        true,
        Arc::new(Metrics::default()),
    );
    Fixture { _dir: dir, core }
}

fn req(path: &str, credential: Credential) -> Request<'_> {
    Request {
        door: Door::Http,
        path,
        user_agent: Some("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application"),
        user_agent_memo: None,
        peer: IpAddr::from([127, 0, 0, 1]),
        credential,
    }
}

fn body_of(a: &Answer) -> String {
    match a {
        Answer::Generated(g) => String::from_utf8_lossy(&g.body).into_owned(),
        Answer::File(f) => std::fs::read_to_string(&f.path).unwrap(),
    }
}

async fn assign(core: &Core, password: &str) {
    let a = polyprov_store::Assignment {
        admin_password: Some(password.into()),
        ..Default::default()
    };
    core.assign(MAC.parse().unwrap(), &a, "test").await.unwrap();
}

#[tokio::test]
async fn fetch_answers_with_its_kind_and_refuses_what_it_must() {
    let f = core().await;
    let c = &f.core;
    // An unknown phone: the staging master, no secret.
    let a = c
        .fetch(&req(&format!("/{MAC}.cfg"), Credential::Absent))
        .await
        .unwrap();
    assert_eq!(a.kind(), "master");
    assert!(body_of(&a).contains("polyprov staging master"));
    // Its own file: none without an assignment; credentials first.
    let own = format!("/{MAC}-polyprov.cfg");
    assert_eq!(
        c.fetch(&req(&own, Credential::Absent)).await.unwrap_err(),
        Refusal::AuthRequired
    );
    assert_eq!(
        c.fetch(&req(&own, Credential::Valid)).await.unwrap_err(),
        Refusal::NotFound
    );
    assign(c, "S3cret").await;
    let a = c.fetch(&req(&own, Credential::Valid)).await.unwrap();
    assert_eq!(a.kind(), "device_config");
    assert!(body_of(&a).contains("\"S3cret\""));
    assert_eq!(
        c.fetch(&req(&own, Credential::Invalid)).await.unwrap_err(),
        Refusal::BadCredentials
    );
    // Paths that could escape, and a phone claiming another phone's files.
    assert!(matches!(
        c.fetch(&req("/../etc/passwd", Credential::Valid)).await,
        Err(Refusal::BadPath(_))
    ));
    let mut liar = req(&own, Credential::Valid);
    liar.user_agent =
        Some("FileTransport PolycomVVX-VVX_500-UA/5.9 (SN:0004f2000001) Type/Application");
    assert!(matches!(
        c.fetch(&liar).await,
        Err(Refusal::SerialMismatch { .. })
    ));
}

#[tokio::test]
async fn uploads_go_through_one_ticket() {
    let f = core().await;
    let c = &f.core;
    let web = format!("/{MAC}-web.cfg");
    // Refused before any data: not uploadable, no credentials, continuing a configuration.
    assert_eq!(
        c.begin_upload(&req(&format!("/{MAC}.cfg"), Credential::Valid), false)
            .unwrap_err(),
        Refusal::NotUploadable
    );
    assert_eq!(
        c.begin_upload(&req(&web, Credential::Absent), false)
            .unwrap_err(),
        Refusal::AuthRequired
    );
    assert_eq!(
        c.begin_upload(&req(&web, Credential::Valid), true)
            .unwrap_err(),
        Refusal::NotUploadable
    );
    // Admitted: the limit, then the body's own checks.
    let r = req(&web, Credential::Valid);
    let t = c.begin_upload(&r, false).unwrap();
    assert_eq!(t.limit(), 256 * 1024);
    assert!(matches!(
        c.finish_upload(&r, t, Bytes::from_static(b"<a>")).await,
        Err(Refusal::BadBody(_))
    ));
    let t = c.begin_upload(&r, false).unwrap();
    let too_large = Bytes::from(vec![b'x'; 256 * 1024 + 1]);
    assert!(matches!(
        c.finish_upload(&r, t, too_large).await,
        Err(Refusal::TooLarge { .. })
    ));
    let t = c.begin_upload(&r, false).unwrap();
    assert_eq!(
        c.abandon_upload(&r, t, Refusal::BodyTimeout),
        Refusal::BodyTimeout
    );
    let t = c.begin_upload(&r, false).unwrap();
    let info = c
        .finish_upload(&r, t, Bytes::from_static(b"<PHONE_CONFIG a=\"1\"/>"))
        .await
        .unwrap();
    assert_eq!(info.version, 1);
    // Read back through the same core.
    let a = c.fetch(&r).await.unwrap();
    assert_eq!(a.kind(), "device_file");
    assert_eq!(body_of(&a), "<PHONE_CONFIG a=\"1\"/>");
}

#[tokio::test]
async fn release_quarantines_and_restore_brings_back() {
    let f = core().await;
    let c = &f.core;
    let mac: Mac = MAC.parse().unwrap();
    assign(c, "P1").await;
    let web = format!("/{MAC}-web.cfg");
    c.upload(
        &req(&web, Credential::Valid),
        Bytes::from_static(b"<PHONE_CONFIG/>"),
    )
    .await
    .unwrap();
    let released = c.release(mac, "test", "new user").await.unwrap();
    assert!(released.changed);
    let set = released.quarantine.unwrap();
    // Served what a never-seen phone is served: no override, no own file.
    assert_eq!(
        c.fetch(&req(&web, Credential::Valid)).await.unwrap_err(),
        Refusal::NotFound
    );
    assert_eq!(
        c.fetch(&req(&format!("/{MAC}-polyprov.cfg"), Credential::Valid))
            .await
            .unwrap_err(),
        Refusal::NotFound
    );
    assert_eq!(c.quarantine_sets(mac).await.unwrap().len(), 1);
    let (id, n) = c.restore(mac, None, "test").await.unwrap().unwrap();
    assert_eq!((id, n), (set, 1));
    assert!(c.fetch(&req(&web, Credential::Valid)).await.is_ok());
    // Retired after release; no reassignment of a retired device.
    c.release(mac, "test", "").await.unwrap();
    c.retire(mac, "test", "broken").await.unwrap();
    assert!(c.release(mac, "test", "").await.is_err());
    let actions: Vec<String> = c
        .history(mac)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    // A release gives the device a new provisioning login (the next user's phone gets its
    // own; releasing a released device again does not); the audit log says so, without the
    // password.
    assert_eq!(
        actions,
        [
            "assign",
            "login-issue",
            "release",
            "login-rotate",
            "restore",
            "release",
            "retire"
        ]
    );
}

/// The address noted for a device is the one its latest request came from, before and after
/// the sightings are written — also when it moves between requests of one batch.
#[tokio::test]
async fn a_device_address_follows_its_requests() {
    let f = core().await;
    let mac: Mac = MAC.parse().unwrap();
    let path = format!("{MAC}.cfg");
    let from = |ip: [u8; 4]| Request {
        peer: IpAddr::from(ip),
        ..req(&path, Credential::Absent)
    };
    for ip in [
        [127, 0, 0, 1],
        [127, 0, 0, 1],
        [127, 0, 0, 2],
        [127, 0, 0, 1],
        [127, 0, 0, 3],
    ] {
        f.core.fetch(&from(ip)).await.unwrap();
        let want = std::net::Ipv4Addr::from(ip).to_string();
        assert_eq!(
            f.core.unflushed_address(mac).as_deref(),
            Some(want.as_str())
        );
    }
    assert_eq!(f.core.flush().await, 1);
    let d = f.core.inventory.device(mac).await.unwrap().unwrap();
    assert_eq!(d.last_addr.as_deref(), Some("127.0.0.3"));
    // After the flush the next request's address is noted afresh, even the same one.
    f.core.fetch(&from([127, 0, 0, 3])).await.unwrap();
    assert_eq!(f.core.unflushed_address(mac).as_deref(), Some("127.0.0.3"));
}
