//! `doctor`'s analysis: after a factory reset, what would this phone get back, from where, and
//! how to stop it — computed with the phone's own merge ([`crate::effective`]) and an empty
//! flash, which is what a factory reset leaves. Pure: the server gathers what it would serve the
//! phone ([`DoctorInput`]) and serialises the [`Report`]; the CLI deserialises and prints it.

use crate::Mac;
use crate::config::{ADMIN_PASSWORD, USER_PASSWORD};
use crate::config_file::ConfigFile;
use crate::effective::{Layer, PhoneSources, Resolved, effective, known_defaults};
use crate::lint::is_secret;
use crate::master::{Master, SHARED_MASTER};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A value after the reset and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub value: Option<String>,
    /// `built-in default`, `web override (web UI)`, `CONFIG_FILES #1`, …
    pub source: String,
    pub file: Option<String>,
    pub line: Option<u32>,
}

/// What kind of thing a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Old settings come back.
    Returns,
    /// A shared file sets a secret or provisioning setting for every phone.
    SharedSecret,
    /// DHCP leads the phone back to a server.
    Dhcp,
    /// Poly ZTP / Lens can redirect the phone.
    Ztp,
    /// What stops polyprov from acting on the phone remotely (resync, reboot, factory reset).
    Remote,
    Info,
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FindingKind::Returns => "returns",
            FindingKind::SharedSecret => "shared-secret",
            FindingKind::Dhcp => "dhcp",
            FindingKind::Ztp => "ztp",
            FindingKind::Remote => "remote",
            FindingKind::Info => "info",
        })
    }
}

/// Something that will bring old settings back, and the command that stops it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub what: String,
    pub fix: String,
}

/// The whole diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The `CONFIG_FILES` a phone of `model` reads from the master it gets.
pub fn config_files_of(
    master_name: &str,
    master_text: &str,
    model: Option<&str>,
    mac: Mac,
) -> Result<Vec<String>, String> {
    Master::parse(master_name, master_text)
        .map(|m| m.resolve(model, mac).config_files)
        .map_err(|e| e.to_string())
}

/// What the server would serve a factory-reset phone, gathered for [`analyse`].
#[derive(Debug, Clone)]
pub struct DoctorInput<'a> {
    pub mac: Mac,
    /// The device's state (`assigned`, `released`, …).
    pub state: &'a str,
    /// Its model token (`VVX500`), when known.
    pub model: Option<String>,
    /// The software it last reported, when known.
    pub firmware: Option<String>,
    /// The master it gets (`None`: the phone finds none) and its `CONFIG_FILES`, or why it
    /// cannot be read.
    pub master: Option<(String, Result<Vec<String>, String>)>,
    /// Each listed file and its text as served (`None`: not served).
    pub files: Vec<(String, Option<String>)>,
    /// Whether the master the phone gets is polyprov's own staging master.
    pub master_is_staging: bool,
    /// Its overrides as served: the phone menu's, the web UI's.
    pub local_override: Option<String>,
    pub web_override: Option<String>,
    /// What the admin declared the network's DHCP hands out.
    pub dhcp: &'a BTreeMap<u8, String>,
    /// Uploads and quarantine sets held for it, described.
    pub held: Vec<String>,
    pub quarantine: Vec<String>,
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

/// The diagnosis with what it was computed from, for a caller that shows more than the report
/// (the console's effective configuration and override drift).
#[derive(Debug, Clone)]
pub struct Analysis {
    pub report: Report,
    /// What the reset phone ends up with: overrides, served files, known defaults.
    pub effective: BTreeMap<String, Resolved>,
    /// What the server alone gives it (served files and known defaults, no override).
    pub served: BTreeMap<String, Resolved>,
    /// The overrides as served, parsed: the phone menu's and the web UI's.
    pub local_override: Option<ConfigFile>,
    pub web_override: Option<ConfigFile>,
}

/// What a console or a script can do about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remedy {
    /// Release the device (quarantines its overrides, withdraws its assignment).
    Release,
    /// Edit a file of the boot root.
    BootRoot,
    /// Edit the device's assignment (its own parameters).
    Assignment,
    /// Nothing polyprov can do (the network, Poly's cloud, the phone itself).
    Elsewhere,
}

impl Finding {
    /// The remedy its fix names (the fix texts are made in this module, so they are matched
    /// here, beside them).
    pub fn remedy(&self) -> Remedy {
        if self.fix.starts_with("polyprov device release") {
            Remedy::Release
        } else if self.fix.starts_with("remove it from")
            || self.fix.starts_with("polyprov config check")
            || self.fix.starts_with("add the file to the boot root")
        {
            Remedy::BootRoot
        } else if self.kind == FindingKind::SharedSecret {
            Remedy::Assignment
        } else {
            Remedy::Elsewhere
        }
    }
}

/// Diagnoses one device from what it would be served.
pub fn analyse(input: DoctorInput<'_>) -> Report {
    analyse_all(input).report
}

/// [`analyse`], keeping the effective configuration and the parsed overrides.
pub fn analyse_all(input: DoctorInput<'_>) -> Analysis {
    let DoctorInput {
        mac,
        state,
        model,
        firmware,
        master,
        files: served,
        master_is_staging,
        local_override,
        web_override,
        dhcp,
        held,
        quarantine,
    } = input;
    let assigned = state == "assigned";
    let mut findings = Vec::new();
    let mut files = Vec::new();
    let mut config_names = Vec::new();
    let mut master_desc = "none (the phone finds no master)".to_string();
    if let Some((master_name, listed)) = &master {
        match listed {
            Ok(_) => {
                master_desc = if assigned {
                    format!("{master_name}, generated from {SHARED_MASTER}")
                } else {
                    format!("{master_name}, answered with the staging master")
                };
                for (name, text) in &served {
                    config_names.push(name.clone());
                    match text {
                        Some(t) => match ConfigFile::parse(name, t) {
                            Ok(f) => files.push(f),
                            Err(e) => findings.push(Finding {
                                kind: FindingKind::Info,
                                what: format!("{e}: the phone cannot use {name}"),
                                fix: format!("polyprov config check {name}"),
                            }),
                        },
                        None => findings.push(Finding {
                            kind: FindingKind::Info,
                            what: format!("{name} is listed in CONFIG_FILES but not served"),
                            fix: "add the file to the boot root or remove it from CONFIG_FILES"
                                .into(),
                        }),
                    }
                }
            }
            Err(e) => findings.push(Finding {
                kind: FindingKind::Info,
                what: e.clone(),
                fix: format!("polyprov config check <boot root>/{SHARED_MASTER}"),
            }),
        }
    }
    let local = local_override
        .as_deref()
        .and_then(|t| ConfigFile::parse(&format!("{mac}-phone.cfg"), t).ok());
    let web = web_override
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
            Layer::Default | Layer::DeviceFlash => return None,
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
            let at = w
                .file
                .as_ref()
                .map(|f| {
                    let line = w
                        .position
                        .map(|p| format!(":{}", p.line))
                        .unwrap_or_default();
                    format!(" ({f}{line})")
                })
                .unwrap_or_default();
            findings.push(Finding {
                kind: FindingKind::Returns,
                what: format!(
                    "after a factory reset the phone gets its {label} ({name}) from {}{at}",
                    w.layer
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
                kind: FindingKind::Returns,
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
                    kind: FindingKind::SharedSecret,
                    what: format!(
                        "{} (line {}) sets {} for every phone that reads it",
                        f.name(),
                        f.position(p.offset).line,
                        p.name
                    ),
                    fix: format!(
                        "remove {} from {} and set it per device (`polyprov device assign … --param`)",
                        p.name,
                        f.name()
                    ),
                });
            }
        }
    }
    for (opt, value) in dhcp {
        if *opt == 66 || *opt == 160 || (128..=254).contains(opt) {
            findings.push(Finding {
                kind: FindingKind::Dhcp,
                what: format!("DHCP option {opt} hands out {value:?}: a factory-reset phone finds this server again at once"),
                fix: if assigned {
                    format!("{release}   (it will then get only the staging master)")
                } else {
                    "nothing to do here: the device is served only the staging master".into()
                },
            });
        }
    }
    let ztp = source(&e, "device.prov.ztpEnabled");
    if ztp.value.as_deref() != Some("0") {
        findings.push(Finding {
            kind: FindingKind::Ztp,
            what: "ZTP is not disabled for this phone (device.prov.ztpEnabled is not 0): if it is registered with Poly ZTP or Poly Lens, the redirect brings it back to its old server".into(),
            fix: "remove the phone from the Poly ZTP / Poly Lens account (the account owner's task), or set device.prov.ztpEnabled=\"0\" with its .set gate".into(),
        });
    }
    if assigned {
        findings.extend(remote_findings(
            &e,
            mac,
            model.as_deref(),
            firmware.as_deref(),
        ));
    }
    if master.is_some() && !assigned && !master_is_staging {
        findings.push(Finding {
            kind: FindingKind::Info,
            what: format!("the boot root has a hand-made {mac}.cfg or a customised staging master; check it for settings of this phone"),
            fix: format!("polyprov config check <boot root>/{mac}.cfg"),
        });
    }
    let served = effective(&PhoneSources {
        config_files: &files,
        defaults: Some(&defaults),
        ..PhoneSources::default()
    });
    let report = Report {
        mac: mac.to_string(),
        state: state.to_string(),
        model,
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
    };
    Analysis {
        report,
        effective: e,
        served,
        local_override: local,
        web_override: web,
    }
}

/// The oldest UC Software with the phones' REST API, by model family, as third-party bulk tools
/// list it (not a vendor table: `[3P]` in the domain notes): VVX 5.9; Trio 8500/8800 7.2; Trio
/// C60/8300, CCX and Edge E 8.0.
fn rest_minimum(model: &str) -> Option<&'static str> {
    let m = model.to_ascii_uppercase().replace(['_', ' ', '-'], "");
    if m.starts_with("VVX") {
        Some("5.9")
    } else if m.contains("TRIO8500") || m.contains("TRIO8800") {
        Some("7.2")
    } else if m.starts_with("TRIO") || m.starts_with("CCX") || m.starts_with("EDGEE") {
        Some("8.0")
    } else {
        None
    }
}

/// What a remote resync, reboot or factory reset of this assigned phone needs that its
/// configuration does not give.
fn remote_findings(
    e: &BTreeMap<String, Resolved>,
    mac: Mac,
    model: Option<&str>,
    firmware: Option<&str>,
) -> Vec<Finding> {
    let value = |k: &str| e.get(k).and_then(|r| r.value.clone()).unwrap_or_default();
    let mut out = Vec::new();
    if value("apps.restapi.enabled").trim() != "1" {
        out.push(Finding {
            kind: FindingKind::Remote,
            what: "the phone's REST API is off (apps.restapi.enabled is not 1): polyprov cannot reboot or factory-reset it remotely (`device release --factory-reset`)".into(),
            fix: format!("polyprov device assign {mac} … --param apps.restapi.enabled=1   (or in its profile)"),
        });
    }
    let admin = value(ADMIN_PASSWORD);
    if admin.is_empty() || admin == "456" {
        out.push(Finding {
            kind: FindingKind::Remote,
            what: "its admin password is the factory default: the REST API refuses it (status 4010, \"Default Password Not Allowed\")".into(),
            fix: format!("polyprov device assign {mac} --admin-password-file FILE …"),
        });
    }
    if let (Some(model), Some(fw)) = (model, firmware)
        && let Some(min) = rest_minimum(model)
        && crate::guide::compare_versions(fw, min) == std::cmp::Ordering::Less
    {
        out.push(Finding {
            kind: FindingKind::Remote,
            what: format!("it runs UC Software {fw}; the REST API needs {min} or later on a {model} (as third-party tools report)"),
            fix: "update its software (APP_FILE_PATH in the master), or act over SIP: `polyprov device resync|reboot --via sip`".into(),
        });
    }
    if value("voIpProt.SIP.specialEvent.checkSync.alwaysReboot").trim() != "1" {
        out.push(Finding {
            kind: FindingKind::Remote,
            what: "a reboot over SIP (check-sync) may only make it re-read its configuration: voIpProt.SIP.specialEvent.checkSync.alwaysReboot is not 1, and whether Poly honours check-sync;reboot=true is not confirmed".into(),
            fix: "set voIpProt.SIP.specialEvent.checkSync.alwaysReboot=1 in its profile, or reboot over the REST API".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effective_of(xml: &str) -> BTreeMap<String, Resolved> {
        let f = ConfigFile::parse("site.cfg", xml).unwrap();
        let defaults = known_defaults();
        effective(&PhoneSources {
            local_override: None,
            web_override: None,
            config_files: std::slice::from_ref(&f),
            flash: None,
            defaults: Some(&defaults),
        })
    }

    #[test]
    fn remote_actions_say_what_the_phone_lacks() {
        let mac: Mac = "0004f2aa814c".parse().unwrap();
        let bare = effective_of("<polycomConfig/>");
        let found = remote_findings(&bare, mac, Some("VVX_410"), Some("5.8.0.1"));
        let said: Vec<&str> = found.iter().map(|f| f.what.as_str()).collect();
        for what in [
            "REST API is off",
            "factory default",
            "needs 5.9",
            "alwaysReboot",
        ] {
            assert!(said.iter().any(|w| w.contains(what)), "{what} in {said:?}");
        }
        let ready = effective_of(
            r#"<polycomConfig apps.restapi.enabled="1" device.set="1"
                 device.auth.localAdminPassword="S3cret" device.auth.localAdminPassword.set="1"
                 voIpProt.SIP.specialEvent.checkSync.alwaysReboot="1"/>"#,
        );
        let left = remote_findings(&ready, mac, Some("VVX_410"), Some("6.4.3.5018"));
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(rest_minimum("Trio_8800"), Some("7.2"));
        assert_eq!(rest_minimum("SPIP_650"), None);
    }

    #[test]
    fn the_analysis_keeps_what_the_server_alone_serves_and_names_each_remedy() {
        let mac: Mac = "0004f2aa814c".parse().unwrap();
        let dhcp = BTreeMap::from([(66u8, "http://prov.example.com/".to_string())]);
        let a = analyse_all(DoctorInput {
            mac,
            state: "assigned",
            model: Some("VVX500".into()),
            firmware: None,
            master: Some((format!("{mac}.cfg"), Ok(vec!["site.cfg".into()]))),
            files: vec![(
                "site.cfg".into(),
                Some(r#"<p reg.1.auth.password="shared" tcpIpApp.sntp.address="ntp.example.com"/>"#.into()),
            )],
            master_is_staging: false,
            local_override: Some(r#"<PHONE_CONFIG><OVERRIDES device.auth.localAdminPassword="9999" tcpIpApp.sntp.address="ntp.local"/></PHONE_CONFIG>"#.into()),
            web_override: None,
            dhcp: &dhcp,
            held: vec![],
            quarantine: vec![],
        });
        // The phone gets the override's values; the server alone gives the file's.
        assert_eq!(
            a.effective["tcpIpApp.sntp.address"].value.as_deref(),
            Some("ntp.local")
        );
        assert_eq!(
            a.served["tcpIpApp.sntp.address"].value.as_deref(),
            Some("ntp.example.com")
        );
        assert!(
            !a.served.contains_key(ADMIN_PASSWORD)
                || a.served[ADMIN_PASSWORD].value.as_deref() == Some("456")
        );
        assert!(a.local_override.is_some() && a.web_override.is_none());
        let remedy = |k: FindingKind| {
            a.report
                .findings
                .iter()
                .filter(|f| f.kind == k)
                .map(Finding::remedy)
                .collect::<Vec<_>>()
        };
        assert!(
            remedy(FindingKind::Returns).contains(&Remedy::Release),
            "{:?}",
            a.report.findings
        );
        assert_eq!(remedy(FindingKind::SharedSecret), vec![Remedy::Assignment]);
        assert!(
            remedy(FindingKind::Dhcp)
                .iter()
                .all(|r| *r == Remedy::Release)
        );
        assert!(
            remedy(FindingKind::Ztp)
                .iter()
                .all(|r| *r == Remedy::Elsewhere)
        );
    }
}
