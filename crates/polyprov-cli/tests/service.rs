//! `polyprov serve` as a service manager sees it: readiness and stopping over systemd's notify
//! socket, the health endpoint a load balancer asks (and its 503 when the upload store cannot
//! take a file), a clean exit on SIGTERM.

#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn get(url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Sends `kill -SIG pid`.
fn signal(pid: &str, sig: &str) {
    let sent = Command::new("kill")
        .args([format!("-{sig}").as_str(), pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{sig} {pid}");
}

#[test]
fn a_service_manager_is_told_ready_and_stopping_and_health_follows_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let socket_path = dir.path().join("notify.sock");
    let manager = UnixDatagram::bind(&socket_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();

    let config = dir.path().join("polyprov.toml");
    std::fs::write(
        &config,
        "[dhcp.options]\n160 = \"http://before.example.com/\"\n",
    )
    .unwrap();
    let mut child = Command::new(common::BIN)
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf).unwrap();
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");

    // Ready means the summary is out and the admin listener answers.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut admin = String::new();
    for _ in 0..40 {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.trim_start().starts_with("admin API") {
            admin = line
                .split_whitespace()
                .nth(2)
                .unwrap()
                .trim_end_matches("/api/v1")
                .to_string();
            break;
        }
    }
    let (code, body) = get(&format!("{admin}/api/v1/health"));
    assert_eq!(code, 200, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            h["status"].as_str(),
            h["inventory"].as_str(),
            h["uploads"].as_str()
        ),
        (Some("ok"), Some("ok"), Some("ok"))
    );

    // The store cannot create a file (its temp folder replaced by a file): 503, and why.
    let tmp = data.join("uploads/.tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a folder").unwrap();
    let (code, body) = get(&format!("{admin}/api/v1/health"));
    assert_eq!(code, 503, "{body}");
    let h: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(h["status"], "failing");
    assert_eq!(h["inventory"], "ok");
    assert_ne!(h["uploads"], "ok");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    assert_eq!(get(&format!("{admin}/api/v1/health")).0, 200);

    // SIGHUP reloads the settings file: what can change live does (the DHCP options doctor
    // reports), and the manager hears RELOADING=1, then READY=1.
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let doctor = |admin: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-H",
                &format!("Authorization: Bearer {}", token.trim()),
            ])
            .arg(format!("{admin}/api/v1/devices/0004f2aa814c/doctor"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(doctor(&admin).contains("before.example.com"));
    std::fs::write(
        &config,
        "[dhcp.options]\n160 = \"http://after.example.com/\"\n",
    )
    .unwrap();
    let pid = child.id().to_string();
    signal(&pid, "HUP");
    let n = manager.recv(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "RELOADING=1");
    let n = manager.recv(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "READY=1");
    let report = doctor(&admin);
    assert!(
        report.contains("after.example.com") && !report.contains("before.example.com"),
        "{report}"
    );
    // A file that does not load keeps the running settings, and the server serves on.
    std::fs::write(&config, "[dhcp.options\n").unwrap();
    signal(&pid, "HUP");
    manager.recv(&mut buf).unwrap();
    manager.recv(&mut buf).unwrap();
    assert!(doctor(&admin).contains("after.example.com"));

    // SIGTERM: the manager hears STOPPING=1, the server exits 0.
    signal(&pid, "TERM");
    let n = manager.recv(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), "STOPPING=1");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
