//! The server under a low open-file limit (`ulimit -n 256`) and a thousand connections: it
//! stops accepting before the descriptors run out, answers what it cannot serve with 503, and
//! never tells a phone that a file it has is missing (a phone told 404 boots without it).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn status_of(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn out_of_descriptors_is_503_never_404() {
    let dir = tempfile::tempdir().unwrap();
    let served = common::serve_with_open_files(&dir.path().join("data"), Some(256));
    let addr = served.phones.clone();
    assert_eq!(status_of(&addr, "/000000000000.cfg"), Some(200));
    // A thousand connections that say nothing (well past 256 descriptors).
    let mut held = Vec::new();
    for _ in 0..1000 {
        match TcpStream::connect(&addr) {
            Ok(s) => held.push(s),
            Err(_) => break,
        }
    }
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let status = status_of(&addr, "/000000000000.cfg");
        *answers.entry(status).or_insert(0) += 1;
    }
    assert!(
        !answers.contains_key(&Some(404)),
        "a file that exists was reported missing: {answers:?}"
    );
    assert!(
        answers.keys().all(|s| matches!(s, Some(200 | 503))),
        "{answers:?}"
    );
    drop(held);
    // Once the idle connections are gone, it serves again.
    let mut ok = false;
    for _ in 0..200 {
        if status_of(&addr, "/000000000000.cfg") == Some(200) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the server did not recover");
}
