//! The phones' HTTP port keeps serving: slow, stuck and greedy clients are cut off, the number of
//! connections is capped (503 past it), and malformed bodies are refused — all against a real
//! server over real sockets. Deadlines below are generous upper bounds, not timing assertions:
//! the server's own timeouts are one or two seconds.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use common::{MAC, TestServer};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any test waits for the server to act; far above the 1–2 s timeouts it is given.
const PATIENCE: Duration = Duration::from_secs(30);

async fn short_timeouts() -> TestServer {
    TestServer::start_with(|s| {
        s.http.header_timeout_secs = 1;
        s.http.body_timeout_secs = 1;
        s.http.send_timeout_secs = 1;
    })
    .await
}

/// Reads until the server closes the connection; returns what it sent. Panics if it never does.
async fn read_until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the server kept the connection open; it sent {:?}",
                String::from_utf8_lossy(&out)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&out).into_owned(),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn idle_partial_and_dripped_headers_are_cut_off() {
    let t = short_timeouts().await;
    // Idle: connects and says nothing.
    let mut idle = TcpStream::connect(t.server.http_addr).await.unwrap();
    // Partial header, then silence.
    let mut partial = TcpStream::connect(t.server.http_addr).await.unwrap();
    partial
        .write_all(b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for s in [&mut idle, &mut partial] {
        read_until_closed(s).await;
    }
    // Dripped: a byte every 200 ms, so no read ever waits long (slowloris).
    let mut drip = TcpStream::connect(t.server.http_addr).await.unwrap();
    let header = b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut = false;
    for b in header {
        if drip.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::ZERO, drip.read(&mut probe)).await {
            cut = true;
            break;
        }
    }
    assert!(cut, "a header dripped over 30 s was accepted");
    // The server still serves.
    assert_eq!(t.get("/000000000000.cfg").await.status(), 200);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let t = short_timeouts().await;
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn partial_dripped_and_endless_bodies_store_nothing() {
    let t = short_timeouts().await;
    let auth = t.basic_token();
    let put = |len: &str| {
        format!(
            "PUT /{MAC}-app.log HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n{len}\r\n"
        )
    };
    // Partial body: 10 of 100 bytes, then silence.
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(put("Content-Length: 100\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(&[b'x'; 10]).await.unwrap();
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Dripped body: a byte every 100 ms of 1,000.
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(put("Content-Length: 1000\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    for _ in 0..1000 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
        {
            answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Endless chunked body: cut at the limit with 413, not read forever.
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(put("Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "y".repeat(64 * 1024));
    let mut answer = String::new();
    for _ in 0..1000 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await
            && n > 0
        {
            answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    if answer.is_empty() {
        answer = read_until_closed(&mut s).await;
    }
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A malformed chunk size is a bad request, not "too large".
    let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
    s.write_all(put("Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(b"zz\r\nhello\r\n0\r\n\r\n").await.unwrap();
    let answer = read_until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    assert!(t.upload_files().is_empty(), "{:?}", t.upload_files());
    t.assert_metric("polyprov_upload_rejects_total{reason=\"body_timeout\"} 2")
        .await;
}

/// A client that asks for a large file and never reads it loses the connection.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let t = short_timeouts().await;
    std::fs::write(t.root().join("sip.ld"), vec![7u8; 32 << 20]).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(t.server.http_addr).await.unwrap();
    s.write_all(b"GET /sip.ld HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read; wait until the server has let the connection go.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = t.metrics().await;
        if metrics.contains("polyprov_connections{door=\"http\"} 0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled connection is still open: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(s);
}

#[tokio::test]
async fn connections_past_the_cap_get_503_and_the_server_recovers() {
    let t = TestServer::start_with(|s| s.http.max_connections = 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
        // A complete request on each, so each is surely accepted and holding its slot.
        s.write_all(b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    for _ in 0..10 {
        let mut s = TcpStream::connect(t.server.http_addr).await.unwrap();
        s.write_all(b"GET /000000000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("Retry-After: 5"), "{answer}");
    }
    t.assert_metric(
        "polyprov_connections_refused_total{door=\"http\",reason=\"over_capacity\"} 10",
    )
    .await;
    t.assert_metric("polyprov_connections{door=\"http\"} 4")
        .await;
    drop(held);
    // Slots come back as connections close.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = reqwest::Client::new()
            .get(t.url("/000000000000.cfg"))
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "slots never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a HEAD for the shared master on `s` and reads its answer's head; `None` if none came
/// within `wait`.
async fn head_answer(s: &mut TcpStream, wait: Duration) -> Option<String> {
    s.write_all(b"HEAD /000000000000.cfg HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed: {:?}", String::from_utf8_lossy(&out)),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// A server with a single turn, kept `keep_turn_ms` by a connection waiting on the network, and
/// a connection that took it (answered once, now idle).
async fn one_turn_taken(keep_turn_ms: u64) -> (TestServer, TcpStream) {
    let t = TestServer::start_with(|s| {
        s.http.served_at_once = 1;
        s.http.keep_turn_ms = keep_turn_ms;
    })
    .await;
    let mut taken = TcpStream::connect(t.server.http_addr).await.unwrap();
    let answer = head_answer(&mut taken, PATIENCE).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    (t, taken)
}

/// `served_at_once` phones are served at once; the next waits (unanswered, in the accept queue)
/// until a turn is free — here, until the phone holding the only turn hangs up. The idle
/// connection keeps its turn because `keep_turn_ms` is far longer than this test.
#[tokio::test]
async fn a_phone_waits_for_a_turn_while_every_turn_is_taken() {
    let (t, first) = one_turn_taken(600_000).await;
    let mut second = TcpStream::connect(t.server.http_addr).await.unwrap();
    // Not a timing assertion: with the turn held, no answer can come at all.
    assert_eq!(
        head_answer(&mut second, Duration::from_millis(500)).await,
        None,
        "answered without a turn"
    );
    drop(first);
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, second.read(&mut buf))
            .await
            .expect("the freed turn never reached the waiting phone")
            .unwrap();
        assert!(n > 0, "closed");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    t.assert_metric("polyprov_turn_waits_total{door=\"http\"} 1")
        .await;
}

/// A connection that waits on the network longer than `keep_turn_ms` gives its turn away: an
/// idle kept-alive connection, and one that stopped halfway through its header, cannot keep
/// other phones out. Each then takes a turn again for its next request.
#[tokio::test]
async fn connections_waiting_on_the_network_give_their_turn_away() {
    let (t, mut idle) = one_turn_taken(50).await;
    let mut partial = TcpStream::connect(t.server.http_addr).await.unwrap();
    partial
        .write_all(b"HEAD /000000000000.cfg HTTP/1.1\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        let mut phone = TcpStream::connect(t.server.http_addr).await.unwrap();
        let answer = head_answer(&mut phone, PATIENCE)
            .await
            .expect("a waiting connection kept its turn");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // The connections that gave their turn away are served when they speak again.
    partial.write_all(b"Host: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(PATIENCE, partial.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let answer = head_answer(&mut idle, PATIENCE).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A connection that never pauses — a load generator, a proxy — goes back in line after a
/// turn's worth of requests, so a phone waiting for the only turn is answered while that
/// connection keeps sending.
#[tokio::test]
async fn a_connection_that_never_pauses_cannot_keep_a_waiting_phone_out() {
    let (t, mut busy) = one_turn_taken(600_000).await;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = tokio::spawn({
        let done = done.clone();
        async move {
            let mut sent = 1u32;
            // Bounded: far more than a turn's worth, and never past the waiting phone's answer.
            while !done.load(std::sync::atomic::Ordering::Relaxed) && sent < 100_000 {
                let answer = head_answer(&mut busy, PATIENCE).await.unwrap();
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
                sent += 1;
            }
            sent
        }
    });
    let mut waiting = TcpStream::connect(t.server.http_addr).await.unwrap();
    let answer = head_answer(&mut waiting, PATIENCE)
        .await
        .expect("a busy connection kept the only turn");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    // The phone keeps the turn while it idles (`keep_turn_ms`): hanging up gives it back to the
    // busy connection, whose request in flight is then answered.
    drop(waiting);
    let sent = hammer.await.unwrap();
    assert!(sent > 1, "the busy connection was not served meanwhile");
    assert!(
        sent < 100_000,
        "the phone got in only once the busy connection stopped"
    );
}
