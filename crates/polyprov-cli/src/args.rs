//! The command line: every command, its arguments and their help, as clap reads them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "polyprov",
    version,
    about = "Provisioning server and fleet tool for Poly (Polycom) desk phones",
    long_about = "Provisioning server and fleet tool for Poly (Polycom) desk phones.\n\n\
        Start a server with `polyprov serve`; manage devices, profiles and site defaults with the \
        other commands, which talk to the server's admin API."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// HTTPS certificates: a private CA for a lab or small site, and what a phone would see.
    #[command(subcommand)]
    Tls(TlsCommand),
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
    /// DHCP for phones: the server configuration that hands them this server (snippet), and
    /// what a network hands a booting phone (probe).
    #[command(subcommand)]
    Dhcp(DhcpCommand),
    /// Same as `dhcp probe`.
    #[command(hide = true)]
    DhcpProbe(DhcpProbeArgs),
    /// Back up a data directory while its server keeps serving: the inventory (one consistent
    /// snapshot), audit log, uploads, quarantine, secrets, certificates, boot root and, with
    /// --config, the settings — one file, 0600, with a manifest of every file's SHA-256.
    Backup {
        /// The backup file to write (replaced only once complete).
        file: PathBuf,
        /// Data directory.
        #[arg(long, value_name = "DIR", default_value = "polyprov-data")]
        data: PathBuf,
        /// The settings file to include.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Copy an inventory (devices, profiles, site defaults, logins, audit log) into another,
    /// empty one: SQLite to PostgreSQL when a site grows to several nodes, and back. Stop every
    /// server using the source first; the copy is refused if the source changes under it.
    Migrate {
        /// The inventory to copy: `sqlite:PATH` (must exist) or `postgres://user@host/db`.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty inventory to fill: `postgres://user@host/db` or `sqlite:PATH` (created).
        #[arg(long, value_name = "URL")]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new data directory (absent or empty); every file is checked
    /// against the backup's manifest before the directory appears.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to create.
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Write the settings the backup holds here (a new file).
        #[arg(long, value_name = "FILE")]
        config_to: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Move an existing phone server onto polyprov: read its folder (TFTP/FTP/HTTP root) or a
    /// spreadsheet (--csv), and print what each phone gets now and will get from polyprov, with
    /// every difference; --apply does it (boot root, profiles, devices, uploads).
    Import(ImportArgs),
    /// Write the man pages (man/*.1) and shell completions (completions/) into DIR, for
    /// packaging.
    #[command(hide = true)]
    Assets {
        /// Where to write them.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
pub(crate) enum DhcpCommand {
    /// Ask the DHCP servers on an interface what they hand a booting phone (66, 67, 150, 160,
    /// 43, …). Sends one DHCPDISCOVER with a Poly phone's vendor class; takes no lease. Needs
    /// root.
    Probe(DhcpProbeArgs),
    /// Print the DHCP server configuration that gives Poly phones this server's provisioning
    /// URL (options 160 and 66, only to clients whose vendor class is Poly's).
    #[command(group(clap::ArgGroup::new("server").required(true).args(["dnsmasq", "kea", "isc", "windows"])))]
    Snippet(DhcpSnippetArgs),
}

#[derive(Args)]
pub(crate) struct DhcpProbeArgs {
    /// The network interface.
    pub(crate) iface: String,
    /// Seconds to collect offers.
    #[arg(long, default_value_t = 3)]
    pub(crate) timeout: u64,
    /// Send no vendor class (option 60), as a PC would: what the network gives non-phones.
    #[arg(long)]
    pub(crate) no_vendor_class: bool,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct DhcpSnippetArgs {
    /// For dnsmasq (a conf-dir file).
    #[arg(long)]
    pub(crate) dnsmasq: bool,
    /// For Kea (a kea-dhcp4 configuration whose option-def and client-classes go into yours).
    #[arg(long)]
    pub(crate) kea: bool,
    /// For ISC dhcpd (dhcpd.conf).
    #[arg(long)]
    pub(crate) isc: bool,
    /// For Windows Server (PowerShell DhcpServer commands).
    #[arg(long)]
    pub(crate) windows: bool,
    /// The provisioning URL [default: http://PlcmSpIp:<DATA/provisioning.password>@<--host>/].
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// The name (and :port) phones reach this server by [default: this machine's host name].
    #[arg(long, value_name = "NAME[:PORT]", conflicts_with = "url")]
    pub(crate) host: Option<String>,
    /// Data directory (for the provisioning password).
    #[arg(long, value_name = "DIR", default_value = "polyprov-data")]
    pub(crate) data: PathBuf,
    /// The options to hand out: 160, 66, or a custom 128-254 (`device.dhcp.bootSrvOpt`).
    #[arg(long = "option", value_name = "N", default_values_t = [160u8, 66])]
    pub(crate) options: Vec<u8>,
    /// Hand the options to every client, not only to Poly phones.
    #[arg(long)]
    pub(crate) all_clients: bool,
    /// Windows: the scope (e.g. 10.0.0.0) [default: server-wide].
    #[arg(long, value_name = "SCOPE")]
    pub(crate) scope: Option<String>,
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum TlsCommand {
    /// Make a private CA (kept if there is one) and a server certificate under DATA/tls/, used
    /// by `serve --https` when [https] cert and key are not set; prints what phones need to
    /// trust it.
    Init {
        /// Data directory.
        #[arg(long, value_name = "DIR", default_value = "polyprov-data")]
        data: PathBuf,
        /// A name phones reach the server by (host name or IP address); repeat for more
        /// [default: localhost, 127.0.0.1].
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Connect to an HTTPS server as a phone would and show the chain, names, expiry,
    /// protocol and cipher, and whether a Poly phone would accept it.
    Check {
        /// https://host[:port]/
        url: String,
        /// CA certificate (PEM) the phone trusts, e.g. DATA/tls/ca.pem.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Present this client certificate (PEM), as a phone with a device certificate does.
        #[arg(long, value_name = "FILE", requires = "key")]
        cert: Option<PathBuf>,
        /// The client certificate's key (PEM).
        #[arg(long, value_name = "FILE", requires = "cert")]
        key: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ResetArg {
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
pub(crate) enum ViaArg {
    Phone,
    Web,
}

#[derive(Subcommand)]
pub(crate) enum SimCommand {
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
        /// CA certificates (PEM) the phone trusts for https:// and ftps:// (kept as ca.pem in
        /// its folder).
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Its device certificate (PEM), presented when an HTTPS server asks for one — as a
        /// real phone presents its factory certificate (kept as device.pem).
        #[arg(
            long,
            value_name = "FILE",
            requires = "device_key",
            requires = "ca_file"
        )]
        device_cert: Option<PathBuf>,
        /// The device certificate's key (PEM; kept as device-key.pem, mode 0600).
        #[arg(long, value_name = "FILE", requires = "device_cert")]
        device_key: Option<PathBuf>,
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
    /// Keep the phone running and listening for SIP NOTIFY (and, with --rest, its REST API):
    /// `check-sync` makes it read its configuration again (or reboot, when its settings say
    /// so); NOTIFYs are challenged with Digest when its voIpProt.SIP.requestValidation
    /// settings ask for it; safeReboot and factoryReset do what they say. Prints one line per
    /// action; stops after --count of them or --time-limit seconds.
    Listen {
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        /// UDP address for SIP (port 0: any free port; the first line says which).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5060")]
        sip: std::net::SocketAddr,
        /// Also a TCP address for SIP.
        #[arg(long, value_name = "ADDR")]
        sip_tcp: Option<std::net::SocketAddr>,
        /// Also a TLS address for SIP (with its device certificate, from `sim init
        /// --device-cert`).
        #[arg(long, value_name = "ADDR")]
        sip_tls: Option<std::net::SocketAddr>,
        /// Also serve the phone's REST API (HTTPS with its device certificate) here; it
        /// answers only when its settings set apps.restapi.enabled="1".
        #[arg(long, value_name = "ADDR")]
        rest: Option<std::net::SocketAddr>,
        /// Stop after acting on this many NOTIFYs.
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 600)]
        time_limit: u64,
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
        /// CA certificates (PEM) the phones trust, for an https:// or ftps:// server.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Leave the phones on after booting, phone i (from 0) listening for SIP NOTIFY on
        /// udp 127.0.0.1:<PORT + i> — give each device voIpProt.SIP.local.port to match — so
        /// fleet actions can be tried at scale.
        #[arg(long, value_name = "PORT")]
        listen_sip_base: Option<u16>,
        /// How long phones stay on after the last boot (with --listen-sip-base).
        #[arg(long, value_name = "SECONDS", default_value_t = 60)]
        listen_secs: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, Default)]
pub(crate) enum CycleArg {
    /// numeric → lower → upper: the vendor FAQ's table.
    #[default]
    Seed,
    /// numeric → UPPER → lower: the key labels 1->Aa, A->a1, a->1A.
    Labels,
}

#[derive(Clone, Copy, ValueEnum, Default)]
pub(crate) enum CaseArg {
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
pub(crate) struct GuideArgs {
    /// The model: VVX410, "VVX 410", vvx_410, SoundPoint IP 550, or a whole User-Agent.
    #[arg(required_unless_present = "list")]
    pub(crate) model: Option<String>,
    /// The phone's software version (e.g. 5.9.7.4477): steps that depend on it are chosen.
    #[arg(long, value_name = "VERSION")]
    pub(crate) firmware: Option<String>,
    /// The phone's MAC: adds the keystrokes for typing it as the password.
    #[arg(long)]
    pub(crate) mac: Option<String>,
    /// Print every model in the catalog with the confidence of its procedures.
    #[arg(long)]
    pub(crate) list: bool,
    /// Mode-key order for the keystrokes.
    #[arg(long, value_enum, default_value_t = CycleArg::Seed)]
    pub(crate) cycle: CycleArg,
    /// Letter case to type the MAC in.
    #[arg(long = "case", value_enum, default_value_t = CaseArg::Lower)]
    pub(crate) letter_case: CaseArg,
    /// A catalog file that extends or corrects the built-in one.
    #[arg(long, value_name = "FILE")]
    pub(crate) catalog: Option<PathBuf>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct KeysArgs {
    /// The MAC address, in any common form.
    pub(crate) mac: String,
    /// Mode-key order.
    #[arg(long, value_enum, default_value_t = CycleArg::Seed)]
    pub(crate) cycle: CycleArg,
    /// Letter case to type the MAC in.
    #[arg(long = "case", value_enum, default_value_t = CaseArg::Lower)]
    pub(crate) letter_case: CaseArg,
    /// Print the steps as JSON (what the emulated phone's password prompt consumes).
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
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
pub(crate) struct ServeArgs {
    /// Data directory (inventory, boot root, uploads, secrets); created on first start.
    #[arg(long, value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,
    /// Address phones connect to [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    pub(crate) http: Option<SocketAddr>,
    /// Address of the admin API and /metrics [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    pub(crate) admin: Option<SocketAddr>,
    /// Also serve TFTP here, e.g. 0.0.0.0:69 (off by default).
    #[arg(long, value_name = "ADDR")]
    pub(crate) tftp: Option<SocketAddr>,
    /// Also serve FTP here, e.g. 0.0.0.0:21 (off by default; FTPS, passive ports and logins are
    /// in the settings file's [ftp] section).
    #[arg(long, value_name = "ADDR")]
    pub(crate) ftp: Option<SocketAddr>,
    /// Also serve HTTPS here, e.g. 0.0.0.0:443 (off by default; certificate, key and client
    /// certificates are in the settings file's [https] section, or from `polyprov tls init`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) https: Option<SocketAddr>,
    /// TOML settings file; flags given here win over it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Where the admin API is and how to prove we may use it.
#[derive(Args, Clone)]
pub(crate) struct ApiArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "POLYPROV_SERVER",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub(crate) server: String,
    /// File holding the admin token (ignored when POLYPROV_TOKEN is set; when the default is
    /// absent, /var/lib/polyprov/admin.token, the package's, is read).
    #[arg(
        long,
        value_name = "FILE",
        default_value = crate::client::DEFAULT_TOKEN_FILE,
        global = true
    )]
    pub(crate) token_file: PathBuf,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// What `device assign` and `device reassign` give a device.
#[derive(Args)]
pub(crate) struct AssignArgs {
    /// Profile whose parameters apply under the device's own.
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Admin password for the phone (device.auth.localAdminPassword).
    #[arg(long, conflicts_with = "admin_password_file")]
    pub(crate) admin_password: Option<String>,
    /// Read the admin password from a file (keeps it out of shell history).
    #[arg(long, value_name = "FILE")]
    pub(crate) admin_password_file: Option<PathBuf>,
    /// A registration line: ADDRESS[,USER[,PASSWORD]]; repeat for lines 2, 3, …
    #[arg(long, value_name = "LINE")]
    pub(crate) line: Vec<String>,
    /// Any Poly parameter: NAME=VALUE; repeat as needed.
    #[arg(long, value_name = "NAME=VALUE")]
    pub(crate) param: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum DeviceCommand {
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
    /// Assign many devices from a JSON file: `{"devices": [{"mac": …, "profile": …,
    /// "admin_password": …, "params": {…}, "lines": [{"address": …, "user": …, "password": …}]}]}`
    /// (or just the array). Sent 10,000 at a time; each batch is checked whole before any of it
    /// is written.
    Import {
        /// The JSON file (`-` for standard input).
        file: PathBuf,
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
        /// Then factory-reset the phone over its REST API (its admin password is read before
        /// the release), and watch it come back clean.
        #[arg(long)]
        factory_reset: bool,
        /// With --factory-reset: the phone's HOST[:PORT] instead of its last address.
        #[arg(long, value_name = "HOST[:PORT]", requires = "factory_reset")]
        target: Option<String>,
        /// With --factory-reset: seconds to watch it come back.
        #[arg(long, value_name = "SECONDS", requires = "factory_reset")]
        wait: Option<u64>,
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
    /// Make phones re-read their configuration (SIP NOTIFY `check-sync`), then watch each one
    /// fetch it again. Exit 1 unless every phone acknowledged (and, with --wait, came back).
    Resync(ActionArgs),
    /// Restart phones (SIP NOTIFY with the `sip_reboot_event` setting), then watch each one
    /// boot again. A Poly phone reboots on check-sync for sure only when its configuration
    /// sets voIpProt.SIP.specialEvent.checkSync.alwaysReboot="1".
    Reboot(ActionArgs),
    /// Reset phones to factory settings (needs the phone's REST API, not available yet: the
    /// command says so rather than pretend).
    FactoryReset(ActionArgs),
}

/// Which phones a remote action acts on, and how.
#[derive(Args)]
pub(crate) struct ActionArgs {
    /// MAC addresses, in any common form.
    pub(crate) macs: Vec<String>,
    /// Also every device with this profile.
    #[arg(long)]
    pub(crate) profile: Option<String>,
    /// Also every device of this model (as the phone reports it, e.g. VVX_500).
    #[arg(long)]
    pub(crate) model: Option<String>,
    /// Also every device in this state (unassigned, assigned, released, retired).
    #[arg(long)]
    pub(crate) state: Option<String>,
    /// Every device in the inventory.
    #[arg(long)]
    pub(crate) all: bool,
    /// How to reach the phone.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) via: ActionVia,
    /// Send to HOST[:PORT] instead of the address the phone was last seen from (one MAC).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub(crate) target: Option<String>,
    /// SIP transport (default: the server's `sip_transport` setting).
    #[arg(long, value_enum)]
    pub(crate) transport: Option<SipTransport>,
    /// Phones acted on per second (default: the server's `rate` setting).
    #[arg(long, value_name = "PHONES_PER_S")]
    pub(crate) rate: Option<f64>,
    /// Seconds to watch each phone for coming back; 0 to only send.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) wait: Option<u64>,
    /// Why (kept in the audit log).
    #[arg(long)]
    pub(crate) reason: Option<String>,
    #[command(flatten)]
    pub(crate) api: ApiArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ActionVia {
    Sip,
    Rest,
    Auto,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SipTransport {
    Udp,
    Tcp,
    /// TCP with TLS: the phone's certificate is checked against `[actions] rest_ca` and must
    /// name its MAC.
    Tls,
}

#[derive(Subcommand)]
pub(crate) enum ProfileCommand {
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
pub(crate) enum SiteCommand {
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

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// The old server's folder: masters, <mac>.cfg, the files they list, overrides, directories,
    /// call lists, logs.
    #[arg(required_unless_present = "csv", conflicts_with = "csv")]
    pub(crate) dir: Option<PathBuf>,
    /// A spreadsheet (CSV with a header row): mac, profile, admin_password,
    /// line1_address, line1_user, line1_password (line2_… and so on), and param:NAME columns.
    #[arg(long, value_name = "FILE")]
    pub(crate) csv: Option<PathBuf>,
    /// Do it. Without it nothing changes: the plan and every difference are printed.
    #[arg(long)]
    pub(crate) apply: bool,
    /// With --apply: go ahead although some phones would get a different configuration, and
    /// replace boot-root files that differ.
    #[arg(long)]
    pub(crate) force: bool,
    /// This server's data directory (its boot root receives the shared files).
    #[arg(long, value_name = "DIR", default_value = "polyprov-data")]
    pub(crate) data: PathBuf,
    #[command(flatten)]
    pub(crate) api: ApiArgs,
}
