//! The HTTPS door with real clients (curl, openssl): the certificate from `tls init`, reloads
//! without a restart, and phone identity by device certificate — another MAC's certificate, or
//! none when one is required, refused with one security event each.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, Pki, TestServer};
use polyprov_server::settings::ClientAuth;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const OTHER_MAC: &str = "0004f2aa9999";

fn https_server(
    client: Option<(PathBuf, ClientAuth)>,
) -> impl Future<Output = TestServer> + 'static {
    TestServer::start_with(move |s| {
        polyprov_server::tls::init(&s.data, &["localhost".to_string()]).unwrap();
        s.https.listen = Some("127.0.0.1:0".parse().unwrap());
        s.https.reload_check_secs = 1;
        if let Some((ca, auth)) = client {
            s.https.client_ca = Some(ca);
            s.https.client_auth = auth;
        }
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?} could not run: {e}"))
}

/// curl against the HTTPS door as `localhost` (the name in the certificate): (HTTP status or 0,
/// curl's exit code, body).
fn curl(t: &TestServer, path: &str, ca: &Path, extra: &[&str]) -> (u16, i32, String) {
    let port = t.server.https_addr.unwrap().port();
    let out = run(Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .args(extra)
        .arg(format!("https://localhost:{port}{path}")));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        out.status.code().unwrap_or(-1),
        body.to_string(),
    )
}

fn ca_of(t: &TestServer) -> PathBuf {
    t.data().join("tls/ca.pem")
}

async fn assign(t: &TestServer, mac: &str) {
    let (s, body) = t
        .admin_json(
            reqwest::Method::PUT,
            &format!("/api/v1/devices/{mac}"),
            Some(serde_json::json!({"admin_password": "S3cret-admin"})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_tls_init_certificate_and_reloads_a_new_one_without_a_restart() {
    let t = std::sync::Arc::new(https_server(None).await);
    let ca = ca_of(&t);
    let t2 = t.clone();
    let (status, code, body) = blocking(move || curl(&t2, "/000000000000.cfg", &ca, &[])).await;
    assert_eq!((status, code), (200, 0), "{body}");
    assert!(body.contains("polyprov staging master"), "{body}");
    t.assert_metric("door=\"https\",kind=\"shared\",status=\"200\"")
        .await;

    // A certificate from another CA replaces the running one: from the next handshake on,
    // clients trusting the new CA get in and those trusting the old one do not.
    let pki = Pki::new(t.dir.path(), "replacement-ca");
    let (cert, key) = pki.issue("replacement", "localhost", &["localhost"]);
    let tls = t.data().join("tls");
    std::fs::copy(&key, tls.join("server-key.pem.new")).unwrap();
    std::fs::copy(&cert, tls.join("server.pem.new")).unwrap();
    std::fs::rename(tls.join("server-key.pem.new"), tls.join("server-key.pem")).unwrap();
    std::fs::rename(tls.join("server.pem.new"), tls.join("server.pem")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (t2, ca) = (t.clone(), pki.ca_pem.clone());
        let (status, _, _) = blocking(move || curl(&t2, "/000000000000.cfg", &ca, &[])).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never used"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (t2, old) = (t.clone(), ca_of(&t));
    let (status, code, _) = blocking(move || curl(&t2, "/000000000000.cfg", &old, &[])).await;
    assert_eq!(
        status, 0,
        "the old CA must no longer verify (curl exit {code})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_certificate_proves_its_mac_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "device-ca");
    let mine = pki.issue("mine", MAC, &[]);
    let theirs = pki.issue("theirs", OTHER_MAC, &[]);
    let separated = pki.issue("separated", "00:04:F2:AA:81:4C", &[]);
    let unnamed = pki.issue("unnamed", "a phone", &[]);
    let stranger = Pki::new(dir.path(), "stranger-ca").issue("stranger", MAC, &[]);
    let t =
        std::sync::Arc::new(https_server(Some((pki.ca_pem.clone(), ClientAuth::Optional))).await);
    assign(&t, MAC).await;
    assign(&t, OTHER_MAC).await;
    let own = format!("/{MAC}-polyprov.cfg");
    let with = |c: &(PathBuf, PathBuf)| {
        vec![
            "--cert".to_string(),
            c.0.display().to_string(),
            "--key".to_string(),
            c.1.display().to_string(),
        ]
    };
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        ("its own certificate, no password", with(&mine), 200),
        ("its own, MAC written with colons", with(&separated), 200),
        ("another MAC's certificate", with(&theirs), 403),
        ("no certificate, no password", vec![], 401),
        (
            "a certificate naming no MAC, no password",
            with(&unnamed),
            401,
        ),
    ];
    for (what, args, want) in cases {
        let (t2, ca, path) = (t.clone(), ca_of(&t), own.clone());
        let (status, code, body) = blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(&t2, &path, &ca, &args)
        })
        .await;
        assert_eq!(status, want, "{what}: curl exit {code}, {body}");
        if want != 200 {
            assert!(!body.contains("S3cret-admin"), "{what}: a secret leaked");
        } else {
            assert!(body.contains("S3cret-admin"), "{what}: {body}");
        }
    }
    // The other device's certificate reads its own file.
    let (t2, ca) = (t.clone(), ca_of(&t));
    let args = with(&theirs);
    let (status, _, _) = blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&t2, &format!("/{OTHER_MAC}-polyprov.cfg"), &ca, &args)
    })
    .await;
    assert_eq!(status, 200);
    // A certificate from a CA the server does not trust ends the handshake.
    let (t2, ca, path) = (t.clone(), ca_of(&t), own.clone());
    let args = with(&stranger);
    let (status, code, _) = blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&t2, &path, &ca, &args)
    })
    .await;
    assert_eq!(status, 0, "curl exit {code}");
    for line in [
        "polyprov_security_events_total{event=\"certificate_mismatch\"} 1",
        "polyprov_security_events_total{event=\"bad_client_certificate\"} 1",
    ] {
        t.await_metric(line).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_certificate_refuses_every_connection_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "device-ca");
    let mine = pki.issue("mine", MAC, &[]);
    let t =
        std::sync::Arc::new(https_server(Some((pki.ca_pem.clone(), ClientAuth::Required))).await);
    assign(&t, MAC).await;
    let (u, p) = t.server.provisioning_login.clone().unwrap();
    let (t2, ca) = (t.clone(), ca_of(&t));
    let login = format!("{u}:{p}");
    // Even the right password does not open the door without a certificate.
    let (status, code, _) =
        blocking(move || curl(&t2, &format!("/{MAC}-polyprov.cfg"), &ca, &["-u", &login])).await;
    assert_eq!(status, 0, "curl exit {code}");
    let (t2, ca) = (t.clone(), ca_of(&t));
    let (status, _, _) = blocking(move || {
        curl(
            &t2,
            &format!("/{MAC}-polyprov.cfg"),
            &ca,
            &[
                "--cert",
                mine.0.to_str().unwrap(),
                "--key",
                mine.1.to_str().unwrap(),
            ],
        )
    })
    .await;
    assert_eq!(status, 200);
    // openssl s_client sees the request for a certificate and the refusal.
    let port = t.server.https_addr.unwrap().port();
    let ca = ca_of(&t);
    let out = blocking(move || {
        run(Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("localhost:{port}"))
            .args([
                "-servername",
                "localhost",
                "-verify_return_error",
                "-CAfile",
            ])
            .arg(&ca)
            .stdin(std::process::Stdio::null()))
    })
    .await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    t.await_metric("polyprov_security_events_total{event=\"bad_client_certificate\"} 2")
        .await;
}
