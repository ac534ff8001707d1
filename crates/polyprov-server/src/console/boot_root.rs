//! The boot root page: the files the server serves to every phone, and `config check`'s findings
//! for the whole root (the same linter, read the same way).

use super::pages::{self, esc, when};
use super::{error_page, html, to_signin};
use crate::admin::AdminState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use polyprov_model::lint::{Finding, LintInput, Severity, lint};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

/// Files listed at most (a root with firmware for every model holds a few hundred).
const MAX_FILES: usize = 2000;

/// One file of the root.
struct Entry {
    name: String,
    size: u64,
    modified: Option<i64>,
}

/// The root's files, by name (below `root`, folders walked, links followed once), at most
/// [`MAX_FILES`]; and whether there were more.
fn files(root: &Path) -> std::io::Result<(Vec<Entry>, bool)> {
    let mut out = Vec::new();
    let mut more = false;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(real) = dir.canonicalize()
            && !seen.insert(real)
        {
            continue;
        }
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            let Ok(meta) = std::fs::metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
                continue;
            }
            if out.len() == MAX_FILES {
                more = true;
                break;
            }
            out.push(Entry {
                name: p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned(),
                size: meta.len(),
                modified: meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((out, more))
}

/// `GET /console/root`.
pub async fn page(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    let root = s.core.root_dir().to_path_buf();
    let read = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let (list, more) = files(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let input = LintInput::load(&root)?;
        let checked = input.files.len() + input.unreadable.len();
        Ok((list, more, lint(&input), checked))
    })
    .await;
    let (list, more, findings, checked) = match read {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return error_page(&e),
        Err(e) => return error_page(&e.to_string()),
    };
    html(
        StatusCode::OK,
        pages::layout_page(
            "Boot root",
            &session,
            &body(
                &s.core.root_dir().display().to_string(),
                &list,
                more,
                &findings,
                checked,
            ),
        ),
    )
}

fn body(root: &str, list: &[Entry], more: bool, findings: &[Finding], checked: usize) -> String {
    let count = |sev: Severity| findings.iter().filter(|f| f.severity == sev).count();
    let mut m = format!(
        r##"<h1>Boot root</h1><p>The files every phone can ask for, in <code>{}</code>. <a href="#check">{} configuration files checked</a>: {} errors, {} security findings, {} warnings (<code>polyprov config check</code> gives the same).</p>"##,
        esc(root),
        checked,
        count(Severity::Error),
        count(Severity::Security),
        count(Severity::Warning)
    );
    m.push_str(r#"<table><thead><tr><th scope="col">File</th><th scope="col">Size</th><th scope="col">Changed</th><th scope="col">Findings</th></tr></thead><tbody>"#);
    for e in list {
        let n = findings.iter().filter(|f| f.file == e.name).count();
        let _ = write!(
            m,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.name),
            e.size,
            when(e.modified),
            if n == 0 {
                "—".to_string()
            } else {
                format!(r##"<a href="#check">{n}</a>"##)
            }
        );
    }
    m.push_str("</tbody></table>");
    if more {
        let _ = write!(m, "<p>Only the first {MAX_FILES} files are listed.</p>");
    }
    m.push_str(r#"<h2 id="check">config check</h2>"#);
    if findings.is_empty() {
        m.push_str("<p>No findings.</p>");
        return m;
    }
    m.push_str(r#"<ul class="findings">"#);
    for f in findings {
        let at = f
            .position
            .map(|p| format!("{}:{}", p.line, p.column))
            .unwrap_or_default();
        let _ = write!(
            m,
            r#"<li class="{sev}"><span class="kind">{sev}</span> <code>{file}{colon}{at}</code> {msg} <small>({code})</small></li>"#,
            sev = esc(&f.severity.to_string()),
            file = esc(&f.file),
            colon = if at.is_empty() { "" } else { ":" },
            msg = esc(&f.message),
            code = esc(f.code),
        );
    }
    m.push_str("</ul>");
    m
}
