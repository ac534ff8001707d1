//! Actions over SIP: where a phone's NOTIFY goes, with which credentials, and what its answer
//! means.

use super::{ActionKind, Answer, Plan};
use crate::core::Core;
use crate::settings::ActionSettings;
use polyprov_model::Mac;
use polyprov_sip::{Credentials, NotifyRequest, Outcome, Report, Timers};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A NOTIFY ready to send.
pub(super) struct Prepared {
    pub request: NotifyRequest,
}

/// `HOST[:PORT]` (an IPv6 address in brackets when a port follows) to one address.
pub(super) async fn parse_target(s: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:{default_port}")
    };
    tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("target {s:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("target {s:?} has no address"))
}

/// The NOTIFY for `mac`: to `--target`, else to the address the phone was last seen from on its
/// SIP port (`voIpProt.SIP.local.port` in its configuration, else the `sip_port` setting); the request URI's user and the Digest credentials from its line 1
/// (`reg.1.address`, `reg.1.auth.userId`, `reg.1.auth.password`), for a phone that validates
/// NOTIFY requests.
pub(super) async fn prepare(
    core: &Core,
    settings: &ActionSettings,
    mac: Mac,
    plan: &Plan,
) -> Result<Prepared, String> {
    let found = core
        .effective_params(mac)
        .await
        .map_err(|e| format!("reading the inventory: {e}"))?;
    let (device, params) = match found {
        Some(f) => (Some(f.0), f.1),
        None if plan.target.is_some() => (None, Default::default()),
        None => {
            return Err(format!(
                "{mac} is not in the inventory; give its address with --target"
            ));
        }
    };
    let target = match plan.target {
        Some(t) => t,
        None => {
            let ip = last_ip(core, mac, device.as_ref().ok_or("no device")?).await?;
            // The phone's own SIP port when its configuration sets one.
            let port = params
                .get("voIpProt.SIP.local.port")
                .and_then(|p| p.trim().parse::<u16>().ok())
                .filter(|p| *p > 0)
                .unwrap_or(if plan.transport == polyprov_sip::Transport::Tls {
                    settings.sip_tls_port
                } else {
                    settings.sip_port
                });
            SocketAddr::new(ip, port)
        }
    };
    let get = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let auth_user = get("reg.1.auth.userId");
    let address_user =
        get("reg.1.address").map(|a| a.split('@').next().unwrap_or_default().to_string());
    let user = address_user
        .clone()
        .filter(|u| !u.is_empty())
        .or_else(|| auth_user.clone())
        .unwrap_or_else(|| "polyprov".into());
    let credentials = match (auth_user.or(address_user), get("reg.1.auth.password")) {
        (Some(user), Some(password)) => Some(Credentials { user, password }),
        _ => None,
    };
    let event = match plan.action {
        ActionKind::Resync => "check-sync".to_string(),
        ActionKind::Reboot => settings.sip_reboot_event.clone(),
        ActionKind::FactoryReset => return Err("a factory reset cannot be sent over SIP".into()),
    };
    let t1 = Duration::from_millis(settings.sip_t1_ms.max(1));
    let tls = match plan.transport {
        polyprov_sip::Transport::Tls => {
            Some(super::rest::client_config(mac, plan.roots.clone())?.0)
        }
        _ => None,
    };
    Ok(Prepared {
        request: NotifyRequest {
            target,
            transport: plan.transport,
            user,
            event,
            credentials,
            timers: Timers { t1, t2: t1 * 8 },
            tls,
        },
    })
}

/// The IP address a device's requests last came from: what is not written yet first, then the
/// inventory — after waiting for a write in progress, which holds sightings that are in
/// neither place while it runs.
pub(super) async fn last_ip(
    core: &Core,
    mac: Mac,
    device: &polyprov_store::inventory::Device,
) -> Result<IpAddr, String> {
    let mut last = core
        .unflushed_address(mac)
        .or_else(|| device.last_addr.clone());
    if last.is_none() {
        core.flush().await;
        last = match core.unflushed_address(mac) {
            // The write failed and kept them for the next one.
            Some(a) => Some(a),
            None => core
                .device(mac)
                .await
                .map_err(|e| format!("reading the inventory: {e}"))?
                .and_then(|d| d.last_addr),
        };
    }
    let last = last.ok_or_else(|| {
        format!("{mac} has not been seen, so its address is unknown; give it with --target")
    })?;
    last.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| last.parse::<IpAddr>())
        .map_err(|_| format!("{mac}'s last address {last:?} is not an IP address"))
}

/// A report as a job shows it (never with the credentials).
pub(super) fn answer_of(report: &Report) -> Answer {
    let (outcome, code, detail) = match &report.outcome {
        Outcome::Accepted { code, reason } => ("accepted", Some(*code), format!("{code} {reason}")),
        Outcome::Rejected { code, reason } => {
            let hint = match code {
                481 => " (the phone does not take unsolicited NOTIFY of this event)",
                489 => " (the phone does not know this event)",
                _ => "",
            };
            ("rejected", Some(*code), format!("{code} {reason}{hint}"))
        }
        Outcome::Unauthorized { code, detail } => {
            ("unauthorized", Some(*code), format!("{code}: {detail}"))
        }
        Outcome::TimedOut => (
            "timed_out",
            None,
            format!(
                "no answer after {} transmissions in {:.1} s (phone off, wrong address or port, or a firewall)",
                report.transmissions,
                report.elapsed.as_secs_f64()
            ),
        ),
        Outcome::Unreachable { detail } => ("unreachable", None, detail.clone()),
    };
    Answer {
        outcome,
        code,
        detail,
        transmissions: report.transmissions,
        challenged: report.challenged,
        elapsed_ms: report.elapsed.as_millis() as u64,
        ignored: report.ignored.clone(),
    }
}
