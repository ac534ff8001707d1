//! `polyprov serve` nodes on one real PostgreSQL inventory. Two: a device assigned through one
//! node's admin API is served its own file by the other (the test prints how soon), and once
//! released there, is not — from the other node's very first answer after the release. Three
//! behind nginx: one killed in the middle of a boot storm, after which the two left still agree:
//! an override uploaded through the balancer is withdrawn from both by a release through one.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;
#[path = "../../polyprov-store/tests/support/postgres_server.rs"]
mod postgres_server;

use common::{Served, admin_env, curl_as_phone, phone_get, phone_put, run, serve_on_store, until};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const MAC: &str = "0004f2ab0001";

/// The phone's own file as node `served` answers it now: (status, body).
fn own_file(served: &Served, data: &Path) -> (String, String) {
    phone_get(served, data, &format!("{MAC}-polyprov.cfg"))
}

#[test]
fn a_release_on_one_node_withdraws_the_file_on_the_other() {
    let url = postgres_server::fresh_database_blocking();
    let dir = tempfile::tempdir().unwrap();
    let (a, a_data) = serve_on_store(dir.path(), "a", &url);
    let (b, b_data) = serve_on_store(dir.path(), "b", &url);
    let env_a = admin_env(&a, &a_data);

    assert_eq!(own_file(&b, &b_data).0, "404", "nothing of its own yet");
    let (code, out) = run(
        &["device", "assign", MAC, "--admin-password", "Node-A-Secret"],
        &env_a,
    );
    assert_eq!(code, 0, "{out}");
    let took = until(
        "B serves the file A's assignment made",
        Duration::from_millis(2),
        || {
            let (status, body) = own_file(&b, &b_data);
            status == "200" && body.contains("Node-A-Secret")
        },
    );
    eprintln!("assignment through node A served by node B after {took:?}");

    // The window after a release is zero: B confirms with the database before serving a
    // device its own file ([store] check_before_serving, on by default), so its very first
    // answer after A's release returned is already without the file.
    let (code, out) = run(&["device", "release", MAC, "--reason", "new user"], &env_a);
    assert_eq!(code, 0, "{out}");
    let (status, body) = own_file(&b, &b_data);
    assert_eq!(status, "404", "B served the withdrawn file: {body}");

    // B's admin API reads the same inventory.
    let (code, out) = run(&["device", "show", MAC, "--json"], &admin_env(&b, &b_data));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"released\""), "{out}");
}

/// The files a phone downloads back live in the shared database: an override uploaded through
/// one node is served by the other at once (even though the other had just answered "none"),
/// a release through either withdraws it from both at once, and a restore through the other
/// brings it back — no node's upload folder holds it.
#[test]
fn an_override_uploaded_through_one_node_follows_the_device_on_every_node() {
    let url = postgres_server::fresh_database_blocking();
    let dir = tempfile::tempdir().unwrap();
    let (a, a_data) = serve_on_store(dir.path(), "a", &url);
    let (b, b_data) = serve_on_store(dir.path(), "b", &url);
    let (env_a, env_b) = (admin_env(&a, &a_data), admin_env(&b, &b_data));
    let (code, out) = run(
        &["device", "assign", MAC, "--admin-password", "Pw-1"],
        &env_a,
    );
    assert_eq!(code, 0, "{out}");
    let file = format!("{MAC}-phone.cfg");
    // Both nodes have answered "none" (and cached it).
    assert_eq!(phone_get(&a, &a_data, &file).0, "404");
    assert_eq!(phone_get(&b, &b_data, &file).0, "404");

    let first_user =
        r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="first-user"/></PHONE_CONFIG>"#;
    let status = phone_put(&b, &b_data, &file, first_user);
    assert!(status.starts_with('2'), "upload through B: {status}");
    let (status, body) = phone_get(&a, &a_data, &file);
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("200", first_user),
        "A at once"
    );
    assert_eq!(phone_get(&b, &b_data, &file).1, first_user);

    let (code, out) = run(&["device", "release", MAC, "--reason", "new user"], &env_a);
    assert_eq!(code, 0, "{out}");
    for (node, data) in [(&b, &b_data), (&a, &a_data)] {
        let (status, body) = phone_get(node, data, &file);
        assert_eq!(status, "404", "a withdrawn override was served: {body}");
    }
    let (code, out) = run(&["device", "quarantine", MAC, "--json"], &env_b);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("phone.cfg"),
        "B lists the set A's release made: {out}"
    );

    let (code, out) = run(&["device", "restore", MAC], &env_b);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        phone_get(&a, &a_data, &file).1,
        first_user,
        "restored through B"
    );
    for data in [&a_data, &b_data] {
        let folder = data.join("uploads").join(MAC);
        assert!(
            !folder.join("phone.cfg").exists(),
            "kept in the database, not in {}",
            folder.display()
        );
    }
    let (code, out) = run(&["device", "history", MAC, "--json"], &env_a);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("restore"), "{out}");
}

/// nginx in front of `upstreams` (round robin, keep-alive to them), stopped when dropped.
struct Balancer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(upstreams: &[&str]) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path().display();
        let servers: String = upstreams.iter().map(|a| format!("server {a}; ")).collect();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
                 events {{ worker_connections 4096; }}
                 http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};
                   fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
                   upstream polyprov {{ {servers} keepalive 64; }}
                   server {{ listen 127.0.0.1:{port}; client_max_body_size 2m;
                     location / {{ proxy_pass http://polyprov; proxy_http_version 1.1;
                       proxy_set_header Connection \"\"; proxy_set_header Host $host; }} }} }}"
            ),
        )
        .unwrap();
        let nginx = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        // Its output goes nowhere: a worker holding the test's pipes would keep the test
        // harness waiting after the test ended.
        let child = Command::new(nginx)
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (Debian's nginx package; .ci/run installs it)");
        until("nginx listens", Duration::from_millis(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Balancer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (a SIGKILL would leave them running).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The log files in a data directory's upload store, as `<mac>-<log>` (every phone here is
/// new, so each holds one upload).
fn log_files(data: &Path) -> Vec<String> {
    let Ok(logs) = std::fs::read_dir(data.join("uploads/logs")) else {
        return Vec::new();
    };
    logs.flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".log"))
        .collect()
}

/// Three nodes behind nginx, one killed (SIGKILL) in the middle of a boot storm: the only
/// failures are the killed node's requests in flight (nginx sends the reads on to another
/// node; an upload already sent to the dead one is answered 502), and every upload a phone
/// was told was stored is on disk — on the killed node's too.
#[test]
fn a_node_killed_mid_storm_costs_only_its_requests_in_flight() {
    const PHONES: usize = 4000;
    const AT_ONCE: usize = 60;
    let url = postgres_server::fresh_database_blocking();
    let dir = tempfile::tempdir().unwrap();
    let (a, a_data) = serve_on_store(dir.path(), "a", &url);
    // The other nodes answer phones with node A's login.
    for name in ["b", "c"] {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        for secret in ["provisioning.password", "admin.token"] {
            std::fs::copy(a_data.join(secret), data.join(secret)).unwrap();
        }
    }
    let (b, b_data) = serve_on_store(dir.path(), "b", &url);
    let (mut c, c_data) = serve_on_store(dir.path(), "c", &url);
    let lb = Balancer::start(&[&a.phones, &b.phones, &c.phones]);
    let pw = std::fs::read_to_string(a_data.join("provisioning.password")).unwrap();
    let server = format!("http://PlcmSpIp:{}@127.0.0.1:{}/", pw.trim(), lb.port);
    let server_url = server.clone();

    let storm = std::thread::spawn(move || {
        run(
            &[
                "sim",
                "storm",
                "--server",
                &server,
                "--phones",
                &PHONES.to_string(),
                "--concurrency",
                &AT_ONCE.to_string(),
                "--time-limit",
                "120",
                "--json",
            ],
            &[],
        )
    });
    // Kill C once it has served a good share of the storm, while the storm still runs.
    until("node C serves its share", Duration::from_millis(20), || {
        log_files(&c_data).len() >= 300
    });
    assert!(!storm.is_finished(), "the storm ended before the kill");
    c.child.kill().unwrap();
    c.child.wait().unwrap();
    let (code, out) = storm.join().unwrap();
    let report: serde_json::Value = serde_json::from_str(
        out.lines()
            .skip_while(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
            .as_str(),
    )
    .unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!(
        "statuses {} errors {} (exit {code})",
        report["statuses"], report["error_count"]
    );
    assert_eq!(report["phones_booted"], PHONES, "{out}");
    let statuses = report["statuses"].as_object().unwrap();
    for (status, n) in statuses {
        assert!(
            ["200", "204", "404", "502"].contains(&status.as_str()),
            "{n} answers {status}: {out}"
        );
    }
    let failed = statuses.get("502").and_then(|n| n.as_u64()).unwrap_or(0);
    assert!(
        failed <= AT_ONCE as u64,
        "{failed} failures: more than the requests in flight"
    );
    // Every upload a phone was told was stored is on disk, on one node or another (the killed
    // one's included: logs skip the fsync, and a killed process loses nothing it wrote). An upload
    // the killed node had stored but could not answer may have been sent on by nginx and
    // stored again elsewhere (a log then holds it twice: at least once, never lost) — at
    // most one per request in flight.
    let acknowledged = statuses["204"].as_u64().unwrap() as usize;
    let all: Vec<String> = [&a_data, &b_data, &c_data]
        .iter()
        .flat_map(|d| log_files(d))
        .collect();
    let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
    assert!(
        distinct.len() >= acknowledged,
        "{acknowledged} uploads acknowledged, {} on disk",
        distinct.len()
    );
    // (An upload answered 502 may have been stored before its node died.)
    assert!(distinct.len() <= acknowledged + failed as usize);
    assert!(
        all.len() - distinct.len() <= AT_ONCE,
        "{} uploads stored twice",
        all.len() - distinct.len()
    );

    // The survivors still agree: an override uploaded through the balancer is withdrawn from
    // both by a release through one of them, from the very first answer after it.
    let (code, out) = run(&["device", "assign", MAC], &admin_env(&a, &a_data));
    assert_eq!(code, 0, "{out}");
    let file = format!("{}{MAC}-phone.cfg", server_url);
    let body = r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="4"/></PHONE_CONFIG>"#;
    let put = curl_as_phone(&file, &["-X", "PUT", "--data-binary", body]);
    assert!(put.0.starts_with('2'), "{put:?}");
    for _ in 0..4 {
        assert_eq!(
            curl_as_phone(&file, &[]),
            ("200".to_string(), body.to_string()),
            "each node serves it"
        );
    }
    let (code, out) = run(&["device", "release", MAC], &admin_env(&b, &b_data));
    assert_eq!(code, 0, "{out}");
    for _ in 0..4 {
        let answer = curl_as_phone(&file, &[]);
        assert_eq!(
            answer.0, "404",
            "a released override was served: {answer:?}"
        );
    }
}
