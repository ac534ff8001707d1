//! Remote actions end to end, as an admin runs them: `polyprov device resync` against an
//! emulated phone left running with `polyprov sim listen`, over real loopback sockets. The
//! phone validates NOTIFY with Digest (its settings say so), so the server must answer the
//! challenge with the line's credentials; then the phone reads its configuration again and the
//! server sees it come back.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{BIN, admin_env, device_pki, phone_url, run, serve_with};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const MAC: &str = "0004f2aa9001";

/// `sim init` (a VVX 410 with MAC, given the server by DHCP option 160, and `extra`) and a
/// first `sim boot`.
fn init_and_boot(st: &str, url: &str, extra: &[&str]) {
    let mut args = vec![
        "sim", "init", "--state", st, "--mac", MAC, "--model", "VVX 410",
    ];
    args.extend(["--dhcp-option", url]);
    args.extend(extra);
    let (code, out) = run(&args, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["sim", "boot", "--state", st], &[]);
    assert_eq!(code, 0, "{out}");
}

fn assign(env: &[(&str, String)], sip_port: Option<u16>) {
    let mut args = vec![
        "device".to_string(),
        "assign".into(),
        MAC.into(),
        "--admin-password".into(),
        "Adm1n".into(),
        "--line".into(),
        "1001@pbx.example.com,1001,line-secret".into(),
        "--param".into(),
        "voIpProt.SIP.requestValidation.1.request=NOTIFY".into(),
        "--param".into(),
        "voIpProt.SIP.requestValidation.1.method=digest".into(),
    ];
    if let Some(p) = sip_port {
        args.extend(["--param".into(), format!("voIpProt.SIP.local.port={p}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run(&args, env);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_resync_is_challenged_answered_and_the_phone_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("polyprov.toml");
    // A short T1, so that the silent-phone case below gives up in 6.4 s, not 32.
    std::fs::write(&config, "[actions]\nsip_t1_ms = 100\n").unwrap();
    let served = serve_with(&data, None, &["--config", config.to_str().unwrap()]);
    let env = admin_env(&served, &data);
    assign(&env, None);
    let url = format!("160={}", phone_url(&served, &data));
    let state = dir.path().join("phone");
    let st = state.to_str().unwrap();
    init_and_boot(st, &url, &[]);

    // The phone stays on, listening for NOTIFY on a port of its own.
    let mut listen = Command::new(BIN)
        .args([
            "sim",
            "listen",
            "--state",
            st,
            "--sip",
            "127.0.0.1:0",
            "--count",
            "1",
        ])
        .args(["--time-limit", "60", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let port: u16 = first["listening"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // Its SIP port in its configuration: the server sends there, to the address it last saw
    // the phone at, with no --target.
    assign(&env, Some(port));

    let (code, out) = run(
        &[
            "device", "resync", MAC, "--wait", "30", "--reason", "test", "--json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &job["results"][0];
    assert_eq!(r["acknowledged"], true, "{r}");
    assert_eq!(r["answer"]["challenged"], true, "{r}");
    assert_eq!(r["target"], format!("127.0.0.1:{port}"), "{r}");
    let files: Vec<&str> = r["came_back"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        files.first(),
        Some(&format!("GET {MAC}.cfg 200").as_str()),
        "{r}"
    );
    assert_eq!(
        r["came_back"]["stage"], "Application",
        "a check-sync without a reboot"
    );
    assert!(
        !out.contains("line-secret"),
        "the line's password never appears"
    );

    let acted: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(
        (
            acted["notify"].as_str(),
            acted["authenticated"].as_bool(),
            acted["rebooted"].as_bool()
        ),
        (Some("check-sync"), Some(true), Some(false))
    );
    assert!(listen.wait().unwrap().success());

    let (code, out) = run(&["device", "history", MAC, "--json"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"resync\""), "{out}");
    assert!(out.contains("after a Digest challenge"), "{out}");

    // Nobody listens now: the NOTIFY is sent again and again, then the job says so (exit 1).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let (code, out) = run(
        &[
            "device", "resync", MAC, "--target", &target, "--wait", "5", "--json",
        ],
        &env,
    );
    assert_eq!(code, 1, "{out}");
    let job: serde_json::Value = serde_json::from_str(&out[..out.rfind('}').unwrap() + 1]).unwrap();
    let answer = &job["results"][0]["answer"];
    assert_eq!(answer["outcome"], "timed_out", "{answer}");
    assert!(answer["transmissions"].as_u64().unwrap() >= 3, "{answer}");

    // What cannot be done is said, not attempted.
    let (code, out) = run(&["device", "factory-reset", MAC], &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("REST"), "{out}");
    let (code, out) = run(&["device", "resync", "0004f2ffffff", "--wait", "0"], &env);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--target"), "{out}");
}

/// The seed's story from one command: `device release --factory-reset` quarantines and
/// withdraws, resets the phone over its REST API (HTTPS, its certificate checked against
/// `rest_ca` and its MAC), and sees it come back clean: rebooted, admin password back to the
/// factory default. The admin password goes to no phone whose certificate names another MAC.
#[test]
fn release_with_a_factory_reset_brings_the_phone_back_clean() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ca, cert, key) = device_pki(dir.path(), MAC);
    let config = dir.path().join("polyprov.toml");
    std::fs::write(
        &config,
        format!("[actions]\nrest_ca = {:?}\n", ca.to_str().unwrap()),
    )
    .unwrap();
    let served = serve_with(&data, None, &["--config", config.to_str().unwrap()]);
    let env = admin_env(&served, &data);
    let (code, out) = run(
        &[
            "device",
            "assign",
            MAC,
            "--admin-password",
            "Adm1n-Pw",
            "--param",
            "apps.restapi.enabled=1",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let url = format!("160={}", phone_url(&served, &data));
    let state = dir.path().join("phone");
    let st = state.to_str().unwrap();
    init_and_boot(
        st,
        &url,
        &[
            "--ca-file",
            ca.to_str().unwrap(),
            "--device-cert",
            cert.to_str().unwrap(),
            "--device-key",
            key.to_str().unwrap(),
        ],
    );

    let mut listen = Command::new(BIN)
        .args(["sim", "listen", "--state", st, "--sip", "127.0.0.1:0"])
        .args(["--sip-tls", "127.0.0.1:0", "--rest", "127.0.0.1:0"])
        .args(["--count", "2", "--time-limit", "60", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let (mut rest, mut sip_tls) = (String::new(), String::new());
    for _ in 0..3 {
        let l: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let text = l["listening"].as_str().unwrap();
        if let Some(addr) = text.strip_prefix("listening rest/https ") {
            rest = addr.to_string();
        }
        if let Some(addr) = text.strip_prefix("listening sip/tls ") {
            sip_tls = addr.to_string();
        }
    }
    assert!(!rest.is_empty() && !sip_tls.is_empty());

    // A resync over SIP/TLS: the phone's certificate is checked as for REST.
    let (code, out) = run(
        &[
            "device",
            "resync",
            MAC,
            "--transport",
            "tls",
            "--target",
            &sip_tls,
            "--wait",
            "20",
            "--json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"sip/tls\""), "{out}");
    let acted: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(acted["notify"], "check-sync");

    // Another device's admin password is not sent to this phone: its certificate is MAC's.
    let other = "0004f2aa9002";
    run(
        &["device", "assign", other, "--admin-password", "Other-Pw"],
        &env,
    );
    let (code, out) = run(
        &[
            "device",
            "factory-reset",
            other,
            "--target",
            &rest,
            "--wait",
            "0",
            "--json",
        ],
        &env,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("not {other}")), "{out}");

    let (code, out) = run(
        &[
            "device",
            "release",
            MAC,
            "--factory-reset",
            "--target",
            &rest,
            "--wait",
            "30",
            "--json",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = &r["results"][0];
    assert_eq!(
        r["answer"]["detail"], "2000 API executed successfully",
        "{r}"
    );
    assert_eq!(r["came_back"]["rebooted"], true, "{r}");
    assert_eq!(r["came_back"]["clean"], true, "{r}");
    assert!(
        !out.contains("Adm1n-Pw"),
        "the admin password never appears"
    );

    let acted: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(acted["rest"], "factoryReset");
    assert!(listen.wait().unwrap().success());
    let (_, out) = run(&["sim", "show", "--state", st, "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        shown["admin_password"]["value"], "456",
        "factory default again: {shown}"
    );

    let (_, history) = run(&["device", "history", MAC, "--json"], &env);
    for action in ["\"release\"", "\"factory-reset\"", "\"reset-checked\""] {
        assert!(history.contains(action), "{action} in {history}");
    }
    let (_, device) = run(&["device", "show", MAC, "--json"], &env);
    assert!(device.contains("\"released\""), "{device}");
}

/// A fleet action at scale: 300 emulated phones boot, stay on listening (each on its own SIP
/// port, which its assignment names), and one `device resync --all` reaches every one in waves
/// and sees every one come back.
#[test]
fn a_fleet_resync_reaches_every_phone_and_sees_each_come_back() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("polyprov.toml");
    std::fs::write(
        &config,
        "[provisioning]\nnew_devices_per_minute = 1000000\n",
    )
    .unwrap();
    let served = serve_with(&data, None, &["--config", config.to_str().unwrap()]);
    let env = admin_env(&served, &data);
    // N consecutive UDP ports free now, below the ephemeral range.
    let base = (0..200u16)
        .map(|k| 20_000 + k * 50 + (std::process::id() % 50) as u16)
        .find(|b| {
            let held: Vec<_> = (0..N as u16)
                .map_while(|i| std::net::UdpSocket::bind(("127.0.0.1", b + i)).ok())
                .collect();
            held.len() == N
        })
        .unwrap();
    let mut storm = Command::new(BIN)
        .args([
            "sim",
            "storm",
            "--phones",
            &N.to_string(),
            "--concurrency",
            "50",
        ])
        .args([
            "--mac-prefix",
            "0004f3",
            "--listen-sip-base",
            &base.to_string(),
        ])
        .args(["--listen-secs", "120", "--json", "--server"])
        .arg(phone_url(&served, &data))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(storm.stderr.take().unwrap()).lines();
    let line = err
        .find(|l| l.as_ref().is_ok_and(|l| l.contains("listening")))
        .unwrap()
        .unwrap();
    assert!(line.starts_with(&format!("{N} phones listening")), "{line}");

    let devices: Vec<serde_json::Value> = (0..N)
        .map(|i| {
            let n = i + 1;
            serde_json::json!({
                "mac": format!("0004f3{n:06x}"),
                "admin_password": format!("pw{n}"),
                "params": {"voIpProt.SIP.local.port": (base as usize + i).to_string()},
            })
        })
        .collect();
    let file = dir.path().join("devices.json");
    std::fs::write(&file, serde_json::json!({ "devices": devices }).to_string()).unwrap();
    let (code, out) = run(&["device", "import", file.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}");

    let resync = Command::new(BIN)
        .args([
            "device", "resync", "--all", "--rate", "150", "--wait", "30", "--json",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let _ = storm.kill();
    let _ = storm.wait();
    let job: serde_json::Value = serde_json::from_slice(&resync.stdout).unwrap_or_default();
    let failed: Vec<&serde_json::Value> = job["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|p| p["came_back"].is_null())
                .take(3)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        resync.status.success(),
        "{}: {failed:?} {}",
        job["counts"],
        String::from_utf8_lossy(&resync.stderr)
    );
    assert_eq!(
        (
            job["counts"]["phones"].as_u64(),
            job["counts"]["acknowledged"].as_u64(),
            job["counts"]["came_back"].as_u64()
        ),
        (Some(N as u64), Some(N as u64), Some(N as u64))
    );
}
