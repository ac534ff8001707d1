//! `polyprov sim`: an emulated phone whose state lives in a folder, so a shell script can tell a
//! story (provision, change a password, reset, boot again), and the boot storm.

use crate::args::*;
use crate::client::{CliError, Exit, print_json};
use crate::out::outln;
use polyprov_model::catalog::Catalog;
use polyprov_model::keypad::{ModeCycle, events, type_text};
use polyprov_phone::phone::{BootReport, MenuReset};
use polyprov_phone::storm::{StormConfig, StormReport};
use polyprov_phone::{AnyTransport, FtpTransport, LeanHttp, PhoneState};
use std::path::{Path, PathBuf};

fn state_file(dir: &Path) -> PathBuf {
    dir.join("phone.json")
}

fn load(dir: &Path) -> Result<PhoneState, CliError> {
    let p = state_file(dir);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        CliError::new(
            Exit::Usage,
            format!("{}: {e} (run `polyprov sim init` first)", p.display()),
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::new(Exit::Failed, format!("{}: {e}", p.display())))
}

fn save(dir: &Path, s: &PhoneState) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::new(Exit::Failed, format!("{}: {e}", dir.display())))?;
    let text =
        serde_json::to_string_pretty(s).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let tmp = dir.join("phone.json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, state_file(dir)))
        .map_err(|e| CliError::new(Exit::Failed, format!("{}: {e}", dir.display())))
}

/// The phone's CA list for ftps://, kept beside its state.
fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.pem")
}

/// The phone's device certificate and key, kept beside its state.
fn device_files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("device.pem"), dir.join("device-key.pem"))
}

/// The phone's transports, trusting the CAs it was given and presenting its device
/// certificate, if it has one.
fn transport(dir: &Path) -> Result<AnyTransport, CliError> {
    let ca = ca_file(dir);
    Ok(AnyTransport {
        ftp: ftp_trusting(ca.exists().then_some(ca.as_path()))?,
        http: https_trusting(ca.exists().then_some(ca.as_path()), Some(device_files(dir)))?,
        ..AnyTransport::default()
    })
}

/// A lean HTTP(S) client trusting the CA certificates in `ca` (PEM), if given, and presenting
/// the device certificate in `device` when both its files exist.
pub fn https_trusting(
    ca: Option<&Path>,
    device: Option<(PathBuf, PathBuf)>,
) -> Result<LeanHttp, CliError> {
    let Some(ca) = ca else {
        return Ok(LeanHttp::new());
    };
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", p.display())))
    };
    let ca_pem = read(ca)?;
    let device = match device {
        Some((cert, key)) if cert.exists() && key.exists() => Some((read(&cert)?, read(&key)?)),
        _ => None,
    };
    let tls = polyprov_phone::transport::tls::client_config(
        &ca_pem,
        device.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )
    .map_err(|e| CliError::new(Exit::Usage, e.to_string()))?;
    Ok(LeanHttp::new().with_tls(tls))
}

/// An FTP transport trusting the CA certificates in `ca` (PEM), if given.
pub fn ftp_trusting(ca: Option<&Path>) -> Result<FtpTransport, CliError> {
    let ftp = FtpTransport::default();
    let Some(ca) = ca else { return Ok(ftp) };
    let pem = std::fs::read(ca)
        .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", ca.display())))?;
    ftp.trusting(&pem)
        .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", ca.display())))
}

/// `sim init`.
#[allow(clippy::too_many_arguments)]
pub fn init(
    dir: &Path,
    mac: &str,
    model: &str,
    firmware: &str,
    server: Option<&str>,
    dhcp: &[String],
    ztp: Option<&str>,
    ca: Option<&Path>,
    device: Option<(&Path, &Path)>,
    as_json: bool,
) -> Result<(), CliError> {
    let catalog = Catalog::embedded().map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let m = catalog.find(model).ok_or_else(|| {
        let near: Vec<String> = catalog
            .closest(model, 3)
            .iter()
            .map(|m| m.id.clone())
            .collect();
        CliError::new(
            Exit::NotFound,
            format!("no model {model:?}; closest: {}", near.join(", ")),
        )
    })?;
    let mac = mac
        .parse()
        .map_err(|e: polyprov_model::MacError| CliError::new(Exit::Usage, e.to_string()))?;
    let mut s = PhoneState::new(mac, m, firmware);
    if let Some(url) = server {
        s.flash.insert("device.prov.serverName".into(), url.into());
        s.flash
            .insert("device.dhcp.bootSrvUseOpt".into(), "Static".into());
    }
    for d in dhcp {
        let (n, v) = d
            .split_once('=')
            .and_then(|(n, v)| n.parse::<u8>().ok().map(|n| (n, v)))
            .ok_or_else(|| {
                CliError::new(
                    Exit::Usage,
                    format!("--dhcp-option {d:?}: expected NUMBER=VALUE, e.g. 160=http://host/"),
                )
            })?;
        s.network.dhcp.insert(n, v.to_string());
    }
    s.network.ztp = ztp.map(str::to_string);
    save(dir, &s)?;
    if let Some(ca) = ca {
        std::fs::copy(ca, ca_file(dir))
            .map_err(|e| CliError::new(Exit::Usage, format!("--ca-file {}: {e}", ca.display())))?;
    }
    if let Some((cert, key)) = device {
        let (to_cert, to_key) = device_files(dir);
        let copy = |from: &Path, to: &Path| {
            std::fs::copy(from, to)
                .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", from.display())))
        };
        copy(cert, &to_cert)?;
        copy(key, &to_key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&to_key, std::fs::Permissions::from_mode(0o600));
        }
    }
    // Refuse what the phone could not use, now rather than at its first boot.
    transport(dir)?;
    if as_json {
        return print_json(
            &serde_json::to_value(&s).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?,
        );
    }
    outln!(
        "{} {} ({}) with software {} is ready in {}",
        s.model,
        s.mac,
        m.name,
        s.firmware,
        dir.display()
    );
    Ok(())
}

fn print_boot(r: &BootReport) {
    match (&r.server, &r.server_source) {
        (Some(s), Some(src)) => outln!("provisioning server {s} (from {src})"),
        _ => outln!("no provisioning server"),
    }
    for q in &r.requests {
        let status = if q.status == 0 {
            "no answer".to_string()
        } else {
            q.status.to_string()
        };
        outln!(
            "  {:<12} {:<4} {:<40} {status:>9}  {} bytes",
            q.stage,
            q.method,
            q.path,
            q.bytes
        );
    }
    if let Some(v) = &r.upgraded_to {
        outln!("flashed software {v}");
    }
    for p in &r.problems {
        outln!("  problem: {p}");
    }
}

/// `sim boot`.
pub async fn boot(dir: &Path, as_json: bool) -> Result<(), CliError> {
    let mut s = load(dir)?;
    let r = s.boot(&transport(dir)?).await;
    save(dir, &s)?;
    if as_json {
        return print_json(&serde_json::json!({"boot": r, "phone": s.summary()}));
    }
    print_boot(&r);
    let sum = s.summary();
    outln!(
        "admin password {:?} from {}",
        sum.admin_password.value.unwrap_or_default(),
        sum.admin_password.source
    );
    Ok(())
}

/// `sim listen`.
/// Where `sim listen` listens.
pub struct ListenAddrs {
    pub sip: std::net::SocketAddr,
    pub sip_tcp: Option<std::net::SocketAddr>,
    pub sip_tls: Option<std::net::SocketAddr>,
    pub rest: Option<std::net::SocketAddr>,
}

pub async fn listen(
    dir: &Path,
    addrs: ListenAddrs,
    count: Option<usize>,
    time_limit: u64,
    as_json: bool,
) -> Result<(), CliError> {
    use polyprov_sip::phone::Listener;
    use std::sync::{Arc, Mutex};
    let ListenAddrs {
        sip,
        sip_tcp,
        sip_tls,
        rest,
    } = addrs;
    let mut phone = load(dir)?;
    let transport = transport(dir)?;
    let validation = Arc::new(Mutex::new(phone.notify_validation()));
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let current = validation.clone();
    let listener = Listener::new(
        move || current.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        tx,
    );
    let cannot =
        |what: &str, e: std::io::Error| CliError::new(Exit::Failed, format!("{what}: {e}"));
    let udp = tokio::net::UdpSocket::bind(sip)
        .await
        .map_err(|e| cannot(&format!("SIP on udp {sip}"), e))?;
    let udp_addr = udp.local_addr().map_err(|e| cannot("SIP socket", e))?;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(listener.clone().serve_udp(udp));
    let mut lines = vec![format!("listening sip/udp {udp_addr}")];
    if let Some(addr) = sip_tcp {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| cannot(&format!("SIP on tcp {addr}"), e))?;
        lines.push(format!(
            "listening sip/tcp {}",
            tcp.local_addr().map_err(|e| cannot("SIP socket", e))?
        ));
        tasks.spawn(listener.clone().serve_tcp(tcp));
    }
    let rest_view = Arc::new(Mutex::new(phone.rest_view()));
    let (rest_tx, mut rest_rx) = tokio::sync::mpsc::channel(4);
    // The phone's TLS server identity (its device certificate), for SIP over TLS and REST.
    let device_tls = || {
        let (cert, key) = device_files(dir);
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| {
                CliError::new(
                    Exit::Usage,
                    format!(
                        "{}: {e} (TLS needs sim init --device-cert/--device-key)",
                        p.display()
                    ),
                )
            })
        };
        polyprov_phone::rest_tls(&read(&cert)?, &read(&key)?)
            .map_err(|e| CliError::new(Exit::Usage, e))
    };
    if let Some(addr) = sip_tls {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| cannot(&format!("SIP on tls {addr}"), e))?;
        lines.push(format!(
            "listening sip/tls {}",
            l.local_addr().map_err(|e| cannot("SIP socket", e))?
        ));
        tasks.spawn(listener.clone().serve_tls(l, device_tls()?));
    }
    if let Some(addr) = rest {
        let tls = device_tls()?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| cannot(&format!("REST on {addr}"), e))?;
        lines.push(format!(
            "listening rest/https {}",
            l.local_addr().map_err(|e| cannot("REST socket", e))?
        ));
        tasks.spawn(polyprov_phone::serve_rest(
            l,
            tls,
            rest_view.clone(),
            rest_tx,
        ));
    } else {
        drop(rest_tx);
    }
    for l in &lines {
        if as_json {
            crate::client::print_json_line(&serde_json::json!({ "listening": l }))?;
        } else {
            outln!(
                "{l} (phone {}, NOTIFY validation {:?})",
                phone.mac,
                *validation.lock().unwrap_or_else(|p| p.into_inner())
            );
        }
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(time_limit);
    let mut acted = 0usize;
    while count.is_none_or(|c| acted < c) {
        let event = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                Some(n) = rx.recv() => Some(Ok(n)),
                Some(a) = rest_rx.recv() => Some(Err(a)),
                else => None,
            }
        })
        .await;
        let Ok(Some(event)) = event else {
            break;
        };
        let (what, line) = match event {
            Ok(notified) => {
                let reboot = phone.reboots_on(&notified);
                let report = if reboot {
                    phone.boot(&transport).await
                } else {
                    phone.check_sync(&transport).await
                };
                (
                    serde_json::json!({
                        "notify": notified.event,
                        "from": notified.from.to_string(),
                        "authenticated": notified.authenticated,
                        "rebooted": reboot,
                        "boot": report,
                    }),
                    format!(
                        "NOTIFY {:?} from {}{}: {} ({} requests)",
                        notified.event,
                        notified.from,
                        if notified.authenticated {
                            " (Digest checked)"
                        } else {
                            ""
                        },
                        if reboot {
                            "rebooted"
                        } else {
                            "read the configuration again"
                        },
                        report.requests.len()
                    ),
                )
            }
            Err(action) => {
                if action == polyprov_phone::RestAction::FactoryReset {
                    let pw = phone.admin_password();
                    phone
                        .menu_reset(polyprov_phone::MenuReset::Factory, Some(&pw))
                        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
                }
                let report = phone.boot(&transport).await;
                let name = match action {
                    polyprov_phone::RestAction::FactoryReset => "factoryReset",
                    polyprov_phone::RestAction::Reboot => "safeReboot",
                };
                (
                    serde_json::json!({ "rest": name, "rebooted": true, "boot": report }),
                    format!("REST {name}: rebooted ({} requests)", report.requests.len()),
                )
            }
        };
        save(dir, &phone)?;
        *validation.lock().unwrap_or_else(|p| p.into_inner()) = phone.notify_validation();
        *rest_view.lock().unwrap_or_else(|p| p.into_inner()) = phone.rest_view();
        acted += 1;
        if as_json {
            crate::client::print_json_line(&what)?;
        } else {
            outln!("{line}");
        }
    }
    tasks.abort_all();
    Ok(())
}

/// `sim set-password`.
pub async fn set_password(
    dir: &Path,
    via_web: bool,
    new: &str,
    as_json: bool,
) -> Result<(), CliError> {
    let mut s = load(dir)?;
    let up = s
        .set_admin_password(via_web, new, &transport(dir)?)
        .await
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    save(dir, &s)?;
    if as_json {
        return print_json(&serde_json::json!({"upload": up, "phone": s.summary()}));
    }
    match up {
        Some(q) => outln!(
            "admin password changed; {} {} → {}",
            q.method,
            q.path,
            if q.status == 0 {
                "no answer".into()
            } else {
                q.status.to_string()
            }
        ),
        None => outln!("admin password changed (kept on the phone)"),
    }
    Ok(())
}

/// `sim reset`.
pub fn reset(
    dir: &Path,
    what: MenuReset,
    password: Option<&str>,
    as_json: bool,
) -> Result<(), CliError> {
    let mut s = load(dir)?;
    s.menu_reset(what, password)
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    save(dir, &s)?;
    if as_json {
        return print_json(
            &serde_json::json!({"reset": format!("{what:?}").to_lowercase(), "phone": s.summary()}),
        );
    }
    outln!("{what:?} reset done; boot the phone to see what it gets back");
    Ok(())
}

/// `sim keys-reset`: the key combination at boot, the password typed on the keypad.
pub fn keys_reset(
    dir: &Path,
    password: &str,
    cycle: ModeCycle,
    as_json: bool,
) -> Result<(), CliError> {
    let mut s = load(dir)?;
    let typed = password.replace(['-', ':', '.'], "");
    let steps = type_text(&typed, cycle).ok_or_else(|| {
        CliError::new(
            Exit::Usage,
            "the password prompt takes letters and digits only".to_string(),
        )
    })?;
    let done = s
        .keys_reset(&events(&steps))
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    save(dir, &s)?;
    if as_json {
        return print_json(
            &serde_json::json!({"reset": format!("{done:?}").to_lowercase(), "phone": s.summary()}),
        );
    }
    match done {
        MenuReset::Factory => outln!("password accepted: factory reset done"),
        _ => outln!("password accepted: device settings reset (software before 4.0.0)"),
    }
    Ok(())
}

/// `sim show`.
pub fn show(dir: &Path, as_json: bool) -> Result<(), CliError> {
    let s = load(dir)?;
    let sum = s.summary();
    if as_json {
        return print_json(
            &serde_json::to_value(&sum).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?,
        );
    }
    let v = |e: &polyprov_phone::phone::Explained| {
        format!("{:?}  ({})", e.value.clone().unwrap_or_default(), e.source)
    };
    outln!(
        "phone             {} {} software {}",
        sum.model,
        sum.mac,
        sum.firmware
    );
    outln!("admin password    {}", v(&sum.admin_password));
    outln!("user password     {}", v(&sum.user_password));
    outln!("provisioning      {}", v(&sum.provisioning_server));
    for (k, e) in &sum.lines {
        outln!("{k:<17} {}", v(e));
    }
    outln!(
        "overrides         local: {}, web: {}",
        if sum.local_override { "yes" } else { "no" },
        if sum.web_override { "yes" } else { "no" }
    );
    Ok(())
}

/// `sim storm`.
pub async fn storm(config: StormConfig, model: &str, as_json: bool) -> Result<(), CliError> {
    let catalog = Catalog::embedded().map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    let m = catalog
        .find(model)
        .ok_or_else(|| CliError::new(Exit::NotFound, format!("no model {model:?}")))?;
    let bar = if as_json {
        indicatif::ProgressBar::hidden()
    } else {
        let b = indicatif::ProgressBar::new(config.phones as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} phones booted  {per_sec}  eta {eta}",
        ) {
            b.set_style(style);
        }
        b
    };
    let listen = config.listen;
    let r: StormReport = polyprov_phone::storm::run(
        &config,
        m,
        |n| bar.set_position(n as u64),
        |n| {
            if let Some(l) = listen {
                eprintln!(
                    "{n} phones listening for SIP NOTIFY on udp 127.0.0.1:{}-{} for {} s",
                    l.base_port,
                    l.base_port as usize + n.max(1) - 1,
                    l.secs
                );
            }
        },
    )
    .await
    .map_err(|e| CliError::new(Exit::Failed, e))?;
    bar.finish_and_clear();
    if as_json {
        print_json(
            &serde_json::to_value(&r).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?,
        )?;
    } else {
        outln!(
            "{} phones booted in {:.2} s: {:.0} requests/s, {:.0} phones/s, {} requests, {} bytes",
            r.phones_booted,
            r.seconds,
            r.requests_per_second,
            r.phones_per_second,
            r.requests,
            r.bytes
        );
        outln!(
            "{:<10} {:>8} {:>10} {:>10} {:>10} {:>10}",
            "KIND",
            "COUNT",
            "P50 ms",
            "P90 ms",
            "P99 ms",
            "MAX ms"
        );
        let kinds = r.latency.iter().map(|(k, l)| (k.as_str(), l));
        // The last row: each phone's whole boot, first request to last.
        for (k, l) in kinds.chain([("(boot)", &r.boot)]) {
            let ms = |us: u64| us as f64 / 1000.0;
            outln!(
                "{k:<10} {:>8} {:>10.2} {:>10.2} {:>10.2} {:>10.2}",
                l.count,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.max)
            );
        }
        let statuses: Vec<String> = r
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        outln!("answers: {}", statuses.join(", "));
        if r.stopped_by_time_limit {
            outln!("stopped by the time limit");
        }
        outln!("{} errors", r.error_count);
        for e in &r.errors {
            outln!("  {e}");
        }
        if listen.is_some() {
            outln!(
                "{} phones listened, acted on {} NOTIFYs; {} could not listen",
                r.listening,
                r.notifies_acted,
                r.listen_errors.len()
            );
            for e in r.listen_errors.iter().take(10) {
                outln!("  {e}");
            }
        }
    }
    if r.error_count > 0 {
        return Err(CliError::new(
            Exit::Failed,
            format!("{} errors", r.error_count),
        ));
    }
    Ok(())
}

/// `polyprov sim …`: dispatches a sim command.
pub(crate) async fn run(cmd: SimCommand) -> Result<(), CliError> {
    match cmd {
        SimCommand::Init {
            state,
            mac,
            model,
            firmware,
            server,
            dhcp_option,
            ztp,
            ca_file,
            device_cert,
            device_key,
            json,
        } => init(
            &state,
            &mac,
            &model,
            &firmware,
            server.as_deref(),
            &dhcp_option,
            ztp.as_deref(),
            ca_file.as_deref(),
            device_cert.as_deref().zip(device_key.as_deref()),
            json,
        ),
        SimCommand::Boot { state, json } => boot(&state, json).await,
        SimCommand::SetPassword {
            state,
            via,
            new,
            json,
        } => set_password(&state, matches!(via, ViaArg::Web), &new, json).await,
        SimCommand::Reset {
            state,
            what,
            password,
            json,
        } => {
            use polyprov_phone::MenuReset as M;
            let what = match what {
                ResetArg::Local => M::Local,
                ResetArg::Web => M::Web,
                ResetArg::Device => M::Device,
                ResetArg::Format => M::Format,
                ResetArg::Factory => M::Factory,
            };
            reset(&state, what, password.as_deref(), json)
        }
        SimCommand::KeysReset {
            state,
            password,
            cycle,
            json,
        } => keys_reset(&state, &password, cycle.into(), json),
        SimCommand::Show { state, json } => show(&state, json),
        SimCommand::Listen {
            state,
            sip,
            sip_tcp,
            sip_tls,
            rest,
            count,
            time_limit,
            json,
        } => {
            let addrs = ListenAddrs {
                sip,
                sip_tcp,
                sip_tls,
                rest,
            };
            listen(&state, addrs, count, time_limit, json).await
        }
        SimCommand::Storm {
            server,
            phones,
            concurrency,
            mac_prefix,
            model,
            firmware,
            time_limit,
            ca_file,
            listen_sip_base,
            listen_secs,
            json,
        } => {
            let bytes = (mac_prefix.len() == 6)
                .then(|| u32::from_str_radix(&mac_prefix, 16).ok())
                .flatten()
                .ok_or_else(|| {
                    CliError::new(
                        Exit::Usage,
                        format!("--mac-prefix {mac_prefix:?}: expected 6 hex digits"),
                    )
                })?;
            let config = polyprov_phone::storm::StormConfig {
                server,
                phones,
                concurrency,
                mac_prefix: [(bytes >> 16) as u8, (bytes >> 8) as u8, bytes as u8],
                firmware,
                time_limit: std::time::Duration::from_secs(time_limit),
                ftp: ftp_trusting(ca_file.as_deref())?,
                https: https_trusting(ca_file.as_deref(), None)?.tls(),
                listen: listen_sip_base.map(|base_port| polyprov_phone::storm::Listen {
                    base_port,
                    secs: listen_secs,
                }),
            };
            storm(config, &model, json).await
        }
    }
}
