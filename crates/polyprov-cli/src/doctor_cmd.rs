//! `polyprov doctor` and `polyprov dhcp-probe`: what a reset phone would get back, and what the
//! network's DHCP servers offer.

use crate::args::*;
use crate::client::{CliError, Client, Exit};
use crate::out::outln;

pub(crate) fn print_probe(r: &crate::dhcp_probe::ProbeResult) {
    if r.offers.is_empty() {
        outln!("no DHCP offer on {}", r.interface);
    }
    for o in &r.offers {
        outln!("offer from {} ({} offered)", o.server, o.address);
        for (n, v) in &o.options {
            outln!("  option {n:<3} {v}");
        }
    }
    if r.malformed > 0 {
        outln!("{} malformed replies ignored", r.malformed);
    }
}

/// Findings for what the probe saw: options that point phones at a provisioning server.
pub(crate) fn probe_findings(
    r: &crate::dhcp_probe::ProbeResult,
    mac: &str,
) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for o in &r.offers {
        for n in [66u8, 160, 150] {
            if let Some(v) = o.options.get(&n) {
                out.push(serde_json::json!({
                    "kind": "dhcp",
                    "what": format!("the DHCP server {} on {} hands out option {n} = {v:?}: a factory-reset phone finds that server at once", o.server, r.interface),
                    "fix": format!("make sure that server serves {mac} nothing of its own (`polyprov device release {mac}` when it is polyprov), or remove option {n} for this network"),
                }));
            }
        }
    }
    out
}

pub(crate) async fn doctor(
    mac: &str,
    probe_iface: Option<&str>,
    api: &ApiArgs,
) -> Result<(), CliError> {
    let c = Client::new(api)?;
    let mut r = c.get(&format!("devices/{mac}/doctor")).await?;
    if let Some(iface) = probe_iface {
        let probe = crate::dhcp_probe::probe(iface, std::time::Duration::from_secs(3))
            .map_err(|e| CliError::new(Exit::Failed, e))?;
        let extra = probe_findings(&probe, mac);
        if let Some(f) = r["findings"].as_array_mut() {
            f.extend(extra);
        }
        r["dhcp_probe"] =
            serde_json::to_value(&probe).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    }
    if api.json {
        return crate::client::print_json(&r);
    }
    let t = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let src = |v: &serde_json::Value| {
        let file = match (v["file"].as_str(), v["line"].as_u64()) {
            (Some(f), Some(l)) => format!(" ({f}:{l})"),
            (Some(f), None) => format!(" ({f})"),
            _ => String::new(),
        };
        format!(
            "{:?} from {}{file}",
            v["value"].as_str().unwrap_or(""),
            t(&v["source"])
        )
    };
    outln!(
        "{} ({}, model {})",
        t(&r["mac"]),
        t(&r["state"]),
        t(&r["model"])
    );
    outln!("After a factory reset this phone reads {}", t(&r["master"]));
    let files: Vec<String> = r["config_files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(t)
        .collect();
    outln!(
        "  CONFIG_FILES: {}",
        if files.is_empty() {
            "(none)".into()
        } else {
            files.join(", ")
        }
    );
    outln!("  admin password       {}", src(&r["admin_password"]));
    outln!("  user password        {}", src(&r["user_password"]));
    outln!("  provisioning server  {}", src(&r["provisioning_server"]));
    for (k, v) in r["lines"].as_object().into_iter().flatten() {
        outln!("  {k:<20} {}", src(v));
    }
    let held: Vec<String> = r["held"].as_array().into_iter().flatten().map(t).collect();
    outln!(
        "  held for it          {}",
        if held.is_empty() {
            "nothing".into()
        } else {
            held.join(", ")
        }
    );
    let q: Vec<String> = r["quarantine"]
        .as_array()
        .into_iter()
        .flatten()
        .map(t)
        .collect();
    if !q.is_empty() {
        outln!("  quarantined          {}", q.join(", "));
    }
    let findings = r["findings"].as_array().cloned().unwrap_or_default();
    outln!();
    if findings.is_empty() {
        outln!("Nothing will bring old settings back.");
    }
    for (i, f) in findings.iter().enumerate() {
        outln!("{}. [{}] {}", i + 1, t(&f["kind"]), t(&f["what"]));
        outln!("   fix: {}", t(&f["fix"]));
    }
    Ok(())
}
