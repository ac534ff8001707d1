//! A real S3-compatible server for tests: `s3s-fs` (built from the Rust registry; `.ci/run`
//! installs it), serving a temporary folder on a loopback port, stopped when dropped.
//! Shared by this crate's tests and the server's (`#[path]`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "polyprov-test";
pub const SECRET_KEY: &str = "polyprov-test-secret";

pub struct S3 {
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

fn binary() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v s3s-fs"])
        .output()
        && out.status.success()
    {
        return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("no HOME");
    let p = home.join("bin/s3s-fs");
    assert!(
        p.exists(),
        "s3s-fs was not found: cargo install s3s-fs@0.14.1 --features binary --locked (.ci/run does)"
    );
    p
}

impl S3 {
    /// A server holding one empty bucket, `bucket`.
    pub fn start(bucket: &str) -> S3 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(bucket)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = spawn(&dir, port);
        S3 { dir, port, child }
    }

    /// Starts the stopped server again, on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn(&self.dir, self.port);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A client for `bucket` with the server's keys.
    pub fn client(&self, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
        std::sync::Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(self.endpoint())
                .with_allow_http(true)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .build()
                .unwrap(),
        )
    }

    /// Stops the server (to see what the mirror does when the store is unreachable).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &tempfile::TempDir, port: u16) -> Child {
    let child = Command::new(binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.stop();
    }
}
