//! `doctor`: after a factory reset, what would this phone get back, from where, and how to stop
//! it. Everything is computed from what the server would serve the phone right now (the same
//! code path as a phone request, without recording a sighting) and the model's effective merge
//! with an empty flash — which is what a factory reset leaves.

use crate::core::{Answer, Core, SHARED_MASTER};
use polyprov_model::Mac;
use polyprov_model::config::{ADMIN_PASSWORD, USER_PASSWORD};
use polyprov_model::config_file::ConfigFile;
use polyprov_model::effective::{Layer, PhoneSources, Resolved, effective, known_defaults};
use polyprov_model::lint::is_secret;
use polyprov_model::master::{Master, model_token};
use polyprov_store::DeviceState;
use serde::Serialize;
use std::collections::BTreeMap;

/// A value after the reset and where it comes from.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub value: Option<String>,
    /// `built-in default`, `web override (web UI)`, `CONFIG_FILES #1`, …
    pub source: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// Something that will bring old settings back, and the command that stops it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `returns` (old settings come back), `shared-secret`, `dhcp`, `ztp`, `info`.
    pub kind: &'static str,
    pub what: String,
    pub fix: String,
}

/// The whole diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub mac: String,
    pub state: String,
    pub model: Option<String>,
    /// The master the phone gets and the files it lists, in order.
    pub master: String,
    pub config_files: Vec<String>,
    pub admin_password: Source,
    pub user_password: Source,
    pub lines: BTreeMap<String, Source>,
    pub provisioning_server: Source,
    pub ztp_enabled: Source,
    /// Overrides and lists the server holds and serves to the phone.
    pub held: Vec<String>,
    /// Quarantine sets kept for it.
    pub quarantine: Vec<String>,
    pub findings: Vec<Finding>,
}

async fn text_of(core: &Core, path: &str) -> Option<String> {
    match core.preview(path).await.ok()? {
        Answer::Generated(g) => Some(String::from_utf8_lossy(&g.body).into_owned()),
        Answer::File(f) => tokio::fs::read(&f.path)
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

fn source(e: &BTreeMap<String, Resolved>, name: &str) -> Source {
    match e.get(name).and_then(|r| r.winner().map(|w| (r, w))) {
        Some((r, w)) => Source {
            value: r.value.clone(),
            source: w.layer.to_string(),
            file: w.file.clone(),
            line: w.position.map(|p| p.line),
        },
        None => Source {
            value: None,
            source: "not set by any source".into(),
            file: None,
            line: None,
        },
    }
}

/// Diagnoses one device. `dhcp` is what the admin declared the network hands out.
pub async fn diagnose(
    core: &Core,
    dhcp: &BTreeMap<u8, String>,
    mac: Mac,
) -> Result<Report, String> {
    let device = core.device(mac).await.map_err(|e| e.to_string())?;
    let state = device.as_ref().map_or(DeviceState::Unassigned, |d| d.state);
    let token = device
        .as_ref()
        .and_then(|d| d.model.as_deref())
        .map(model_token);

    let master_name = format!("{mac}.cfg");
    let master_text = text_of(core, &format!("/{master_name}")).await;
    let mut findings = Vec::new();
    let mut files = Vec::new();
    let mut config_names = Vec::new();
    let mut master_desc = "none (the phone finds no master)".to_string();
    if let Some(text) = &master_text {
        match Master::parse(&master_name, text) {
            Ok(m) => {
                let r = m.resolve(token.as_deref(), mac);
                master_desc = match state {
                    DeviceState::Assigned => {
                        format!("{master_name}, generated from {SHARED_MASTER}")
                    }
                    _ => format!("{master_name}, answered with the staging master"),
                };
                for name in &r.config_files {
                    config_names.push(name.clone());
                    match text_of(core, &format!("/{}", name.trim_start_matches('/'))).await {
                        Some(t) => match ConfigFile::parse(name, &t) {
                            Ok(f) => files.push(f),
                            Err(e) => findings.push(Finding {
                                kind: "info",
                                what: format!("{e}: the phone cannot use {name}"),
                                fix: format!("polyprov config check {}", name),
                            }),
                        },
                        None => findings.push(Finding {
                            kind: "info",
                            what: format!("{name} is listed in CONFIG_FILES but not served"),
                            fix: "add the file to the boot root or remove it from CONFIG_FILES"
                                .into(),
                        }),
                    }
                }
            }
            Err(e) => findings.push(Finding {
                kind: "info",
                what: e.to_string(),
                fix: format!("polyprov config check <boot root>/{SHARED_MASTER}"),
            }),
        }
    }
    let local_text = text_of(core, &format!("/{mac}-phone.cfg")).await;
    let web_text = text_of(core, &format!("/{mac}-web.cfg")).await;
    let local = local_text
        .as_deref()
        .and_then(|t| ConfigFile::parse(&format!("{mac}-phone.cfg"), t).ok());
    let web = web_text
        .as_deref()
        .and_then(|t| ConfigFile::parse(&format!("{mac}-web.cfg"), t).ok());
    let defaults = known_defaults();
    let e = effective(&PhoneSources {
        local_override: local.as_ref(),
        web_override: web.as_ref(),
        config_files: &files,
        flash: None,
        defaults: Some(&defaults),
    });

    let release = format!("polyprov device release {mac}");
    let fix_for = |r: &Resolved| -> Option<String> {
        let w = r.winner()?;
        let file = w.file.clone().unwrap_or_default();
        Some(match &w.layer {
            Layer::Default => return None,
            Layer::LocalOverride | Layer::WebOverride => format!(
                "{release}   (quarantines {file}; `polyprov device restore {mac}` brings it back)"
            ),
            Layer::ConfigFile(_) if file.starts_with(&mac.to_string()) => {
                format!("{release}   (withdraws the assignment that generates {file})")
            }
            Layer::ConfigFile(_) => format!(
                "remove it from {file} line {} in the boot root: every phone downloads that file",
                w.position.map_or(0, |p| p.line)
            ),
            Layer::DeviceFlash => return None,
        })
    };
    for (name, label) in [
        (ADMIN_PASSWORD, "admin password"),
        (USER_PASSWORD, "user password"),
        ("device.prov.serverName", "provisioning server"),
    ] {
        if let Some(r) = e.get(name)
            && let (Some(fix), Some(w)) = (fix_for(r), r.winner())
        {
            findings.push(Finding {
                kind: "returns",
                what: format!(
                    "after a factory reset the phone gets its {label} ({name}) from {}{}",
                    w.layer,
                    w.file
                        .as_ref()
                        .map(|f| format!(
                            " ({f}{})",
                            w.position
                                .map(|p| format!(":{}", p.line))
                                .unwrap_or_default()
                        ))
                        .unwrap_or_default()
                ),
                fix,
            });
        }
    }
    let lines: BTreeMap<String, Source> = e
        .iter()
        .filter(|(k, r)| {
            k.starts_with("reg.")
                && k.ends_with(".address")
                && k.split('.').count() == 3
                && r.value.as_deref().is_some_and(|v| !v.is_empty())
        })
        .map(|(k, _)| (k.clone(), source(&e, k)))
        .collect();
    for (k, src) in &lines {
        if let Some(fix) = e.get(k).and_then(fix_for) {
            findings.push(Finding {
                kind: "returns",
                what: format!(
                    "after a factory reset the phone registers line {k} = {:?} (from {})",
                    src.value.clone().unwrap_or_default(),
                    src.file.clone().unwrap_or(src.source.clone())
                ),
                fix,
            });
        }
    }
    // Shared files with secrets or provisioning settings, for every phone.
    for f in &files {
        if f.name().starts_with(&mac.to_string()) {
            continue;
        }
        for p in f
            .params()
            .iter()
            .filter(|p| !p.value.trim().is_empty() && !p.name.ends_with(".set"))
        {
            if is_secret(&p.name) || p.name.starts_with("device.prov.") {
                findings.push(Finding {
                    kind: "shared-secret",
                    what: format!("{} (line {}) sets {} for every phone that reads it", f.name(), f.position(p.offset).line, p.name),
                    fix: format!("remove {} from {} and set it per device (`polyprov device assign … --param`)", p.name, f.name()),
                });
            }
        }
    }
    for (opt, value) in dhcp {
        if *opt == 66 || *opt == 160 || (128..=254).contains(opt) {
            findings.push(Finding {
                kind: "dhcp",
                what: format!("DHCP option {opt} hands out {value:?}: a factory-reset phone finds this server again at once"),
                fix: match state {
                    DeviceState::Assigned => format!("{release}   (it will then get only the staging master)"),
                    _ => "nothing to do here: the device is served only the staging master".into(),
                },
            });
        }
    }
    let ztp = source(&e, "device.prov.ztpEnabled");
    if ztp.value.as_deref() != Some("0") {
        findings.push(Finding {
            kind: "ztp",
            what: "ZTP is not disabled for this phone (device.prov.ztpEnabled is not 0): if it is registered with Poly ZTP or Poly Lens, the redirect brings it back to its old server".into(),
            fix: "remove the phone from the Poly ZTP / Poly Lens account (the account owner's task), or set device.prov.ztpEnabled=\"0\" with its .set gate".into(),
        });
    }
    if core.preview(&format!("/{mac}.cfg")).await.is_ok()
        && state != DeviceState::Assigned
        && master_text
            .as_deref()
            .is_some_and(|t| !t.contains("polyprov staging master"))
    {
        findings.push(Finding {
            kind: "info",
            what: format!("the boot root has a hand-made {mac}.cfg or a customised staging master; check it for settings of this phone"),
            fix: format!("polyprov config check <boot root>/{mac}.cfg"),
        });
    }

    let held = core.uploads_of(mac);
    let quarantine = core.quarantine_sets(mac);
    let (held, quarantine) = (held.await, quarantine.await);
    let held: Vec<String> = held
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|u| !u.kind.ends_with(".log"))
        .map(|u| format!("{} v{} ({} bytes)", u.kind, u.version, u.size))
        .collect();
    let quarantine: Vec<String> = quarantine
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|q| format!("{} ({} files)", q.id, q.files.len()))
        .collect();

    Ok(Report {
        mac: mac.to_string(),
        state: state.as_str().to_string(),
        model: token,
        master: master_desc,
        config_files: config_names,
        admin_password: source(&e, ADMIN_PASSWORD),
        user_password: source(&e, USER_PASSWORD),
        lines,
        provisioning_server: source(&e, "device.prov.serverName"),
        ztp_enabled: ztp,
        held,
        quarantine,
        findings,
    })
}
