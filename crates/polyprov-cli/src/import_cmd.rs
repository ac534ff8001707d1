//! `polyprov import`: an existing phone server's folder (planned by `polyprov_model::import`) or
//! a spreadsheet, printed as a plan with every difference, and with `--apply` carried out: the
//! shared files into this server's boot root, then profiles, devices and uploads through the
//! admin API.

use crate::args::ImportArgs;
use crate::client::{CliError, Client, Exit, print_json};
use crate::out::outln;
use polyprov_model::import::{Folder, ImportPlan, plan};
use polyprov_model::lint::{LintInput, Severity, lint};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// Text files read into memory at most (configuration, XML, logs are far smaller).
const MAX_TEXT_BYTES: u64 = 8 << 20;
/// Files walked at most.
const MAX_FILES: usize = 100_000;

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Usage, e.to_string())
}

/// Reads a folder: text files by content, others by name (no link followed).
fn read_folder(dir: &Path) -> Result<Folder, CliError> {
    let mut folder = Folder::default();
    let mut stack = vec![PathBuf::new()];
    let mut count = 0;
    while let Some(rel) = stack.pop() {
        let entries = std::fs::read_dir(dir.join(&rel))
            .map_err(|e| usage(format!("{}: {e}", dir.join(&rel).display())))?;
        for e in entries {
            let e = e.map_err(usage)?;
            let name = rel.join(e.file_name());
            let kind = e.file_type().map_err(usage)?;
            if kind.is_dir() {
                stack.push(name);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            count += 1;
            if count > MAX_FILES {
                return Err(usage(format!(
                    "{}: more than {MAX_FILES} files; is this a phone server's folder?",
                    dir.display()
                )));
            }
            let key = name.to_string_lossy().replace('\\', "/");
            let lower = key.to_ascii_lowercase();
            let text = [".cfg", ".xml", ".log", ".txt"]
                .iter()
                .any(|x| lower.ends_with(x));
            let size = e.metadata().map(|m| m.len()).unwrap_or(0);
            if text && size <= MAX_TEXT_BYTES {
                let bytes = std::fs::read(dir.join(&name)).map_err(usage)?;
                folder.texts.insert(key, bytes);
            } else {
                folder.others.insert(key);
            }
        }
    }
    Ok(folder)
}

fn shown(v: &Option<String>) -> String {
    v.as_ref()
        .map_or_else(|| "(not set)".into(), |s| format!("{s:?}"))
}

fn print_plan(dir: &Path, p: &ImportPlan, lint_counts: (usize, usize, usize)) {
    let (e, s, w) = lint_counts;
    outln!(
        "{}: {} phones; config check: {e} errors, {s} security findings, {w} warnings",
        dir.display(),
        p.phones.len()
    );
    outln!(
        "polyprov's master: CONFIG_FILES = {}",
        if p.master_config_files.is_empty() {
            "(none)".to_string()
        } else {
            p.master_config_files.join(", ")
        }
    );
    outln!(
        "boot root: {} files ({})",
        p.boot_root.len(),
        p.boot_root
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
            + if p.boot_root.len() > 8 { ", …" } else { "" }
    );
    for (name, params) in &p.profiles {
        outln!("profile {name}: {} parameters", params.len());
    }
    for ph in &p.phones {
        outln!();
        outln!(
            "{}  from {}; own files: {}",
            ph.mac,
            ph.master,
            if ph.own_files.is_empty() {
                "none".into()
            } else {
                ph.own_files.join(", ")
            }
        );
        outln!(
            "  profile {}, {} parameters of its own{}; uploads: {}",
            ph.profile.as_deref().unwrap_or("none"),
            ph.params.len(),
            if ph.admin_password.is_some() {
                ", an admin password"
            } else {
                ""
            },
            if ph.uploads.is_empty() {
                "none".into()
            } else {
                ph.uploads
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if ph.differences.is_empty() {
            outln!("  the same {} parameters before and after", ph.before.len());
        }
        for d in &ph.differences {
            outln!(
                "  DIFFERS {}: {} before, {} after",
                d.param,
                shown(&d.before),
                shown(&d.after)
            );
        }
    }
    for n in &p.notes {
        outln!("note: {n}");
    }
}

/// `polyprov import`.
pub async fn run(a: &ImportArgs) -> Result<(), CliError> {
    if let Some(csv) = &a.csv {
        return csv_import(csv, a).await;
    }
    let Some(dir) = a.dir.as_deref() else {
        return Err(usage("give the old server's folder, or --csv FILE"));
    };
    let folder = read_folder(dir)?;
    let p = plan(&folder);
    let findings = LintInput::load(dir).map(|i| lint(&i)).unwrap_or_default();
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let counts = (
        count(Severity::Error),
        count(Severity::Security),
        count(Severity::Warning),
    );
    let differing = p
        .phones
        .iter()
        .filter(|x| !x.differences.is_empty())
        .count();
    if a.api.json {
        let mut v =
            serde_json::to_value(&p).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
        v["config_check"] = json!({"errors": counts.0, "security": counts.1, "warnings": counts.2});
        v["applied"] = json!(a.apply && (differing == 0 || a.force));
        if !a.apply {
            return print_json(&v);
        }
        apply(dir, &p, a, differing).await?;
        return print_json(&v);
    }
    print_plan(dir, &p, counts);
    outln!();
    if !a.apply {
        outln!(
            "dry run: nothing changed. {differing} of {} phones would get a different configuration. `--apply` does it.",
            p.phones.len()
        );
        return Ok(());
    }
    apply(dir, &p, a, differing).await?;
    outln!(
        "imported: {} files into the boot root, {} profiles, {} devices, {} uploads",
        p.boot_root.len() + 1,
        p.profiles.len(),
        p.phones.len(),
        p.phones.iter().map(|x| x.uploads.len()).sum::<usize>()
    );
    Ok(())
}

async fn apply(
    dir: &Path,
    p: &ImportPlan,
    a: &ImportArgs,
    differing: usize,
) -> Result<(), CliError> {
    if differing > 0 && !a.force {
        return Err(CliError::new(
            Exit::Failed,
            format!(
                "{differing} phones would get a different configuration (DIFFERS above): review, then --apply --force"
            ),
        ));
    }
    let c = Client::new(&a.api)?;
    // Every boot-root conflict before anything is written.
    let root = a.data.join("root");
    if !root.is_dir() {
        return Err(usage(format!(
            "{}: no boot root (start `polyprov serve --data {}` once, or give --data)",
            root.display(),
            a.data.display()
        )));
    }
    let master_path = root.join(polyprov_model::master::SHARED_MASTER);
    let mut conflicts = Vec::new();
    for name in &p.boot_root {
        let dst = root.join(name);
        if dst.exists() && std::fs::read(&dst).ok() != std::fs::read(dir.join(name)).ok() {
            conflicts.push(name.clone());
        }
    }
    let current_master = std::fs::read_to_string(&master_path).unwrap_or_default();
    if current_master != polyprov_model::master::STARTER_MASTER && current_master != p.master {
        conflicts.push(polyprov_model::master::SHARED_MASTER.to_string());
    }
    if !conflicts.is_empty() && !a.force {
        return Err(CliError::new(
            Exit::Failed,
            format!(
                "the boot root has different files of these names: {} (--force replaces them)",
                conflicts.join(", ")
            ),
        ));
    }
    for name in &p.boot_root {
        let dst = root.join(name);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
        }
        std::fs::copy(dir.join(name), &dst)
            .map_err(|e| CliError::new(Exit::Failed, format!("{name}: {e}")))?;
    }
    std::fs::write(&master_path, &p.master)
        .map_err(|e| CliError::new(Exit::Failed, format!("{}: {e}", master_path.display())))?;
    for (name, params) in &p.profiles {
        c.put(&format!("profiles/{name}"), &json!({ "params": params }))
            .await?;
    }
    let devices: Vec<Value> = p
        .phones
        .iter()
        .map(|x| {
            json!({ "mac": x.mac, "profile": x.profile, "admin_password": x.admin_password, "params": x.params })
        })
        .collect();
    for batch in devices.chunks(1000) {
        c.put("devices", &json!({ "devices": batch })).await?;
    }
    for x in &p.phones {
        for (kind, file) in &x.uploads {
            let bytes = std::fs::read(dir.join(file))
                .map_err(|e| CliError::new(Exit::Failed, format!("{file}: {e}")))?;
            c.put_bytes(&format!("devices/{}/uploads/{kind}", x.mac), bytes)
                .await
                .map_err(|e| CliError::new(e.code, format!("{file}: {}", e.message)))?;
        }
    }
    Ok(())
}

/// One CSV row as a device document (the API's).
fn csv_device(header: &[String], row: &[String]) -> Result<Value, String> {
    let mut doc = serde_json::Map::new();
    let mut params = serde_json::Map::new();
    let mut lines: std::collections::BTreeMap<u32, serde_json::Map<String, Value>> =
        Default::default();
    for (h, v) in header.iter().zip(row) {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match h.as_str() {
            "mac" => {
                let mac: polyprov_model::Mac = v.parse().map_err(|e| format!("{v:?}: {e}"))?;
                doc.insert("mac".into(), mac.to_string().into());
            }
            "profile" | "admin_password" => {
                doc.insert(h.clone(), v.into());
            }
            h if h.starts_with("param:") => {
                params.insert(h["param:".len()..].to_string(), v.into());
            }
            h if h.starts_with("line") => {
                let (n, field) = h["line".len()..].split_once('_').ok_or_else(|| {
                    format!("column {h:?}: lineN_address, lineN_user or lineN_password")
                })?;
                let n: u32 = n.parse().map_err(|_| format!("column {h:?}: lineN_…"))?;
                if !matches!(field, "address" | "user" | "password") {
                    return Err(format!(
                        "column {h:?}: lineN_address, lineN_user or lineN_password"
                    ));
                }
                lines.entry(n).or_default().insert(field.into(), v.into());
            }
            other => return Err(format!("column {other:?} is not one polyprov reads")),
        }
    }
    if !doc.contains_key("mac") {
        return Err("no mac".into());
    }
    if !params.is_empty() {
        doc.insert("params".into(), Value::Object(params));
    }
    if !lines.is_empty() {
        doc.insert(
            "lines".into(),
            Value::Array(lines.into_values().map(Value::Object).collect()),
        );
    }
    Ok(Value::Object(doc))
}

/// Splits one CSV line: commas, double-quoted fields with `""` for a quote.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

async fn csv_import(file: &Path, a: &ImportArgs) -> Result<(), CliError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| usage(format!("{}: {e}", file.display())))?;
    let mut rows = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = rows
        .next()
        .map(csv_fields)
        .ok_or_else(|| usage(format!("{}: empty", file.display())))?
        .into_iter()
        // Column names in any case; a parameter's name keeps its own (they are case-sensitive).
        .map(|h| match h.trim().split_once(':') {
            Some((kind, name)) => format!("{}:{name}", kind.to_ascii_lowercase()),
            None => h.trim().to_ascii_lowercase(),
        })
        .collect();
    let mut devices = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in rows.enumerate() {
        match csv_device(&header, &csv_fields(line)) {
            Ok(d) => devices.push(d),
            Err(e) => errors.push(format!("row {}: {e}", i + 2)),
        }
    }
    if !errors.is_empty() {
        return Err(usage(format!(
            "{}: {} (nothing imported)",
            file.display(),
            errors.join("; ")
        )));
    }
    if a.apply {
        let c = Client::new(&a.api)?;
        for batch in devices.chunks(1000) {
            c.put("devices", &json!({ "devices": batch })).await?;
        }
    }
    if a.api.json {
        return print_json(&json!({ "devices": devices, "applied": a.apply }));
    }
    for d in &devices {
        outln!(
            "{}  profile {}, {} lines, {} parameters{}",
            d["mac"].as_str().unwrap_or_default(),
            d["profile"].as_str().unwrap_or("none"),
            d["lines"].as_array().map_or(0, Vec::len),
            d["params"].as_object().map_or(0, serde_json::Map::len),
            if d["admin_password"].is_string() {
                ", an admin password"
            } else {
                ""
            }
        );
    }
    outln!(
        "{} devices {}",
        devices.len(),
        if a.apply {
            "assigned"
        } else {
            "read; dry run: `--apply` assigns them"
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_device_documents_and_bad_columns_are_named() {
        let header: Vec<String> = csv_fields("mac,profile,admin_password,line1_address,line1_user,line1_password,param:up.backlight.idleIntensity")
            .into_iter()
            .collect();
        let d = csv_device(
            &header,
            &csv_fields(r#"00-04-F2-AA-81-4C,sales,"pa,ss""w",1001@pbx.example.com,1001,s3,2"#),
        )
        .unwrap();
        assert_eq!(d["mac"], "0004f2aa814c");
        assert_eq!(d["admin_password"], "pa,ss\"w");
        assert_eq!(d["lines"][0]["user"], "1001");
        assert_eq!(d["params"]["up.backlight.idleIntensity"], "2");
        assert!(csv_device(&["color".into()], &["red".into()]).is_err());
        assert!(csv_device(&["mac".into()], &["not-a-mac".into()]).is_err());
        assert!(
            csv_device(
                &["line1_colour".into(), "mac".into()],
                &["x".into(), "0004f2aa814c".into()]
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn any_csv_line_is_split_and_read_without_a_panic(line in "[a-z0-9_:.,\" @-]{0,60}") {
            let fields = csv_fields(&line);
            proptest::prop_assert!(!fields.is_empty());
            let header: Vec<String> = ["mac", "profile", "line1_address", "param:a.b"].map(String::from).to_vec();
            if let Ok(d) = csv_device(&header, &fields) {
                let mac = d["mac"].as_str().unwrap_or_default();
                proptest::prop_assert!(mac.parse::<polyprov_model::Mac>().is_ok());
            }
        }
    }
}
