//! Server settings: a TOML file, defaults for everything, command-line flags on top.

use polyprov_store::UploadLimits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `polyprov serve` can be told. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Data directory: inventory, boot root, uploads, secrets. Created on first start.
    pub data: PathBuf,
    pub http: HttpSettings,
    pub admin: AdminSettings,
    pub provisioning: ProvisioningSettings,
    pub uploads: UploadLimits,
    pub inventory: InventorySettings,
    pub store: StoreSettings,
    pub boot_root: BootRootSettings,
    pub log_archive: LogArchiveSettings,
    pub dhcp: DhcpSettings,
    pub lifecycle: LifecycleSettings,
    pub tftp: TftpSettings,
    pub ftp: FtpSettings,
    pub https: HttpsSettings,
    pub actions: ActionSettings,
    /// The file these were read from (reloaded from it on SIGHUP); not a setting.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Remote actions on phones (`device resync|reboot`): how they are sent and how long to watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionSettings {
    /// The phones' SIP port, when `--target` gives none.
    pub sip_port: u16,
    /// The phones' SIP-over-TLS port, when `--target` and the phone's settings give none.
    pub sip_tls_port: u16,
    /// `udp`, `tcp` or `tls` (the phones' `voIpProt.server.1.transport`). Over TLS the
    /// phone's certificate is checked as for REST actions (`rest_ca`, its MAC).
    pub sip_transport: String,
    /// RFC 3261 T1 in milliseconds: retransmissions start at T1 and a NOTIFY gives up after
    /// 64·T1 (32 s at the default 500).
    pub sip_t1_ms: u64,
    /// The `Event` of a reboot over SIP. Poly phones re-read their configuration on
    /// `check-sync` and always reboot only with
    /// `voIpProt.SIP.specialEvent.checkSync.alwaysReboot="1"`; whether they honour
    /// `;reboot=true` is not confirmed, so it is sent and the result is watched, not assumed.
    pub sip_reboot_event: String,
    /// Phones acted on per second, when a command gives no `--rate`.
    pub rate: u32,
    /// NOTIFYs in flight at once.
    pub max_in_flight: usize,
    /// Seconds to watch for a phone coming back, when a command gives no `--wait`.
    pub wait_secs: u64,
    /// Finished jobs kept for `GET /api/v1/actions/{id}` (oldest dropped first).
    pub keep_jobs: usize,
    /// CA certificates (PEM) the phones' REST API certificates must chain to (Poly's device
    /// CA, or your own): the admin password is sent only to a phone whose certificate does,
    /// and names its MAC.
    pub rest_ca: Option<PathBuf>,
    /// Without `rest_ca`, send the admin password to an unverified phone (its certificate's
    /// SHA-256 is recorded). Off: REST actions are refused until `rest_ca` is set.
    pub rest_insecure: bool,
    /// The phones' HTTPS port, when `--target` gives none.
    pub rest_port: u16,
    /// A REST call's whole time.
    pub rest_timeout_secs: u64,
}

impl Default for ActionSettings {
    fn default() -> Self {
        ActionSettings {
            sip_port: 5060,
            sip_tls_port: 5061,
            sip_transport: "udp".into(),
            sip_t1_ms: 500,
            sip_reboot_event: "check-sync;reboot=true".into(),
            rate: 10,
            max_in_flight: 256,
            wait_secs: 120,
            keep_jobs: 100,
            rest_ca: None,
            rest_insecure: false,
            rest_port: 443,
            rest_timeout_secs: 15,
        }
    }
}

/// Whether the HTTPS door asks phones for a device certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// No certificate asked for: credentials as over HTTP.
    Off,
    /// A certificate is asked for; one that verifies against `client_ca` and names a MAC
    /// proves that MAC, a connection without one falls back to credentials. One that does not
    /// verify ends the handshake.
    Optional,
    /// No connection without a certificate that verifies against `client_ca`.
    Required,
}

/// The HTTPS door (off unless `listen` is set): the same core, limits and credentials as the
/// HTTP door, plus phone identity by device certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsSettings {
    /// Address to serve HTTPS on, e.g. `0.0.0.0:443`.
    pub listen: Option<SocketAddr>,
    /// Certificate chain (PEM, server certificate first). Unset: `DATA/tls/server.pem` from
    /// `polyprov tls init`.
    pub cert: Option<PathBuf>,
    /// Private key (PEM). Unset: `DATA/tls/server-key.pem`.
    pub key: Option<PathBuf>,
    /// CA certificates (PEM) that sign the phones' device certificates: the Polycom root and
    /// intermediates, or the admin's own CA. Needed unless `client_auth = "off"`.
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Seconds a client has to finish the TLS handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds between checks of the certificate, key and CA files for changes (they are also
    /// reloaded on SIGHUP). A change that does not load keeps the running configuration.
    pub reload_check_secs: u64,
}

impl Default for HttpsSettings {
    fn default() -> Self {
        HttpsSettings {
            listen: None,
            cert: None,
            key: None,
            client_ca: None,
            client_auth: ClientAuth::Off,
            handshake_timeout_secs: 10,
            reload_check_secs: 5,
        }
    }
}

/// The TFTP door (off unless `listen` is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TftpSettings {
    /// Address to serve TFTP on, e.g. `0.0.0.0:69`.
    pub listen: Option<SocketAddr>,
    /// Transfers at once; more are told the server is busy.
    pub max_transfers: usize,
    /// Largest windowsize granted (RFC 7440).
    pub max_windowsize: u16,
    /// Most bytes in one window (blksize × windowsize); the windowsize granted shrinks to fit.
    pub max_window_bytes: usize,
    /// Most memory all TFTP transfers hold together, in MiB; past it new transfers are told
    /// the server is busy.
    pub memory_budget_mib: usize,
}

impl Default for TftpSettings {
    fn default() -> Self {
        TftpSettings {
            listen: None,
            max_transfers: 512,
            max_windowsize: 64,
            max_window_bytes: 512 * 1024,
            memory_budget_mib: 128,
        }
    }
}

/// The FTP/FTPS door (off unless `listen` is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FtpSettings {
    /// Address to serve FTP on, e.g. `0.0.0.0:21`.
    pub listen: Option<SocketAddr>,
    /// Ports offered for passive data connections, `[first, last]`. Open them in the firewall;
    /// keep the range well above the number of transfers at once.
    pub passive_ports: [u16; 2],
    /// The IPv4 address announced in PASV replies, when phones reach the server through NAT.
    /// Without it, the address the phone connected to.
    pub passive_host: Option<std::net::Ipv4Addr>,
    /// Accept the phones' factory login (`factory_user`/`factory_password`). It proves nothing,
    /// so it reaches only shared files unless `[provisioning] auth = "none"`.
    pub factory_login: bool,
    /// The factory login's user name (`PlcmSpIp` on every Poly phone).
    pub factory_user: String,
    /// The factory login's password (`PlcmSpIp` on every Poly phone).
    pub factory_password: String,
    /// PEM certificate chain for explicit FTPS (`AUTH TLS`). FTPS is off without it.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Refuse logins and transfers that are not protected by TLS (needs `tls_cert`).
    pub require_tls: bool,
    /// Accept a passive data connection only from the address of its control connection (as
    /// vsftpd does by default): otherwise whoever connects first to the announced port gets the
    /// transfer. Enforced with a kernel socket filter on Linux.
    pub data_from_control_address: bool,
    /// Control connections at once; more are refused with `421`.
    pub max_sessions: usize,
    /// Control connections at once from one address (each may hold one passive port). Phones
    /// behind one NAT share an address: raise it for large sites seen through NAT.
    pub max_sessions_per_address: usize,
    /// Seconds a passive port offered by `PASV` waits for its data connection before it is
    /// closed and can be offered again.
    pub passive_timeout_secs: u64,
    /// Seconds an idle control connection is kept.
    pub idle_timeout_secs: u64,
}

impl Default for FtpSettings {
    fn default() -> Self {
        FtpSettings {
            listen: None,
            passive_ports: [49152, 49407],
            passive_host: None,
            factory_login: true,
            factory_user: "PlcmSpIp".to_string(),
            factory_password: "PlcmSpIp".to_string(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            data_from_control_address: true,
            max_sessions: 512,
            max_sessions_per_address: 64,
            passive_timeout_secs: 5,
            idle_timeout_secs: 300,
        }
    }
}

/// What to do when a phone's requests look like it was factory-reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetPolicy {
    /// Record it on the device and in the audit log.
    #[default]
    Keep,
    /// Record it and quarantine the device's overrides before the phone reads them back.
    Quarantine,
    /// Record it and log a warning (target `polyprov::lifecycle`) for an admin to act on.
    Alert,
}

/// Device lifecycle behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSettings {
    pub reset_policy: ResetPolicy,
    /// A boot log that shrinks below half of the previous one, which had at least this many
    /// bytes, is taken as a sign that the phone's files were wiped (factory reset or Format File
    /// System). Assumes phones upload their whole boot log each time.
    pub reset_log_min_bytes: u64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        LifecycleSettings {
            reset_policy: ResetPolicy::Keep,
            reset_log_min_bytes: 200,
        }
    }
}

/// What the network's DHCP servers hand out, as the admin declares it (for `doctor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpSettings {
    /// Option number → value, e.g. `160 = "http://prov.example.com:8080/"`.
    pub options: std::collections::BTreeMap<String, String>,
}

/// The phone-facing HTTP door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address phones connect to.
    pub listen: SocketAddr,
    /// Seconds a client has to send a request's whole header, and the longest a kept-alive
    /// connection waits for its next request (nginx: `client_header_timeout`, 60 s).
    pub header_timeout_secs: u64,
    /// Seconds a client has to send an upload's whole body (nginx: `client_body_timeout`).
    pub body_timeout_secs: u64,
    /// Seconds a response may make no progress because the client does not read it (nginx:
    /// `send_timeout`, 60 s).
    pub send_timeout_secs: u64,
    /// Connections at once. Past this, or past what the open-file limit leaves room for, a new
    /// connection gets `503` and is closed.
    pub max_connections: usize,
    /// Connections served at once (per door, HTTP and HTTPS each). Past this, new phones wait
    /// in the kernel's accept queue, before their first request, until a connection ends or
    /// waits on the network for more than `keep_turn_ms` (HAProxy's `maxconn`): in a storm the
    /// phones already booting finish first. A tuning knob, not a fact about phones.
    pub served_at_once: usize,
    /// Milliseconds a connection keeps its turn while it waits on the network (the phone's next
    /// request, a slow reader, a dripped upload). Long enough for a booting phone's next
    /// request; short enough that idle keep-alive connections soon make room.
    pub keep_turn_ms: u64,
}

/// The admin REST API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Address of the admin API. Loopback by default: it can change every phone's configuration.
    pub listen: SocketAddr,
}

/// How phones prove they may read and write per-device files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisioningAuth {
    /// HTTP Basic with the provisioning user and password (the phone sends what is in its
    /// provisioning URL or in `device.prov.user`/`device.prov.password`).
    Basic,
    /// No check: anyone who knows a MAC can read that phone's passwords. Only for closed labs.
    None,
}

/// Phone-facing provisioning behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningSettings {
    /// Credentials required for per-device files and uploads.
    pub auth: ProvisioningAuth,
    /// User name phones log in with. `PlcmSpIp` is the phone's factory default, so only the
    /// password has to be typed into a phone.
    pub user: String,
    /// The URL phones should use, as printed at start-up (e.g. `http://prov.example.com:8080/`).
    /// Without it polyprov prints one built from the host name and the listen port.
    pub public_url: Option<String>,
    /// Different devices one address may add to the inventory in a minute. Phones behind one
    /// NAT share an address: raise it for large sites behind one.
    pub new_devices_per_minute: usize,
    /// Give each assigned device its own provisioning login, rendered into its own file; once
    /// the phone uses it, the shared credentials no longer open its files.
    pub device_logins: bool,
    /// Hours a device's previous login stays valid after a rotation (release, reassign) if the
    /// phone has not used its new one yet.
    pub previous_login_hours: u64,
}

/// Inventory housekeeping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventorySettings {
    /// How often what phones did (last seen, model, firmware, files) is written, in milliseconds.
    /// Requests never wait for the database; they are batched.
    pub flush_interval_ms: u64,
    /// Devices a batch holds at most: once this many are waiting they are written without
    /// waiting for the interval, and a longer backlog goes in transactions of this size. In a
    /// storm this keeps each write short — one long write every interval takes a core from
    /// the phones' requests for its whole length. Smaller is shorter still but costs CPU: a
    /// phone whose boot spans several writes is written several times.
    pub flush_batch: usize,
}

/// Where the boot root comes from: the data directory's `root` folder (the default), or a
/// prefix of an S3-compatible object store that each node mirrors into that folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootRootSettings {
    /// `s3://bucket/prefix`; unset: the `root` folder is the boot root itself.
    pub url: Option<String>,
    /// An S3-compatible endpoint (`https://s3.example.com`, `http://127.0.0.1:9000`); unset: AWS.
    pub endpoint: Option<String>,
    /// The region requests are signed for; unset: `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// `environment` (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`; none: unsigned requests) or
    /// `instance` (the cloud's web identity, container or instance credentials).
    pub credentials: polyprov_mirror::Credentials,
    /// How often the local copy is brought up to date, in seconds.
    pub sync_interval_secs: u64,
    /// Know what the boot root holds from a watch of its changes (inotify) instead of a `stat`
    /// per request. Only on local file systems (ext2/3/4, XFS, btrfs, tmpfs, F2FS); turn it off
    /// when something changes the root's files through a shared `mmap` without closing them,
    /// or mounts file systems into the root while the server runs.
    pub watch_changes: bool,
}

impl Default for BootRootSettings {
    fn default() -> Self {
        BootRootSettings {
            url: None,
            endpoint: None,
            region: None,
            allow_http: false,
            credentials: Default::default(),
            sync_interval_secs: 10,
            watch_changes: true,
        }
    }
}

impl BootRootSettings {
    /// The object store to mirror, when one is set.
    pub fn store(&self) -> Option<polyprov_mirror::StoreConfig> {
        self.url.as_ref().map(|url| polyprov_mirror::StoreConfig {
            url: url.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
            credentials: self.credentials,
        })
    }
}

/// A copy of the logs phones upload to this node, in a prefix of an S3-compatible object store:
/// `<url>/<node>/<mac>/<log file>`, each log sent again whenever it changed. Logs stay on the
/// node's disk too; the copy is what outlives the node and what an admin reads across nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogArchiveSettings {
    /// `s3://bucket/prefix`; unset: logs only on this node's disk.
    pub url: Option<String>,
    /// An S3-compatible endpoint; unset: AWS.
    pub endpoint: Option<String>,
    /// The region requests are signed for; unset: `AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint.
    pub allow_http: bool,
    /// `environment` or `instance`, as for `[boot_root]`.
    pub credentials: polyprov_mirror::Credentials,
    /// This node's name in the keys; unset: the host name.
    pub node: Option<String>,
    /// How often changed logs are sent, in seconds.
    pub interval_secs: u64,
}

impl Default for LogArchiveSettings {
    fn default() -> Self {
        LogArchiveSettings {
            url: None,
            endpoint: None,
            region: None,
            allow_http: false,
            credentials: Default::default(),
            node: None,
            interval_secs: 60,
        }
    }
}

impl LogArchiveSettings {
    /// The object store and prefix (this node's, below `url`) to copy logs to, when one is set.
    pub fn store(&self) -> Option<polyprov_mirror::StoreConfig> {
        let node = self.node.clone().unwrap_or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "polyprov".to_string())
        });
        self.url.as_ref().map(|url| polyprov_mirror::StoreConfig {
            url: format!("{}/{node}", url.trim_end_matches('/')),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
            credentials: self.credentials,
        })
    }
}

/// Where the inventory, profiles, site defaults and audit log live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://user@host/db` for a PostgreSQL shared by several nodes (a password is best
    /// given in `PGPASSWORD` or `~/.pgpass`, not here), or `sqlite:PATH`. Unset: SQLite in the
    /// data directory (`polyprov.db`).
    pub url: Option<String>,
    /// On PostgreSQL: before serving a device its own file, confirm with one round trip that
    /// this node has heard every change committed by any node, so a file a release through
    /// another node withdrew is never served. Off: no round trip on the request path, and for
    /// a few milliseconds after such a release another node may still serve the file.
    pub check_before_serving: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            check_before_serving: true,
        }
    }
}

impl StoreSettings {
    /// The inventory's URL: the one set, else the SQLite file in `data`.
    pub fn inventory_url(&self, data: &Path) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None => format!("sqlite:{}", data.join("polyprov.db").display()),
        }
    }

    /// The URL without its password, for logs and summaries.
    pub fn redacted(url: &str) -> String {
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let creds = &url[scheme + 3..at];
                match creds.find(':') {
                    Some(colon) => format!(
                        "{}{}:***{}",
                        &url[..scheme + 3],
                        &creds[..colon],
                        &url[at..]
                    ),
                    None => url.to_string(),
                }
            }
            _ => url.to_string(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data: PathBuf::from("./polyprov-data"),
            http: HttpSettings::default(),
            admin: AdminSettings::default(),
            provisioning: ProvisioningSettings::default(),
            uploads: UploadLimits::default(),
            inventory: InventorySettings::default(),
            store: StoreSettings::default(),
            boot_root: BootRootSettings::default(),
            log_archive: LogArchiveSettings::default(),
            dhcp: DhcpSettings::default(),
            lifecycle: LifecycleSettings::default(),
            tftp: TftpSettings::default(),
            ftp: FtpSettings::default(),
            https: HttpsSettings::default(),
            actions: ActionSettings::default(),
            source: None,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            header_timeout_secs: 30,
            body_timeout_secs: 60,
            send_timeout_secs: 60,
            max_connections: 4096,
            served_at_once: 128,
            keep_turn_ms: 20,
        }
    }
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
        }
    }
}

impl Default for ProvisioningSettings {
    fn default() -> Self {
        ProvisioningSettings {
            auth: ProvisioningAuth::Basic,
            user: "PlcmSpIp".to_string(),
            public_url: None,
            new_devices_per_minute: 120,
            device_logins: true,
            previous_login_hours: 72,
        }
    }
}

impl Default for InventorySettings {
    fn default() -> Self {
        InventorySettings {
            flush_interval_ms: 1000,
            flush_batch: 1024,
        }
    }
}

/// Why settings cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

impl Settings {
    /// The defaults with `data` as data directory and the phone door and admin API on
    /// ephemeral loopback ports: a server for tests and demos that cannot clash with another.
    pub fn loopback(data: PathBuf) -> Settings {
        let mut s = Settings {
            data,
            ..Settings::default()
        };
        s.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s.admin.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s
    }

    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut settings: Settings =
            toml::from_str(&text).map_err(|source| SettingsError::Parse {
                path: path.to_path_buf(),
                source: Box::new(source),
            })?;
        settings.source = Some(path.to_path_buf());
        Ok(settings)
    }

    /// The boot root: files served to phones as they are.
    pub fn root_dir(&self) -> PathBuf {
        self.data.join("root")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inventory_is_sqlite_in_the_data_folder_unless_a_url_says_otherwise() {
        let data = Path::new("/var/lib/polyprov");
        let s: Settings = toml::from_str("").unwrap();
        assert_eq!(
            s.store.inventory_url(data),
            "sqlite:/var/lib/polyprov/polyprov.db"
        );
        let s: Settings =
            toml::from_str("[store]\nurl = \"postgres://prov:pw@db.example.com/polyprov\"")
                .unwrap();
        let url = s.store.inventory_url(data);
        assert_eq!(url, "postgres://prov:pw@db.example.com/polyprov");
        assert_eq!(
            StoreSettings::redacted(&url),
            "postgres://prov:***@db.example.com/polyprov"
        );
        assert_eq!(
            StoreSettings::redacted("postgres://prov@db/polyprov"),
            "postgres://prov@db/polyprov"
        );
        assert_eq!(
            StoreSettings::redacted("sqlite:/a@b/c.db"),
            "sqlite:/a@b/c.db"
        );
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        assert_eq!(toml::from_str::<Settings>("").unwrap(), Settings::default());
    }

    #[test]
    fn reads_a_full_file_and_refuses_unknown_keys() {
        let s: Settings = toml::from_str(
            r#"
            data = "/var/lib/polyprov"
            [http]
            listen = "127.0.0.1:9000"
            [provisioning]
            auth = "none"
            [uploads]
            max_config_bytes = 1000
            "#,
        )
        .unwrap();
        assert_eq!(s.http.listen.port(), 9000);
        assert_eq!(s.provisioning.auth, ProvisioningAuth::None);
        assert_eq!(s.uploads.max_config_bytes, 1000);
        assert_eq!(
            s.uploads.log_rotations,
            UploadLimits::default().log_rotations
        );
        assert!(toml::from_str::<Settings>("[http]\nlisen = \"x\"").is_err());
    }
}
