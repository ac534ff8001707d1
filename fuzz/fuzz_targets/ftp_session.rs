//! Any bytes on an FTP control connection to a live FTP door (loopback): the door answers or
//! hangs up, and a fresh connection is still greeted with 220 — no input stops the door.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Door {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    // Kept for the whole run (reachable, so the leak checker does not count them).
    _server: std::sync::Mutex<polyprov_server::RunningServer>,
    _dir: tempfile::TempDir,
}

fn door() -> &'static Door {
    static DOOR: OnceLock<Door> = OnceLock::new();
    DOOR.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = polyprov_server::Settings {
            data: dir.path().join("data"),
            ..Default::default()
        };
        s.http.listen = "127.0.0.1:0".parse().expect("addr");
        s.admin.listen = "127.0.0.1:0".parse().expect("addr");
        s.ftp.listen = Some("127.0.0.1:0".parse().expect("addr"));
        s.ftp.idle_timeout_secs = 5;
        let server = rt.block_on(polyprov_server::start(s)).expect("server");
        let addr = server.ftp_addr.expect("ftp");
        Door {
            rt,
            addr,
            _server: std::sync::Mutex::new(server),
            _dir: dir,
        }
    })
}

async fn greeting(addr: SocketAddr) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a greeting within 5 s")
        .unwrap_or(0);
    buf[..n].to_vec()
}

fuzz_target!(|data: &[u8]| {
    let d = door();
    d.rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(d.addr).await.expect("connect");
        let _ = s.write_all(data).await;
        let _ = s.write_all(b"\r\nQUIT\r\n").await;
        let mut sink = vec![0u8; 64 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(s);
        assert!(greeting(d.addr).await.starts_with(b"220"), "the door stopped answering");
    });
});
