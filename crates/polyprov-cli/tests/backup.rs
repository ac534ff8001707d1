//! `polyprov backup` under load and `polyprov restore`: every upload a phone was told was stored
//! before the backup began, and every audit entry, is there after the restore; nothing in the
//! restored store is torn; a damaged backup restores nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const DEVICES: usize = 12;

fn mac(i: usize) -> String {
    format!("0004f2bb{i:04x}")
}

fn override_xml(n: usize) -> String {
    format!(
        r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="{}" feature.test.seq="{n}"/></PHONE_CONFIG>"#,
        n % 3
    )
}

/// PUTs an override as the phone `mac`; whether the server acknowledged it (2xx).
fn upload(url: &str, mac: &str, body: &str) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args([
            "-A",
            "PolycomVVX-VVX_500-UA/5.9.7.4477",
            "--data-binary",
            body,
        ])
        .arg(format!("{url}{mac}-phone.cfg"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).starts_with('2')
}

fn api_get(admin: &str, token: &str, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{admin}/api/v1/{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn api_text(admin: &str, token: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("{admin}/api/v1/{path}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every override body stored for each device, as the admin API serves them.
fn stored_overrides(admin: &str, token: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for i in 0..DEVICES {
        let m = mac(i);
        let list = api_get(admin, token, &format!("devices/{m}/uploads"));
        let mut bodies = BTreeSet::new();
        for u in list.as_array().cloned().unwrap_or_default() {
            if u["kind"] == "phone.cfg" {
                let v = u["version"].as_u64().unwrap();
                bodies.insert(api_text(
                    admin,
                    token,
                    &format!("devices/{m}/uploads/phone.cfg/{v}"),
                ));
            }
        }
        out.insert(m, bodies);
    }
    out
}

#[test]
fn a_backup_under_load_restores_every_acknowledged_upload_and_audit_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let env = admin_env(&served, &data);
    let token = env[1].1.clone();
    for i in 0..DEVICES {
        let (code, out) = run(
            &[
                "device",
                "assign",
                &mac(i),
                "--param",
                "reg.1.address=1@pbx.example.com",
            ],
            &env,
        );
        assert_eq!(code, 0, "{out}");
    }
    let url = phone_url(&served, &data);

    // Phones upload overrides without pause while the backup runs.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (acked, stop, url) = (acked.clone(), stop.clone(), url.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            // Bounded: at most 2,000 uploads, whatever happens to the stop flag.
            while !stop.load(Ordering::Relaxed) && n < 2000 {
                let (m, body) = (mac(n % DEVICES), override_xml(n));
                if upload(&url, &m, &body) {
                    acked.lock().unwrap().push((m, body));
                }
                n += 1;
            }
        })
    };
    while acked.lock().unwrap().len() < 40 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before: Vec<(String, String)> = acked.lock().unwrap().clone();
    let backup = dir.path().join("b.tgz");
    let (code, out) = run(
        &[
            "backup",
            backup.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let sent: BTreeSet<String> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["uploads"].as_u64().unwrap() >= before.len() as u64,
        "{report}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a backup holds secrets");
    }
    let history_before: Vec<serde_json::Value> = (0..DEVICES)
        .flat_map(|i| {
            api_get(
                &served.admin,
                &token,
                &format!("devices/{}/history", mac(i)),
            )
            .as_array()
            .cloned()
            .unwrap_or_default()
        })
        .collect();
    drop(served);

    // A damaged backup restores nothing.
    let bytes = std::fs::read(&backup).unwrap();
    let cut = dir.path().join("cut.tgz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let damaged = dir.path().join("damaged");
    let (code, out) = run(
        &[
            "restore",
            cut.to_str().unwrap(),
            "--data",
            damaged.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        !damaged.exists(),
        "a damaged backup left {}",
        damaged.display()
    );

    let restored = dir.path().join("restored");
    let (code, out) = run(
        &[
            "restore",
            backup.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let (code, _) = run(
        &[
            "restore",
            backup.to_str().unwrap(),
            "--data",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(
        code, 2,
        "a restore over a data directory in use must be refused"
    );

    let again = serve(&restored);
    let token2 = std::fs::read_to_string(restored.join("admin.token")).unwrap();
    assert_eq!(token2.trim(), token, "the admin token comes back");
    let stored = stored_overrides(&again.admin, &token);
    for (m, body) in &before {
        assert!(
            stored[m].contains(body),
            "{m}: an upload acknowledged before the backup is missing after the restore"
        );
    }
    for (m, bodies) in &stored {
        for b in bodies {
            assert!(
                sent.contains(b),
                "{m}: a restored override is not one a phone sent: {b:?}"
            );
        }
    }
    let history_after: Vec<serde_json::Value> = (0..DEVICES)
        .flat_map(|i| {
            api_get(&again.admin, &token, &format!("devices/{}/history", mac(i)))
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert!(!history_before.is_empty());
    assert_eq!(
        history_after, history_before,
        "the audit log comes back whole"
    );
    // And the restored server still provisions: a device's own file is served.
    let (code, out) = run(&["device", "show", &mac(0)], &admin_env(&again, &restored));
    assert_eq!(code, 0, "{out}");
}
