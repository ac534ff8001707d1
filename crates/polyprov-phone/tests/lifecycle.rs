//! The vendor FAQ's problem solved: an emulated phone (finding polyprov through DHCP option 160)
//! keeps coming back with its old password after factory resets until the device is released;
//! after the release it comes back clean; nothing is lost (quarantine, restore); every step is in
//! the audit log.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use polyprov_model::Mac;
use polyprov_model::catalog::Catalog;
use polyprov_model::keypad::{LetterCase, ModeCycle, events, keystrokes};
use polyprov_phone::phone::MenuReset;
use polyprov_phone::{HttpTransport, PhoneState};
use polyprov_server::doctor;
use polyprov_store::Assignment;

const MAC: &str = "0004f2aa814c";

async fn server(dir: &std::path::Path) -> (polyprov_server::RunningServer, String) {
    server_with(dir, |_| {}).await
}

/// A server on loopback, its settings changed by `tweak`, and the URL a phone finds it by
/// (credentials in it, as in a DHCP option 160 URL).
async fn server_with(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut polyprov_server::Settings),
) -> (polyprov_server::RunningServer, String) {
    let mut s = polyprov_server::Settings::loopback(dir.join("data"));
    tweak(&mut s);
    let server = polyprov_server::start(s).await.unwrap();
    let (u, p) = server.provisioning_login.clone().unwrap();
    let url = format!("http://{u}:{p}@{}/", server.http_addr);
    (server, url)
}

/// Assigns the test device with just an admin password, as alice.
async fn assign_password(server: &polyprov_server::RunningServer, password: &str) {
    let a = Assignment {
        admin_password: Some(password.into()),
        ..Default::default()
    };
    server
        .core
        .assign(MAC.parse().unwrap(), &a, "alice")
        .await
        .unwrap();
}

fn phone(url: &str) -> PhoneState {
    let c = Catalog::embedded().unwrap();
    let mut p = PhoneState::new(
        MAC.parse().unwrap(),
        c.find("VVX 410").unwrap(),
        "5.9.7.4477",
    );
    p.network.dhcp.insert(160, url.to_string());
    p
}

#[tokio::test]
async fn release_makes_a_factory_reset_stick_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server(dir.path()).await;
    let core = server.core.clone();
    let mac: Mac = MAC.parse().unwrap();
    let mut params = polyprov_model::Params::new();
    params.insert("reg.1.address".into(), "1001@pbx".into());
    let a = Assignment {
        admin_password: Some("P1".into()),
        params,
        ..Default::default()
    };
    core.assign(mac, &a, "alice").await.unwrap();

    let t = HttpTransport::new().unwrap();
    let mut p = phone(&url);
    p.boot(&t).await;
    assert_eq!(p.admin_password(), "P1");
    p.set_admin_password(true, "P2", &t).await.unwrap().unwrap();

    // The FAQ's story: a factory reset brings P2 back.
    p.menu_reset(MenuReset::Factory, Some("P2")).unwrap();
    p.boot(&t).await;
    assert_eq!(p.admin_password(), "P2");

    // doctor names the web override and the assignment.
    let d = doctor::diagnose(&core, &Default::default(), mac)
        .await
        .unwrap();
    assert_eq!(d.admin_password.value.as_deref(), Some("P2"));
    assert_eq!(
        d.admin_password.file.as_deref(),
        Some("0004f2aa814c-web.cfg")
    );
    let returns: Vec<&doctor::Finding> = d
        .findings
        .iter()
        .filter(|f| f.kind == polyprov_model::doctor::FindingKind::Returns)
        .collect();
    assert!(
        returns.iter().any(|f| f.what.contains("web override")
            && f.fix.starts_with("polyprov device release 0004f2aa814c")),
        "{returns:#?}"
    );
    assert!(
        returns
            .iter()
            .any(|f| f.what.contains("reg.1.address")
                && f.what.contains("0004f2aa814c-polyprov.cfg")),
        "{returns:#?}"
    );

    // Release; then both reset routes bring back a clean phone.
    let r = core.release(mac, "alice", "new user").await.unwrap();
    assert!(r.changed && r.quarantine.is_some());
    assert!(
        !core.release(mac, "alice", "again").await.unwrap().changed,
        "idempotent"
    );
    p.menu_reset(MenuReset::Factory, Some("P2")).unwrap();
    p.boot(&t).await;
    let s = p.summary();
    assert_eq!(
        (
            s.admin_password.value.as_deref(),
            s.lines.len(),
            s.local_override,
            s.web_override
        ),
        (Some("456"), 0, false, false)
    );

    p.set_admin_password(false, "P9", &t).await.unwrap();
    let mac_steps = keystrokes(mac, ModeCycle::Seed, LetterCase::Lower);
    p.keys_reset(&events(&mac_steps)).unwrap();
    // The phone-menu change after the release was uploaded: a release is a moment, not a ban.
    // Release again before handing the phone over, and the key route comes back clean too.
    let again = core.release(mac, "alice", "second user").await.unwrap();
    assert!(again.changed && again.quarantine.is_some());
    p.boot(&t).await;
    assert_eq!(p.admin_password(), "456", "{:?}", p.summary());

    let d = doctor::diagnose(&core, &Default::default(), mac)
        .await
        .unwrap();
    assert!(
        d.findings
            .iter()
            .all(|f| f.kind != polyprov_model::doctor::FindingKind::Returns),
        "{:#?}",
        d.findings
    );

    // Nothing was lost: the quarantined files are on the server, and restore brings them back.
    let sets = core.quarantine_sets(mac).await.unwrap();
    assert_eq!(sets.len(), 2);
    assert!(sets[0].files.iter().any(|f| f.kind == "web.cfg"));
    assert_eq!(
        sets[1].files[0].kind, "phone.cfg",
        "the second release took the new phone-menu override"
    );
    let (id, n) = core
        .restore(mac, Some(sets[0].id.clone()), "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id.as_str(), n), (sets[0].id.as_str(), 1));
    p.boot(&t).await;
    assert_eq!(p.admin_password(), "P2");

    // Every step is in the audit log.
    // (The per-device provisioning login's own entries are left out: see device_logins.rs.)
    let h: Vec<_> = core
        .history(mac)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !e.action.starts_with("login-"))
        .collect();
    let actions: Vec<&str> = h.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["assign", "release", "release", "restore"]);
    assert!(
        h[2].detail
            .as_deref()
            .unwrap()
            .contains("uploaded after the last release")
    );
    assert!(h.iter().all(|e| e.actor == "alice"));
    assert!(h[1].detail.as_deref().unwrap().contains("new user"));
    server.shutdown().await;
}

#[tokio::test]
async fn requests_during_a_release_see_the_old_or_the_new_device_never_a_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server(dir.path()).await;
    let core = server.core.clone();
    let mac: Mac = MAC.parse().unwrap();
    assign_password(&server, "P1").await;
    let t = HttpTransport::new().unwrap();
    let mut p = phone(&url);
    p.boot(&t).await;
    p.set_admin_password(true, "P2", &t).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        let stop = stop.clone();
        loops.push(tokio::spawn(async move {
            let t = HttpTransport::new().unwrap();
            let mut seen = Vec::new();
            // Bounded: at most 200 boots per loop.
            for _ in 0..200 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let mut q = phone(&url);
                let r = q.boot(&t).await;
                seen.extend(r.requests);
            }
            seen
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    core.release(mac, "alice", "during a storm").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for l in loops {
        for q in l.await.unwrap() {
            total += 1;
            assert!(q.status != 0 && q.status < 500, "{q:?}");
        }
    }
    assert!(total > 0);
    // After the release every answer is the new state.
    let mut q = phone(&url);
    q.boot(&t).await;
    assert_eq!(
        (q.admin_password(), q.web_override.is_none()),
        ("456".to_string(), true)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_wiped_boot_log_marks_a_probable_reset_and_the_quarantine_policy_acts_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = server_with(dir.path(), |s| {
        s.lifecycle.reset_policy = polyprov_server::settings::ResetPolicy::Quarantine;
        s.lifecycle.reset_log_min_bytes = 50;
    })
    .await;
    let core = server.core.clone();
    let mac: Mac = MAC.parse().unwrap();
    assign_password(&server, "P1").await;

    let t = HttpTransport::new().unwrap();
    let mut p = phone(&url);
    for _ in 0..3 {
        p.boot(&t).await; // the phone's log grows with every boot
    }
    p.set_admin_password(true, "P2", &t).await.unwrap();
    p.boot(&t).await;
    assert_eq!(p.admin_password(), "P2");
    core.flush().await;
    assert!(
        core.device(mac)
            .await
            .unwrap()
            .unwrap()
            .reset_suspected_at
            .is_none()
    );

    // Reset to Factory wipes the phone's logs: its next boot log is short.
    p.menu_reset(MenuReset::Factory, Some("P2")).unwrap();
    p.boot(&t).await;
    // The policy quarantined the web override before the phone read it back: the assignment's P1.
    assert_eq!(p.admin_password(), "P1");
    let d = core.device(mac).await.unwrap().unwrap();
    assert!(d.reset_suspected_at.is_some());
    let h = core.history(mac).await.unwrap();
    let last = h.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("phone", "reset-suspected")
    );
    assert!(
        last.detail.as_deref().unwrap().contains("boot log shrank"),
        "{last:?}"
    );
    assert_eq!(core.quarantine_sets(mac).await.unwrap().len(), 1);
    server.shutdown().await;
}

/// A phone told the shared credentials once (in flash, as an admin types them, with the server
/// in a DHCP option 160 URL without credentials) stores the login polyprov renders for it and
/// presents that from its next boot on; a phone whose provisioning URL carries credentials
/// keeps using those (credentials in the URL win), which the server reports.
#[tokio::test]
async fn the_phone_adopts_its_own_login_unless_its_url_carries_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url_with_login) = server(dir.path()).await;
    assign_password(&server, "P1").await;
    let (user, password) = server.provisioning_login.clone().unwrap();
    let t = HttpTransport::new().unwrap();
    let mac: Mac = MAC.parse().unwrap();

    let mut p = phone(&format!("http://{}/", server.http_addr));
    p.flash.insert("device.prov.user".into(), user.clone());
    p.flash
        .insert("device.prov.password".into(), password.clone());
    let r = p.boot(&t).await;
    assert_eq!(p.admin_password(), "P1", "{:?}", r.problems);
    assert_eq!(
        p.flash["device.prov.user"], MAC,
        "its own login is in flash"
    );
    assert_ne!(p.flash["device.prov.password"], password);
    let r = p.boot(&t).await;
    assert!(
        r.requests
            .iter()
            .all(|q| q.status < 400 || q.status == 404 || q.status == 405),
        "{:?}",
        r.requests
    );
    assert_eq!(server.core.login_state(mac).unwrap()["state"], "adopted");
    assert_eq!(p.admin_password(), "P1");

    // Another phone whose URL carries the shared login: it is given its own, keeps using the
    // URL's, and the server says so.
    let other: Mac = "0004f2aa9999".parse().unwrap();
    server
        .core
        .assign(
            other,
            &Assignment {
                admin_password: Some("P9".into()),
                ..Default::default()
            },
            "alice",
        )
        .await
        .unwrap();
    let c = Catalog::embedded().unwrap();
    let mut q = PhoneState::new(other, c.find("VVX 410").unwrap(), "5.9.7.4477");
    q.network.dhcp.insert(160, url_with_login);
    q.boot(&t).await;
    q.boot(&t).await;
    assert_eq!(q.admin_password(), "P9");
    let state = server.core.login_state(other).unwrap();
    assert_eq!(state["state"], "pending", "{state}");
    assert_eq!(state["shared_used_after_served"], true, "{state}");
    let report = doctor::diagnose(&server.core, &Default::default(), other)
        .await
        .unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.what.contains("keeps presenting the shared one")),
        "{:?}",
        report.findings
    );
    server.shutdown().await;
}
