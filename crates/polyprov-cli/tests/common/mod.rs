//! Starting the real `polyprov serve` binary for tests.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_polyprov");

pub struct Served {
    pub child: Child,
    pub admin: String,
    pub phones: String,
    pub summary: String,
}

pub fn serve(data: &Path) -> Served {
    serve_with(data, None, &[])
}

/// `polyprov serve` on loopback ports, with the open-file limit set to `nofile` (`ulimit -n`)
/// when given.
pub fn serve_with_open_files(data: &Path, nofile: Option<u32>) -> Served {
    serve_with(data, nofile, &[])
}

/// `polyprov serve` on loopback ports with more arguments (`--https 127.0.0.1:0`, …); the
/// summary it printed is in [`Served::summary`].
pub fn serve_with(data: &Path, nofile: Option<u32>, extra: &[&str]) -> Served {
    serve_with_env(data, nofile, extra, &[])
}

/// [`serve_with`], with more environment variables for the server.
pub fn serve_with_env(
    data: &Path,
    nofile: Option<u32>,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> Served {
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(BIN);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = cmd
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(extra)
        .envs(envs.iter().copied())
        .env(
            "RUST_LOG",
            std::env::var("POLYPROV_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("POLYPROV_TEST_SERVER_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut summary = String::new();
    let (mut admin, mut phones) = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        summary.push_str(&line);
        let field = |l: &str| l.split_whitespace().nth(2).unwrap_or_default().to_string();
        if line.trim_start().starts_with("phones (HTTP)") {
            phones = field(&line);
        }
        if line.trim_start().starts_with("admin API") {
            admin = field(&line).trim_end_matches("/api/v1").to_string();
        }
        if line.trim_start().starts_with("metrics") {
            break;
        }
    }
    assert!(
        !admin.is_empty() && !phones.is_empty(),
        "no summary: {summary}"
    );
    Served {
        child,
        admin,
        phones,
        summary,
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test CA, and one device certificate it issues (subject CN = the MAC), as PEM files in
/// `dir`: (CA, device certificate, device key).
pub fn device_pki(
    dir: &Path,
    mac: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "test device CA");
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut d = CertificateParams::new(Vec::<String>::new()).unwrap();
    d.distinguished_name.push(DnType::CommonName, mac);
    let cert = d.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("device.pem"),
        dir.join("device-key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// Runs `polyprov ARGS` with `envs`: (exit code, standard output then standard error).
pub fn run(args: &[&str], envs: &[(&str, String)]) -> (i32, String) {
    let o = Command::new(BIN)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// The environment that points the CLI at `served`'s admin API, with its token.
pub fn admin_env(served: &Served, data: &Path) -> [(&'static str, String); 2] {
    [
        ("POLYPROV_SERVER", served.admin.clone()),
        (
            "POLYPROV_TOKEN",
            std::fs::read_to_string(data.join("admin.token"))
                .unwrap()
                .trim()
                .to_string(),
        ),
    ]
}

/// The provisioning URL an emulated phone is given (DHCP option 160): `served`'s phone door
/// with the shared login.
pub fn phone_url(served: &Served, data: &Path) -> String {
    let pw = std::fs::read_to_string(data.join("provisioning.password")).unwrap();
    format!("http://PlcmSpIp:{}@{}/", pw.trim(), served.phones)
}

/// A file as `served`'s phone door answers a VVX 500 with the shared login: (status, body).
pub fn phone_get(served: &Served, data: &Path, file: &str) -> (String, String) {
    curl_as_phone(&format!("{}{file}", phone_url(served, data)), &[])
}

/// curl at `url` as a VVX 500, with `args` (a method, a body): (status, body).
pub fn curl_as_phone(url: &str, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-A",
            "PolycomVVX-VVX_500-UA/5.9.7.4477",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", ""));
    (status.to_string(), body.to_string())
}

/// A phone's upload of `file` through `served` with the shared login: the HTTP status.
pub fn phone_put(served: &Served, data: &Path, file: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", "-"])
        .args(["-A", "PolycomVVX-VVX_500-UA/5.9.7.4477"])
        .arg(format!("{}{file}", phone_url(served, data)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls every `every` until `cond` holds, for at most 20 s; returns how long it took.
pub fn until(what: &str, every: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not within 20 s: {what}"
        );
        std::thread::sleep(every);
    }
    start.elapsed()
}

/// `polyprov serve` on data directory `dir/name` with its inventory at `store_url`
/// (`[store] url`, in `dir/name.toml`); returns it and its data directory.
pub fn serve_on_store(dir: &Path, name: &str, store_url: &str) -> (Served, std::path::PathBuf) {
    let data = dir.join(name);
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, format!("[store]\nurl = \"{store_url}\"\n")).unwrap();
    let served = serve_with(&data, None, &["--config", config.to_str().unwrap()]);
    (served, data)
}
