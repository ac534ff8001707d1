//! HTTP/1 itself on the phones' door, byte for byte over real sockets: pipelining, HTTP/1.0,
//! `Expect: 100-continue`, HEAD, 304, and malformed or ambiguous requests refused with the
//! right status and a close — the door keeps serving after each.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any read waits (an upper bound, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);

/// Sends `raw` on a new connection and reads until the server closes it.
async fn exchange(t: &TestServer, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    read_to_close(&mut s).await
}

async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, s.read_to_end(&mut out))
        .await
        .expect("the server kept the connection open")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one response (head and `Content-Length` body) from a kept-alive connection.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let body_start = end + 4;
            if buf.len() >= body_start + len {
                let body = buf[body_start..body_start + len].to_vec();
                buf.drain(..body_start + len);
                return (head, body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, s.read(&mut chunk))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            n > 0,
            "closed early; had {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let t = TestServer::start().await;
    std::fs::write(t.root().join("a.cfg"), "<a/>").unwrap();
    std::fs::write(t.root().join("b.cfg"), "<bb/>").unwrap();
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(
        b"GET /a.cfg HTTP/1.1\r\nHost: x\r\n\r\nGET /missing.cfg HTTP/1.1\r\nHost: x\r\n\r\nGET /b.cfg HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (h1, b1) = read_response(&mut s, &mut buf).await;
    let (h2, _) = read_response(&mut s, &mut buf).await;
    let (h3, b3) = read_response(&mut s, &mut buf).await;
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    assert_eq!(b1, b"<a/>");
    assert!(h2.starts_with("HTTP/1.1 404"), "{h2}");
    assert!(h3.starts_with("HTTP/1.1 200"), "{h3}");
    assert_eq!(b3, b"<bb/>");
    assert!(h1.to_ascii_lowercase().contains("\r\ndate: "), "{h1}");
}

#[tokio::test]
async fn http10_closes_unless_asked_to_keep_alive() {
    let t = TestServer::start().await;
    let answer = exchange(&t, b"GET /000000000000.cfg HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");

    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(b"GET /000000000000.cfg HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.contains("connection: keep-alive"), "{head}");
    // Still open: a second request on it is answered.
    s.write_all(b"HEAD /000000000000.cfg HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let rest = read_to_close(&mut s).await;
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
}

#[tokio::test]
async fn head_has_the_length_and_no_body_and_304_has_neither() {
    let t = TestServer::start().await;
    std::fs::write(t.root().join("site.cfg"), "<polycomConfig/>").unwrap();
    let answer = exchange(&t, b"HEAD /site.cfg HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("content-length: 16\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "a body was sent: {answer:?}");
    let etag = answer
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_string();
    let answer = exchange(
        &t,
        format!("GET /site.cfg HTTP/1.1\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 304"), "{answer}");
    assert!(!answer.contains("content-length"), "{answer}");
    assert!(answer.ends_with("\r\n\r\n"), "{answer:?}");

    // A refused HEAD has no body either: the next answer on the connection starts clean.
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(
        b"HEAD /missing.cfg HTTP/1.1\r\n\r\nGET /site.cfg HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let both = read_to_close(&mut s).await;
    let (first, second) = both.split_once("\r\n\r\n").unwrap();
    assert!(first.starts_with("HTTP/1.1 404"), "{both}");
    assert!(second.starts_with("HTTP/1.1 200"), "{both}");
    assert!(second.ends_with("<polycomConfig/>"), "{both}");
}

#[tokio::test]
async fn expect_continue_uploads_get_100_first_and_refusals_get_no_100() {
    let t = TestServer::start().await;
    let auth = t.basic_token();
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(
        format!("PUT /{MAC}-app.log HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (interim, _) = read_response(&mut s, &mut buf).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    s.write_all(b"hello").await.unwrap();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");

    // No credentials: the final answer at once, never a 100, and the body is not waited for.
    let answer = exchange(
        &t,
        format!("PUT /{MAC}-app.log HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
}

#[tokio::test]
async fn malformed_and_ambiguous_requests_are_refused_and_the_door_keeps_serving() {
    let t = TestServer::start().await;
    let auth = t.basic_token();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GARBAGE\r\n\r\n".to_vec(), "400"),
        (b"GET /a\x01b HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (b"GET /000000000000.cfg HTTP/2.0\r\n\r\n".to_vec(), "505"),
        (b"GET * HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            format!("PUT /{MAC}-app.log HTTP/1.1\r\nAuthorization: Basic {auth}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into_bytes(),
            "400",
        ),
        (
            format!("PUT /{MAC}-app.log HTTP/1.1\r\nAuthorization: Basic {auth}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd").into_bytes(),
            "400",
        ),
        (
            format!("PUT /{MAC}-app.log HTTP/1.1\r\nAuthorization: Basic {auth}\r\nTransfer-Encoding: gzip\r\n\r\n").into_bytes(),
            "501",
        ),
        (
            [b"GET / HTTP/1.1\r\nX-Pad: ".as_slice(), &vec![b'a'; 70 * 1024]].concat(),
            "431",
        ),
        (b"DELETE /000000000000.cfg HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(), "405"),
    ];
    for (raw, status) in cases {
        let answer = exchange(&t, &raw).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{:?} got {answer}",
            String::from_utf8_lossy(&raw[..raw.len().min(80)])
        );
    }
    // Nothing was stored by any of them, and the door still serves.
    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
    assert_eq!(t.get("/000000000000.cfg").await.status(), 200);
    t.assert_metric("polyprov_requests_total{door=\"http\",kind=\"malformed\",status=\"400\"} 5")
        .await;
}

#[tokio::test]
async fn a_chunked_upload_is_stored_whole() {
    let t = TestServer::start().await;
    let auth = t.basic_token();
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(
        format!("PUT /{MAC}-app.log HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5;x=y\r\nworld\r\n0\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let (head, _) = read_response(&mut s, &mut buf).await;
    assert!(head.starts_with("HTTP/1.1 204"), "{head}");
    let files = t.upload_files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(std::fs::read(&files[0]).unwrap(), b"hello world");
}

/// Credentials proven once on a kept-alive connection prove the same again for the very same
/// header, and for no other: a wrong password of the same length is still refused after them.
#[tokio::test]
async fn a_connection_remembers_only_the_exact_credentials_it_proved() {
    use base64::Engine;
    let t = TestServer::start().await;
    std::fs::write(t.root().join("000000000000.cfg"), "<m/>").unwrap();
    let (user, pw) = t.server.provisioning_login.clone().unwrap();
    let wrong: String = pw
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    assert_eq!(wrong.len(), pw.len());
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{wrong}"));
    let right = t.basic_token();
    let get = |token: &str| {
        format!("GET /{MAC}-phone.cfg HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n")
    };
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    let mut buf = Vec::new();
    for (token, status) in [
        (&right, "404"),
        (&right, "404"),
        (&wrong, "401"),
        (&right, "404"),
        (&wrong, "401"),
    ] {
        s.write_all(get(token).as_bytes()).await.unwrap();
        let (head, _) = read_response(&mut s, &mut buf).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {status}")), "{head}");
    }
}
