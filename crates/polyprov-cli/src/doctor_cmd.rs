//! `polyprov doctor` and `polyprov dhcp-probe`: what a reset phone would get back, and what the
//! network's DHCP servers offer.

use crate::args::*;
use crate::client::{CliError, Client, Exit};
use crate::out::outln;
use polyprov_model::doctor::{Finding, FindingKind, Report, Source};

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
pub(crate) fn probe_findings(r: &crate::dhcp_probe::ProbeResult, mac: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    for o in &r.offers {
        for n in [66u8, 160, 150] {
            if let Some(v) = o.options.get(&n) {
                out.push(Finding {
                    kind: FindingKind::Dhcp,
                    what: format!("the DHCP server {} on {} hands out option {n} = {v:?}: a factory-reset phone finds that server at once", o.server, r.interface),
                    fix: format!("make sure that server serves {mac} nothing of its own (`polyprov device release {mac}` when it is polyprov), or remove option {n} for this network"),
                });
            }
        }
    }
    out
}

/// `polyprov doctor MAC`: the server's typed report, with what the DHCP probe saw.
pub(crate) async fn doctor(
    mac: &str,
    probe_iface: Option<&str>,
    api: &ApiArgs,
) -> Result<(), CliError> {
    let bad = |e: String| CliError::new(Exit::Failed, e);
    let c = Client::new(api)?;
    let answer = c.get(&format!("devices/{mac}/doctor")).await?;
    let mut report: Report = serde_json::from_value(answer)
        .map_err(|e| bad(format!("the server's doctor report is not understood: {e}")))?;
    let mut probe = None;
    if let Some(iface) = probe_iface {
        let p = crate::dhcp_probe::probe(iface, std::time::Duration::from_secs(3), true)
            .map_err(bad)?;
        report.findings.extend(probe_findings(&p, mac));
        probe = Some(p);
    }
    if api.json {
        let mut v = serde_json::to_value(&report).map_err(|e| bad(e.to_string()))?;
        if let Some(p) = probe {
            v["dhcp_probe"] = serde_json::to_value(&p).map_err(|e| bad(e.to_string()))?;
        }
        return crate::client::print_json(&v);
    }
    print_report(&report);
    Ok(())
}

fn print_report(r: &Report) {
    let src = |s: &Source| {
        let file = match (&s.file, s.line) {
            (Some(f), Some(l)) => format!(" ({f}:{l})"),
            (Some(f), None) => format!(" ({f})"),
            _ => String::new(),
        };
        format!(
            "{:?} from {}{file}",
            s.value.as_deref().unwrap_or(""),
            s.source
        )
    };
    let list = |l: &[String], none: &str| {
        if l.is_empty() {
            none.to_string()
        } else {
            l.join(", ")
        }
    };
    outln!(
        "{} ({}, model {})",
        r.mac,
        r.state,
        r.model.as_deref().unwrap_or("-")
    );
    outln!("After a factory reset this phone reads {}", r.master);
    outln!("  CONFIG_FILES: {}", list(&r.config_files, "(none)"));
    outln!("  admin password       {}", src(&r.admin_password));
    outln!("  user password        {}", src(&r.user_password));
    outln!("  provisioning server  {}", src(&r.provisioning_server));
    for (k, v) in &r.lines {
        outln!("  {k:<20} {}", src(v));
    }
    outln!("  held for it          {}", list(&r.held, "nothing"));
    if !r.quarantine.is_empty() {
        outln!("  quarantined          {}", r.quarantine.join(", "));
    }
    outln!();
    if r.findings.is_empty() {
        outln!("Nothing will bring old settings back.");
    }
    for (i, f) in r.findings.iter().enumerate() {
        outln!("{}. [{}] {}", i + 1, f.kind, f.what);
        outln!("   fix: {}", f.fix);
    }
}
