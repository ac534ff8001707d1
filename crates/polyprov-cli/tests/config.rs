//! `polyprov config check` and `config explain` on files on disk.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_polyprov");

fn root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let w = |n: &str, t: &str| std::fs::write(d.path().join(n), t).unwrap();
    w(
        "000000000000.cfg",
        r#"<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="site.cfg, features.cfg"><APPLICATION_VVX500 CONFIG_FILES_VVX500="vvx500.cfg, site.cfg"/></APPLICATION>"#,
    );
    w(
        "site.cfg",
        r#"<polycomConfig><device device.set="1" device.auth.localAdminPassword="P1" device.auth.localAdminPassword.set="1"/><reg reg.1.label="site"/></polycomConfig>"#,
    );
    w(
        "features.cfg",
        r#"<polycomConfig><reg reg.1.label="features"/></polycomConfig>"#,
    );
    w(
        "vvx500.cfg",
        r#"<polycomConfig><reg reg.1.label="vvx500"/></polycomConfig>"#,
    );
    w(
        "0004f2aa814c-web.cfg",
        r#"<PHONE_CONFIG><OVERRIDES device.auth.localAdminPassword="P2"/></PHONE_CONFIG>"#,
    );
    d
}

#[test]
fn check_reports_a_shared_password_and_fails() {
    let d = root();
    let o = Command::new(BIN)
        .args(["config", "check", "--json"])
        .arg(d.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"secret-in-shared-file"), "{v}");
    assert!(codes.contains(&"overridden-parameter"), "{v}");
    let secret = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "secret-in-shared-file")
        .unwrap();
    assert_eq!(
        (
            secret["line"].as_u64(),
            secret["file"].as_str().map(|f| f.ends_with("/site.cfg"))
        ),
        (Some(1), Some(true))
    );
}

#[test]
fn check_passes_a_clean_root_and_flags_broken_xml() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("000000000000.cfg"),
        r#"<APPLICATION CONFIG_FILES="a.cfg"/>"#,
    )
    .unwrap();
    std::fs::write(
        d.path().join("a.cfg"),
        r#"<polycomConfig><reg reg.1.label="x"/></polycomConfig>"#,
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["config", "check"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    std::fs::write(
        d.path().join("a.cfg"),
        "<polycomConfig>\n  <reg reg.1.label=\"x\">\n</polycomConfig>",
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["config", "check"])
        .arg(d.path().join("a.cfg"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("a.cfg:3:") && out.contains("error[malformed-xml]"),
        "{out}"
    );
    let o = Command::new(BIN)
        .args(["config", "check", "/nonexistent/x.cfg"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn explain_follows_the_model_list_and_the_web_override() {
    let d = root();
    let o = Command::new(BIN)
        .args([
            "config",
            "explain",
            "--json",
            "--mac",
            "00:04:f2:aa:81:4c",
            "--model",
            "VVX_500",
            "--root",
        ])
        .arg(d.path())
        .arg("--override")
        .arg(d.path().join("0004f2aa814c-web.cfg"))
        .args(["reg.1.label", "device.auth.localAdminPassword"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["config_files"],
        serde_json::json!(["vvx500.cfg", "site.cfg"])
    );
    assert_eq!(v["params"][0]["value"], "vvx500");
    assert_eq!(v["params"][0]["chain"][1]["verdict"], "shadowed");
    assert_eq!(v["params"][1]["value"], "P2");
    let chain: Vec<(&str, &str)> = v["params"][1]["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["source"].as_str().unwrap(),
                c["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            ("web override (web UI)", "wins"),
            ("CONFIG_FILES #2", "shadowed"),
            ("built-in default", "shadowed")
        ]
    );

    // Without the override, the server's P1; another model reads the generic list.
    let o = Command::new(BIN)
        .args([
            "config",
            "explain",
            "--mac",
            "0004f2aa814c",
            "--model",
            "VVX400",
            "--root",
        ])
        .arg(d.path())
        .args(["reg.1.label", "device.auth.localAdminPassword"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("reg.1.label = \"site\"")
            && text.contains("device.auth.localAdminPassword = \"P1\""),
        "{text}"
    );
}

/// Links that loop, links to nothing, a FIFO named `.cfg`, UTF-16 and non-UTF-8 files: each
/// file is visited once, what cannot be read is reported where it is, and the run goes on.
#[cfg(unix)]
#[test]
fn check_walks_odd_folders_once_and_reports_what_it_cannot_read() {
    let d = root();
    let p = d.path();
    std::os::unix::fs::symlink(p, p.join("loop")).unwrap();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::os::unix::fs::symlink("..", p.join("sub/up")).unwrap();
    std::os::unix::fs::symlink(p.join("nowhere.cfg"), p.join("dangling.cfg")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(p.join("pipe.cfg"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let utf16: Vec<u8> = [0xFF, 0xFE]
        .into_iter()
        .chain("<polycomConfig/>".encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    std::fs::write(p.join("wide.cfg"), utf16).unwrap();
    std::fs::write(
        p.join("latin1.cfg"),
        b"<polycomConfig>\n<reg reg.1.label=\"caf\xe9\"/>\n</polycomConfig>",
    )
    .unwrap();

    let out = Command::new(BIN)
        .args(["config", "check", "--json"])
        .arg(p)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{report}");
    let findings = report["findings"].as_array().unwrap();
    let on = |file: &str| -> Vec<&serde_json::Value> {
        findings
            .iter()
            .filter(|f| f["file"].as_str().unwrap().ends_with(file))
            .collect()
    };
    // site.cfg is found once, not once per way of reaching it (loop/site.cfg, sub/up/site.cfg…).
    let site: Vec<_> = on("/site.cfg")
        .into_iter()
        .filter(|f| f["code"] == "secret-in-shared-file")
        .collect();
    assert_eq!(site.len(), 1, "{site:?}");
    for (file, says) in [
        ("/dangling.cfg", "cannot be read"),
        ("/pipe.cfg", "not a regular file"),
        ("/wide.cfg", "UTF-16"),
        ("/latin1.cfg", "0xE9"),
    ] {
        let f = on(file);
        assert_eq!(f.len(), 1, "{file}: {f:?}");
        assert_eq!(f[0]["code"], "unreadable-file");
        assert!(f[0]["message"].as_str().unwrap().contains(says), "{f:?}");
    }
    assert_eq!(on("/latin1.cfg")[0]["line"], 2);
}

/// A phone's own master named in upper case (`0004F2AA814C.cfg`, as the vendor allows) is the
/// one `explain` reads for it.
#[test]
fn explain_reads_a_master_named_in_upper_case() {
    let d = root();
    std::fs::write(
        d.path().join("0004F2AA814C.cfg"),
        r#"<APPLICATION CONFIG_FILES="features.cfg"/>"#,
    )
    .unwrap();
    let o = Command::new(BIN)
        .args([
            "config",
            "explain",
            "--json",
            "--mac",
            "0004f2aa814c",
            "--model",
            "VVX_500",
            "--root",
        ])
        .arg(d.path())
        .arg("reg.1.label")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["master"], "0004F2AA814C.cfg");
    assert_eq!(v["params"][0]["value"], "features");
}

/// `--model` goes through the catalog: "VVX 500" is VVX_500 is VVX500; an unknown name is an
/// error (exit 3) that names the closest models.
#[test]
fn explain_normalises_and_validates_the_model() {
    let d = root();
    let run = |model: &str| {
        Command::new(BIN)
            .args([
                "config",
                "explain",
                "--json",
                "--mac",
                "0004f2aa814c",
                "--model",
                model,
                "--root",
            ])
            .arg(d.path())
            .arg("reg.1.label")
            .output()
            .unwrap()
    };
    for model in ["VVX 500", "vvx500", "VVX_500", "Polycom VVX 500"] {
        let o = run(model);
        assert!(
            o.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["model"], "VVX500", "{model}");
        assert_eq!(v["params"][0]["value"], "vvx500", "{model}");
    }
    let o = run("FOO");
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("closest"));
}
