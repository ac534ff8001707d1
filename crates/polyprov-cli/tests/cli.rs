//! The `polyprov` binary end to end: `serve` on a fresh data directory, then the admin commands
//! against it, checking output and exit codes.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{BIN, Served, serve};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn polyprov(args: &[&str], served: &Served, data: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--server")
        .arg(&served.admin)
        .arg("--token-file")
        .arg(data.join("admin.token"))
        .env_remove("POLYPROV_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn serve_then_manage_devices_with_meaningful_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = serve(&data);
    assert!(
        served.summary.contains("provisioning URL http://PlcmSpIp:"),
        "{}",
        served.summary
    );

    // First start created the store, the boot root and private secrets.
    assert!(data.join("root/000000000000.cfg").is_file());
    assert!(data.join("polyprov.db").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["admin.token", "provisioning.password"] {
            let mode = std::fs::metadata(data.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }

    let ok = |o: &Output| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ok(&polyprov(
        &[
            "profile",
            "set",
            "sales",
            "--param",
            "reg.1.server.1.address=pbx.example.com",
        ],
        &served,
        &data,
    ));
    let o = polyprov(
        &[
            "device",
            "assign",
            "00:04:f2:aa:81:4c",
            "--profile",
            "sales",
            "--admin-password",
            "pw1",
            "--line",
            "1001@pbx,1001,secret",
        ],
        &served,
        &data,
    );
    ok(&o);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "assigned 0004f2aa814c"
    );

    let o = polyprov(&["device", "list", "--json"], &served, &data);
    ok(&o);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["mac"], "0004f2aa814c");
    assert_eq!(list[0]["params"]["reg.1.auth.password"], "secret");

    let o = polyprov(&["device", "list"], &served, &data);
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.starts_with("MAC") && table.contains("0004f2aa814c  assigned  sales"),
        "{table}"
    );

    // Exit codes: 3 not found, 4 refused token or unreachable server, 2 usage, 1 refused request.
    assert_eq!(
        polyprov(&["device", "show", "0004f2000001"], &served, &data)
            .status
            .code(),
        Some(3)
    );
    let o = Command::new(BIN)
        .args(["device", "list", "--server", &served.admin])
        .env("POLYPROV_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let o = Command::new(BIN)
        .args([
            "device",
            "list",
            "--server",
            "http://127.0.0.1:9",
            "--token-file",
        ])
        .arg(data.join("admin.token"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        polyprov(
            &["device", "assign", "0004f2aa814c", "--param", "novalue"],
            &served,
            &data
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        polyprov(
            &["device", "assign", "0004f2aa814c", "--profile", "missing"],
            &served,
            &data
        )
        .status
        .code(),
        Some(1)
    );
    assert_eq!(
        polyprov(&["profile", "remove", "sales"], &served, &data)
            .status
            .code(),
        Some(1)
    );

    // A phone fetches its file through the door the summary named.
    let pw = std::fs::read_to_string(data.join("provisioning.password")).unwrap();
    let o = Command::new("curl")
        .args([
            "-sf",
            "-u",
            &format!("PlcmSpIp:{}", pw.trim()),
            &format!("http://{}/0004f2aa814c-polyprov.cfg", served.phones),
        ])
        .output()
        .expect("curl must be installed (.ci/run installs it)");
    assert!(String::from_utf8_lossy(&o.stdout).contains("device.auth.localAdminPassword=\"pw1\""));

    // SIGTERM: a graceful stop with exit code 0.
    Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = served.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_bad_settings_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("polyprov.toml");
    std::fs::write(&cfg, "[http]\nlisen = \"0.0.0.0:80\"\n").unwrap();
    let o = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lisen"));
}

/// `device import`: a file of 12,000 devices goes in two batches; a file with one bad document
/// is refused with its batch named and exit code 1, and nothing of that batch is written.
#[test]
fn device_import_assigns_in_batches_and_refuses_a_bad_batch_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let devices: Vec<serde_json::Value> = (0..12_000)
        .map(|i| serde_json::json!({"mac": format!("0004f2{i:06x}"), "admin_password": format!("pw{i}")}))
        .collect();
    let file = dir.path().join("devices.json");
    std::fs::write(&file, serde_json::json!({ "devices": devices }).to_string()).unwrap();
    let o = polyprov(
        &["device", "import", file.to_str().unwrap(), "--json"],
        &served,
        &data,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["assigned"], 12_000);

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"mac": "0004f2ffff01", "admin_password": "x"}, {"mac": "not-a-mac"}]"#,
    )
    .unwrap();
    let o = polyprov(&["device", "import", bad.to_str().unwrap()], &served, &data);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("batch 1 (devices 1-2)"));
    let o = polyprov(&["device", "show", "0004f2ffff01"], &served, &data);
    assert_eq!(
        o.status.code(),
        Some(3),
        "nothing of the refused batch was written"
    );
}
