//! The server against real TFTP clients (tftp-hpa, atftp, curl) over loopback.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use bytes::Bytes;
use polyprov_tftp::packet::{ErrorCode, Packet};
use polyprov_tftp::server::{self, Config, Handler, Refusal, Source};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

struct Dir {
    root: PathBuf,
    uploads: Mutex<HashMap<String, Bytes>>,
}

impl Handler for Dir {
    async fn read(&self, _peer: SocketAddr, filename: &str) -> Result<Source, Refusal> {
        let path = self.root.join(filename.trim_start_matches('/'));
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() && !filename.contains("..") => {
                Ok(Source::File { path, len: m.len() })
            }
            _ => Err((ErrorCode::FileNotFound, format!("{filename}: no such file"))),
        }
    }

    async fn write(&self, _peer: SocketAddr, filename: &str, data: Bytes) -> Result<(), Refusal> {
        self.uploads
            .lock()
            .unwrap()
            .insert(filename.to_string(), data);
        Ok(())
    }

    fn max_write(&self, _peer: SocketAddr, filename: &str) -> Result<u64, Refusal> {
        if filename.ends_with(".cfg") {
            Ok(1 << 20)
        } else {
            Err((
                ErrorCode::AccessViolation,
                "this file cannot be uploaded".into(),
            ))
        }
    }
}

async fn start(root: &Path, config: Config) -> (SocketAddr, Arc<Dir>) {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let dir = Arc::new(Dir {
        root: root.to_path_buf(),
        uploads: Mutex::new(HashMap::new()),
    });
    tokio::spawn(server::serve(
        socket,
        dir.clone(),
        config,
        std::future::pending(),
    ));
    (addr, dir)
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Ends a transfer from the client's side with an ERROR packet.
async fn abort(client: &tokio::net::UdpSocket, to: SocketAddr) {
    let error = Packet::Error {
        code: ErrorCode::NotDefined,
        message: "abort".into(),
    };
    client.send_to(&error.to_bytes(), to).await.unwrap();
}

async fn run(cmd: &mut Command) -> std::process::Output {
    let mut cmd = std::mem::replace(cmd, Command::new("true"));
    tokio::task::spawn_blocking(move || {
        cmd.output()
            .expect("the client must be installed (.ci/run installs tftp-hpa, atftp, curl)")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_get_and_put() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    for (name, len) in [
        ("small.cfg", 100),
        ("exact.bin", 1024),
        ("empty.bin", 0),
        ("mid.ld", 300_000),
    ] {
        std::fs::write(root.join(name), content(len)).unwrap();
    }
    let (addr, handler) = start(&root, Config::default()).await;
    let port = addr.port().to_string();
    let out = dir.path().join("out");

    for name in ["small.cfg", "exact.bin", "empty.bin", "mid.ld"] {
        let _ = std::fs::remove_file(&out);
        let o = run(Command::new("tftp")
            .args(["-m", "binary", "127.0.0.1", &port, "-c", "get", name])
            .arg(&out))
        .await;
        assert!(o.status.success(), "tftp-hpa get {name}: {o:?}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(root.join(name)).unwrap(),
            "tftp-hpa {name}"
        );
    }

    let _ = std::fs::remove_file(&out);
    let o = run(Command::new("atftp")
        .args([
            "--option",
            "blksize 1428",
            "--option",
            "windowsize 16",
            "--option",
            "tsize",
            "-g",
            "-r",
            "mid.ld",
            "-l",
        ])
        .arg(&out)
        .args(["127.0.0.1", &port]))
    .await;
    assert!(o.status.success(), "atftp: {o:?}");
    assert_eq!(std::fs::read(&out).unwrap(), content(300_000));

    let _ = std::fs::remove_file(&out);
    let o = run(Command::new("curl")
        .args([
            "-sS",
            "--tftp-blksize",
            "1428",
            &format!("tftp://127.0.0.1:{port}/mid.ld"),
            "-o",
        ])
        .arg(&out))
    .await;
    assert!(o.status.success(), "curl: {o:?}");
    assert_eq!(std::fs::read(&out).unwrap(), content(300_000));

    // Uploads: tftp-hpa lockstep and atftp with a window.
    let local = dir.path().join("up.cfg");
    std::fs::write(&local, content(5000)).unwrap();
    let o = run(Command::new("tftp")
        .args(["-m", "binary", "127.0.0.1", &port, "-c", "put"])
        .arg(&local)
        .arg("0004f2aa814c-web.cfg"))
    .await;
    assert!(o.status.success(), "tftp-hpa put: {o:?}");
    let o = run(Command::new("atftp")
        .args([
            "--option",
            "blksize 1024",
            "--option",
            "windowsize 4",
            "-p",
            "-l",
        ])
        .arg(&local)
        .args(["-r", "0004f2aa814c-phone.cfg", "127.0.0.1", &port]))
    .await;
    assert!(o.status.success(), "atftp put: {o:?}");
    let uploads = handler.uploads.lock().unwrap().clone();
    assert_eq!(
        uploads["0004f2aa814c-web.cfg"].as_ref(),
        content(5000).as_slice()
    );
    assert_eq!(
        uploads["0004f2aa814c-phone.cfg"].as_ref(),
        content(5000).as_slice()
    );

    // Refused upload and missing file: clean errors.
    let o = run(Command::new("tftp")
        .args(["-m", "binary", "127.0.0.1", &port, "-c", "put"])
        .arg(&local)
        .arg("firmware.ld"))
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("cannot be uploaded")
            || String::from_utf8_lossy(&o.stderr).contains("cannot be uploaded"),
        "{o:?}"
    );
    let o = run(Command::new("tftp")
        .args([
            "-m",
            "binary",
            "127.0.0.1",
            &port,
            "-c",
            "get",
            "nothing.cfg",
        ])
        .arg(&out))
    .await;
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("no such file")
            || String::from_utf8_lossy(&o.stderr).contains("no such file"),
        "{o:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_40_mb_file_at_512_byte_blocks_rolls_the_block_number_over() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let big = content(40 * 1024 * 1024);
    std::fs::write(root.join("big.ld"), &big).unwrap();
    let (addr, _) = start(&root, Config::default()).await;
    let out = dir.path().join("out");
    let o = run(Command::new("tftp")
        .args([
            "-m",
            "binary",
            "127.0.0.1",
            &addr.port().to_string(),
            "-c",
            "get",
            "big.ld",
        ])
        .arg(&out))
    .await;
    assert!(o.status.success(), "{o:?}");
    assert!(
        std::fs::read(&out).unwrap() == big,
        "40 MB transfer differs"
    );
}

#[tokio::test]
async fn malformed_packets_get_errors_and_a_full_server_says_busy() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.cfg"), content(10_000)).unwrap();
    let (addr, _) = start(
        dir.path(),
        Config {
            max_transfers: 1,
            ..Config::default()
        },
    )
    .await;
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 2048];
    for junk in [&b"\x00\x09garbage"[..], b"\x00\x01f.cfg", b"\x00"] {
        client.send_to(junk, addr).await.unwrap();
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert!(
            matches!(
                Packet::parse(&buf[..n]),
                Ok(Packet::Error {
                    code: ErrorCode::IllegalOperation,
                    ..
                })
            ),
            "{junk:?}"
        );
    }
    // One transfer that never acknowledges holds the only slot…
    let rrq = Packet::Rrq {
        filename: "f.cfg".into(),
        mode: "octet".into(),
        options: vec![],
    }
    .to_bytes();
    client.send_to(&rrq, addr).await.unwrap();
    let (_, from) = client.recv_from(&mut buf).await.unwrap();
    assert_ne!(from, addr, "data comes from the transfer's own port");
    // …so the next request is told the server is busy.
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other.send_to(&rrq, addr).await.unwrap();
    let (n, _) = other.recv_from(&mut buf).await.unwrap();
    assert!(
        matches!(Packet::parse(&buf[..n]), Ok(Packet::Error { ref message, .. }) if message.contains("busy"))
    );
    // An ERROR from the client ends its transfer at once and frees the slot.
    abort(&client, from).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    other.send_to(&rrq, addr).await.unwrap();
    let (n, _) = other.recv_from(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::parse(&buf[..n]),
        Ok(Packet::Data { block: 1, .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_our_server_with_windows_and_rollover() {
    use polyprov_tftp::client::{Client, ClientError, Settings};
    let dir = tempfile::tempdir().unwrap();
    let big = content(34 * 1024 * 1024); // 69,632 blocks of 512: past the 16-bit rollover
    std::fs::write(dir.path().join("big.ld"), &big).unwrap();
    std::fs::write(dir.path().join("exact.bin"), content(2048)).unwrap();
    let (addr, handler) = start(dir.path(), Config::default()).await;
    let lockstep = Client::new(addr, Settings::default());
    assert!(lockstep.get("big.ld").await.unwrap() == big);
    let windowed = Client::new(
        addr,
        Settings {
            blksize: 1428,
            windowsize: 16,
            ..Settings::default()
        },
    );
    assert!(windowed.get("big.ld").await.unwrap() == big);
    assert_eq!(
        windowed.get("exact.bin").await.unwrap().as_ref(),
        content(2048).as_slice()
    );
    assert!(matches!(
        lockstep.get("missing.cfg").await,
        Err(ClientError::Server(ErrorCode::FileNotFound, _))
    ));
    lockstep.put("a.cfg", &content(1024)).await.unwrap();
    windowed.put("b.cfg", &content(3000)).await.unwrap();
    assert!(matches!(
        lockstep.put("c.ld", b"x").await,
        Err(ClientError::Server(ErrorCode::AccessViolation, _))
    ));
    let up = handler.uploads.lock().unwrap().clone();
    assert_eq!(
        (up["a.cfg"].as_ref(), up["b.cfg"].as_ref()),
        (content(1024).as_slice(), content(3000).as_slice())
    );
}

/// A finished upload keeps its final ACK ready for a while, but not its transfer slot: a phone
/// uploading its log and then asking for its master must not be told the server is busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_upload_frees_its_slot_at_once() {
    use polyprov_tftp::client::{Client, Settings};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.cfg"), content(100)).unwrap();
    let config = Config {
        max_transfers: 1,
        timeout: std::time::Duration::from_secs(5),
        ..Config::default()
    };
    let (addr, _) = start(dir.path(), config).await;
    let client = Client::new(addr, Settings::default());
    // Uploads one after the other, then a read: each finds the only slot free. (A read's slot
    // is freed only when its final ACK arrives, so read-then-upload is not asserted here.)
    for i in 0..3 {
        client
            .put(&format!("log{i}.cfg"), &content(700))
            .await
            .unwrap();
    }
    assert_eq!(
        client.get("m.cfg").await.unwrap().as_ref(),
        content(100).as_slice()
    );
}

/// Clients asking for the largest blocks and windows cannot make the server hold more than its
/// memory budget: the window granted shrinks to `max_window_bytes`, and once the transfers that
/// never acknowledge hold the budget, the next is told the server is busy — until one ends.
#[tokio::test]
async fn greedy_windows_are_bounded_by_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.ld"), content(8 << 20)).unwrap();
    let (addr, _) = start(
        dir.path(),
        Config {
            memory_budget: 3 << 20,
            ..Config::default()
        },
    )
    .await;
    let rrq = Packet::Rrq {
        filename: "big.ld".into(),
        mode: "octet".into(),
        options: vec![
            ("blksize".into(), "65464".into()),
            ("windowsize".into(), "65535".into()),
            ("windowsize".into(), "2".into()),
        ],
    }
    .to_bytes();
    let mut buf = vec![0u8; 70_000];
    let mut holding = Vec::new();
    let mut busy = None;
    // Each greedy transfer holds a little over 1 MiB (a 512 KiB read chunk, a 512 KiB window
    // and a receive buffer): two fit in 3 MiB, a third does not.
    for _ in 0..4 {
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(&rrq, addr).await.unwrap();
        let (n, from) = client.recv_from(&mut buf).await.unwrap();
        match Packet::parse(&buf[..n]).unwrap() {
            Packet::Oack { options } => {
                // Granted once, and no more than fits in 512 KiB.
                assert_eq!(
                    options.iter().filter(|(k, _)| k == "windowsize").count(),
                    1,
                    "{options:?}"
                );
                assert!(
                    options.contains(&("windowsize".into(), "8".into())),
                    "{options:?}"
                );
                // ACK 0 starts the window; then never acknowledge, holding the memory.
                client
                    .send_to(&Packet::Ack { block: 0 }.to_bytes(), from)
                    .await
                    .unwrap();
                holding.push((client, from));
            }
            Packet::Error { message, .. } => {
                busy = Some(message);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(holding.len(), 2, "transfers admitted within a 3 MiB budget");
    assert!(busy.unwrap().contains("busy"));
    // An ERROR from one client ends its transfer and gives its memory back.
    let (client, from) = holding.remove(0);
    abort(&client, from).await;
    let mut admitted = false;
    for _ in 0..100 {
        let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(&rrq, addr).await.unwrap();
        let (n, _) = c.recv_from(&mut buf).await.unwrap();
        if matches!(Packet::parse(&buf[..n]), Ok(Packet::Oack { .. })) {
            admitted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(admitted, "the budget was not given back");
}
