//! `polyprov`: run the provisioning server, and manage its inventory through the admin API.
//!
//! Exit codes: 0 success; 1 the server refused or failed the request; 2 wrong usage;
//! 3 not found; 4 cannot reach the server or the token was refused; 5 the server could not start.

mod client;
mod config_cmd;
mod dhcp_probe;
mod guide_cmd;
mod out;
mod sim_cmd;
mod table;

use crate::out::outln;
use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{CliError, Client, Exit};
use polyprov_server::Settings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "polyprov",
    version,
    about = "Provisioning server and fleet tool for Poly (Polycom) desk phones",
    long_about = "Provisioning server and fleet tool for Poly (Polycom) desk phones.\n\n\
        Start a server with `polyprov serve`; manage devices, profiles and site defaults with the \
        other commands, which talk to the server's admin API."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the provisioning server (HTTP for phones, admin API, metrics).
    Serve(ServeArgs),
    /// Devices in the inventory: list, show, assign, remove, uploads.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Profiles: named sets of parameters shared by many devices.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Site defaults: parameters every assigned device gets unless its profile or it says otherwise.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Check and explain Poly configuration files on disk (offline; no server needed).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// How to reboot and factory-reset a model, step by step, for its software version.
    Guide(GuideArgs),
    /// The keystrokes that type a MAC address at the phone's password prompt.
    Keys(KeysArgs),
    /// An emulated phone (state in a folder) and boot storms of many phones.
    #[command(subcommand)]
    Sim(SimCommand),
    /// After a factory reset, what would this phone get back, from where, and how to stop it.
    Doctor {
        /// MAC address, in any common form.
        mac: String,
        /// Also ask the DHCP servers on this interface what they hand a booting phone.
        #[arg(long, value_name = "IFACE")]
        dhcp_probe: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Ask the DHCP servers on an interface what they hand a booting phone (66, 67, 150, 160,
    /// 43, …). Sends one DHCPDISCOVER; takes no lease. Needs root.
    DhcpProbe {
        /// The network interface.
        iface: String,
        /// Seconds to collect offers.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ResetArg {
    /// Reset Local Configuration (the phone-menu override).
    Local,
    /// Reset Web Configuration (the web-UI override).
    Web,
    /// Reset Device Settings (device.* in flash).
    Device,
    /// Format File System (cached configuration, logs, directory, call lists).
    Format,
    /// Reset to Factory (UC Software 4.0.0+, needs --password).
    Factory,
}

#[derive(Clone, Copy, ValueEnum)]
enum ViaArg {
    Phone,
    Web,
}

#[derive(Subcommand)]
enum SimCommand {
    /// Create an emulated phone in a state folder.
    Init {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// Its MAC address.
        #[arg(long)]
        mac: String,
        /// Its model (VVX500, "VVX 410", SoundPoint IP 650, …).
        #[arg(long)]
        model: String,
        /// Its software version.
        #[arg(long, default_value = "6.4.3.5018")]
        firmware: String,
        /// A provisioning server set in the phone (device.prov.serverName, boot server Static).
        #[arg(long, value_name = "URL", conflicts_with = "dhcp_option")]
        server: Option<String>,
        /// A DHCP option the network offers: NUMBER=VALUE, e.g. 160=http://host:8080/. Repeatable.
        #[arg(long = "dhcp-option", value_name = "N=VALUE")]
        dhcp_option: Vec<String>,
        /// The server a ZTP-style redirect gives this phone.
        #[arg(long, value_name = "URL")]
        ztp: Option<String>,
        /// CA certificates (PEM) the phone trusts for ftps:// (kept as ca.pem in its folder).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Power the phone on: it finds its server, downloads, uploads; prints every request.
    Boot {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Change the admin password in the phone menu or the web UI (uploaded as an override).
    SetPassword {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(long, value_enum)]
        via: ViaArg,
        /// The new password.
        new: String,
        #[arg(long)]
        json: bool,
    },
    /// Settings > Advanced > Admin Settings > Reset to Defaults.
    Reset {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(value_enum)]
        what: ResetArg,
        /// The admin password (Reset to Factory asks for it).
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// The key combination during the boot countdown, then the password typed on the keypad.
    KeysReset {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// The admin password, or the MAC address.
        #[arg(long)]
        password: String,
        /// Mode-key order used to type it.
        #[arg(long, value_enum, default_value_t = CycleArg::Seed)]
        cycle: CycleArg,
        #[arg(long)]
        json: bool,
    },
    /// What the phone has now: admin password, lines, server, and where each came from.
    Show {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Boot many distinct phones at once against a server; report throughput and latency.
    Storm {
        /// The provisioning URL (given to each phone as DHCP option 160).
        #[arg(long, value_name = "URL")]
        server: String,
        /// How many phones.
        #[arg(long, default_value_t = 1000)]
        phones: usize,
        /// Phones booting at the same time.
        #[arg(long, default_value_t = 100)]
        concurrency: usize,
        /// First three bytes of the MACs, as 6 hex digits.
        #[arg(long, default_value = "0004f2")]
        mac_prefix: String,
        #[arg(long, default_value = "VVX500")]
        model: String,
        #[arg(long, default_value = "6.4.3.5018")]
        firmware: String,
        /// Stop starting phones after this many seconds.
        #[arg(long, default_value_t = 600)]
        time_limit: u64,
        /// CA certificates (PEM) the phones trust, for an ftps:// server.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum CycleArg {
    /// numeric → lower → upper: the vendor FAQ's table.
    #[default]
    Seed,
    /// numeric → UPPER → lower: the key labels 1->Aa, A->a1, a->1A.
    Labels,
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum CaseArg {
    #[default]
    Lower,
    Upper,
}

impl From<CycleArg> for polyprov_model::keypad::ModeCycle {
    fn from(c: CycleArg) -> Self {
        match c {
            CycleArg::Seed => Self::Seed,
            CycleArg::Labels => Self::Labels,
        }
    }
}

impl From<CaseArg> for polyprov_model::keypad::LetterCase {
    fn from(c: CaseArg) -> Self {
        match c {
            CaseArg::Lower => Self::Lower,
            CaseArg::Upper => Self::Upper,
        }
    }
}

#[derive(Args)]
struct GuideArgs {
    /// The model: VVX410, "VVX 410", vvx_410, SoundPoint IP 550, or a whole User-Agent.
    #[arg(required_unless_present = "list")]
    model: Option<String>,
    /// The phone's software version (e.g. 5.9.7.4477): steps that depend on it are chosen.
    #[arg(long, value_name = "VERSION")]
    firmware: Option<String>,
    /// The phone's MAC: adds the keystrokes for typing it as the password.
    #[arg(long)]
    mac: Option<String>,
    /// Print every model in the catalog with the confidence of its procedures.
    #[arg(long)]
    list: bool,
    /// Mode-key order for the keystrokes.
    #[arg(long, value_enum, default_value_t = CycleArg::Seed)]
    cycle: CycleArg,
    /// Letter case to type the MAC in.
    #[arg(long = "case", value_enum, default_value_t = CaseArg::Lower)]
    letter_case: CaseArg,
    /// A catalog file that extends or corrects the built-in one.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct KeysArgs {
    /// The MAC address, in any common form.
    mac: String,
    /// Mode-key order.
    #[arg(long, value_enum, default_value_t = CycleArg::Seed)]
    cycle: CycleArg,
    /// Letter case to type the MAC in.
    #[arg(long = "case", value_enum, default_value_t = CaseArg::Lower)]
    letter_case: CaseArg,
    /// Print the steps as JSON (what the emulated phone's password prompt consumes).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Lint files or whole boot roots: malformed XML, parameters set twice, ignored device.*
    /// values, CONFIG_FILES limits and missing files, secrets in shared files. Exit 1 on errors.
    Check {
        /// Files or boot-root directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// What one phone ends up with for each parameter, and why (the chain of sources).
    Explain {
        /// The boot root the phone provisions from.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// The phone's MAC address.
        #[arg(long)]
        mac: String,
        /// Its model, as a master-file token (VVX500) or as its User-Agent says it (VVX_500).
        #[arg(long)]
        model: String,
        /// An override the phone holds: <mac>-phone.cfg (menu) or <mac>-web.cfg (web UI).
        #[arg(long = "override", value_name = "FILE")]
        overrides: Vec<PathBuf>,
        /// Parameters to explain, e.g. device.auth.localAdminPassword.
        #[arg(required = true)]
        params: Vec<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory (inventory, boot root, uploads, secrets); created on first start.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Address phones connect to [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Address of the admin API and /metrics [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Also serve TFTP here, e.g. 0.0.0.0:69 (off by default).
    #[arg(long, value_name = "ADDR")]
    tftp: Option<SocketAddr>,
    /// Also serve FTP here, e.g. 0.0.0.0:21 (off by default; FTPS, passive ports and logins are
    /// in the settings file's [ftp] section).
    #[arg(long, value_name = "ADDR")]
    ftp: Option<SocketAddr>,
    /// TOML settings file; flags given here win over it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the admin API is and how to prove we may use it.
#[derive(Args, Clone)]
struct ApiArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "POLYPROV_SERVER",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    server: String,
    /// File holding the admin token (ignored when POLYPROV_TOKEN is set).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "./polyprov-data/admin.token",
        global = true
    )]
    token_file: PathBuf,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// What `device assign` and `device reassign` give a device.
#[derive(Args)]
struct AssignArgs {
    /// Profile whose parameters apply under the device's own.
    #[arg(long)]
    profile: Option<String>,
    /// Admin password for the phone (device.auth.localAdminPassword).
    #[arg(long, conflicts_with = "admin_password_file")]
    admin_password: Option<String>,
    /// Read the admin password from a file (keeps it out of shell history).
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// A registration line: ADDRESS[,USER[,PASSWORD]]; repeat for lines 2, 3, …
    #[arg(long, value_name = "LINE")]
    line: Vec<String>,
    /// Any Poly parameter: NAME=VALUE; repeat as needed.
    #[arg(long, value_name = "NAME=VALUE")]
    param: Vec<String>,
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List every device the server knows.
    List(ApiArgs),
    /// Show one device.
    Show {
        /// MAC address, in any common form (0004f2aa814c, 00-04-F2-AA-81-4C, …).
        mac: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Assign a device: replaces its profile, admin password, lines and parameters.
    Assign {
        /// MAC address, in any common form (0004f2aa814c, 00-04-F2-AA-81-4C, …).
        mac: String,
        #[command(flatten)]
        assignment: AssignArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a device from the inventory (its uploaded files are kept).
    Remove {
        /// MAC address, in any common form.
        mac: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release a device for a new user: its assignment is withdrawn and its overrides,
    /// directory, call lists and licence move to quarantine; it is then served what a
    /// never-seen phone is served. Do this before a factory reset, or the phone comes back
    /// with its old settings.
    Release {
        /// MAC address, in any common form.
        mac: String,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release and assign in one step (same options as assign).
    Reassign {
        /// MAC address, in any common form.
        mac: String,
        #[command(flatten)]
        assignment: AssignArgs,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Bring quarantined files back (the newest set, or --version ID).
    Restore {
        /// MAC address, in any common form.
        mac: String,
        /// A quarantine set id (see `device quarantine`).
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Retire a released or unassigned device (it can no longer be assigned).
    Retire {
        /// MAC address, in any common form.
        mac: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The device's audit log: every change, when, by whom, before and after.
    History {
        /// MAC address, in any common form.
        mac: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The quarantine sets kept for a device.
    Quarantine {
        /// MAC address, in any common form.
        mac: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List the files a device uploaded (overrides, logs, directory, call lists).
    Uploads {
        /// MAC address, in any common form.
        mac: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// List profiles.
    List(ApiArgs),
    /// Show one profile.
    Show {
        /// Profile name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create or replace a profile.
    Set {
        /// Profile name: 1-64 letters, digits, '.', '_', '-'.
        name: String,
        /// A Poly parameter: NAME=VALUE; repeat as needed.
        #[arg(long, value_name = "NAME=VALUE")]
        param: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a profile no device uses.
    Remove {
        /// Profile name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum SiteCommand {
    /// Show the site defaults.
    Show(ApiArgs),
    /// Replace the site defaults.
    Set {
        /// A Poly parameter: NAME=VALUE; repeat as needed.
        #[arg(long, value_name = "NAME=VALUE")]
        param: Vec<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code as u8)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Device(cmd) => device(cmd).await,
        Command::Profile(cmd) => profile(cmd).await,
        Command::Site(cmd) => site(cmd).await,
        Command::Config(ConfigCommand::Check { paths, json }) => config_cmd::check(&paths, json),
        Command::Config(ConfigCommand::Explain {
            root,
            mac,
            model,
            overrides,
            params,
            json,
        }) => config_cmd::explain(&root, &mac, &model, &overrides, &params, json),
        Command::Guide(g) if g.list => guide_cmd::list(g.catalog.as_deref(), g.json),
        Command::Guide(g) => guide_cmd::guide(
            g.model.as_deref().unwrap_or_default(),
            g.firmware.as_deref(),
            g.mac.as_deref(),
            g.cycle.into(),
            g.letter_case.into(),
            g.catalog.as_deref(),
            g.json,
        ),
        Command::Keys(k) => guide_cmd::keys(&k.mac, k.cycle.into(), k.letter_case.into(), k.json),
        Command::Sim(cmd) => sim(cmd).await,
        Command::Doctor {
            mac,
            dhcp_probe,
            api,
        } => doctor(&mac, dhcp_probe.as_deref(), &api).await,
        Command::DhcpProbe {
            iface,
            timeout,
            json,
        } => {
            let r = dhcp_probe::probe(&iface, std::time::Duration::from_secs(timeout))
                .map_err(|e| CliError::new(Exit::Failed, e))?;
            if json {
                return client::print_json(
                    &serde_json::to_value(&r)
                        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?,
                );
            }
            print_probe(&r);
            Ok(())
        }
    }
}

fn print_probe(r: &dhcp_probe::ProbeResult) {
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
fn probe_findings(r: &dhcp_probe::ProbeResult, mac: &str) -> Vec<serde_json::Value> {
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

async fn doctor(mac: &str, probe_iface: Option<&str>, api: &ApiArgs) -> Result<(), CliError> {
    let c = Client::new(api)?;
    let mut r = c.get(&format!("devices/{mac}/doctor")).await?;
    if let Some(iface) = probe_iface {
        let probe = dhcp_probe::probe(iface, std::time::Duration::from_secs(3))
            .map_err(|e| CliError::new(Exit::Failed, e))?;
        let extra = probe_findings(&probe, mac);
        if let Some(f) = r["findings"].as_array_mut() {
            f.extend(extra);
        }
        r["dhcp_probe"] =
            serde_json::to_value(&probe).map_err(|e| CliError::new(Exit::Failed, e.to_string()))?;
    }
    if api.json {
        return client::print_json(&r);
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

async fn sim(cmd: SimCommand) -> Result<(), CliError> {
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
            json,
        } => sim_cmd::init(
            &state,
            &mac,
            &model,
            &firmware,
            server.as_deref(),
            &dhcp_option,
            ztp.as_deref(),
            ca_file.as_deref(),
            json,
        ),
        SimCommand::Boot { state, json } => sim_cmd::boot(&state, json).await,
        SimCommand::SetPassword {
            state,
            via,
            new,
            json,
        } => sim_cmd::set_password(&state, matches!(via, ViaArg::Web), &new, json).await,
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
            sim_cmd::reset(&state, what, password.as_deref(), json)
        }
        SimCommand::KeysReset {
            state,
            password,
            cycle,
            json,
        } => sim_cmd::keys_reset(&state, &password, cycle.into(), json),
        SimCommand::Show { state, json } => sim_cmd::show(&state, json),
        SimCommand::Storm {
            server,
            phones,
            concurrency,
            mac_prefix,
            model,
            firmware,
            time_limit,
            ca_file,
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
                ftp: sim_cmd::ftp_trusting(ca_file.as_deref())?,
            };
            sim_cmd::storm(config, &model, json).await
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
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
    let server = polyprov_server::start(settings.clone())
        .await
        .map_err(|e| CliError::new(Exit::CannotStart, format!("{e:#}")))?;
    print_summary(&settings, &server);
    server.run_until_signal().await;
    Ok(())
}

fn print_summary(settings: &Settings, server: &polyprov_server::RunningServer) {
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
const DEFAULT_LOG_FILTER: &str = "info,libunftp=off";

fn init_logging(format: LogFormat) {
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

fn parse_params(pairs: &[String]) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let mut out = serde_json::Map::new();
    for p in pairs {
        let (k, v) = p.split_once('=').ok_or_else(|| {
            CliError::new(Exit::Usage, format!("--param {p:?}: expected NAME=VALUE"))
        })?;
        out.insert(
            k.trim().to_string(),
            serde_json::Value::String(v.to_string()),
        );
    }
    Ok(out)
}

/// GETs an admin API path and prints it: JSON with `--json`, else `render` for people.
async fn show(api: &ApiArgs, path: &str, render: fn(&serde_json::Value)) -> Result<(), CliError> {
    let v = Client::new(api)?.get(path).await?;
    if api.json {
        return client::print_json(&v);
    }
    render(&v);
    Ok(())
}

/// The device document the API takes, from the assign/reassign flags.
fn assignment_doc(a: AssignArgs) -> Result<serde_json::Value, CliError> {
    let AssignArgs {
        profile,
        admin_password,
        admin_password_file,
        line,
        param,
    } = a;
    let admin_password = match admin_password_file {
        Some(f) => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| CliError::new(Exit::Usage, format!("{}: {e}", f.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        ),
        None => admin_password,
    };
    let lines: Vec<serde_json::Value> = line
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ',');
            let mut o = serde_json::Map::new();
            for key in ["address", "user", "password"] {
                if let Some(v) = parts.next().filter(|v| !v.is_empty()) {
                    o.insert(key.to_string(), v.into());
                }
            }
            serde_json::Value::Object(o)
        })
        .collect();
    Ok(serde_json::json!({
        "profile": profile,
        "admin_password": admin_password,
        "params": parse_params(&param)?,
        "lines": lines,
    }))
}

async fn device(cmd: DeviceCommand) -> Result<(), CliError> {
    match cmd {
        DeviceCommand::List(api) => show(&api, "devices", table::devices).await,
        DeviceCommand::Show { mac, api } => {
            show(&api, &format!("devices/{mac}"), table::device).await
        }
        DeviceCommand::Assign {
            mac,
            assignment,
            api,
        } => {
            let doc = assignment_doc(assignment)?;
            let c = Client::new(&api)?;
            let d = c.put(&format!("devices/{mac}"), &doc).await?;
            if api.json {
                return client::print_json(&d);
            }
            outln!("assigned {}", d["mac"].as_str().unwrap_or(&mac));
            Ok(())
        }
        DeviceCommand::Remove { mac, api } => {
            let c = Client::new(&api)?;
            c.delete(&format!("devices/{mac}")).await?;
            if api.json {
                return client::print_json(&serde_json::json!({ "removed": mac }));
            }
            outln!("removed {mac} from the inventory (its uploads are kept)");
            Ok(())
        }
        DeviceCommand::Release { mac, reason, api } => {
            let c = Client::new(&api)?;
            let r = c
                .post(
                    &format!("devices/{mac}/release"),
                    &serde_json::json!({ "reason": reason.unwrap_or_default() }),
                )
                .await?;
            if api.json {
                return client::print_json(&r);
            }
            if r["changed"] == false {
                outln!("{mac} was already released; nothing changed");
            } else {
                match r["quarantine"].as_str() {
                    Some(q) => outln!(
                        "released {mac}; its files are in quarantine set {q} (polyprov device restore {mac} brings them back)"
                    ),
                    None => outln!("released {mac}; it had no files to quarantine"),
                }
            }
            Ok(())
        }
        DeviceCommand::Reassign {
            mac,
            assignment,
            reason,
            api,
        } => {
            let mut doc = assignment_doc(assignment)?;
            doc["reason"] = serde_json::Value::String(reason.unwrap_or_default());
            let c = Client::new(&api)?;
            let r = c.post(&format!("devices/{mac}/reassign"), &doc).await?;
            if api.json {
                return client::print_json(&r);
            }
            outln!(
                "reassigned {mac}{}",
                r["released"]["quarantine"]
                    .as_str()
                    .map(|q| format!("; former files in quarantine set {q}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        DeviceCommand::Restore { mac, version, api } => {
            let c = Client::new(&api)?;
            let r = c
                .post(
                    &format!("devices/{mac}/restore"),
                    &serde_json::json!({ "version": version }),
                )
                .await?;
            if api.json {
                return client::print_json(&r);
            }
            outln!(
                "restored {} files of quarantine set {} to {mac}",
                r["files"],
                r["restored"].as_str().unwrap_or("-")
            );
            Ok(())
        }
        DeviceCommand::Retire { mac, reason, api } => {
            let c = Client::new(&api)?;
            let r = c
                .post(
                    &format!("devices/{mac}/retire"),
                    &serde_json::json!({ "reason": reason.unwrap_or_default() }),
                )
                .await?;
            if api.json {
                return client::print_json(&r);
            }
            outln!("retired {mac}");
            Ok(())
        }
        DeviceCommand::History { mac, api } => {
            show(&api, &format!("devices/{mac}/history"), table::history).await
        }
        DeviceCommand::Quarantine { mac, api } => {
            show(
                &api,
                &format!("devices/{mac}/quarantine"),
                table::quarantine,
            )
            .await
        }
        DeviceCommand::Uploads { mac, api } => {
            show(&api, &format!("devices/{mac}/uploads"), table::uploads).await
        }
    }
}

async fn profile(cmd: ProfileCommand) -> Result<(), CliError> {
    match cmd {
        ProfileCommand::List(api) => show(&api, "profiles", table::profiles).await,
        ProfileCommand::Show { name, api } => {
            show(&api, &format!("profiles/{name}"), |v| {
                table::params(&v["params"])
            })
            .await
        }
        ProfileCommand::Set { name, param, api } => {
            let c = Client::new(&api)?;
            let p = c
                .put(
                    &format!("profiles/{name}"),
                    &serde_json::json!({ "params": parse_params(&param)? }),
                )
                .await?;
            if api.json {
                return client::print_json(&p);
            }
            outln!(
                "profile {name} set ({} parameters)",
                p["params"].as_object().map_or(0, |m| m.len())
            );
            Ok(())
        }
        ProfileCommand::Remove { name, api } => {
            let c = Client::new(&api)?;
            c.delete(&format!("profiles/{name}")).await?;
            if api.json {
                return client::print_json(&serde_json::json!({ "removed": name }));
            }
            outln!("removed profile {name}");
            Ok(())
        }
    }
}

async fn site(cmd: SiteCommand) -> Result<(), CliError> {
    match cmd {
        SiteCommand::Show(api) => show(&api, "site", |v| table::params(&v["params"])).await,
        SiteCommand::Set { param, api } => {
            let c = Client::new(&api)?;
            let s = c
                .put(
                    "site",
                    &serde_json::json!({ "params": parse_params(&param)? }),
                )
                .await?;
            if api.json {
                return client::print_json(&s);
            }
            outln!(
                "site defaults set ({} parameters)",
                s["params"].as_object().map_or(0, |m| m.len())
            );
            Ok(())
        }
    }
}
