//! `polyprov guide` and `polyprov keys`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polyprov");

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn guide_for_a_vvx_with_its_mac() {
    let (code, out, _) = run(&[
        "guide",
        "vvx 410",
        "--firmware",
        "5.9.7.4477",
        "--mac",
        "00-04-F2-AA-81-4C",
    ]);
    assert_eq!(code, Some(0));
    assert!(
        out.starts_with("VVX 410 (VVX410), software 5.9.7.4477"),
        "{out}"
    );
    assert!(
        out.contains(
            "  2. When \"Starting application\" appears, press Cancel to get the countdown."
        ),
        "{out}"
    );
    assert!(
        out.contains("  f          press the mode key once, then press '3' 3 times quickly"),
        "{out}"
    );
}

#[test]
fn guide_json_carries_confidence_and_keystrokes() {
    let (code, out, _) = run(&[
        "guide",
        "FileTransport PolycomSoundPointIP-SPIP_650-UA/3.2.7.0198 Type/Application",
        "--firmware",
        "3.2.7",
        "--mac",
        "0004f2aa814c",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["model"], "SPIP650");
    let menu = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "Factory reset from the menu")
        .unwrap();
    assert_eq!(menu["available"], false);
    let keys = v["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["title"] == "Factory reset with the keys")
        .unwrap();
    assert_eq!(keys["confidence"], "vendor-quoted");
    assert_eq!(
        v["keystrokes"][4],
        serde_json::json!({"char": "f", "action": "mode", "key": "mode", "count": 1})
    );
}

#[test]
fn unknown_models_get_the_closest_matches() {
    let (code, _, err) = run(&["guide", "VVX 420"]);
    assert_eq!(code, Some(3));
    assert!(err.contains("closest:") && err.contains("VVX410"), "{err}");
}

#[test]
fn the_list_names_every_model_with_a_confidence() {
    let (code, out, _) = run(&["guide", "--list", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let models = v.as_array().unwrap();
    assert!(models.len() >= 60);
    assert!(
        models
            .iter()
            .all(|m| m["reset_confidence"].is_string() && m["reboot_confidence"].is_string())
    );
}

#[test]
fn keys_json_is_the_seed_table() {
    let (code, out, _) = run(&["keys", "00-04-F2-AA-81-4C", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let compact: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{}:{}:{}",
                s["char"].as_str().unwrap(),
                s["action"].as_str().unwrap(),
                s["key"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        compact.join(" "),
        "0:press:0 0:press:0 0:press:0 4:press:4 f:mode:mode f:press:3 2:mode:mode 2:press:2 a:mode:mode a:press:2 a:wait:- a:press:2 8:mode:mode 8:press:8 1:press:1 4:press:4 c:mode:mode c:press:2"
    );
    let (code, _, _) = run(&["keys", "not-a-mac"]);
    assert_eq!(code, Some(2));
}
