//! The core's fetch and upload paths without sockets: a started server's `Core`, driven with
//! `Request`s as a door would (each iteration a `block_on` on a current-thread runtime, which
//! adds about a microsecond). `cargo bench -p polyprov-server --bench core`. Allocations per
//! request are counted too (divan's `AllocProfiler`): unlike times, they do not move with the
//! machine's load.

#![allow(clippy::unwrap_used)] // Benchmarks: a panic is the failure report.

use bytes::Bytes;
use polyprov_server::core::{Credential, Door, Request};
use std::net::IpAddr;
use std::sync::OnceLock;

const UA: &str = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application";

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

struct Bench {
    rt: tokio::runtime::Runtime,
    server: polyprov_server::RunningServer,
    _dir: tempfile::TempDir,
}

/// A server with 1,000 assigned devices, started once for every benchmark.
fn bench() -> &'static Bench {
    static B: OnceLock<Bench> = OnceLock::new();
    B.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut s = polyprov_server::Settings::loopback(dir.path().join("data"));
        s.provisioning.new_devices_per_minute = usize::MAX;
        let server = rt.block_on(polyprov_server::start(s)).unwrap();
        let items: Vec<_> = (0..1000u32)
            .map(|i| {
                let a = polyprov_store::Assignment {
                    admin_password: Some(format!("pw{i}")),
                    ..Default::default()
                };
                (format!("0004f2{i:06x}").parse().unwrap(), a)
            })
            .collect();
        rt.block_on(server.core.assign_many(&items, "bench"))
            .unwrap();
        Bench {
            rt,
            server,
            _dir: dir,
        }
    })
}

fn fetch(path: &str) {
    let b = bench();
    let req = Request {
        door: Door::Http,
        path,
        user_agent: Some(UA),
        user_agent_memo: None,
        peer: IpAddr::from([127, 0, 0, 1]),
        credential: Credential::Valid,
    };
    divan::black_box(b.rt.block_on(b.server.core.fetch(&req)).unwrap());
}

#[divan::bench]
fn shared_master() {
    fetch("/000000000000.cfg");
}

#[divan::bench]
fn generated_master() {
    fetch("/0004f2000007.cfg");
}

#[divan::bench]
fn device_file() {
    fetch("/0004f2000007-polyprov.cfg");
}

/// A file the phone asks for that is not there: most of a boot's requests (10 of 16 in
/// `bench/storm.sh`), so the 404 path is as hot as any.
fn missing(path: &str) {
    let b = bench();
    let req = Request {
        door: Door::Http,
        path,
        user_agent: Some(UA),
        user_agent_memo: None,
        peer: IpAddr::from([127, 0, 0, 1]),
        credential: Credential::Valid,
    };
    divan::black_box(b.rt.block_on(b.server.core.fetch(&req)).err().unwrap());
}

#[divan::bench]
fn missing_override() {
    missing("/0004f2000007-web.cfg");
}

#[divan::bench]
fn missing_device_licence() {
    missing("/0004f2000007-license.cfg");
}

#[divan::bench]
fn missing_shared_directory() {
    missing("/000000000000-directory.xml");
}

#[divan::bench]
fn missing_model_firmware() {
    missing("/3111-44500-001.sip.ld");
}

#[divan::bench]
fn log_upload() {
    let b = bench();
    let req = Request {
        door: Door::Http,
        path: "/0004f2000009-app.log",
        user_agent: Some(UA),
        user_agent_memo: None,
        peer: IpAddr::from([127, 0, 0, 1]),
        credential: Credential::Valid,
    };
    let body = Bytes::from_static(b"0130090000|app1  |0|00|application started\n");
    divan::black_box(b.rt.block_on(b.server.core.upload(&req, body)).unwrap());
}
