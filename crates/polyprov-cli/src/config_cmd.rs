//! `polyprov config check` and `polyprov config explain`: offline, on files on disk.

use crate::client::{CliError, Exit, print_json};
use crate::out::outln;
use polyprov_model::Mac;
use polyprov_model::UploadKind;
use polyprov_model::config_file::ConfigFile;
use polyprov_model::effective::{PhoneSources, Verdict, effective, known_defaults};
use polyprov_model::lint::{Finding, LintInput, Severity, lint};
use polyprov_model::master::Master;
use polyprov_model::role::Role;
use serde_json::json;
use std::path::{Path, PathBuf};

/// `config check PATH...`: exit 1 when any error or security finding.
pub fn check(paths: &[PathBuf], as_json: bool) -> Result<(), CliError> {
    let mut all: Vec<(String, Finding)> = Vec::new();
    let mut files = 0;
    for path in paths {
        let input = LintInput::load(path).map_err(|e| CliError::new(Exit::Usage, e))?;
        files += input.files.len() + input.unreadable.len();
        let prefix = if path.is_dir() {
            path.display().to_string()
        } else {
            path.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        for f in lint(&input) {
            all.push((prefix.clone(), f));
        }
    }
    let count = |s: Severity| all.iter().filter(|(_, f)| f.severity == s).count();
    let (errors, security, warnings) = (
        count(Severity::Error),
        count(Severity::Security),
        count(Severity::Warning),
    );
    let shown = |prefix: &str, file: &str| {
        if prefix.is_empty() || prefix == "." {
            file.to_string()
        } else {
            format!("{}/{file}", prefix.trim_end_matches('/'))
        }
    };
    if as_json {
        let findings: Vec<_> = all
            .iter()
            .map(|(p, f)| {
                json!({
                    "severity": f.severity.to_string(),
                    "code": f.code,
                    "file": shown(p, &f.file),
                    "line": f.position.map(|p| p.line),
                    "column": f.position.map(|p| p.column),
                    "message": f.message,
                })
            })
            .collect();
        print_json(&json!({
            "files": files, "errors": errors, "security": security, "warnings": warnings,
            "findings": findings,
        }))?;
    } else {
        for (p, f) in &all {
            let mut f = f.clone();
            f.file = shown(p, &f.file);
            outln!("{f}");
        }
        outln!(
            "{files} files checked: {errors} errors, {security} security findings, {warnings} warnings"
        );
    }
    if errors + security > 0 {
        Err(CliError::new(
            Exit::Failed,
            format!("{} problems must be fixed", errors + security),
        ))
    } else {
        Ok(())
    }
}

/// `config explain`: what one phone ends up with for each parameter, and why.
pub fn explain(
    root: &Path,
    mac: &str,
    model: &str,
    overrides: &[PathBuf],
    params: &[String],
    as_json: bool,
) -> Result<(), CliError> {
    let mac: Mac = mac
        .parse()
        .map_err(|e: polyprov_model::MacError| CliError::new(Exit::Usage, e.to_string()))?;
    // The model through the catalog: "VVX 400", "vvx400" and "VVX_400" are one model, and a
    // name the catalog does not know is an error naming the closest ones.
    let catalog = polyprov_model::catalog::Catalog::embedded()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let token = crate::guide_cmd::find_model(&catalog, model)?.master_token();
    let read = |p: &Path| -> Result<String, CliError> {
        let bytes = std::fs::read(p)
            .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", p.display())))?;
        polyprov_model::config_file::decode(&p.display().to_string(), &bytes)
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))
    };
    // The phone's own master, in the case the admin named it (phones ask in lower case; the
    // vendor allows `0004F2AA8301.cfg`), else the shared one.
    let lower = mac.to_string();
    let master_path = [lower.clone(), lower.to_ascii_uppercase()]
        .iter()
        .map(|m| root.join(format!("{m}.cfg")))
        .find(|p| p.is_file())
        .unwrap_or_else(|| root.join(polyprov_model::master::SHARED_MASTER));
    let master_name = master_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let master = Master::parse(&master_name, &read(&master_path)?)
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let resolved = master.resolve(Some(&token), mac);

    let mut notes = Vec::new();
    let mut files = Vec::new();
    for entry in &resolved.config_files {
        if entry.contains("://") {
            notes.push(format!("{entry}: a URL; not read offline"));
            continue;
        }
        let p = root.join(entry.trim_start_matches('/'));
        match std::fs::read(&p) {
            Ok(b) => match polyprov_model::config_file::decode(entry, &b)
                .and_then(|text| ConfigFile::parse(entry, &text))
            {
                Ok(f) => files.push(f),
                Err(e) => notes.push(format!("{e} (the phone cannot use this file)")),
            },
            Err(_) => notes.push(format!(
                "{entry}: listed in CONFIG_FILES but not in the boot root"
            )),
        }
    }
    let (mut local, mut web) = (None, None);
    for o in overrides {
        let name = o
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = read(o)?;
        let f = ConfigFile::parse(&name, &text)
            .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
        // The same rule `config check` uses: what the name says the file is.
        match Role::of(&name, &text, Some(f.root())) {
            Role::Override(UploadKind::PhoneOverride) => local = Some(f),
            Role::Override(_) => web = Some(f),
            _ => {
                return Err(CliError::new(
                    Exit::Usage,
                    format!(
                        "{name}: an override is named <mac>-phone.cfg (phone menu) or <mac>-web.cfg (web UI)"
                    ),
                ));
            }
        }
    }
    let defaults = known_defaults();
    let e = effective(&PhoneSources {
        local_override: local.as_ref(),
        web_override: web.as_ref(),
        config_files: &files,
        flash: None,
        defaults: Some(&defaults),
    });

    if as_json {
        let out: Vec<_> = params
            .iter()
            .map(|p| {
                let r = e.get(p);
                json!({
                    "param": p,
                    "value": r.and_then(|r| r.value.clone()),
                    "chain": r.map(|r| r.candidates.iter().map(|c| json!({
                        "source": c.layer.to_string(),
                        "file": c.file,
                        "line": c.position.map(|p| p.line),
                        "column": c.position.map(|p| p.column),
                        "value": c.value,
                        "verdict": verdict(&c.verdict),
                    })).collect::<Vec<_>>()).unwrap_or_default(),
                })
            })
            .collect();
        return print_json(&json!({
            "mac": mac.to_string(), "model": token, "master": master_name,
            "config_files": resolved.config_files, "notes": notes, "params": out,
        }));
    }
    outln!(
        "phone {mac} ({token}) reads {master_name}; CONFIG_FILES: {}",
        if resolved.config_files.is_empty() {
            "(none)".to_string()
        } else {
            resolved.config_files.join(", ")
        }
    );
    for n in &notes {
        outln!("  note: {n}");
    }
    for p in params {
        outln!();
        match e.get(p) {
            Some(r) => {
                match &r.value {
                    Some(v) => outln!("{p} = {v:?}"),
                    None => outln!("{p}: no value applies"),
                }
                for c in &r.candidates {
                    let at = match (&c.file, c.position) {
                        (Some(f), Some(pos)) => format!("{f}:{pos}"),
                        (Some(f), None) => f.clone(),
                        _ => String::new(),
                    };
                    outln!(
                        "  {:<28} {:<30} {:<32} {:?}",
                        verdict(&c.verdict),
                        c.layer.to_string(),
                        at,
                        c.value
                    );
                }
            }
            None => outln!(
                "{p}: set by no source; the phone's built-in default applies (not known to polyprov)"
            ),
        }
    }
    Ok(())
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Wins => "wins".to_string(),
        Verdict::Shadowed => "shadowed".to_string(),
        Verdict::Ungated(gate) => format!("ignored ({gate} not 1)"),
    }
}
