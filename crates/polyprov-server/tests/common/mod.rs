//! A real server on ephemeral loopback ports, and a real HTTP client.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.
#![allow(dead_code)]

use polyprov_server::{RunningServer, Settings};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const MAC: &str = "0004f2aa814c";
pub const UA: &str = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application";

pub struct TestServer {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = polyprov_server::Settings::loopback(dir.path().join("data"));
        s.inventory.flush_interval_ms = 20;
        tweak(&mut s);
        let server = polyprov_server::start(s).await.unwrap();
        let http = reqwest::Client::builder().user_agent(UA).build().unwrap();
        TestServer { server, dir, http }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn root(&self) -> PathBuf {
        self.data().join("root")
    }

    /// A URL on the phone door.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.http_addr)
    }

    /// The provisioning credentials as a Basic token, for requests written byte by byte.
    pub fn basic_token(&self) -> String {
        use base64::Engine;
        let (user, pw) = self.server.provisioning_login.clone().unwrap();
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
    }

    /// A request from a phone that presents the provisioning credentials.
    pub fn phone(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let (user, pw) = self.server.provisioning_login.clone().unwrap();
        self.http
            .request(method, self.url(path))
            .basic_auth(user, Some(pw))
    }

    /// A phone request with the provisioning credentials and `headers` (values as raw bytes:
    /// a test may send what no well-behaved client would).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        with_headers(self.phone(method, path), headers)
            .send()
            .await
            .unwrap()
    }

    /// A request without credentials, as a stranger (or a phone not yet told them) sends it.
    pub async fn anonymous(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        with_headers(self.http.request(method, self.url(path)), headers)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.phone(reqwest::Method::GET, path).send().await.unwrap()
    }

    pub async fn put(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.phone(reqwest::Method::PUT, path)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A request to the admin API with the admin token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("http://{}{path}", self.server.admin_addr))
            .bearer_auth(&self.server.admin_token)
    }

    pub async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.admin(method, path);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// The Prometheus text from `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.server.admin_addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Fails, showing every metric, unless `/metrics` has `line` (a series and its value).
    pub async fn assert_metric(&self, line: &str) {
        let metrics = self.metrics().await;
        assert!(metrics.contains(line), "no {line:?} in:\n{metrics}");
    }

    /// Like [`TestServer::assert_metric`], for what the server counts after the client has
    /// gone (a handshake it refused): waits for it, at most ten seconds.
    pub async fn await_metric(&self, line: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if self.metrics().await.contains(line) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.assert_metric(line).await;
    }

    /// Every file under the data directory's uploads, for "nothing was written" checks (not
    /// the store's own dot-files, such as `.layout`).
    pub fn upload_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.data().join("uploads")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}

fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap();
        request = request.header(*name, value);
    }
    request
}

/// Every attribute of every element of an XML document, by name (a polycomConfig's parameters,
/// or a master's attributes). Panics on malformed XML or a name set twice.
pub fn attributes(xml: &str) -> BTreeMap<String, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = BTreeMap::new();
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                for a in e.attributes() {
                    let a = a.unwrap();
                    let key = a.key.as_ref().to_string();
                    if key.contains(':') {
                        continue; // xmlns:xsi, xsi:noNamespaceSchemaLocation
                    }
                    let value = a
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .to_string();
                    assert!(out.insert(key.clone(), value).is_none(), "{key} twice");
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// A test CA and a `localhost`/`127.0.0.1` server certificate it signed, written as PEM files
/// in `dir`: (CA, certificate chain, key).
pub fn test_pki(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "polyprov test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

/// A test CA kept in memory, issuing server and device certificates as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(dir: &std::path::Path, name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        let ca_pem = dir.join(format!("{name}.pem"));
        std::fs::write(&ca_pem, ca.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca,
        }
    }

    /// A certificate with subject CN `cn` and DNS names `names`, written as `<file>.pem` and
    /// `<file>-key.pem`: (certificate, key).
    pub fn issue(&self, file: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.ca).unwrap();
        let paths = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}-key.pem")),
        );
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    }
}
