//! The TFTP door on the same core as HTTP, driven by tftp-hpa.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer};
use std::process::Command;

fn tftp(port: u16, args: &[&str]) -> std::process::Output {
    Command::new("tftp")
        .args(["-m", "binary", "127.0.0.1", &port.to_string(), "-c"])
        .args(args)
        .output()
        .expect("tftp-hpa must be installed (.ci/run installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_reads_and_writes_the_same_files_as_http() {
    let t = TestServer::start_with(|s| {
        s.tftp.listen = Some("127.0.0.1:0".parse().unwrap());
        s.provisioning.auth = polyprov_server::ProvisioningAuth::None;
    })
    .await;
    let port = t.server.tftp_addr.unwrap().port();
    let dir = t.dir.path().to_path_buf();
    std::fs::write(t.root().join("sip.ld"), vec![7u8; 100_000]).unwrap();

    let got = tokio::task::spawn_blocking(move || {
        let out = dir.join("master.cfg");
        let o = tftp(port, &["get", &format!("{MAC}.cfg"), out.to_str().unwrap()]);
        assert!(o.status.success(), "{o:?}");
        let master = std::fs::read_to_string(&out).unwrap();
        let fw = dir.join("fw");
        let o = tftp(
            port,
            &["get", "3111-44500-001.sip.ld", fw.to_str().unwrap()],
        );
        assert!(o.status.success(), "{o:?}");
        let up = dir.join("web.cfg");
        std::fs::write(&up, "<PHONE_CONFIG><OVERRIDES a.b=\"1\"/></PHONE_CONFIG>").unwrap();
        let o = tftp(
            port,
            &["put", up.to_str().unwrap(), &format!("{MAC}-web.cfg")],
        );
        assert!(o.status.success(), "{o:?}");
        let bad = dir.join("bad.cfg");
        std::fs::write(&bad, "<broken").unwrap();
        let o = tftp(
            port,
            &["put", bad.to_str().unwrap(), &format!("{MAC}-phone.cfg")],
        );
        let refused =
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
        (master, std::fs::read(&fw).unwrap().len(), refused)
    })
    .await
    .unwrap();
    assert!(got.0.contains("<APPLICATION"));
    assert_eq!(got.1, 100_000, "part-number fallback over TFTP");
    assert!(got.2.contains("not well-formed"), "{}", got.2);
    // Uploaded over TFTP, read over HTTP: one core, one file tree.
    let web = t
        .anonymous(reqwest::Method::GET, &format!("/{MAC}-web.cfg"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(web.contains("a.b=\"1\""));
    let files = t.upload_files();
    assert_eq!(
        files.len(),
        1,
        "the malformed upload wrote nothing: {files:?}"
    );
    t.assert_metric("door=\"tftp\",kind=\"master\",status=\"200\"")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_provisioning_auth_per_device_files_are_not_reachable_over_tftp() {
    let t = TestServer::start_with(|s| s.tftp.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let port = t.server.tftp_addr.unwrap().port();
    t.put(&format!("/{MAC}-web.cfg"), "<a/>").await;
    let dir = t.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        let o = tftp(
            port,
            &[
                "get",
                &format!("{MAC}-web.cfg"),
                dir.join("x").to_str().unwrap(),
            ],
        );
        String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
    })
    .await
    .unwrap();
    assert!(out.contains("need credentials"), "{out}");
}

#[tokio::test]
async fn an_upload_aborted_midway_stores_nothing_and_frees_its_slot() {
    use polyprov_tftp::packet::Packet;
    let t = TestServer::start_with(|s| {
        s.tftp.listen = Some("127.0.0.1:0".parse().unwrap());
        s.tftp.max_transfers = 1;
        s.provisioning.auth = polyprov_server::ProvisioningAuth::None;
    })
    .await;
    let addr = t.server.tftp_addr.unwrap();
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 2048];
    let wrq = Packet::Wrq {
        filename: format!("{MAC}-web.cfg"),
        mode: "octet".into(),
        options: vec![],
    };
    client.send_to(&wrq.to_bytes(), addr).await.unwrap();
    let (n, tid) = client.recv_from(&mut buf).await.unwrap();
    assert_eq!(Packet::parse(&buf[..n]), Ok(Packet::Ack { block: 0 }));
    let block = Packet::Data {
        block: 1,
        data: bytes::Bytes::from(vec![b'x'; 512]),
    };
    client.send_to(&block.to_bytes(), tid).await.unwrap();
    let (n, _) = client.recv_from(&mut buf).await.unwrap();
    assert_eq!(Packet::parse(&buf[..n]), Ok(Packet::Ack { block: 1 }));
    // The phone gives up.
    let abort = Packet::Error {
        code: polyprov_tftp::ErrorCode::NotDefined,
        message: "cancelled".into(),
    };
    client.send_to(&abort.to_bytes(), tid).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
    // The only slot is free again.
    let rrq = Packet::Rrq {
        filename: "000000000000.cfg".into(),
        mode: "octet".into(),
        options: vec![],
    };
    client.send_to(&rrq.to_bytes(), addr).await.unwrap();
    let (n, _) = client.recv_from(&mut buf).await.unwrap();
    assert!(matches!(
        Packet::parse(&buf[..n]),
        Ok(Packet::Data { block: 1, .. })
    ));
}
