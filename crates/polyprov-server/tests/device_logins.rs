//! Each device's own provisioning login over real HTTP: rendered into its file, adopted on first
//! use, the shared credentials refused for its files from then on, another device's login
//! refused, and a release rotating it without locking the phone out.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer, attributes};
use reqwest::Method;
use std::collections::BTreeMap;

const OTHER: &str = "0004f2aa9999";

async fn assign(t: &TestServer, mac: &str, password: &str) {
    let (s, body) = t
        .admin_json(
            Method::PUT,
            &format!("/api/v1/devices/{mac}"),
            Some(serde_json::json!({ "admin_password": password })),
        )
        .await;
    assert_eq!(s, 200, "{body}");
}

/// GET with Basic `user:password`: (status, parameters when 200).
async fn get_as(
    t: &TestServer,
    path: &str,
    user: &str,
    password: &str,
) -> (u16, BTreeMap<String, String>) {
    let r = t
        .http
        .get(t.url(path))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let params = if status == 200 {
        attributes(&text)
    } else {
        assert!(!text.contains("Adm1n"), "a secret in a refusal: {text}");
        BTreeMap::new()
    };
    (status, params)
}

async fn login_state(t: &TestServer, mac: &str) -> serde_json::Value {
    let (s, v) = t
        .admin_json(Method::GET, &format!("/api/v1/devices/{mac}/login"), None)
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test]
async fn a_device_login_is_adopted_and_then_only_it_opens_the_devices_files() {
    let t = TestServer::start().await;
    let (shared_user, shared_pw) = t.server.provisioning_login.clone().unwrap();
    assign(&t, MAC, "Adm1n-mine").await;
    assign(&t, OTHER, "Adm1n-other").await;
    let own = format!("/{MAC}-polyprov.cfg");

    // First boot, shared credentials: the file carries the phone's own login.
    let (s, p) = get_as(&t, &own, &shared_user, &shared_pw).await;
    assert_eq!(s, 200);
    let (user, password) = (
        p["device.prov.user"].clone(),
        p["device.prov.password"].clone(),
    );
    assert_eq!(user, MAC);
    assert_ne!(password, shared_pw);
    assert_eq!(login_state(&t, MAC).await["state"], "pending");

    // Its own login opens its file, and adopts it: the password is no longer rendered.
    let (s, p) = get_as(&t, &own, &user, &password).await;
    assert_eq!(s, 200);
    assert!(!p.contains_key("device.prov.password"), "{p:?}");
    assert_eq!(p["device.auth.localAdminPassword"], "Adm1n-mine");
    let state = login_state(&t, MAC).await;
    assert_eq!(state["state"], "adopted", "{state}");
    assert!(state.get("password").is_none());

    // From now on the shared credentials do not open its files (a security event), but still
    // open the device that has not switched yet.
    assert_eq!(get_as(&t, &own, &shared_user, &shared_pw).await.0, 403);
    assert_eq!(
        get_as(&t, &format!("/{MAC}-web.cfg"), &shared_user, &shared_pw)
            .await
            .0,
        403
    );
    assert_eq!(
        get_as(
            &t,
            &format!("/{OTHER}-polyprov.cfg"),
            &shared_user,
            &shared_pw
        )
        .await
        .0,
        200
    );
    // Its login does not open another device's files; a wrong password is wrong.
    assert_eq!(
        get_as(&t, &format!("/{OTHER}-polyprov.cfg"), &user, &password)
            .await
            .0,
        403
    );
    assert_eq!(get_as(&t, &own, &user, "guess").await.0, 401);
    // Uploads too.
    let r = t
        .http
        .put(t.url(&format!("/{MAC}-web.cfg")))
        .basic_auth(&user, Some(&password))
        .body("<PHONE_CONFIG/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for line in [
        "polyprov_security_events_total{event=\"shared_login_after_switch\"} 2",
        "polyprov_security_events_total{event=\"wrong_device_login\"} 1",
        "polyprov_device_logins_total{event=\"adopted\"} 1",
    ] {
        t.assert_metric(line).await;
    }
}

#[tokio::test]
async fn a_release_rotates_the_login_without_locking_the_phone_out() {
    let t = TestServer::start().await;
    let (shared_user, shared_pw) = t.server.provisioning_login.clone().unwrap();
    assign(&t, MAC, "Adm1n-first").await;
    let own = format!("/{MAC}-polyprov.cfg");
    let p = get_as(&t, &own, &shared_user, &shared_pw).await.1;
    let first = p["device.prov.password"].clone();
    assert_eq!(get_as(&t, &own, MAC, &first).await.0, 200);

    // Reassigned to a new user: a new login, rendered again; the old one still works until the
    // phone uses the new one, and so do the shared credentials (a factory-reset phone has only
    // those).
    let (s, body) = t
        .admin_json(
            Method::POST,
            &format!("/api/v1/devices/{MAC}/reassign"),
            Some(serde_json::json!({"admin_password": "Adm1n-second", "reason": "new user"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, p) = get_as(&t, &own, MAC, &first).await;
    assert_eq!(s, 200, "the previous login still opens the file");
    let second = p["device.prov.password"].clone();
    assert_ne!(second, first);
    assert_eq!(get_as(&t, &own, &shared_user, &shared_pw).await.0, 200);
    let state = login_state(&t, MAC).await;
    assert!(state["previous_valid_until"].is_i64(), "{state}");

    // The phone uses its new login: the old one and the shared one are done.
    assert_eq!(get_as(&t, &own, MAC, &second).await.0, 200);
    assert_eq!(get_as(&t, &own, MAC, &first).await.0, 401);
    assert_eq!(get_as(&t, &own, &shared_user, &shared_pw).await.0, 403);
    let actions: Vec<String> = t
        .admin_json(Method::GET, &format!("/api/v1/devices/{MAC}/history"), None)
        .await
        .1
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .filter(|a| a.starts_with("login"))
        .collect();
    assert_eq!(
        actions,
        [
            "login-issue",
            "login-adopted",
            "login-rotate",
            "login-adopted"
        ]
    );
}

/// Digest works with a device's own login as with the shared one (curl, as a phone would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_digest_with_the_devices_own_login() {
    let t = TestServer::start().await;
    let (shared_user, shared_pw) = t.server.provisioning_login.clone().unwrap();
    assign(&t, MAC, "Adm1n-digest").await;
    let own = format!("/{MAC}-polyprov.cfg");
    let password =
        get_as(&t, &own, &shared_user, &shared_pw).await.1["device.prov.password"].clone();
    let url = t.url(&own);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "--digest", "-u"])
            .arg(format!("{MAC}:{password}"))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("Adm1n-digest"), "{body}");
    assert_eq!(login_state(&t, MAC).await["state"], "adopted");
}
