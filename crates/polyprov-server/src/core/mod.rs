//! The provisioning core: what a phone gets for a path, and what happens to what it uploads.
//!
//! Protocol-free: a door (HTTP, TFTP, FTP) turns its request into a [`Request`],
//! calls [`Core::fetch`] or [`Core::upload`], and turns the [`Answer`] or [`Refusal`] back into
//! its protocol. Every rule about phones lives here, once, for every door.

mod activity;
mod fetch;
mod fleet;
mod guard;
mod lifecycle;
mod listing;
mod logins;
mod refusal;
mod render_cache;
mod request;
mod root_watch;
mod security;
mod sightings;
mod small_files;
mod upload;
mod watch;

#[cfg(test)]
mod tests;

pub use activity::SecurityNote;
pub use fleet::Health;
pub use lifecycle::{LifecycleError, Released};
pub use listing::SharedEntry;
pub use refusal::{Refusal, is_resource_error, kind_label};
use refusal::{label_of, refusal_reason};
use render_cache::*;
use request::*;
pub use request::{
    Answer, Credential, Door, Generated, Request, ServedFile, UserAgentMemo, content_type,
};
pub use upload::UploadTicket;
pub use watch::{Seen, Watch, now_ms};

use crate::metrics::Metrics;
use crate::render;
use bytes::Bytes;
use polyprov_model::master::{STARTER_MASTER, prepend_config_file};
use polyprov_model::path::{DEVICE_CONFIG_SUFFIX, strip_part_number};
use polyprov_model::{
    FileKind, Mac, PathError, RequestPath, UploadKind, UserAgent, UserAgentError,
};
use polyprov_store::{DeviceState, Inventory, Sighting, UploadInfo, Uploads};

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

/// Name of the shared master file, and the base of every generated one.
pub use polyprov_model::master::SHARED_MASTER;

/// The provisioning core.
pub struct Core {
    root: PathBuf,
    /// Lookups in the boot root (see `root_watch.rs`).
    root_watch: root_watch::RootWatch,
    inventory: Arc<Inventory>,
    /// What phones upload: the folder, or for the files phones download back the shared
    /// inventory's database (several nodes on PostgreSQL).
    uploads: polyprov_store::UploadStore,
    auth_required: bool,
    metrics: Arc<Metrics>,
    cache: Mutex<RenderCache>,
    small_files: Mutex<small_files::SmallFiles>,
    sightings: Mutex<HashMap<Mac, sightings::Noted>>,
    /// Held while sightings are written (see `Core::flush`).
    flushing: tokio::sync::Mutex<()>,
    /// Devices a sightings batch holds at most; a full one is written at once.
    flush_batch: usize,
    /// Told when a batch is full (see [`Core::flush_wanted`]).
    flush_soon: tokio::sync::Notify,
    /// Striped per-device locks: phone requests for a device's own files hold one for reading,
    /// a release or reassignment for writing — so a request sees the whole before or the whole
    /// after, never a mix.
    device_locks: Vec<tokio::sync::RwLock<()>>,
    /// Changed by a settings reload (SIGHUP).
    lifecycle: std::sync::RwLock<crate::settings::LifecycleSettings>,
    /// Size of each device's last boot-log upload (in memory: the first upload after a restart
    /// has nothing to compare with).
    last_boot_log: Mutex<HashMap<Mac, u64>>,
    /// Per-address limits: new devices a minute, failed-login backoff.
    guard: guard::AddressGuard,
    /// Each device's own provisioning login (see `logins.rs`), mirrored from the inventory.
    logins: std::sync::RwLock<HashMap<Mac, logins::CompactLogin>>,
    login_use: Mutex<HashMap<Mac, logins::LoginUse>>,
    device_logins: bool,
    previous_login_hours: u64,
    /// Devices an action is watching (see `watch.rs`).
    watches: watch::Watches,
    /// The console's live activity (see `activity.rs`).
    recent: activity::Recent,
    /// Whether log appends run inline or on the blocking pool (see `upload.rs`).
    slow_appends: upload::SlowAppends,
}

const DEVICE_LOCK_STRIPES: usize = 256;

impl Core {
    /// A core serving `root`, with its inventory and upload store.
    pub fn new(
        root: PathBuf,
        inventory: Arc<Inventory>,
        uploads: Arc<Uploads>,
        auth_required: bool,
        metrics: Arc<Metrics>,
    ) -> Core {
        let uploads = if inventory.engine() == polyprov_store::Engine::Postgres {
            polyprov_store::UploadStore::shared(uploads, inventory.clone())
        } else {
            polyprov_store::UploadStore::in_folder(uploads)
        };
        Core {
            root_watch: root_watch::RootWatch::new(root.clone(), true),
            root,
            inventory,
            uploads,
            auth_required,
            metrics,
            cache: Default::default(),
            small_files: Default::default(),
            sightings: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            flush_batch: crate::settings::InventorySettings::default().flush_batch,
            flush_soon: tokio::sync::Notify::new(),
            device_locks: (0..DEVICE_LOCK_STRIPES)
                .map(|_| tokio::sync::RwLock::new(()))
                .collect(),
            lifecycle: Default::default(),
            last_boot_log: Mutex::new(HashMap::new()),
            guard: guard::AddressGuard::new(
                crate::settings::ProvisioningSettings::default().new_devices_per_minute,
            ),
            logins: Default::default(),
            login_use: Default::default(),
            device_logins: crate::settings::ProvisioningSettings::default().device_logins,
            previous_login_hours: crate::settings::ProvisioningSettings::default()
                .previous_login_hours,
            watches: Default::default(),
            recent: Default::default(),
            slow_appends: Default::default(),
        }
    }

    /// Whether boot-root lookups go through a watch of its changes (`[boot_root] watch_changes`)
    /// or `stat` on every request.
    pub fn with_root_watch(mut self, on: bool) -> Core {
        self.root_watch = root_watch::RootWatch::new(self.root.clone(), on);
        self.root_watch.start();
        self
    }

    /// Per-device logins on or off, and how long a rotated-out login stays valid.
    pub fn with_device_logins(mut self, on: bool, previous_login_hours: u64) -> Core {
        self.device_logins = on;
        self.previous_login_hours = previous_login_hours;
        self
    }

    /// At most how many devices' sightings one transaction writes; a batch this full is
    /// written without waiting for the next periodic flush.
    pub fn with_flush_batch(mut self, n: usize) -> Core {
        self.flush_batch = n.max(1);
        self
    }

    /// How many different devices one address may add to the inventory a minute.
    pub fn with_new_devices_per_minute(mut self, n: usize) -> Core {
        self.guard = guard::AddressGuard::new(n);
        self
    }

    /// Notes a failed login from `addr` (the door saw wrong credentials) and returns how long
    /// the door should hold its answer: nothing for the first few, then a growing delay.
    pub fn login_failed(&self, addr: IpAddr) -> std::time::Duration {
        self.guard.login_failed(addr)
    }

    /// The lifecycle settings (reset policy).
    pub fn with_lifecycle(self, lifecycle: crate::settings::LifecycleSettings) -> Core {
        self.set_lifecycle(lifecycle);
        self
    }

    /// The lifecycle settings in force.
    pub fn lifecycle(&self) -> crate::settings::LifecycleSettings {
        self.lifecycle
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the lifecycle settings (a settings reload).
    pub fn set_lifecycle(&self, lifecycle: crate::settings::LifecycleSettings) {
        *self.lifecycle.write().unwrap_or_else(|p| p.into_inner()) = lifecycle;
    }

    /// Replaces the limit of new devices one address may introduce a minute (a reload).
    pub fn set_new_devices_per_minute(&self, n: usize) {
        self.guard.set_new_devices_per_minute(n);
    }

    fn device_lock(&self, mac: Mac) -> &tokio::sync::RwLock<()> {
        let h = mac
            .bytes()
            .iter()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(*b as usize));
        &self.device_locks[h % DEVICE_LOCK_STRIPES]
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
