//! The polyprov server: the provisioning [`core`], the phone-facing doors (HTTP, TFTP, FTP/FTPS),
//! the admin API and metrics. [`start`] wires them to a data directory and sockets; the public
//! API is the core, `doctor`'s report, the settings and `start`.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let server = polyprov_server::start(polyprov_server::Settings::default()).await?;
//! println!("phones: http://{}/", server.http_addr);
//! server.shutdown().await;
//! # Ok(()) }
//! ```

// The API: the core (for embedders and tests), doctor's report, the settings, `start`.
pub mod actions;
mod console;
pub mod core;
pub mod doctor;
pub mod settings;
pub mod systemd;
pub mod tls;

pub(crate) mod admin;
pub(crate) mod auth;
pub(crate) mod doors;
pub(crate) mod metrics;
pub(crate) mod render;

use doors::{connections, ftp, http, tftp};

/// The phones' HTTP/1 wire format (request heads, chunked bodies), public for its fuzz target.
pub use doors::http::wire as http_wire;
pub use settings::{ProvisioningAuth, Settings};

use anyhow::Context;
use polyprov_model::master::STARTER_MASTER;
use polyprov_store::{Inventory, Uploads};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A running server.
pub struct RunningServer {
    /// Where phones connect.
    pub http_addr: SocketAddr,
    /// Where the admin API and `/metrics` are.
    pub admin_addr: SocketAddr,
    /// Where HTTPS is served, when it is.
    pub https_addr: Option<SocketAddr>,
    /// Where TFTP is served, when it is.
    pub tftp_addr: Option<SocketAddr>,
    /// Where FTP (and explicit FTPS) is served, when it is.
    pub ftp_addr: Option<SocketAddr>,
    /// The provisioning user and password phones must present (`None` when auth is off).
    pub provisioning_login: Option<(String, String)>,
    /// The admin API bearer token.
    pub admin_token: String,
    /// The provisioning core (for tests and embedding).
    pub core: Arc<core::Core>,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting, lets running requests finish, writes pending inventory updates.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.core.flush().await;
        self.core.close().await;
    }

    /// Runs until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutting down");
        systemd::notify("STOPPING=1");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn dhcp_options(d: &settings::DhcpSettings) -> std::collections::BTreeMap<u8, String> {
    d.options
        .iter()
        .filter_map(|(k, v)| Some((k.trim().parse().ok()?, v.clone())))
        .collect()
}

/// On SIGHUP, reads the settings file again and applies what can change while serving —
/// `[provisioning] new_devices_per_minute`, `[lifecycle]`, `[actions]`, `[dhcp]` — and says
/// which other changed sections wait for a restart. A file that does not load keeps the running
/// settings. (The HTTPS certificate reloads on SIGHUP too; see `tls.rs`.)
#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;
#[cfg(not(unix))]
type Hangup = ();

async fn reload_on_hangup(
    #[allow(unused_mut)] mut hangup: Hangup,
    path: Option<std::path::PathBuf>,
    started: Settings,
    admin: Arc<admin::AdminState>,
    stop: CancellationToken,
) {
    #[cfg(unix)]
    {
        let mut running = started;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                Some(()) = hangup.recv() => {
                    systemd::notify("RELOADING=1");
                    match &path {
                        Some(p) => running = reload(p, running, &admin),
                        None => tracing::info!("SIGHUP: no settings file to reload (started without --config)"),
                    }
                    systemd::notify("READY=1");
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (hangup, path, started, admin);
        stop.cancelled().await;
    }
}

fn reload(path: &Path, running: Settings, admin: &admin::AdminState) -> Settings {
    let new = match Settings::from_file(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "settings not reloaded; the running ones stay");
            return running;
        }
    };
    let mut applied = Vec::new();
    if new.provisioning.new_devices_per_minute != running.provisioning.new_devices_per_minute {
        admin
            .core
            .set_new_devices_per_minute(new.provisioning.new_devices_per_minute);
        applied.push("provisioning.new_devices_per_minute");
    }
    if new.lifecycle != running.lifecycle {
        admin.core.set_lifecycle(new.lifecycle.clone());
        applied.push("lifecycle");
    }
    if new.actions != running.actions {
        admin.actions.set_settings(new.actions.clone());
        applied.push("actions");
    }
    if new.dhcp != running.dhcp {
        *admin.dhcp.write().unwrap_or_else(|p| p.into_inner()) = dhcp_options(&new.dhcp);
        applied.push("dhcp");
    }
    let mut at_restart = Vec::new();
    let mut provisioning = new.provisioning.clone();
    provisioning.new_devices_per_minute = running.provisioning.new_devices_per_minute;
    for (name, changed) in [
        ("data", new.data != running.data),
        ("http", new.http != running.http),
        ("admin", new.admin != running.admin),
        (
            "provisioning (other than new_devices_per_minute)",
            provisioning != running.provisioning,
        ),
        ("uploads", new.uploads != running.uploads),
        ("inventory", new.inventory != running.inventory),
        ("store", new.store != running.store),
        ("boot_root", new.boot_root != running.boot_root),
        ("log_archive", new.log_archive != running.log_archive),
        ("tftp", new.tftp != running.tftp),
        ("ftp", new.ftp != running.ftp),
        ("https", new.https != running.https),
    ] {
        if changed {
            at_restart.push(name);
        }
    }
    tracing::info!(
        file = %path.display(),
        applied = ?applied,
        at_restart = ?at_restart,
        "settings reloaded (SIGHUP)"
    );
    if !at_restart.is_empty() {
        tracing::warn!(sections = ?at_restart, "these settings changed and take effect at the next restart");
    }
    new
}

/// Prepares the data directory (first start creates everything) and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<RunningServer> {
    let data = settings.data.clone();
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    restrict_dir(&data)?;
    let root = settings.root_dir();
    if !root.exists() {
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        std::fs::write(root.join(core::SHARED_MASTER), STARTER_MASTER)
            .with_context(|| format!("writing the starter master in {}", root.display()))?;
        tracing::info!(root = %root.display(), "created the boot root with a starter staging master");
    }
    let admin_token = read_or_create_secret(&data.join("admin.token"))?;
    let provisioning_login = match settings.provisioning.auth {
        ProvisioningAuth::Basic => Some((
            settings.provisioning.user.clone(),
            read_or_create_secret(&data.join("provisioning.password"))?,
        )),
        ProvisioningAuth::None => {
            tracing::warn!(
                "provisioning auth is off: anyone who knows a MAC can read that phone's passwords"
            );
            None
        }
    };
    let inventory_url = settings.store.inventory_url(&data);
    let inventory = Arc::new(Inventory::open(&inventory_url).await.with_context(|| {
        format!(
            "opening the inventory at {}",
            settings::StoreSettings::redacted(&inventory_url)
        )
    })?);
    inventory.set_check_before_serving(settings.store.check_before_serving);
    let uploads = Arc::new(
        Uploads::open(&data.join("uploads"), settings.uploads.clone())
            .context("opening the upload store")?,
    );
    let metrics = Arc::new(metrics::Metrics::default());
    let tftp_metrics = metrics.clone();
    let ftp_metrics = metrics.clone();
    let connection_metrics = metrics.clone();
    let core = Arc::new(
        core::Core::new(
            root,
            inventory.clone(),
            uploads,
            provisioning_login.is_some(),
            metrics.clone(),
        )
        .with_lifecycle(settings.lifecycle.clone())
        .with_new_devices_per_minute(settings.provisioning.new_devices_per_minute)
        .with_flush_batch(settings.inventory.flush_batch)
        .with_root_watch(settings.boot_root.watch_changes)
        .with_device_logins(
            settings.provisioning.device_logins,
            settings.provisioning.previous_login_hours,
        ),
    );

    if let Some(store) = settings.boot_root.store() {
        mirror_boot_root(
            &store,
            &settings.root_dir(),
            std::time::Duration::from_secs(settings.boot_root.sync_interval_secs.max(1)),
            metrics.clone(),
        )
        .await?;
    }

    if let Some(store) = settings.log_archive.store() {
        archive_logs(
            &store,
            &data.join("uploads"),
            std::time::Duration::from_secs(settings.log_archive.interval_secs.max(1)),
            metrics.clone(),
        )?;
    }

    // Before any phone is served: undo releases a crash interrupted.
    // Before the intents are reconciled: an interrupted release's quarantine set may be among
    // what moves into a shared database.
    let adopted = core
        .adopt_upload_folder()
        .await
        .context("moving uploaded files between the upload folder and the inventory")?;
    if adopted > 0 {
        tracing::info!(
            files = adopted,
            "moved the overrides, directories, call lists and licences phones download back to where this node keeps them (into a shared inventory: the folder's copies stay in uploads/.in-database; out of it: into the upload folder)"
        );
    }
    core.reconcile()
        .await
        .context("undoing releases interrupted by a crash")?;
    core.load_logins()
        .await
        .context("loading the devices' provisioning logins")?;
    follow_other_nodes(&core, &inventory, metrics.clone());

    let phone_door = Arc::new(http::PhoneDoor {
        door: core::Door::Http,
        core: core.clone(),
        credentials: provisioning_login
            .as_ref()
            .map(|(u, p)| auth::ProvisioningCredentials::new(u, p)),
        metrics: metrics.clone(),
        body_timeout: Duration::from_secs(settings.http.body_timeout_secs.max(1)),
    });
    let admin_state = Arc::new(admin::AdminState {
        actions: actions::Actions::new(core.clone(), settings.actions.clone()),
        sessions: Default::default(),
        activity: Arc::new(console::Activity::new()),
        core: core.clone(),
        metrics,
        token_hash: Sha256::digest(admin_token.as_bytes()).into(),
        dhcp: std::sync::RwLock::new(dhcp_options(&settings.dhcp)),
    });

    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    // A SIGHUP must never stop the server: with no settings file there is nothing to re-read,
    // and it is still answered.
    let baseline = settings
        .source
        .as_deref()
        .and_then(|p| Settings::from_file(p).ok())
        .unwrap_or_else(|| settings.clone());
    // Registered here, before READY: a SIGHUP right after start is handled, not fatal.
    #[cfg(unix)]
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    #[cfg(not(unix))]
    let hangup = ();
    tasks.spawn(reload_on_hangup(
        hangup,
        settings.source.clone(),
        baseline,
        admin_state.clone(),
        stop.clone(),
    ));
    let phone_limits = connections::ConnectionLimits {
        header_timeout: Duration::from_secs(settings.http.header_timeout_secs.max(1)),
        send_timeout: Duration::from_secs(settings.http.send_timeout_secs.max(1)),
        max_connections: settings.http.max_connections,
        served_at_once: Some(settings.http.served_at_once),
        keep_turn: Duration::from_millis(settings.http.keep_turn_ms),
    };
    warn_if_accept_queue_short();
    let http_addr = serve(
        &mut tasks,
        settings.http.listen,
        connections::Handler::Phones(phone_door.clone()),
        (phone_limits, connection_metrics.clone(), "http"),
        None,
        stop.clone(),
    )
    .await
    .context("starting the phone HTTP door")?;
    let admin_limits = connections::ConnectionLimits {
        max_connections: 256,
        served_at_once: None,
        ..phone_limits
    };
    tasks.spawn(console::sample_activity(admin_state.clone(), stop.clone()));
    let admin_addr = serve(
        &mut tasks,
        settings.admin.listen,
        connections::Handler::Router(admin::router(admin_state)),
        (admin_limits, connection_metrics.clone(), "admin"),
        None,
        stop.clone(),
    )
    .await
    .context("starting the admin API")?;

    let https_addr = match settings.https.listen {
        Some(addr) => {
            let files = tls::TlsFiles::from_settings(&settings.https, &data);
            let server_tls = Arc::new(tls::ServerTls::load(files).context(
                "loading the HTTPS certificate ([https] cert/key, or run `polyprov tls init`)",
            )?);
            server_tls.clone().spawn_reloader(
                Duration::from_secs(settings.https.reload_check_secs),
                stop.clone(),
            );
            let door = Arc::new(http::PhoneDoor {
                door: core::Door::Https,
                ..phone_door.cloned()
            });
            let tls = connections::TlsDoor {
                tls: server_tls,
                handshake_timeout: Duration::from_secs(
                    settings.https.handshake_timeout_secs.max(1),
                ),
                core: core.clone(),
            };
            Some(
                serve(
                    &mut tasks,
                    addr,
                    connections::Handler::Phones(door),
                    (phone_limits, connection_metrics, "https"),
                    Some(tls),
                    stop.clone(),
                )
                .await
                .context("starting the phone HTTPS door")?,
            )
        }
        None => None,
    };

    let tftp_addr = match settings.tftp.listen {
        Some(addr) => {
            let socket = tokio::net::UdpSocket::bind(addr).await.with_context(|| {
                format!("binding TFTP on {addr} (port 69 needs root or CAP_NET_BIND_SERVICE)")
            })?;
            let bound = socket.local_addr()?;
            let door = Arc::new(tftp::TftpDoor {
                core: core.clone(),
                metrics: tftp_metrics,
            });
            let config = polyprov_tftp::server::Config {
                max_transfers: settings.tftp.max_transfers,
                max_windowsize: settings.tftp.max_windowsize,
                max_window_bytes: settings.tftp.max_window_bytes,
                memory_budget: settings.tftp.memory_budget_mib.saturating_mul(1024 * 1024),
                ..Default::default()
            };
            tasks.spawn(polyprov_tftp::server::serve(
                socket,
                door,
                config,
                stop.clone().cancelled_owned(),
            ));
            Some(bound)
        }
        None => None,
    };

    let ftp_addr = match settings.ftp.listen {
        Some(addr) => {
            let ftp = &settings.ftp;
            let tls = match (&ftp.tls_cert, &ftp.tls_key) {
                (Some(cert), Some(key)) => Some(ftp::tls_config(cert, key)?),
                (None, None) => None,
                _ => anyhow::bail!("[ftp] needs both tls_cert and tls_key for FTPS"),
            };
            anyhow::ensure!(
                tls.is_some() || !ftp.require_tls,
                "[ftp] require_tls needs tls_cert and tls_key"
            );
            anyhow::ensure!(
                ftp.passive_ports[0] <= ftp.passive_ports[1],
                "[ftp] passive_ports must be [first, last]"
            );
            let listener = listen(addr).with_context(|| {
                format!("binding FTP on {addr} (port 21 needs root or CAP_NET_BIND_SERVICE)")
            })?;
            let bound = listener.local_addr()?;
            let logins = Arc::new(ftp::Logins::new(
                core.clone(),
                provisioning_login
                    .as_ref()
                    .map(|(u, p)| auth::ProvisioningCredentials::new(u, p)),
                ftp,
            ));
            let service = ftp::FtpService {
                door: ftp::FtpDoor {
                    core: core.clone(),
                    metrics: ftp_metrics,
                },
                logins,
                settings: ftp.clone(),
                tls,
            };
            tasks.spawn(ftp::serve(listener, service, stop.clone()));
            Some(bound)
        }
        None => None,
    };

    let flusher_core = core.clone();
    let flusher_stop = stop.clone();
    let period = Duration::from_millis(settings.inventory.flush_interval_ms.max(10));
    tasks.spawn(async move {
        // The first flush one period after start (nothing is waiting before).
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = tick.tick() => { flusher_core.flush().await; }
                _ = flusher_core.flush_wanted() => { flusher_core.flush().await; }
                _ = flusher_stop.cancelled() => break,
            }
        }
    });

    Ok(RunningServer {
        http_addr,
        admin_addr,
        https_addr,
        tftp_addr,
        ftp_addr,
        provisioning_login,
        admin_token,
        core,
        stop,
        tasks,
    })
}

/// Binds `addr` and serves `router` there with the connection limits (see [`connections`]).
async fn serve(
    tasks: &mut tokio::task::JoinSet<()>,
    addr: SocketAddr,
    handler: connections::Handler,
    (limits, metrics, door): (
        connections::ConnectionLimits,
        Arc<metrics::Metrics>,
        &'static str,
    ),
    tls: Option<connections::TlsDoor>,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = listen(addr).with_context(|| format!("binding {addr}"))?;
    let bound = listener.local_addr()?;
    tasks.spawn(connections::serve(
        listener, handler, limits, metrics, door, tls, stop,
    ));
    Ok(bound)
}

/// Connections the kernel may queue for `accept` on a listener (capped by `net.core.somaxconn`):
/// a whole site's phones connect at once after a power cut, and a full queue drops their SYNs
/// (each dropped one costs a phone a second or more) — the default of 1024 overflowed with
/// 1,000 phones booting at once.
const LISTEN_BACKLOG: i32 = 8192;

/// Keeps the boot root a copy of an object-store prefix: one sync before phones are served
/// (bounded: a store that does not answer leaves the copy as it is, and phones are served
/// from it), then one every `interval`. Phones never wait on the object store.
async fn mirror_boot_root(
    store: &polyprov_mirror::StoreConfig,
    root: &Path,
    interval: std::time::Duration,
    metrics: Arc<metrics::Metrics>,
) -> anyhow::Result<()> {
    let mirror = Arc::new(
        polyprov_mirror::Mirror::new(store, root)
            .with_context(|| format!("the boot root's object store {}", store.url))?,
    );
    if tokio::time::timeout(
        BOOT_ROOT_FIRST_SYNC,
        sync_boot_root(&mirror, &metrics, &store.url, true),
    )
    .await
    .is_err()
    {
        tracing::warn!(url = %store.url, "the boot root's first sync is taking long; serving the local copy meanwhile");
    }
    let url = store.url.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            sync_boot_root(&mirror, &metrics, &url, false).await;
        }
    });
    Ok(())
}

/// One sync of the boot root, counted and logged (every change, and the first sync, at info;
/// a failure at warn).
async fn sync_boot_root(
    mirror: &polyprov_mirror::Mirror,
    metrics: &metrics::Metrics,
    url: &str,
    first: bool,
) {
    match mirror.sync().await {
        Ok(r) => {
            metrics.boot_root_sync(true, r.downloaded.len(), r.removed.len(), r.skipped.len());
            if first || !r.downloaded.is_empty() || !r.removed.is_empty() {
                tracing::info!(%url, downloaded = r.downloaded.len(), removed = r.removed.len(), unchanged = r.unchanged, bytes = r.bytes, "boot root synced from its object store");
            }
            if !r.skipped.is_empty() {
                tracing::warn!(%url, keys = ?r.skipped, "object keys that cannot be a served file name were skipped");
            }
        }
        Err(e) => {
            metrics.boot_root_sync(false, 0, 0, 0);
            tracing::warn!(%url, error = %e, "cannot sync the boot root from its object store; serving the local copy");
        }
    }
}

/// Sends the logs phones upload to this node (`uploads/logs/<mac>-<kind>.log[.N]`) to the log
/// archive every `interval`, each when it changed; a failed send is tried again next time.
fn archive_logs(
    store: &polyprov_mirror::StoreConfig,
    uploads: &Path,
    interval: std::time::Duration,
    metrics: Arc<metrics::Metrics>,
) -> anyhow::Result<()> {
    let logs = uploads.join(polyprov_store::uploads::LOGS_DIR);
    let archive = polyprov_mirror::Archive::new(store, &logs, &uploads.join(".log-archive.json"))
        .with_context(|| format!("the log archive's object store {}", store.url))?;
    let url = store.url.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match archive.sync(is_log_file).await {
                Ok(r) => {
                    metrics.log_archive_sync(r.uploaded.len(), r.failed.len());
                    if !r.failed.is_empty() {
                        tracing::warn!(%url, failed = r.failed.len(), "cannot send some logs to the log archive; trying again at the next sync");
                    }
                }
                Err(e) => tracing::warn!(%url, error = %e, "cannot send logs to the log archive"),
            }
        }
    });
    Ok(())
}

/// Whether a path in the logs folder is a log: `<mac>-<kind>` or `<mac>-<kind>.<N>` of a log
/// kind.
fn is_log_file(relative: &str) -> bool {
    let Some((mac, name)) = relative.split_once('-') else {
        return false;
    };
    let base = match name.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    };
    polyprov_model::Mac::recognise(mac).is_some()
        && polyprov_model::UploadKind::from_suffix(base).is_some_and(|k| k.is_log())
}

/// How long start-up waits for the boot root's first sync from its object store.
const BOOT_ROOT_FIRST_SYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// On a shared PostgreSQL inventory, keeps the core's copy of the device logins in step with
/// the changes other nodes make (the inventory itself keeps its assigned set and generation in
/// step; see `polyprov_store::inventory::follow`).
fn follow_other_nodes(
    core: &Arc<core::Core>,
    inventory: &Arc<Inventory>,
    metrics: Arc<metrics::Metrics>,
) {
    let Some(mut changes) = inventory.follow_changes() else {
        return;
    };
    let core = Arc::downgrade(core);
    tokio::spawn(async move {
        use polyprov_store::InventoryChange;
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = changes.recv().await;
            let Some(core) = core.upgrade() else { return };
            let result = match change {
                Ok(InventoryChange::Device(mac)) => {
                    metrics.change_heard("device");
                    core.reload_login(mac).await
                }
                Ok(InventoryChange::DeviceFiles(_)) => {
                    metrics.change_heard("device_files");
                    Ok(())
                }
                Ok(InventoryChange::All) | Err(RecvError::Lagged(_)) => {
                    metrics.change_heard("all");
                    core.load_logins().await.map(|_| ())
                }
                Err(RecvError::Closed) => return,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot follow a change another node made to the device logins");
            }
        }
    });
}

/// A TCP listener on `addr` with [`LISTEN_BACKLOG`] and address reuse (a restart does not wait
/// for the old sockets' TIME_WAIT).
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// Warns (once, at start) when the kernel caps accept queues below what a boot storm needs.
fn warn_if_accept_queue_short() {
    let read = std::fs::read_to_string("/proc/sys/net/core/somaxconn");
    if let Some(cap) = read.ok().as_deref().and_then(accept_queue_too_short) {
        tracing::warn!(
            somaxconn = cap,
            wanted = LISTEN_BACKLOG,
            "the kernel caps each listener's accept queue at {cap} connections: in a boot storm of more phones at once their SYNs are dropped and they retry seconds later (sysctl -w net.core.somaxconn={LISTEN_BACKLOG})"
        );
    }
}

/// The kernel's cap on accept queues (`/proc/sys/net/core/somaxconn`), when it is short of
/// what a boot storm needs: phones past what the cores serve wait in that queue
/// (`doors::connections`). Short is below 4096, the default since Linux 5.4 (older kernels
/// have 128): a queue of 1,024 overflowed with 1,000 phones booting at once.
fn accept_queue_too_short(somaxconn: &str) -> Option<i64> {
    let cap: i64 = somaxconn.trim().parse().ok()?;
    (cap < 4096).then_some(cap)
}

/// Reads a secret file, or creates it with a new random secret (mode 0600).
fn read_or_create_secret(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let secret = auth::new_secret();
    write_private(path, &format!("{secret}\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

#[cfg(not(unix))]
fn restrict_dir(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_logs_and_their_rotations_are_archived() {
        for yes in ["0004f2aa0001-app.log", "0004f2aa0001-boot.log.3"] {
            assert!(super::is_log_file(yes), "{yes}");
        }
        for no in [
            "0004f2aa0001-phone.cfg",
            "0004f2aa0001-app.log.moving",
            "0004f2aa0001-app.log.",
            "0004f2aa0001/app.log",
            "sub/0004f2aa0001-app.log",
            "not-a-mac-app.log",
            "app.log",
        ] {
            assert!(!super::is_log_file(no), "{no}");
        }
    }

    #[test]
    fn a_short_kernel_accept_queue_is_reported() {
        assert_eq!(super::accept_queue_too_short("128\n"), Some(128));
        assert_eq!(super::accept_queue_too_short("1024"), Some(1024));
        assert_eq!(super::accept_queue_too_short("4096\n"), None);
        assert_eq!(super::accept_queue_too_short("65535"), None);
        assert_eq!(super::accept_queue_too_short("not a number"), None);
    }
}
