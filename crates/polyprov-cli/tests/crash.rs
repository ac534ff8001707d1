//! `kill -9` in the middle of releases, three times over the same data directory: after each
//! restart every quarantine set on disk is named by a recorded release, no release is left
//! half-done, and the server serves. (The deterministic half-release cases are in the server's
//! `lifecycle_crash` tests; this is the real crash.)

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;

struct Api {
    http: reqwest::Client,
    admin: String,
    phones: String,
    token: String,
    password: String,
}

impl Api {
    fn new(served: &common::Served, data: &Path) -> Api {
        let read = |f: &str| {
            std::fs::read_to_string(data.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            admin: served.admin.clone(),
            phones: served.phones.clone(),
            token: read("admin.token"),
            password: read("provisioning.password"),
        }
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<Value> {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.admin))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await?.error_for_status()?;
        Ok(r.json().await.unwrap_or(Value::Null))
    }

    /// Assign, upload an override and a directory, release: until the server goes away.
    async fn churn(&self, prefix: u32) {
        for i in 0u32.. {
            let mac = format!("0004f2{prefix:02x}{i:04x}");
            let put = |name: String, body: &'static str| {
                self.http
                    .put(format!("http://{}/{name}", self.phones))
                    .basic_auth("PlcmSpIp", Some(&self.password))
                    .body(body)
                    .send()
            };
            let steps = async {
                self.admin(
                    reqwest::Method::PUT,
                    &format!("/api/v1/devices/{mac}"),
                    Some(serde_json::json!({"admin_password": "pw"})),
                )
                .await?;
                put(format!("{mac}-phone.cfg"), "<PHONE_CONFIG/>").await?;
                put(format!("{mac}-directory.xml"), "<directory/>").await?;
                self.admin(
                    reqwest::Method::POST,
                    &format!("/api/v1/devices/{mac}/release"),
                    Some(serde_json::json!({})),
                )
                .await
            };
            if steps.await.is_err() {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_releases_leaves_whole_releases_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (round, after_ms) in [(1u32, 400u64), (2, 650), (3, 900)] {
        let mut served = common::serve(&data);
        let api = Api::new(&served, &data);
        let churn = async {
            tokio::join!(api.churn(round * 16), api.churn(round * 16 + 1));
        };
        tokio::select! {
            _ = churn => panic!("the churn ended before the crash"),
            _ = tokio::time::sleep(Duration::from_millis(after_ms)) => {}
        }
        served.child.kill().unwrap(); // SIGKILL
        served.child.wait().unwrap();
    }
    let served = common::serve(&data);
    let api = Api::new(&served, &data);
    let devices = api
        .admin(reqwest::Method::GET, "/api/v1/devices", None)
        .await
        .unwrap();
    let devices = devices.as_array().unwrap();
    assert!(devices.len() > 3, "too little happened before the crashes");
    let mut sets = 0;
    for d in devices {
        let mac = d["mac"].as_str().unwrap();
        let history = api
            .admin(
                reqwest::Method::GET,
                &format!("/api/v1/devices/{mac}/history"),
                None,
            )
            .await
            .unwrap();
        let released: Vec<&str> = history
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "release")
            .filter_map(|e| e["detail"].as_str())
            .collect();
        let quarantine = api
            .admin(
                reqwest::Method::GET,
                &format!("/api/v1/devices/{mac}/quarantine"),
                None,
            )
            .await
            .unwrap();
        for set in quarantine.as_array().unwrap() {
            let id = set["id"].as_str().unwrap();
            assert!(
                released.iter().any(|detail| detail.contains(id)),
                "{mac}: quarantine set {id} has no recorded release: {history}"
            );
            sets += 1;
        }
        if d["state"] == "released" {
            assert!(
                !released.is_empty(),
                "{mac}: released with no release recorded"
            );
        }
    }
    assert!(sets > 0, "no release completed");
    // Nothing half-done remains in the database either.
    drop(served);
    let inv = polyprov_store::Inventory::open_sqlite(&data.join("polyprov.db"))
        .await
        .unwrap();
    assert!(inv.release_intents().await.unwrap().is_empty());
}

/// An acknowledged upload: MAC, kind, bytes.
type Acked = (String, &'static str, String);

/// Every upload answered 2xx is there after `kill -9` of the server, whenever it comes: each
/// override version with its bytes, each log line once. Three rounds over the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_acknowledged_upload() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Arc<Mutex<Vec<Acked>>> = Default::default();
    for (round, after_ms) in [(1u32, 300u64), (2, 550), (3, 800)] {
        let mut served = common::serve(&data);
        let api = Api::new(&served, &data);
        let upload = |worker: u32| {
            let (api, acked) = (&api, acked.clone());
            async move {
                for i in 0u32.. {
                    let mac = format!("0004f2{:02x}{:04x}", round * 16 + worker, i % 8);
                    let (name, kind, body) = if i % 2 == 0 {
                        (
                            format!("{mac}-web.cfg"),
                            "web.cfg",
                            format!("<PHONE_CONFIG n=\"{round}-{worker}-{i}\"/>"),
                        )
                    } else {
                        (
                            format!("{mac}-app.log"),
                            "app.log",
                            format!("line {round}-{worker}-{i}\n"),
                        )
                    };
                    let r = api
                        .http
                        .put(format!("http://{}/{name}", api.phones))
                        .basic_auth("PlcmSpIp", Some(&api.password))
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            acked.lock().unwrap().push((mac, kind, body))
                        }
                        _ => return,
                    }
                }
            }
        };
        tokio::select! {
            _ = async { tokio::join!(upload(0), upload(1)) } => panic!("the uploads ended before the crash"),
            _ = tokio::time::sleep(Duration::from_millis(after_ms)) => {}
        }
        served.child.kill().unwrap(); // SIGKILL
        served.child.wait().unwrap();
    }
    let served = common::serve(&data);
    let api = Api::new(&served, &data);
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "too few uploads before the crashes");
    let mut stored: std::collections::HashMap<(String, String), Vec<String>> = Default::default();
    for (mac, kind, body) in &acked {
        let key = (mac.clone(), kind.to_string());
        if !stored.contains_key(&key) {
            let list = api
                .admin(
                    reqwest::Method::GET,
                    &format!("/api/v1/devices/{mac}/uploads"),
                    None,
                )
                .await
                .unwrap();
            let mut bodies = Vec::new();
            for u in list
                .as_array()
                .unwrap()
                .iter()
                .filter(|u| u["kind"] == *kind)
            {
                let url = format!(
                    "{}/api/v1/devices/{mac}/uploads/{kind}/{}",
                    api.admin, u["version"]
                );
                let text = api
                    .http
                    .get(url)
                    .bearer_auth(&api.token)
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                bodies.push(text);
            }
            stored.insert(key.clone(), bodies);
        }
        let bodies = &stored[&key];
        match *kind {
            "web.cfg" => assert!(
                bodies.iter().any(|b| b == body),
                "{mac}: acknowledged override {body:?} lost"
            ),
            _ => assert_eq!(
                bodies
                    .iter()
                    .map(|b| b.matches(body.as_str()).count())
                    .sum::<usize>(),
                1,
                "{mac}: acknowledged log line {body:?} lost or doubled"
            ),
        }
    }
}
