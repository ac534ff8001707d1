//! `polyprov serve`: the server, its start-up summary and its logging.

use crate::args::*;
use crate::client::{CliError, Exit};
use crate::out::outln;
use polyprov_server::Settings;

pub(crate) async fn serve(args: ServeArgs) -> Result<(), CliError> {
    init_logging(args.log_format);
    let mut settings = match &args.config {
        Some(path) => {
            Settings::from_file(path).map_err(|e| CliError::new(Exit::Usage, e.to_string()))?
        }
        None => Settings::default(),
    };
    if let Some(d) = args.data {
        settings.data = d;
    }
    if let Some(a) = args.http {
        settings.http.listen = a;
    }
    if let Some(a) = args.admin {
        settings.admin.listen = a;
    }
    if let Some(a) = args.tftp {
        settings.tftp.listen = Some(a);
    }
    if let Some(a) = args.ftp {
        settings.ftp.listen = Some(a);
    }
    if let Some(a) = args.https {
        settings.https.listen = Some(a);
    }
    let server = polyprov_server::start(settings.clone())
        .await
        .map_err(|e| CliError::new(Exit::CannotStart, format!("{e:#}")))?;
    print_summary(&settings, &server);
    // Every listener is bound: a `Type=notify` unit is started now.
    polyprov_server::systemd::notify("READY=1\nSTATUS=serving phones");
    server.run_until_signal().await;
    Ok(())
}

pub(crate) fn print_summary(settings: &Settings, server: &polyprov_server::RunningServer) {
    let host = if server.http_addr.ip().is_unspecified() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "THIS-HOST".to_string())
    } else {
        server.http_addr.ip().to_string()
    };
    let login = server
        .provisioning_login
        .as_ref()
        .map(|(u, p)| format!("{u}:{p}@"))
        .unwrap_or_default();
    let url = settings
        .provisioning
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{login}{host}:{}/", server.http_addr.port()));
    let data = settings.data.display();
    outln!("polyprov {} is serving", env!("CARGO_PKG_VERSION"));
    outln!("  data directory   {data}");
    outln!(
        "  boot root        {} (firmware and shared .cfg files go here)",
        settings.root_dir().display()
    );
    outln!("  phones (HTTP)    {}", server.http_addr);
    if let Some(h) = server.https_addr {
        let identity = match settings.https.client_auth {
            polyprov_server::settings::ClientAuth::Off => "",
            polyprov_server::settings::ClientAuth::Optional => ", device certificates accepted",
            polyprov_server::settings::ClientAuth::Required => ", device certificate required",
        };
        outln!("  phones (HTTPS)   {h}{identity}");
    }
    if let Some(t) = server.tftp_addr {
        outln!("  phones (TFTP)    {t}");
    }
    if let Some(f) = server.ftp_addr {
        let tls = if settings.ftp.require_tls {
            ", FTPS required"
        } else if settings.ftp.tls_cert.is_some() {
            ", FTPS with AUTH TLS"
        } else {
            ""
        };
        let [first, last] = settings.ftp.passive_ports;
        outln!("  phones (FTP)     {f} (passive ports {first}-{last}{tls})");
    }
    outln!("  provisioning URL {url}");
    outln!("                   type it into a phone, or hand it out as DHCP option 160 (or 66)");
    if server.provisioning_login.is_none() {
        outln!(
            "  WARNING          provisioning auth is off: per-device passwords go to anyone who asks"
        );
    }
    outln!(
        "  admin API        http://{}/api/v1 (token in {data}/admin.token)",
        server.admin_addr
    );
    outln!("  metrics          http://{}/metrics", server.admin_addr);
}

/// Without `RUST_LOG`: info, but nothing from libunftp, whose events carry whole session dumps;
/// the FTP door logs refusals and security events itself (`RUST_LOG=info,libunftp=debug` to
/// see libunftp's view).
pub(crate) const DEFAULT_LOG_FILTER: &str = "info,libunftp=off";

pub(crate) fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
