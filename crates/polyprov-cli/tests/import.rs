//! `polyprov import` of an old phone server's folder — a real legacy root from the corpus
//! (`wolrah__polycom_spip_ssip_configs`: 000000000000.cfg, phone1.cfg, sip.cfg, ipmid.cfg)
//! plus per-phone masters and files as admins make them — then proved: each phone, emulated,
//! boots against the old folder served as a plain directory and against polyprov after the
//! import, and ends up with the same admin password, user password and lines.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/corpus/wolrah__polycom_spip_ssip_configs"
);
const MACS: [&str; 3] = ["0004f2e10001", "0004f2e10002", "0004f2e10003"];

fn old_folder(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["000000000000.cfg", "phone1.cfg", "sip.cfg", "ipmid.cfg"] {
        std::fs::copy(Path::new(CORPUS).join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("sip.ld"), "POLYPROV-SIM-IMAGE 3.3.5\n").unwrap();
    for (i, mac) in MACS.iter().enumerate() {
        let n = 1001 + i;
        std::fs::write(
            dir.join(format!("{mac}.cfg")),
            format!(r#"<?xml version="1.0" standalone="yes"?><APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="{mac}-reg.cfg, phone1.cfg, sip.cfg, ipmid.cfg" MISC_FILES="" LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY=""/>"#),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{mac}-reg.cfg")),
            format!(r#"<?xml version="1.0" standalone="yes"?><sip><reg reg.1.displayName="Desk {n}" reg.1.address="{n}@pbx.example.com" reg.1.label="{n}" reg.1.auth.userId="{n}" reg.1.auth.password="line{n}secret"/><device device.set="1" device.auth.localAdminPassword="Admin{n}!" device.auth.localAdminPassword.set="1"/></sip>"#),
        )
        .unwrap();
    }
    // One phone changed a setting in its menu; its override and directory are on the server.
    std::fs::write(
        dir.join(format!("{}-phone.cfg", MACS[0])),
        r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="1"/></PHONE_CONFIG>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{}-directory.xml", MACS[0])),
        r#"<directory><item_list><item><fn>Ana</fn><ct>1002</ct></item></item_list></directory>"#,
    )
    .unwrap();
}

/// The old folder served as a plain directory (read only), by Python's http.server.
struct Plain(std::process::Child, u16);

impl Plain {
    fn serve(dir: &Path) -> Plain {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import functools, http.server, sys\n\
                 h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
                 s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
                 print(s.server_address[1], flush=True)\n\
                 s.serve_forever()",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Plain(child, line.trim().parse().unwrap())
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots a new emulated phone against `url`; what it shows about itself afterwards.
fn boot(state: &Path, mac: &str, url: &str) -> serde_json::Value {
    let (code, out) = run(
        &[
            "sim",
            "init",
            "--state",
            state.to_str().unwrap(),
            "--mac",
            mac,
            "--model",
            "VVX500",
            "--dhcp-option",
            &format!("160={url}"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["sim", "boot", "--state", state.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(
        &["sim", "show", "--state", state.to_str().unwrap(), "--json"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn an_old_folder_is_imported_and_every_phone_boots_the_same_from_polyprov() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    old_folder(&old);

    // Dry run: the plan, no change, no difference.
    let (code, out) = run(&["import", old.to_str().unwrap(), "--json"], &[]);
    assert_eq!(code, 0, "{out}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["phones"].as_array().unwrap().len(), MACS.len());
    for p in plan["phones"].as_array().unwrap() {
        assert_eq!(p["differences"], serde_json::json!([]), "{p}");
        assert!(p["admin_password"].is_string(), "{p}");
    }
    let root: Vec<&str> = plan["boot_root"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for f in ["phone1.cfg", "sip.cfg", "ipmid.cfg", "sip.ld"] {
        assert!(root.contains(&f), "{root:?}");
    }
    assert!(
        !root.iter().any(|f| f.contains("0004f2")),
        "own files stay out of the root: {root:?}"
    );

    // Apply it to a running server.
    let data = dir.path().join("data");
    let served = serve(&data);
    let env = admin_env(&served, &data);
    let apply = || {
        run(
            &[
                "import",
                old.to_str().unwrap(),
                "--apply",
                "--data",
                data.to_str().unwrap(),
            ],
            &env,
        )
    };
    let (code, out) = apply();
    assert_eq!(code, 0, "{out}");
    assert!(data.join("root/ipmid.cfg").is_file());
    let (code, out) = run(&["device", "uploads", MACS[0], "--json"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("phone.cfg") && out.contains("directory.xml"),
        "{out}"
    );
    let (code, out) = run(&["device", "history", MACS[0], "--json"], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("upload-stored"), "{out}");
    // Applying again: the boot root already holds the same files; devices are assigned anew.
    let (code, out) = apply();
    assert_eq!(code, 0, "a second import of the same folder: {out}");

    // A spreadsheet: dry run, then --apply.
    let csv = dir.path().join("fleet.csv");
    std::fs::write(
        &csv,
        "mac,profile,admin_password,line1_address,line1_user,line1_password,param:up.backlight.idleIntensity\n\
         00-04-F2-E1-00-09,,\"Pw,9\",1009@pbx.example.com,1009,s9,2\n",
    )
    .unwrap();
    let (code, out) = run(&["import", "--csv", csv.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dry run"), "{out}");
    let (code, _) = run(&["device", "show", "0004f2e10009"], &env);
    assert_ne!(code, 0, "a dry run assigns nothing");
    let (code, out) = run(&["import", "--csv", csv.to_str().unwrap(), "--apply"], &env);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["device", "show", "0004f2e10009", "--json"], &env);
    assert_eq!(code, 0, "{out}");
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["params"]["reg.1.address"], "1009@pbx.example.com", "{d}");
    assert_eq!(d["params"]["up.backlight.idleIntensity"], "2", "{d}");
    std::fs::write(&csv, "mac,colour\n0004f2e1000a,red\n").unwrap();
    let (code, out) = run(&["import", "--csv", csv.to_str().unwrap(), "--apply"], &env);
    assert_eq!(
        code, 2,
        "an unknown column is refused, nothing imported: {out}"
    );

    // Prove it: each phone against the old folder and against polyprov.
    let plain = Plain::serve(&old);
    let new_url = phone_url(&served, &data);
    for mac in MACS {
        let before = boot(
            &dir.path().join(format!("{mac}-old")),
            mac,
            &format!("http://127.0.0.1:{}/", plain.1),
        );
        let after = boot(&dir.path().join(format!("{mac}-new")), mac, &new_url);
        for key in ["admin_password", "user_password", "lines"] {
            let value = |v: &serde_json::Value| match key {
                "lines" => v[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| (l[0].clone(), l[1]["value"].clone()))
                    .collect::<Vec<_>>(),
                _ => vec![(serde_json::Value::Null, v[key]["value"].clone())],
            };
            assert_eq!(
                value(&before),
                value(&after),
                "{mac}: {key} differs after the import"
            );
        }
        assert!(
            before["admin_password"]["value"]
                .as_str()
                .is_some_and(|p| p.starts_with("Admin")),
            "{before}"
        );
        assert_eq!(
            before["lines"].as_array().map(Vec::len),
            Some(1),
            "the old folder gives each phone its line: {before}"
        );
        assert!(
            after["admin_password"]["source"]
                .as_str()
                .unwrap()
                .contains("polyprov"),
            "{after}"
        );
    }
}
