//! `doctor`: gathers what the server would serve a factory-reset phone right now (the same code
//! path as a phone request, without recording a sighting) and hands it to the model's analysis
//! (`polyprov_model::doctor`), whose typed [`Report`] the admin API serialises.

use crate::core::{Answer, Core};
use polyprov_model::Mac;
pub use polyprov_model::doctor::{Analysis, Finding, FindingKind, Remedy, Report, Source};
use polyprov_model::doctor::{DoctorInput, analyse_all, config_files_of};
use polyprov_model::master::model_token;
use polyprov_store::DeviceState;
use std::collections::BTreeMap;

async fn text_of(core: &Core, path: &str) -> Option<String> {
    match core.preview(path).await.ok()? {
        Answer::Generated(g) => Some(String::from_utf8_lossy(&g.body).into_owned()),
        Answer::File(f) => tokio::fs::read(&f.path)
            .await
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
    }
}

/// Diagnoses one device. `dhcp` is what the admin declared the network hands out.
pub async fn diagnose(
    core: &Core,
    dhcp: &BTreeMap<u8, String>,
    mac: Mac,
) -> Result<Report, String> {
    Ok(diagnose_all(core, dhcp, mac).await?.report)
}

/// [`diagnose`], keeping the effective configuration and the parsed overrides (the console
/// shows them).
pub async fn diagnose_all(
    core: &Core,
    dhcp: &BTreeMap<u8, String>,
    mac: Mac,
) -> Result<Analysis, String> {
    let device = core.device(mac).await.map_err(|e| e.to_string())?;
    let state = device.as_ref().map_or(DeviceState::Unassigned, |d| d.state);
    let model = device
        .as_ref()
        .and_then(|d| d.model.as_deref())
        .map(model_token);

    let master_name = format!("{mac}.cfg");
    let master_text = text_of(core, &format!("/{master_name}")).await;
    let master = master_text
        .as_deref()
        .map(|t| config_files_of(&master_name, t, model.as_deref(), mac));
    let mut files = Vec::new();
    if let Some(Ok(names)) = &master {
        for name in names {
            let text = text_of(core, &format!("/{}", name.trim_start_matches('/'))).await;
            files.push((name.clone(), text));
        }
    }
    let held = core
        .uploads_of(mac)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|u| !u.kind.ends_with(".log"))
        .map(|u| format!("{} v{} ({} bytes)", u.kind, u.version, u.size))
        .collect();
    let quarantine = core
        .quarantine_sets(mac)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|q| format!("{} ({} files)", q.id, q.files.len()))
        .collect();
    let login = core.login_state(mac);
    let mut analysis = analyse_all(DoctorInput {
        mac,
        state: state.as_str(),
        firmware: device.as_ref().and_then(|d| d.firmware.clone()),
        model,
        master_is_staging: master_text
            .as_deref()
            .is_some_and(|t| t.contains("polyprov staging master")),
        master: master.map(|m| (master_name, m)),
        files,
        local_override: text_of(core, &format!("/{mac}-phone.cfg")).await,
        web_override: text_of(core, &format!("/{mac}-web.cfg")).await,
        dhcp,
        held,
        quarantine,
    });
    if let Some(l) = login
        && l["shared_used_after_served"] == true
    {
        analysis.report.findings.push(Finding {
            kind: FindingKind::Dhcp,
            what: format!(
                "{mac} was given its own provisioning login but keeps presenting the shared one: credentials in its provisioning URL (DHCP option 160/66, or the URL typed into the phone) win over device.prov.user/password"
            ),
            fix: "serve the provisioning URL without user:password@ (the phone then uses the login in flash), or set the server statically on the phone".into(),
        });
    }
    Ok(analysis)
}
