//! NOTIFY over real loopback sockets: the client against the phone's end, over UDP and TCP,
//! with and without a Digest challenge; lost datagrams, a silent phone, strangers' answers.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use polyprov_sip::phone::{Listener, Validation};
use polyprov_sip::{Credentials, NotifyRequest, Outcome, Timers, Transport};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

fn request(target: SocketAddr, transport: Transport) -> NotifyRequest {
    NotifyRequest {
        target,
        transport,
        user: "1001".into(),
        event: "check-sync".into(),
        credentials: Some(Credentials {
            user: "1001".into(),
            password: "secret".into(),
        }),
        // Short timers keep the silent-phone case quick; the logic is the same.
        timers: Timers {
            t1: Duration::from_millis(40),
            t2: Duration::from_millis(320),
        },
        tls: None,
    }
}

fn digest() -> Validation {
    Validation::Digest {
        realm: "PolycomSPIP".into(),
        user: "1001".into(),
        password: "secret".into(),
    }
}

async fn udp_phone(
    validation: Validation,
) -> (SocketAddr, mpsc::Receiver<polyprov_sip::phone::Notified>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(Listener::new(move || validation.clone(), tx).serve_udp(socket));
    (addr, rx)
}

#[tokio::test]
async fn a_phone_without_validation_takes_the_notify() {
    let (addr, mut acted) = udp_phone(Validation::None).await;
    let report = polyprov_sip::notify::send(&request(addr, Transport::Udp)).await;
    assert_eq!(
        report.outcome,
        Outcome::Accepted {
            code: 200,
            reason: "OK".into()
        }
    );
    assert!(!report.challenged);
    assert_eq!(acted.recv().await.unwrap().event, "check-sync");
}

#[tokio::test]
async fn a_challenge_is_answered_with_the_line_credentials() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let (tx, mut acted) = mpsc::channel(8);
        let addr = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                let a = s.local_addr().unwrap();
                tokio::spawn(Listener::new(digest, tx).serve_udp(s));
                a
            }
            Transport::Tcp | Transport::Tls => {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let a = l.local_addr().unwrap();
                tokio::spawn(Listener::new(digest, tx).serve_tcp(l));
                a
            }
        };
        let report = polyprov_sip::notify::send(&request(addr, transport)).await;
        assert!(report.outcome.accepted(), "{transport}: {report:?}");
        assert!(report.challenged);
        assert_eq!(report.transmissions, 2, "{transport}");
        assert!(acted.recv().await.unwrap().authenticated);

        let mut wrong = request(addr, transport);
        wrong.credentials = Some(Credentials {
            user: "1001".into(),
            password: "guess".into(),
        });
        let report = polyprov_sip::notify::send(&wrong).await;
        assert!(
            matches!(report.outcome, Outcome::Unauthorized { code: 401, .. }),
            "{transport}: {report:?}"
        );
        let mut none = request(addr, transport);
        none.credentials = None;
        let report = polyprov_sip::notify::send(&none).await;
        assert!(matches!(report.outcome, Outcome::Unauthorized { .. }));
        assert!(
            acted.try_recv().is_err(),
            "refused NOTIFYs are not acted on"
        );
    }
}

#[tokio::test]
async fn a_silent_phone_times_out_after_timer_f_with_retransmissions() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let req = request(silent.local_addr().unwrap(), Transport::Udp);
    let report = polyprov_sip::notify::send(&req).await;
    assert_eq!(report.outcome, Outcome::TimedOut);
    // T1 = 40 ms, T2 = 320 ms, F = 2.56 s: sent at 0, 40, 120, 280, 600, 920, … ms.
    assert!(report.transmissions >= 5, "{report:?}");
    let mut got = 0;
    let mut buf = [0u8; 2048];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(10), silent.recv_from(&mut buf)).await
    {
        got += 1;
    }
    assert_eq!(
        got, report.transmissions,
        "each transmission reached the phone"
    );
}

#[tokio::test]
async fn lost_datagrams_are_sent_again_and_strangers_answers_change_nothing() {
    // A phone that drops the first request, then has a stranger answer 200 for it, then
    // sends garbage and an answer for another transaction, then answers for real.
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = phone.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        let (_, _) = phone.recv_from(&mut buf).await.unwrap();
        let (n, from) = phone.recv_from(&mut buf).await.unwrap();
        let req = polyprov_sip::Message::parse(&buf[..n]).unwrap();
        let ok = polyprov_sip::Message::response_to(&req, 200, "OK", "x").to_bytes();
        stranger.send_to(&ok, from).await.unwrap();
        phone
            .send_to(b"SIP/2.0 200 garbage without headers", from)
            .await
            .unwrap();
        let mut other = polyprov_sip::Message::response_to(&req, 200, "OK", "x");
        for (name, value) in other.headers.iter_mut() {
            if name.eq_ignore_ascii_case("via") {
                *value = "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKother".into();
            }
        }
        phone.send_to(&other.to_bytes(), from).await.unwrap();
        let busy = polyprov_sip::Message::response_to(&req, 486, "Busy Here", "x").to_bytes();
        phone.send_to(&busy, from).await.unwrap();
    });
    let mut req = request(addr, Transport::Udp);
    req.credentials = None;
    let report = polyprov_sip::notify::send(&req).await;
    task.await.unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Rejected {
            code: 486,
            reason: "Busy Here".into()
        }
    );
    assert!(report.transmissions >= 2);
    assert_eq!(report.ignored.len(), 3, "{:?}", report.ignored);
}

#[tokio::test]
async fn a_closed_port_over_tcp_is_unreachable() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let report = polyprov_sip::notify::send(&request(addr, Transport::Tcp)).await;
    assert!(
        matches!(report.outcome, Outcome::Unreachable { .. }),
        "{report:?}"
    );
}

#[tokio::test]
async fn over_tls_the_phone_is_taken_only_with_a_certificate_the_client_trusts() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut acted) = mpsc::channel(8);
    tokio::spawn(Listener::new(digest, tx).serve_tls(l, std::sync::Arc::new(server)));
    let client = |roots: rustls::RootCertStore| {
        std::sync::Arc::new(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    };
    let mut trusted = rustls::RootCertStore::empty();
    trusted.add(der).unwrap();
    let mut req = request(addr, Transport::Tls);
    req.tls = Some(client(trusted));
    let report = polyprov_sip::notify::send(&req).await;
    assert!(report.outcome.accepted(), "{report:?}");
    assert!(report.challenged);
    assert!(acted.recv().await.unwrap().authenticated);

    req.tls = Some(client(rustls::RootCertStore::empty()));
    let report = polyprov_sip::notify::send(&req).await;
    assert!(
        matches!(report.outcome, Outcome::Unreachable { .. }),
        "{report:?}"
    );
    assert!(
        acted.try_recv().is_err(),
        "nothing sent to a phone that is not trusted"
    );
}
