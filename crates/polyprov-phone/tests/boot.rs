//! Emulated phones booting from a plain static folder and from polyprov, over real sockets.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use polyprov_model::Mac;
use polyprov_model::catalog::Catalog;
use polyprov_phone::phone::{IMAGE_MAGIC, MenuReset};
use polyprov_phone::{HttpTransport, PhoneState};
use std::path::PathBuf;
use std::sync::Arc;

const MAC: &str = "0004f2aa814c";

/// A plain web server over a folder: GET and HEAD only, like a boot root behind nginx.
async fn static_server(root: PathBuf) -> std::net::SocketAddr {
    async fn serve(State(root): State<Arc<PathBuf>>, method: Method, uri: Uri) -> Response {
        if method != Method::GET && method != Method::HEAD {
            return StatusCode::METHOD_NOT_ALLOWED.into_response();
        }
        let path = root.join(uri.path().trim_start_matches('/'));
        match std::fs::read(&path) {
            Ok(b) if !uri.path().contains("..") => Response::new(Body::from(b)),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = axum::Router::new()
        .fallback(serve)
        .with_state(Arc::new(root));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn phone(model: &str, firmware: &str) -> PhoneState {
    let c = Catalog::embedded().unwrap();
    PhoneState::new(MAC.parse().unwrap(), c.find(model).unwrap(), firmware)
}

fn write_root(dir: &std::path::Path) {
    let w = |n: &str, t: &[u8]| std::fs::write(dir.join(n), t).unwrap();
    w(
        "000000000000.cfg",
        br#"<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="site.cfg"/>"#,
    );
    w("site.cfg", br#"<polycomConfig><reg reg.1.address="1001@pbx"/><device device.set="1" device.auth.localAdminPassword="P1" device.auth.localAdminPassword.set="1" device.prov.tagSerialNo="1" device.prov.tagSerialNo.set="1"/></polycomConfig>"#);
    w(
        "sip.ld",
        format!("{IMAGE_MAGIC}6.4.3.5018\nbinary…").as_bytes(),
    );
}

/// The application's requests after its configuration files, for a phone with nothing of its
/// own on the server, ending with the log upload answered `log_upload`.
fn after_config_files(log_upload: u16) -> Vec<String> {
    vec![
        format!("GET {MAC}-phone.cfg 404"),
        format!("GET {MAC}-web.cfg 404"),
        "GET 000000000000-license.cfg 404".into(),
        format!("GET {MAC}-license.cfg 404"),
        format!("GET {MAC}-calls.xml 404"),
        format!("GET {MAC}-directory.xml 404"),
        "GET 000000000000-directory.xml 404".into(),
        format!("HEAD {MAC}-app.log 404"),
        format!("PUT {MAC}-app.log {log_upload}"),
    ]
}

#[tokio::test]
async fn boots_from_a_plain_folder_in_the_real_order() {
    let dir = tempfile::tempdir().unwrap();
    write_root(dir.path());
    let addr = static_server(dir.path().to_path_buf()).await;
    let mut p = phone("VVX 500", "5.9.7.4477");
    p.network.dhcp.insert(66, format!("http://{addr}/"));
    let t = HttpTransport::new().unwrap();
    let r = p.boot(&t).await;

    let seq: Vec<String> = r
        .requests
        .iter()
        .map(|q| format!("{} {} {}", q.method, q.path, q.status))
        .collect();
    assert_eq!(
        seq,
        [
            format!("PUT {MAC}-boot.log 405"),
            format!("GET {MAC}.cfg 404"),
            "GET 000000000000.cfg 200".into(),
            "GET 3111-44500-001.sip.ld 404".into(),
            "GET sip.ld 200".into(),
            "GET site.cfg 200".into(),
        ]
        .into_iter()
        .chain(after_config_files(405))
        .collect::<Vec<_>>()
    );
    let stages: Vec<&str> = r.requests.iter().map(|q| q.stage.as_str()).collect();
    assert_eq!(&stages[..5], ["Updater"; 5]);
    assert_eq!(r.upgraded_to.as_deref(), Some("6.4.3.5018"));
    assert_eq!(r.server_source.as_deref(), Some("DHCP option 66"));

    let s = p.summary();
    assert_eq!(s.admin_password.value.as_deref(), Some("P1"));
    assert!(
        s.admin_password.source.contains("site.cfg"),
        "{}",
        s.admin_password.source
    );
    assert_eq!(s.lines[0].1.value.as_deref(), Some("1001@pbx"));
    assert_eq!(
        p.flash
            .get("device.auth.localAdminPassword")
            .map(String::as_str),
        Some("P1")
    );
    // Tag SN to UA, now in flash, shows in the User-Agent.
    assert!(p.user_agent("Application").contains(&format!("(SN:{MAC})")));
}

/// polyprov on loopback, with `tweak` applied to its settings and `MAC` assigned with this
/// admin password.
async fn assigned_polyprov(
    dir: &std::path::Path,
    admin_password: &str,
    tweak: impl FnOnce(&mut polyprov_server::Settings),
) -> polyprov_server::RunningServer {
    let mut s = polyprov_server::Settings::loopback(dir.join("data"));
    tweak(&mut s);
    let server = polyprov_server::start(s).await.unwrap();
    let a = polyprov_store::Assignment {
        admin_password: Some(admin_password.into()),
        ..Default::default()
    };
    server
        .core
        .assign(MAC.parse::<Mac>().unwrap(), &a, "test")
        .await
        .unwrap();
    server
}

/// polyprov with one assigned device; returns the server and its provisioning URL.
async fn polyprov(
    dir: &std::path::Path,
    admin_password: &str,
) -> (polyprov_server::RunningServer, String) {
    let server = assigned_polyprov(dir, admin_password, |_| {}).await;
    let (u, p) = server.provisioning_login.clone().unwrap();
    let url = format!("http://{u}:{p}@{}/", server.http_addr);
    (server, url)
}

/// The first requests of a boot from polyprov that upgrades the phone, as real phones make them.
fn assert_boots_in_order(r: &polyprov_phone::BootReport) {
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let seq: Vec<String> = r
        .requests
        .iter()
        .map(|q| format!("{} {} {}", q.method, q.path, q.status))
        .collect();
    assert_eq!(
        &seq[..5],
        [
            format!("PUT {MAC}-boot.log 200"),
            format!("GET {MAC}.cfg 200"),
            "GET 3111-44500-001.sip.ld 200".to_string(),
            format!("GET {MAC}-polyprov.cfg 200"),
            "GET site.cfg 200".to_string(),
        ]
    );
    assert_eq!(r.upgraded_to.as_deref(), Some("6.4.3.5018"));
}

#[tokio::test]
async fn the_seed_story_a_factory_reset_phone_comes_back_with_the_old_password() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = polyprov(dir.path(), "P1").await;
    let t = HttpTransport::new().unwrap();
    let mut p = phone("VVX 410", "5.9.7.4477");
    p.network.dhcp.insert(160, url);
    let r = p.boot(&t).await;
    assert_eq!(r.server_source.as_deref(), Some("DHCP option 160"));
    let seq: Vec<String> = r
        .requests
        .iter()
        .map(|q| format!("{} {} {}", q.method, q.path, q.status))
        .collect();
    assert_eq!(
        seq,
        [
            format!("PUT {MAC}-boot.log 204"),
            format!("GET {MAC}.cfg 200"),
            "GET 3111-46162-001.sip.ld 404".into(),
            "GET sip.ld 404".into(),
            format!("GET {MAC}-polyprov.cfg 200"),
        ]
        .into_iter()
        .chain(after_config_files(204))
        .collect::<Vec<_>>()
    );
    assert_eq!(p.admin_password(), "P1");

    // Reset to Factory: the phone forgets everything…
    p.menu_reset(MenuReset::Factory, Some("P1")).unwrap();
    assert_eq!(p.admin_password(), "456");
    // …and the server gives it back.
    p.boot(&t).await;
    assert_eq!(p.admin_password(), "P1");

    // Variant: P2 set in the web UI is uploaded as the web override and survives the reset.
    let up = p.set_admin_password(true, "P2", &t).await.unwrap().unwrap();
    assert_eq!(
        (up.method.as_str(), up.path.as_str(), up.status),
        ("PUT", format!("{MAC}-web.cfg").as_str(), 201)
    );
    assert_eq!(p.admin_password(), "P2");
    p.menu_reset(MenuReset::Factory, Some("P2")).unwrap();
    assert_eq!(p.admin_password(), "456");
    p.boot(&t).await;
    let s = p.summary();
    assert_eq!(s.admin_password.value.as_deref(), Some("P2"));
    assert!(
        s.admin_password.source.starts_with("web override"),
        "{}",
        s.admin_password.source
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_phone_menu_password_goes_where_the_assumption_says() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = polyprov(dir.path(), "P1").await;
    let t = HttpTransport::new().unwrap();
    let mut p = phone("VVX 410", "5.9.7.4477");
    p.network.dhcp.insert(160, url.clone());
    p.boot(&t).await;
    let up = p
        .set_admin_password(false, "P3", &t)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up.path, format!("{MAC}-phone.cfg"));
    assert_eq!(p.admin_password(), "P3");

    let mut q = phone("VVX 410", "5.9.7.4477");
    q.mac = "0004f2000002".parse().unwrap();
    q.assumptions.menu_password_store = "flash".into();
    q.network.dhcp.insert(160, url);
    q.boot(&t).await;
    assert!(
        q.set_admin_password(false, "P4", &t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(q.local_override.is_none());
    assert_eq!(q.admin_password(), "P4");
    server.shutdown().await;
}

#[tokio::test]
async fn a_small_storm_boots_every_phone_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_root(&dir.path().join("data/root").tap_mkdir());
    let (server, url) = polyprov(dir.path(), "P1").await;
    // The boot root written before start is kept (start only creates a missing root).
    let c = Catalog::embedded().unwrap();
    let config = polyprov_phone::storm::StormConfig {
        server: url,
        phones: 60,
        concurrency: 16,
        mac_prefix: [0x00, 0x04, 0xf2],
        firmware: "6.4.3.5018".into(),
        time_limit: std::time::Duration::from_secs(60),
        ftp: polyprov_phone::FtpTransport::default(),
        https: None,
        listen: None,
    };
    let seen = std::sync::atomic::AtomicUsize::new(0);
    let r = polyprov_phone::storm::run(
        &config,
        c.find("VVX 500").unwrap(),
        |n| {
            seen.fetch_max(n, std::sync::atomic::Ordering::Relaxed);
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (r.phones_booted, r.error_count, seen.into_inner()),
        (60, 0, 60),
        "{:?}",
        r.errors
    );
    // polyprov answers <mac>.cfg with the staging master and <part>.sip.ld with sip.ld, so each
    // phone makes 13 requests where a plain folder takes 15.
    assert_eq!(r.requests, 60 * 13);
    assert_eq!(
        (r.latency["master"].count, r.latency["firmware"].count),
        (60, 60)
    );
    // One boot time per phone, and a boot lasts at least as long as its slowest request.
    assert_eq!(r.boot.count, 60);
    let slowest = r.latency.values().map(|l| l.max).max().unwrap();
    assert!(r.boot.max >= slowest, "{:?} < {slowest}", r.boot);
    assert!(r.boot.p50 <= r.boot.p99 && r.boot.p99 <= r.boot.max);
    // master, firmware, site.cfg; the two logs stored (204); the rest not there (404).
    assert_eq!(
        (r.statuses[&200], r.statuses[&204], r.statuses[&404]),
        (180, 120, 480)
    );
    server.core.flush().await;
    assert_eq!(server.core.devices().await.unwrap().len(), 61);
    server.shutdown().await;
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_over_tftp_from_polyprov() {
    let dir = tempfile::tempdir().unwrap();
    write_root(&dir.path().join("data/root").tap_mkdir());
    let server = assigned_polyprov(dir.path(), "T1", |s| {
        s.tftp.listen = Some("127.0.0.1:0".parse().unwrap());
        // TFTP carries no credentials: per-device files only on a network trusted this way.
        s.provisioning.auth = polyprov_server::ProvisioningAuth::None;
    })
    .await;

    let mut p = phone("VVX 500", "5.9.7.4477");
    p.network
        .dhcp
        .insert(66, format!("tftp://{}/", server.tftp_addr.unwrap()));
    let t = polyprov_phone::AnyTransport::default();
    let r = p.boot(&t).await;
    assert_boots_in_order(&r);
    assert_eq!(
        p.admin_password(),
        "T1",
        "the per-device file wins over site.cfg"
    );
    // An upload over TFTP is read back over HTTP by the same core.
    p.set_admin_password(true, "T2", &t).await.unwrap();
    let web = reqwest::get(format!("http://{}/{MAC}-web.cfg", server.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(web.contains("\"T2\""), "{web}");
    server.shutdown().await;
}

/// A test CA and a `localhost` certificate it signed: (CA PEM, certificate path, key path).
fn test_pki(dir: &std::path::Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca.pem(), cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_over_ftp_and_ftps_from_polyprov() {
    let dir = tempfile::tempdir().unwrap();
    write_root(&dir.path().join("data/root").tap_mkdir());
    let (ca, cert, key) = test_pki(dir.path());
    let server = assigned_polyprov(dir.path(), "F1", |s| {
        s.ftp.listen = Some("127.0.0.1:0".parse().unwrap());
        s.ftp.tls_cert = Some(cert);
        s.ftp.tls_key = Some(key);
    })
    .await;
    let port = server.ftp_addr.unwrap().port();
    let (user, pw) = server.provisioning_login.clone().unwrap();
    let mut t = polyprov_phone::AnyTransport::default();
    t.ftp = t.ftp.trusting(ca.as_bytes()).unwrap();

    // Out of the box: the factory login over plain FTP proves nothing, so the phone gets the
    // shared files and none of its secrets.
    let mut factory = phone("VVX 500", "5.9.7.4477");
    factory
        .network
        .dhcp
        .insert(66, format!("ftp://127.0.0.1:{port}/"));
    let r = factory.boot(&t).await;
    assert!(
        r.requests
            .iter()
            .any(|q| q.path == "sip.ld" || q.path.ends_with(".sip.ld"))
    );
    assert_ne!(factory.admin_password(), "F1", "{:?}", r.requests);

    // With the provisioning credentials over explicit FTPS: the whole boot.
    let mut p = phone("VVX 500", "5.9.7.4477");
    p.network
        .dhcp
        .insert(66, format!("ftps://{user}:{pw}@localhost:{port}/"));
    let r = p.boot(&t).await;
    assert_boots_in_order(&r);
    assert_eq!(p.admin_password(), "F1");
    // An upload over FTPS is read back over HTTP by the same core.
    p.set_admin_password(true, "F2", &t).await.unwrap();
    let web = reqwest::Client::new()
        .get(format!("http://{}/{MAC}-web.cfg", server.http_addr))
        .basic_auth(&user, Some(&pw))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(web.contains("\"F2\""), "{web}");

    // A small storm over FTPS: every phone boots, nothing fails.
    let config = polyprov_phone::storm::StormConfig {
        server: format!("ftps://{user}:{pw}@localhost:{port}/"),
        phones: 20,
        concurrency: 8,
        mac_prefix: [0x00, 0x04, 0xf3],
        firmware: "6.4.3.5018".into(),
        time_limit: std::time::Duration::from_secs(60),
        ftp: t.ftp.clone(),
        https: None,
        listen: None,
    };
    let c = Catalog::embedded().unwrap();
    let storm = polyprov_phone::storm::run(&config, c.find("VVX 500").unwrap(), |_| {}, |_| {})
        .await
        .unwrap();
    assert_eq!(storm.phones_booted, 20);
    assert_eq!(storm.error_count, 0, "{:?}", storm.errors);

    // A phone that does not trust the certificate gets nothing.
    let mut untrusting = phone("VVX 500", "5.9.7.4477");
    untrusting
        .network
        .dhcp
        .insert(66, format!("ftps://{user}:{pw}@localhost:{port}/"));
    let r = untrusting
        .boot(&polyprov_phone::AnyTransport::default())
        .await;
    assert!(r.requests.iter().all(|q| q.status == 0), "{:?}", r.requests);
    server.shutdown().await;
}

/// Over HTTPS: the phone trusts the CA polyprov's `tls init` made, presents its device
/// certificate (its MAC as the subject CN) and gets its own files without any password; a storm
/// over HTTPS boots every phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_over_https_with_a_device_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    write_root(&dir.path().join("data/root").tap_mkdir());
    polyprov_server::tls::init(&dir.path().join("data"), &["localhost".to_string()]).unwrap();
    // The site's own device CA, and this phone's certificate.
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "device CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let device_ca = dir.path().join("device-ca.pem");
    std::fs::write(&device_ca, ca.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, MAC);
    let leaf = leaf.signed_by(&key, &ca).unwrap();

    let server = assigned_polyprov(dir.path(), "H1", move |s| {
        s.https.listen = Some("127.0.0.1:0".parse().unwrap());
        s.https.client_ca = Some(device_ca);
        s.https.client_auth = polyprov_server::settings::ClientAuth::Optional;
    })
    .await;
    let port = server.https_addr.unwrap().port();
    let server_ca = std::fs::read(dir.path().join("data/tls/ca.pem")).unwrap();
    let tls = polyprov_phone::transport::tls::client_config(
        &server_ca,
        Some((leaf.pem().as_bytes(), key.serialize_pem().as_bytes())),
    )
    .unwrap();
    let t = polyprov_phone::AnyTransport {
        http: polyprov_phone::LeanHttp::new().with_tls(tls),
        ..Default::default()
    };
    // No credentials anywhere: the certificate is the phone's identity.
    let mut p = phone("VVX 500", "5.9.7.4477");
    p.network
        .dhcp
        .insert(160, format!("https://localhost:{port}/"));
    let r = p.boot(&t).await;
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let own = r
        .requests
        .iter()
        .find(|q| q.path == format!("{MAC}-polyprov.cfg"))
        .unwrap();
    assert_eq!(own.status, 200);
    assert!(
        r.requests.iter().all(|q| q.status < 400 || q.status == 404),
        "{:?}",
        r.requests
    );
    assert_eq!(p.admin_password(), "H1", "{:?}", r.requests);

    // A phone that does not trust the server's CA gets nothing.
    let mut untrusting = phone("VVX 500", "5.9.7.4477");
    untrusting
        .network
        .dhcp
        .insert(160, format!("https://localhost:{port}/"));
    let r = untrusting
        .boot(&polyprov_phone::AnyTransport::default())
        .await;
    assert!(r.requests.iter().all(|q| q.status == 0), "{:?}", r.requests);

    // A storm over HTTPS (server authentication, shared credentials in the URL).
    let (user, pw) = server.provisioning_login.clone().unwrap();
    let config = polyprov_phone::storm::StormConfig {
        server: format!("https://{user}:{pw}@localhost:{port}/"),
        phones: 20,
        concurrency: 8,
        mac_prefix: [0x00, 0x04, 0xf4],
        firmware: "6.4.3.5018".into(),
        time_limit: std::time::Duration::from_secs(60),
        ftp: polyprov_phone::FtpTransport::default(),
        https: Some(polyprov_phone::transport::tls::client_config(&server_ca, None).unwrap()),
        listen: None,
    };
    let c = Catalog::embedded().unwrap();
    let storm = polyprov_phone::storm::run(&config, c.find("VVX 500").unwrap(), |_| {}, |_| {})
        .await
        .unwrap();
    assert_eq!(storm.phones_booted, 20);
    assert_eq!(storm.error_count, 0, "{:?}", storm.errors);
    server.shutdown().await;
}
