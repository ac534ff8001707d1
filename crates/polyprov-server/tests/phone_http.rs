//! The phone door, driven over real sockets with a real HTTP client.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer, UA, attributes};
use reqwest::Method;
use serde_json::json;

async fn assign_default(t: &TestServer) {
    let (s, _) = t
        .admin_json(
            Method::PUT,
            "/api/v1/site",
            Some(json!({"params": {"tcpIpApp.sntp.address": "site.ntp", "reg.1.label": "site"}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = t
        .admin_json(Method::PUT, "/api/v1/profiles/sales", Some(json!({"params": {"reg.1.label": "profile", "reg.1.server.1.address": "pbx.example.com"}})))
        .await;
    assert_eq!(s, 200);
    let (s, body) = t
        .admin_json(
            Method::PUT,
            &format!("/api/v1/devices/{MAC}"),
            Some(json!({
                "profile": "sales",
                "admin_password": "Adm1n\"&<",
                "params": {"device.prov.serverName": "prov.example.com", "up.welcomeSoundEnabled": "0"},
                "lines": [{"address": "1001@pbx.example.com", "user": "1001", "password": "linepw", "label": "Front desk"}]
            })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
}

#[tokio::test]
async fn unknown_macs_get_the_staging_master_in_either_case() {
    let t = TestServer::start().await;
    let staging = std::fs::read_to_string(t.root().join("000000000000.cfg")).unwrap();
    for name in ["/0004f2aa814c.cfg", "/0004F2AA814C.cfg"] {
        let r = t.anonymous(Method::GET, name, &[]).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), staging);
    }
    let attrs = attributes(&staging);
    assert_eq!(attrs["CONFIG_FILES"], "");
    assert!(!staging.to_lowercase().contains("password="));
}

#[tokio::test]
async fn assigned_devices_get_a_generated_master_and_their_own_file() {
    let t = TestServer::start().await;
    assign_default(&t).await;

    let master = t.anonymous(Method::GET, &format!("/{MAC}.cfg"), &[]).await;
    assert_eq!(master.status(), 200);
    let master = attributes(&master.text().await.unwrap());
    assert_eq!(master["CONFIG_FILES"], format!("{MAC}-polyprov.cfg"));
    assert_eq!(master["APP_FILE_PATH"], "sip.ld");

    let cfg = t.get(&format!("/{MAC}-polyprov.cfg")).await;
    assert_eq!(cfg.status(), 200);
    assert_eq!(cfg.headers()["content-type"], "application/xml");
    let p = attributes(&cfg.text().await.unwrap());
    let want = [
        ("device.set", "1"),
        ("device.auth.localAdminPassword", "Adm1n\"&<"),
        ("device.auth.localAdminPassword.set", "1"),
        ("device.prov.serverName", "prov.example.com"),
        ("device.prov.serverName.set", "1"),
        ("reg.1.address", "1001@pbx.example.com"),
        ("reg.1.auth.userId", "1001"),
        ("reg.1.auth.password", "linepw"),
        ("reg.1.label", "Front desk"),
        ("reg.1.server.1.address", "pbx.example.com"),
        ("tcpIpApp.sntp.address", "site.ntp"),
        ("up.welcomeSoundEnabled", "0"),
    ];
    for (k, v) in want {
        assert_eq!(p.get(k).map(String::as_str), Some(v), "{k}");
    }
    // Its own provisioning login, until the phone has used it.
    assert_eq!(p["device.prov.user"], MAC);
    let own = &p["device.prov.password"];
    assert!(
        own.len() == 32 && own.bytes().all(|b| b.is_ascii_hexdigit()),
        "{own}"
    );
    assert_eq!(p["device.prov.user.set"], "1");
    assert_eq!(p["device.prov.password.set"], "1");
    assert_eq!(p.len(), want.len() + 4, "unexpected parameters: {p:?}");
}

async fn device_cfg(t: &TestServer) -> std::collections::BTreeMap<String, String> {
    attributes(
        &t.get(&format!("/{MAC}-polyprov.cfg"))
            .await
            .text()
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn rendered_files_follow_every_inventory_and_boot_root_change() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    assert_eq!(device_cfg(&t).await["tcpIpApp.sntp.address"], "site.ntp");
    t.admin_json(
        Method::PUT,
        "/api/v1/site",
        Some(json!({"params": {"tcpIpApp.sntp.address": "new.ntp"}})),
    )
    .await;
    assert_eq!(device_cfg(&t).await["tcpIpApp.sntp.address"], "new.ntp");
    t.admin_json(
        Method::PUT,
        "/api/v1/profiles/sales",
        Some(json!({"params": {"reg.1.server.1.address": "pbx2"}})),
    )
    .await;
    assert_eq!(device_cfg(&t).await["reg.1.server.1.address"], "pbx2");

    // An admin edits the shared master: the generated one follows.
    std::fs::write(
        t.root().join("000000000000.cfg"),
        "<APPLICATION APP_FILE_PATH=\"sip.ld\" CONFIG_FILES=\"site.cfg, features.cfg\"/>",
    )
    .unwrap();
    let m = t
        .anonymous(Method::GET, &format!("/{MAC}.cfg"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        attributes(&m)["CONFIG_FILES"],
        format!("{MAC}-polyprov.cfg, site.cfg, features.cfg")
    );

    // Removing the device: it is a stranger again.
    let r = t
        .admin(Method::DELETE, &format!("/api/v1/devices/{MAC}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get(&format!("/{MAC}-polyprov.cfg")).await.status(), 404);
    let m = t
        .anonymous(Method::GET, &format!("/{MAC}.cfg"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(attributes(&m)["CONFIG_FILES"], "site.cfg, features.cfg");
}

/// The boot root is known from a watch of its changes (`core/root_watch.rs`): whatever an admin
/// does to it, the very next request sees — no pause, no retry.
#[tokio::test]
async fn every_boot_root_change_is_served_by_the_next_request() {
    let t = TestServer::start().await;
    let root = t.root();
    let body = |path: &'static str| {
        let t = &t;
        async move {
            let r = t.get(path).await;
            match r.status().as_u16() {
                200 => Some(r.text().await.unwrap()),
                404 => None,
                s => panic!("{path}: {s}"),
            }
        }
    };
    let licence = format!("{MAC}-license.cfg");
    let path: &'static str = format!("/{licence}").leak();
    assert_eq!(body(path).await, None);
    std::fs::write(root.join(&licence), "<one/>").unwrap();
    assert_eq!(body(path).await.as_deref(), Some("<one/>"));
    // Same size, written in place.
    std::fs::write(root.join(&licence), "<two/>").unwrap();
    assert_eq!(body(path).await.as_deref(), Some("<two/>"));
    // Replaced by a rename, in upper case (a name the vendor allows) after the lower is gone.
    std::fs::remove_file(root.join(&licence)).unwrap();
    assert_eq!(body(path).await, None);
    std::fs::write(root.join("next"), "<three/>").unwrap();
    std::fs::rename(
        root.join("next"),
        root.join(format!("{}-license.cfg", MAC.to_uppercase())),
    )
    .unwrap();
    assert_eq!(body(path).await.as_deref(), Some("<three/>"));
    // A folder made and filled, then taken away.
    assert_eq!(body("/fw/sip.ld").await, None);
    std::fs::create_dir(root.join("fw")).unwrap();
    std::fs::write(root.join("fw/sip.ld"), "image").unwrap();
    assert_eq!(body("/fw/sip.ld").await.as_deref(), Some("image"));
    std::fs::rename(root.join("fw"), root.join("old-fw")).unwrap();
    assert_eq!(body("/fw/sip.ld").await, None);
    assert_eq!(body("/old-fw/sip.ld").await.as_deref(), Some("image"));
}

#[tokio::test]
async fn the_same_inventory_renders_the_same_bytes() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let a = t.get(&format!("/{MAC}-polyprov.cfg")).await;
    let etag = a.headers()["etag"].clone();
    let a = a.bytes().await.unwrap();
    // Re-assigning the same document invalidates the cache but renders identical bytes.
    assign_default(&t).await;
    let b = t.get(&format!("/{MAC}-polyprov.cfg")).await;
    assert_eq!(b.headers()["etag"], etag);
    assert_eq!(b.bytes().await.unwrap(), a);
}

#[tokio::test]
async fn boot_root_files_support_range_etag_head_and_part_number_fallback() {
    let t = TestServer::start().await;
    let firmware: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.root().join("sip.ld"), &firmware).unwrap();
    std::fs::create_dir(t.root().join("fw")).unwrap();
    std::fs::write(t.root().join("fw/3111-44500-001.sip.ld"), b"specific").unwrap();

    let r = t.anonymous(Method::GET, "/sip.ld", &[]).await;
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(r.bytes().await.unwrap().as_ref(), firmware.as_slice());

    let r = t
        .anonymous(Method::GET, "/sip.ld", &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = t
        .anonymous(Method::GET, "/sip.ld", &[("range", "bytes=1000-1999")])
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/200000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &firmware[1000..2000]);

    let r = t
        .anonymous(Method::GET, "/sip.ld", &[("range", "bytes=-10")])
        .await;
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &firmware[firmware.len() - 10..]
    );

    let r = t
        .anonymous(Method::GET, "/sip.ld", &[("range", "bytes=300000-")])
        .await;
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */200000");

    let r = t.anonymous(Method::HEAD, "/sip.ld", &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "200000");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);

    // <part>.<name> falls back to <name>; an existing part-numbered file wins.
    let r = t
        .anonymous(Method::GET, "/3111-48300-001.sip.ld", &[])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), firmware.len());
    let r = t
        .anonymous(Method::GET, "/fw/3111-44500-001.sip.ld", &[])
        .await;
    assert_eq!(r.text().await.unwrap(), "specific");

    // Changing the file changes its tag.
    std::fs::write(t.root().join("sip.ld"), b"new image").unwrap();
    let r = t
        .anonymous(Method::GET, "/sip.ld", &[("if-none-match", &etag)])
        .await;
    assert_eq!(r.status(), 200);

    for missing in [
        "/nothing.cfg",
        "/fw",
        "/.hidden",
        "/3111-48300-001.nothing.ld",
    ] {
        assert_eq!(
            t.anonymous(Method::GET, missing, &[]).await.status(),
            404,
            "{missing}"
        );
    }
}

#[tokio::test]
async fn generated_files_honour_if_none_match_and_range() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let r = t.get(&format!("/{MAC}-polyprov.cfg")).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let full = r.bytes().await.unwrap();
    let r = t
        .request(
            Method::GET,
            &format!("/{MAC}-polyprov.cfg"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(r.status(), 304);
    let r = t
        .request(
            Method::GET,
            &format!("/{MAC}-polyprov.cfg"),
            &[("range", "bytes=0-9")],
        )
        .await;
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), full.slice(0..10));
}

#[tokio::test]
async fn uploads_round_trip_and_every_override_version_is_kept() {
    let t = TestServer::start().await;
    let path = format!("/{MAC}-web.cfg");
    assert_eq!(t.get(&path).await.status(), 404);
    for i in 1..=3 {
        let body = format!(
            "<PHONE_CONFIG><OVERRIDES device.auth.localAdminPassword=\"P{i}\"/></PHONE_CONFIG>"
        );
        let r = t.put(&path, body).await;
        assert_eq!(r.status(), 201);
    }
    let latest = t.get(&path).await.text().await.unwrap();
    assert!(latest.contains("\"P3\""), "{latest}");

    let (s, list) = t
        .admin_json(Method::GET, &format!("/api/v1/devices/{MAC}/uploads"), None)
        .await;
    assert_eq!(s, 200);
    let versions: Vec<u64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    let first = t
        .admin(
            Method::GET,
            &format!("/api/v1/devices/{MAC}/uploads/web.cfg/1"),
        )
        .send()
        .await
        .unwrap();
    assert!(first.text().await.unwrap().contains("\"P1\""));

    // Overrides in an OVERRIDES_DIRECTORY land in the same namespace.
    let r = t
        .put(&format!("/overrides/{MAC}-phone.cfg"), "<PHONE_CONFIG/>")
        .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        t.get(&format!("/{MAC}-phone.cfg"))
            .await
            .text()
            .await
            .unwrap(),
        "<PHONE_CONFIG/>"
    );

    // Logs append.
    for chunk in ["boot line 1\n", "boot line 2\n"] {
        assert_eq!(
            t.put(&format!("/{MAC}-boot.log"), chunk).await.status(),
            204
        );
    }
    assert_eq!(
        t.get(&format!("/{MAC}-boot.log"))
            .await
            .text()
            .await
            .unwrap(),
        "boot line 1\nboot line 2\n"
    );
    let head = t
        .request(Method::HEAD, &format!("/{MAC}-app.log"), &[])
        .await;
    assert_eq!(head.status(), 404);

    // Uploads never appear in the boot root.
    let root: Vec<_> = std::fs::read_dir(t.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(root, ["000000000000.cfg"]);
}

#[tokio::test]
async fn a_directory_seed_and_a_licence_in_the_boot_root_are_served() {
    let t = TestServer::start().await;
    std::fs::write(
        t.root().join(format!("{MAC}-directory.xml")),
        "<directory>seed</directory>",
    )
    .unwrap();
    std::fs::write(t.root().join(format!("{MAC}-license.cfg")), "<license/>").unwrap();
    assert_eq!(
        t.get(&format!("/{MAC}-directory.xml"))
            .await
            .text()
            .await
            .unwrap(),
        "<directory>seed</directory>"
    );
    t.put(
        &format!("/{MAC}-directory.xml"),
        "<directory>mine</directory>",
    )
    .await;
    assert_eq!(
        t.get(&format!("/{MAC}-directory.xml"))
            .await
            .text()
            .await
            .unwrap(),
        "<directory>mine</directory>"
    );
    assert_eq!(
        t.get(&format!("/{MAC}-license.cfg"))
            .await
            .text()
            .await
            .unwrap(),
        "<license/>"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let t = TestServer::start_with(|s| s.uploads.max_config_bytes = 1000).await;
    let web = format!("/{MAC}-web.cfg");
    let cases: Vec<(Method, String, Vec<u8>, u16)> = vec![
        (Method::PUT, "/../etc/passwd".into(), b"<a/>".to_vec(), 400),
        (
            Method::GET,
            "/a/%2e%2e/%2e%2e/etc/passwd".into(),
            vec![],
            400,
        ),
        (
            Method::PUT,
            format!("/x%2f..%2f{MAC}-web.cfg"),
            b"<a/>".to_vec(),
            400,
        ),
        (Method::GET, "//etc/passwd".into(), vec![], 400),
        (Method::GET, "/C:/boot.ini".into(), vec![], 400),
        (
            Method::PUT,
            format!("/a\\{MAC}-web.cfg"),
            b"<a/>".to_vec(),
            400,
        ),
        (Method::PUT, web.clone(), vec![b'x'; 2000], 413),
        (
            Method::PUT,
            web.clone(),
            b"<PHONE_CONFIG><OVERRIDES".to_vec(),
            400,
        ),
        (Method::PUT, web.clone(), vec![0xff, 0xfe, 0x00], 400),
        (
            Method::PUT,
            format!("/{MAC}-unknown.cfg"),
            b"<a/>".to_vec(),
            405,
        ),
        (Method::PUT, format!("/{MAC}.cfg"), b"<a/>".to_vec(), 405),
        (
            Method::PUT,
            "/000000000000.cfg".into(),
            b"<a/>".to_vec(),
            405,
        ),
        (Method::PUT, "/sip.ld".into(), b"x".to_vec(), 405),
        (
            Method::PUT,
            "/0004f2aa81zz-web.cfg".into(),
            b"<a/>".to_vec(),
            405,
        ),
        (
            Method::PUT,
            "/000000000000-web.cfg".into(),
            b"<a/>".to_vec(),
            405,
        ),
        (Method::DELETE, web.clone(), vec![], 405),
    ];
    for (method, path, body, want) in cases {
        // Paths a normal client would clean up are sent as they are.
        let url = format!("http://{}{}", t.server.http_addr, path);
        let r = t.phone(method.clone(), "/").body(body.clone());
        let mut req = r.build().unwrap();
        *req.url_mut() = reqwest::Url::parse(&url).unwrap_or_else(|_| req.url().clone());
        if path.contains("..")
            || path.contains("%2e")
            || path.contains('\\')
            || path.starts_with("//")
        {
            // reqwest's URL type normalises these; send the raw request line instead.
            let status = raw_request(&t, method.as_str(), &path, &body).await;
            assert_eq!(status, want, "{method} {path}");
            continue;
        }
        let r = t.http.execute(req).await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{method} {path}");
    }
    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
    let root: Vec<_> = std::fs::read_dir(t.root())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(root, ["000000000000.cfg"]);

    // A User-Agent whose SN tag is not a MAC cannot be trusted to say which phone it is.
    let r = t
        .anonymous(
            Method::GET,
            "/000000000000.cfg",
            &[(
                "user-agent",
                "FileTransport PolycomVVX-VVX_500-UA/5.9 (SN:zz) Type/Application",
            )],
        )
        .await;
    assert_eq!(r.status(), 403);
}

/// Sends one HTTP/1.1 request with the path exactly as given.
async fn raw_request(t: &TestServer, method: &str, path: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (user, pw) = t.server.provisioning_login.clone().unwrap();
    let auth = base64_encode(format!("{user}:{pw}").as_bytes());
    let mut s = tokio::net::TcpStream::connect(t.server.http_addr)
        .await
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {UA}\r\nAuthorization: Basic {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn a_serial_that_contradicts_the_mac_gets_nothing_per_device() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let liar = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2000001) Type/Application";
    for (method, path) in [
        (Method::GET, format!("/{MAC}.cfg")),
        (Method::GET, format!("/{MAC}-polyprov.cfg")),
        (Method::GET, format!("/{MAC}-web.cfg")),
        (Method::PUT, format!("/{MAC}-web.cfg")),
    ] {
        let r = t
            .phone(method.clone(), &path)
            .header("user-agent", liar)
            .body("<a/>")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{method} {path}");
    }
    assert!(t.upload_files().is_empty());
    // The honest phone with the same tag is served.
    let honest =
        format!("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:{MAC}) Type/Application");
    let r = t
        .request(
            Method::GET,
            &format!("/{MAC}-polyprov.cfg"),
            &[("user-agent", &honest)],
        )
        .await;
    assert_eq!(r.status(), 200);
    t.assert_metric("polyprov_security_events_total{event=\"serial_mismatch\"} 4")
        .await;
}

/// Two tags, a lower-case tag, a tag without parentheses, a full-width colon: each a refusal
/// and a security event, never a way around the cross-check.
#[tokio::test]
async fn serial_tags_that_look_forged_are_refused() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let base = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477";
    let tags = [
        format!("(SN:0004f2aa9999) (SN:{MAC})"),
        format!("(SN:{MAC}) (SN:{MAC})"),
        format!("(sn:{MAC})"),
        format!("SN:{MAC}"),
        format!("(SN\u{ff1a}{MAC})"),
    ];
    for tag in &tags {
        let ua = format!("{base} {tag} Type/Application");
        // Sent as raw bytes: a full-width colon is not visible ASCII.
        let r = t
            .request(
                Method::GET,
                &format!("/{MAC}-polyprov.cfg"),
                &[("user-agent", &ua)],
            )
            .await;
        assert_eq!(r.status(), 403, "{ua}");
    }
    t.assert_metric("polyprov_security_events_total{event=\"bad_serial_tag\"} 5")
        .await;
}

/// Phones send shapes the parser does not know: they boot all the same, what could be read is
/// recorded, the raw User-Agent is kept, and the unknown ones are counted.
#[tokio::test]
async fn any_user_agent_shape_boots_and_is_recorded() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let shapes = [
        (
            "Polycom/5.5.2.8571 PolycomVVX-VVX_310-UA/5.5.2.8571",
            Some("VVX_310"),
            Some("5.5.2.8571"),
        ),
        (
            "FileTransport PolycomSoundPointIP-SPIP_335-UA/3.3.5.0247_0004f2f18103 Type/Application",
            Some("SPIP_335"),
            Some("3.3.5.0247"),
        ),
        ("FileTransport Polycom-something-new", None, None),
        ("Poly/9.9 (Zebra edition)", None, None),
    ];
    for (i, (ua, model, version)) in shapes.iter().enumerate() {
        // A fresh MAC per shape: what is recorded belongs to that phone alone.
        let mac = format!("0004f2aa82{i:02}");
        for path in [format!("/{mac}.cfg"), "/000000000000.cfg".to_string()] {
            let r = t.request(Method::GET, &path, &[("user-agent", *ua)]).await;
            assert_eq!(r.status(), 200, "{ua} {path}");
        }
        let mut device = serde_json::Value::Null;
        for _ in 0..200 {
            let (s, d) = t
                .admin_json(Method::GET, &format!("/api/v1/devices/{mac}"), None)
                .await;
            if s == 200 {
                device = d;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(device["user_agent"], *ua, "{device}");
        assert_eq!(device["model"].as_str(), *model, "{ua}");
        assert_eq!(device["firmware"].as_str(), *version, "{ua}");
    }
    // Assigned phone, unknown shape: its per-device file too.
    let r = t
        .request(
            Method::GET,
            &format!("/{MAC}-polyprov.cfg"),
            &[(
                "user-agent",
                "Polycom/5.5.2.8571 PolycomVVX-VVX_500-UA/5.5.2.8571",
            )],
        )
        .await;
    assert_eq!(r.status(), 200);
    t.assert_metric("polyprov_user_agents_unrecognised_total 4")
        .await;
}

#[tokio::test]
async fn per_device_files_need_the_provisioning_credentials() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    t.put(&format!("/{MAC}-web.cfg"), "<a/>").await;
    for path in [format!("/{MAC}-polyprov.cfg"), format!("/{MAC}-web.cfg")] {
        let r = t.anonymous(Method::GET, &path, &[]).await;
        assert_eq!(r.status(), 401, "{path}");
        let challenges: Vec<&str> = r
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(
            challenges[0]
                .starts_with("Digest realm=\"polyprov\", qop=\"auth\", algorithm=MD5, nonce="),
            "{challenges:?}"
        );
        assert!(
            challenges[1].starts_with("Basic realm=\"polyprov\""),
            "{challenges:?}"
        );
        let r = t
            .http
            .get(t.url(&path))
            .basic_auth("PlcmSpIp", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = t
        .http
        .put(t.url(&format!("/{MAC}-web.cfg")))
        .body("<b/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(t.upload_files().len(), 1);
    // Shared files and masters carry no secret and need no credentials.
    assert_eq!(
        t.anonymous(Method::GET, &format!("/{MAC}.cfg"), &[])
            .await
            .status(),
        200
    );
    assert_eq!(
        t.anonymous(Method::GET, "/000000000000.cfg", &[])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn without_auth_per_device_files_are_served_to_anyone() {
    let t =
        TestServer::start_with(|s| s.provisioning.auth = polyprov_server::ProvisioningAuth::None)
            .await;
    assert!(t.server.provisioning_login.is_none());
    let r = t
        .http
        .put(t.url(&format!("/{MAC}-web.cfg")))
        .body("<a/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn first_contact_records_an_unassigned_device_with_what_it_said() {
    let t = TestServer::start().await;
    let ua = format!("FileTransport PolycomVVX-VVX_411-UA/6.4.3.5018 (SN:{MAC}) Type/Updater");
    t.anonymous(Method::GET, &format!("/{MAC}.cfg"), &[("user-agent", &ua)])
        .await;
    let mut device = serde_json::Value::Null;
    for _ in 0..200 {
        let (s, d) = t
            .admin_json(Method::GET, &format!("/api/v1/devices/{MAC}"), None)
            .await;
        if s == 200 {
            device = d;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(device["state"], "unassigned");
    assert_eq!(device["model"], "VVX_411");
    assert_eq!(device["firmware"], "6.4.3.5018");
    assert_eq!(device["stage"], "Updater");
    assert_eq!(device["serial"], MAC);
    assert_eq!(device["last_addr"], "127.0.0.1");
    assert_eq!(device["last_fetch"], format!("{MAC}.cfg"));
    assert!(device["admin_password"].is_null());
    // Never given a secret: no per-device file.
    assert_eq!(t.get(&format!("/{MAC}-polyprov.cfg")).await.status(), 404);
}

/// A full batch of sightings (`flush_batch`) is written without waiting for the interval (an
/// hour here), and a longer backlog in batch-sized transactions; no device is lost either way.
#[tokio::test]
async fn a_full_batch_of_sightings_is_written_before_the_interval() {
    let t = TestServer::start_with(|s| {
        s.inventory.flush_interval_ms = 3_600_000;
        s.inventory.flush_batch = 3;
    })
    .await;
    let seen = |n: usize| {
        let t = &t;
        async move {
            // Written by the server's flusher, not by this test: asked until there (bounded).
            let mut macs = Vec::new();
            for _ in 0..1_000 {
                let (_, devices) = t.admin_json(Method::GET, "/api/v1/devices", None).await;
                macs = devices
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|d| d["mac"].as_str().map(str::to_string))
                    .collect::<Vec<_>>();
                if macs.len() >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            macs
        }
    };
    for i in 0..3 {
        t.get(&format!("/0004f2dd{i:04x}.cfg")).await;
    }
    let first = seen(3).await;
    assert_eq!(first.len(), 3, "{first:?}");
    for i in 3..10 {
        t.get(&format!("/0004f2dd{i:04x}.cfg")).await;
    }
    t.server.core.flush().await;
    let mut macs = seen(10).await;
    macs.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("0004f2dd{i:04x}")).collect();
    assert_eq!(macs, expected);
}

#[tokio::test]
async fn graceful_shutdown_writes_pending_sightings() {
    let t = TestServer::start_with(|s| s.inventory.flush_interval_ms = 3_600_000).await;
    t.anonymous(Method::GET, &format!("/{MAC}.cfg"), &[]).await;
    let data = t.data();
    let TestServer { server, dir, .. } = t;
    server.shutdown().await;
    let inv = polyprov_store::Inventory::open_sqlite(&data.join("polyprov.db"))
        .await
        .unwrap();
    let d = inv.device(MAC.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(d.model.as_deref(), Some("VVX_500"));
    drop(dir);
}

/// An upload that refers to a character XML cannot carry (`&#0;`), carries one raw (NUL), or
/// names an attribute twice is not well-formed: refused, nothing stored.
#[tokio::test]
async fn uploads_with_characters_xml_cannot_carry_are_refused() {
    let t = TestServer::start().await;
    for body in [
        "<PHONE_CONFIG><OVERRIDES reg.1.label=\"&#0;\"/></PHONE_CONFIG>",
        "<PHONE_CONFIG><OVERRIDES reg.1.label=\"&#x1b;\"/></PHONE_CONFIG>",
        "<PHONE_CONFIG><OVERRIDES reg.1.label=\"a\u{0}b\"/></PHONE_CONFIG>",
        "<PHONE_CONFIG><OVERRIDES a=\"1\" a=\"2\"/></PHONE_CONFIG>",
        "<PHONE_CONFIG>&#0;</PHONE_CONFIG>",
    ] {
        let r = t.put(&format!("/{MAC}-phone.cfg"), body).await;
        assert_eq!(r.status(), 400, "{body:?}");
    }
    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
}

/// Auth schemes are case-insensitive; two Authorization headers are a refusal, not a guess.
#[tokio::test]
async fn authorization_schemes_in_any_case_and_never_two_headers() {
    use base64::Engine;
    let t = TestServer::start().await;
    assign_default(&t).await;
    let (user, pw) = t.server.provisioning_login.clone().unwrap();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{user}:nope"));
    let path = format!("/{MAC}-polyprov.cfg");
    for scheme in ["Basic", "basic", "BASIC"] {
        let r = t
            .anonymous(
                Method::GET,
                &path,
                &[("authorization", &format!("{scheme} {token}"))],
            )
            .await;
        assert_eq!(r.status(), 200, "{scheme}");
    }
    for (first, second) in [(&wrong, &token), (&token, &wrong), (&token, &token)] {
        let r = t
            .anonymous(
                Method::GET,
                &path,
                &[
                    ("authorization", &format!("Basic {first}")),
                    ("authorization", &format!("Basic {second}")),
                ],
            )
            .await;
        assert_eq!(r.status(), 401);
    }
}

/// An admin's per-phone master named in upper case is what that phone gets when it asks in lower
/// case (as phones do), and in upper case too.
#[tokio::test]
async fn a_master_named_in_upper_case_is_served() {
    let t = TestServer::start().await;
    let upper = MAC.to_ascii_uppercase();
    std::fs::write(
        t.root().join(format!("{upper}.cfg")),
        "<APPLICATION CONFIG_FILES=\"mine.cfg\"/>",
    )
    .unwrap();
    for asked in [MAC.to_string(), upper.clone()] {
        let r = t.get(&format!("/{asked}.cfg")).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("mine.cfg"), "{asked}");
    }
    // Another phone still gets the staging master.
    let r = t.get("/0004f2aa0001.cfg").await;
    assert!(!r.text().await.unwrap().contains("mine.cfg"));
}

/// The core counts each request once, with the kind it parsed; doors count only the bytes they
/// sent. (Doors used to parse the path again to label their own counts.)
#[tokio::test]
async fn each_request_is_counted_once_with_its_kind() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let path = format!("/{MAC}-polyprov.cfg");
    assert_eq!(t.anonymous(Method::GET, &path, &[]).await.status(), 401);
    let body = t.get(&path).await.bytes().await.unwrap();
    assert_eq!(
        t.put(&format!("/{MAC}-web.cfg"), vec![b'x'; 300_000])
            .await
            .status(),
        413
    );
    assert_eq!(
        t.put(&format!("/{MAC}-web.cfg"), "<a/>").await.status(),
        201
    );
    let r = t
        .http
        .delete(t.url("/000000000000.cfg"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let metrics = t.metrics().await;
    for line in [
        "polyprov_requests_total{door=\"http\",kind=\"device_config\",status=\"401\"} 1"
            .to_string(),
        "polyprov_requests_total{door=\"http\",kind=\"device_config\",status=\"200\"} 1"
            .to_string(),
        "polyprov_requests_total{door=\"http\",kind=\"device_file\",status=\"413\"} 1".to_string(),
        "polyprov_requests_total{door=\"http\",kind=\"device_file\",status=\"200\"} 1".to_string(),
        "polyprov_requests_total{door=\"http\",kind=\"shared\",status=\"405\"} 1".to_string(),
        format!(
            "polyprov_response_bytes_total{{door=\"http\",kind=\"device_config\"}} {}",
            body.len()
        ),
    ] {
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

/// A scan of MACs with curl grows nothing; phones past the per-address rate are served but not
/// added; both are counted.
#[tokio::test]
async fn a_mac_scan_adds_no_devices_and_new_phones_are_rate_limited() {
    let t = TestServer::start_with(|s| s.provisioning.new_devices_per_minute = 5).await;
    for i in 0..20 {
        let r = t
            .anonymous(
                Method::GET,
                &format!("/0004f2bb{i:04x}.cfg"),
                &[("user-agent", "curl/8.5.0")],
            )
            .await;
        assert_eq!(r.status(), 200, "a stranger still gets the staging master");
    }
    for i in 0..10 {
        let r = t
            .anonymous(Method::GET, &format!("/0004f2cc{i:04x}.cfg"), &[])
            .await;
        assert_eq!(r.status(), 200);
    }
    t.server.core.flush().await;
    let (_, devices) = t.admin_json(Method::GET, "/api/v1/devices", None).await;
    let macs: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["mac"].as_str().unwrap())
        .collect();
    assert_eq!(macs.len(), 5, "{macs:?}");
    assert!(macs.iter().all(|m| m.starts_with("0004f2cc")), "{macs:?}");
    for line in [
        "polyprov_devices_not_recorded_total{reason=\"not_a_phone\"} 20",
        "polyprov_devices_not_recorded_total{reason=\"rate\"} 5",
    ] {
        t.assert_metric(line).await;
    }
}

/// A Digest answer captured off the wire and sent again is refused, once, as wrong
/// credentials; the phone's next answer (its count one up) is accepted.
#[tokio::test]
async fn a_replayed_digest_answer_is_refused() {
    let t = TestServer::start().await;
    assign_default(&t).await;
    let path = format!("/{MAC}-polyprov.cfg");
    let r = t.anonymous(Method::GET, &path, &[]).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    let (user, password) = t.server.provisioning_login.clone().unwrap();
    let md5 = |s: String| polyprov_sip::digest::md5_hex(&s);
    let answer = |nc: &str| {
        let ha1 = md5(format!("{user}:polyprov:{password}"));
        let ha2 = md5(format!("GET:{path}"));
        let response = md5(format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
        format!(
            "Digest username=\"{user}\", realm=\"polyprov\", nonce=\"{nonce}\", uri=\"{path}\", qop=auth, nc={nc}, cnonce=\"0a4f113b\", response=\"{response}\""
        )
    };
    let first = answer("00000001");
    let statuses = [
        t.anonymous(Method::GET, &path, &[("authorization", &first)])
            .await
            .status(),
        t.anonymous(Method::GET, &path, &[("authorization", &first)])
            .await
            .status(),
        t.anonymous(
            Method::GET,
            &path,
            &[("authorization", &answer("00000002"))],
        )
        .await
        .status(),
    ];
    assert_eq!(statuses, [200, 401, 200]);
    t.assert_metric("polyprov_security_events_total{event=\"bad_credentials\"} 1")
        .await;
}
