//! Tables for people.

use crate::out::outln;
use serde_json::Value;

/// Prints rows under headers, columns padded to their widest cell.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// "5m ago" for a Unix time.
fn ago(v: &Value) -> String {
    let Some(t) = v.as_i64() else {
        return "never".to_string();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let d = (now - t).max(0);
    match d {
        0..60 => format!("{d}s ago"),
        60..3600 => format!("{}m ago", d / 60),
        3600..86400 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86400),
    }
}

pub fn devices(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            vec![
                text(&d["mac"]),
                text(&d["state"]),
                text(&d["profile"]),
                text(&d["model"]),
                text(&d["firmware"]),
                ago(&d["last_seen"]),
                text(&d["last_addr"]),
            ]
        })
        .collect();
    print(
        &[
            "MAC",
            "STATE",
            "PROFILE",
            "MODEL",
            "FIRMWARE",
            "LAST SEEN",
            "ADDRESS",
        ],
        &rows,
    );
}

pub fn device(d: &Value) {
    let password = if d["admin_password"].is_string() {
        "set"
    } else {
        "-"
    };
    let rows: Vec<Vec<String>> = [
        ("mac", text(&d["mac"])),
        ("state", text(&d["state"])),
        ("profile", text(&d["profile"])),
        ("admin password", password.to_string()),
        ("model", text(&d["model"])),
        ("family", text(&d["family"])),
        ("firmware", text(&d["firmware"])),
        ("stage", text(&d["stage"])),
        ("first seen", ago(&d["first_seen"])),
        ("last seen", ago(&d["last_seen"])),
        ("last address", text(&d["last_addr"])),
        ("last fetch", text(&d["last_fetch"])),
        ("last upload", text(&d["last_upload"])),
    ]
    .into_iter()
    .map(|(k, v)| vec![k.to_string(), v])
    .collect();
    print(&["FIELD", "VALUE"], &rows);
    if d["params"].as_object().is_some_and(|m| !m.is_empty()) {
        outln!();
        params(&d["params"]);
    }
}

pub fn params(p: &Value) {
    let rows: Vec<Vec<String>> = p
        .as_object()
        .map(|m| m.iter().map(|(k, v)| vec![k.clone(), text(v)]).collect())
        .unwrap_or_default();
    print(&["PARAMETER", "VALUE"], &rows);
}

pub fn profiles(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            vec![
                text(&p["name"]),
                p["params"].as_object().map_or(0, |m| m.len()).to_string(),
            ]
        })
        .collect();
    print(&["PROFILE", "PARAMETERS"], &rows);
}

pub fn uploads(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|u| {
            vec![
                text(&u["kind"]),
                text(&u["version"]),
                text(&u["size"]),
                ago(&u["modified"]),
            ]
        })
        .collect();
    print(&["KIND", "VERSION", "BYTES", "MODIFIED"], &rows);
}

pub fn history(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let state = |v: &Value| v["state"].as_str().unwrap_or("-").to_string();
            vec![
                ago(&e["at"]),
                text(&e["actor"]),
                text(&e["action"]),
                format!("{} → {}", state(&e["before"]), state(&e["after"])),
                text(&e["detail"]),
            ]
        })
        .collect();
    print(&["WHEN", "WHO", "ACTION", "STATE", "DETAIL"], &rows);
}

pub fn quarantine(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|q| {
            let files: Vec<String> = q["files"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|f| format!("{} v{}", text(&f["kind"]), text(&f["version"])))
                .collect();
            vec![text(&q["id"]), files.join(", ")]
        })
        .collect();
    print(&["SET", "FILES"], &rows);
}

/// A remote action job: one line per phone.
pub fn action_results(job: &Value) {
    let rows: Vec<Vec<String>> = job["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|p| {
                    vec![
                        text(&p["mac"]),
                        text(&p["target"]),
                        text(&p["via"]),
                        crate::action_cmd::verdict(p),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print(&["MAC", "TARGET", "VIA", "RESULT"], &rows);
}
