//! Prometheus metrics, one registry per server (so tests can run several servers in a process).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    door: &'static str,
    kind: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    door: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DoorLabels {
    door: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    door: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    via: &'static str,
    result: &'static str,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    upload_rejects: Family<ReasonLabels, Counter>,
    security: Family<EventLabels, Counter>,
    devices: Family<StateLabels, Gauge>,
    user_agents_unrecognised: Counter,
    devices_not_recorded: Family<ReasonLabels, Counter>,
    logins: Family<EventLabels, Counter>,
    connections: Family<DoorLabels, Gauge>,
    connections_refused: Family<RefusedLabels, Counter>,
    turn_waits: Family<DoorLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    mirror_syncs: Family<ResultLabels, Counter>,
    mirror_files: Family<ResultLabels, Counter>,
    changes_heard: Family<ResultLabels, Counter>,
    log_archive: Family<ResultLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes = Family::<BytesLabels, Counter>::default();
        let upload_rejects = Family::<ReasonLabels, Counter>::default();
        let security = Family::<EventLabels, Counter>::default();
        let devices = Family::<StateLabels, Gauge>::default();
        let user_agents_unrecognised = Counter::default();
        let devices_not_recorded = Family::<ReasonLabels, Counter>::default();
        let logins = Family::<EventLabels, Counter>::default();
        registry.register(
            "polyprov_device_logins",
            "Per-device provisioning logins: issued, adopted (first use by the phone), shared_after_own_served (a phone keeps using the shared credentials), shared_refused",
            logins.clone(),
        );
        registry.register(
            "polyprov_devices_not_recorded",
            "Requests for a MAC the inventory does not hold that added no device: not_a_phone (no Poly User-Agent, credentials or certificate), rate (the address's new devices a minute)",
            devices_not_recorded.clone(),
        );
        let connections = Family::<DoorLabels, Gauge>::default();
        let connections_refused = Family::<RefusedLabels, Counter>::default();
        let turn_waits = Family::<DoorLabels, Counter>::default();
        registry.register(
            "polyprov_turn_waits",
            "Phone connections that found every turn of their door taken and waited for one (served_at_once); climbing while the cores idle: raise it",
            turn_waits.clone(),
        );
        registry.register(
            "polyprov_connections",
            "HTTP connections open now, by listener (http: phones, admin)",
            connections.clone(),
        );
        registry.register(
            "polyprov_connections_refused",
            "HTTP connections refused, by listener and reason (over_capacity: answered 503; accept_error: out of descriptors)",
            connections_refused.clone(),
        );
        registry.register(
            "polyprov_user_agents_unrecognised",
            "Phone requests whose User-Agent was served but not fully understood",
            user_agents_unrecognised.clone(),
        );
        registry.register(
            "polyprov_requests",
            "Phone requests by door, file kind and status",
            requests.clone(),
        );
        registry.register(
            "polyprov_response_bytes",
            "Body bytes sent to phones",
            bytes.clone(),
        );
        registry.register(
            "polyprov_upload_rejects",
            "Uploads refused, by reason",
            upload_rejects.clone(),
        );
        registry.register(
            "polyprov_security_events",
            "Security events (also logged for fail2ban), by event",
            security.clone(),
        );
        registry.register(
            "polyprov_devices",
            "Devices in the inventory by state",
            devices.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register(
            "polyprov_actions",
            "Remote actions on phones, by action, way and result (acknowledged, came_back, refused, no_answer, unreachable, failed)",
            actions.clone(),
        );
        let mirror_syncs = Family::<ResultLabels, Counter>::default();
        registry.register(
            "polyprov_boot_root_syncs",
            "Syncs of the boot root from its object store, by result (ok, failed)",
            mirror_syncs.clone(),
        );
        let mirror_files = Family::<ResultLabels, Counter>::default();
        registry.register(
            "polyprov_boot_root_sync_files",
            "Boot-root files the object-store sync changed, by result (downloaded, removed, skipped)",
            mirror_files.clone(),
        );
        let changes_heard = Family::<ResultLabels, Counter>::default();
        registry.register(
            "polyprov_inventory_changes_heard",
            "Changes the nodes made to a shared PostgreSQL inventory, as heard: one device's (device), one device's files kept there (device_files), or anything's (all)",
            changes_heard.clone(),
        );
        let log_archive = Family::<ResultLabels, Counter>::default();
        registry.register(
            "polyprov_log_archive_files",
            "Log files sent to the log archive's object store, by result (uploaded, failed)",
            log_archive.clone(),
        );
        Metrics {
            log_archive,
            changes_heard,
            mirror_syncs,
            mirror_files,
            actions,
            registry,
            requests,
            bytes,
            upload_rejects,
            security,
            devices,
            user_agents_unrecognised,
            devices_not_recorded,
            logins,
            connections,
            connections_refused,
            turn_waits,
        }
    }
}

impl Metrics {
    /// Counts one phone request: what the core answered.
    pub fn request(&self, door: &'static str, kind: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { door, kind, status })
            .inc();
    }

    /// Counts body bytes a door sent (what went on the wire: ranges, resumed transfers, HEAD).
    pub fn sent(&self, door: &'static str, kind: &'static str, bytes: u64) {
        if bytes > 0 {
            self.bytes
                .get_or_create(&BytesLabels { door, kind })
                .inc_by(bytes);
        }
    }

    /// Counts a refused upload.
    pub fn upload_rejected(&self, reason: &'static str) {
        self.upload_rejects
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a request whose User-Agent could not be fully read.
    pub fn user_agent_unrecognised(&self) {
        self.user_agents_unrecognised.inc();
    }

    /// An HTTP connection was accepted.
    pub fn connection_opened(&self, door: &'static str) {
        self.connections.get_or_create(&DoorLabels { door }).inc();
    }

    /// HTTP connections open now on `door`.
    pub fn connections_open(&self, door: &'static str) -> i64 {
        self.connections.get_or_create(&DoorLabels { door }).get()
    }

    /// The counter of connections on `door` that waited for a turn (kept by the door's
    /// [`crate::doors::turns::Turns`]: counted without a label lookup).
    pub fn turn_waits(&self, door: &'static str) -> Counter {
        self.turn_waits.get_or_create(&DoorLabels { door }).clone()
    }

    /// An HTTP connection ended.
    pub fn connection_closed(&self, door: &'static str) {
        self.connections.get_or_create(&DoorLabels { door }).dec();
    }

    /// A request for an unknown MAC added no device (`not_a_phone`, `rate`).
    pub fn device_not_recorded(&self, reason: &'static str) {
        self.devices_not_recorded
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Something happened to a per-device login (`issued`, `adopted`, …).
    pub fn login_event(&self, event: &'static str) {
        self.logins.get_or_create(&EventLabels { event }).inc();
    }

    /// An HTTP connection was refused (`over_capacity`, `accept_error`).
    pub fn connection_refused(&self, door: &'static str, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusedLabels { door, reason })
            .inc();
    }

    /// Counts one sync of the boot root from its object store and the files it changed.
    pub fn boot_root_sync(&self, ok: bool, downloaded: usize, removed: usize, skipped: usize) {
        let result = if ok { "ok" } else { "failed" };
        self.mirror_syncs
            .get_or_create(&ResultLabels { result })
            .inc();
        for (result, n) in [
            ("downloaded", downloaded),
            ("removed", removed),
            ("skipped", skipped),
        ] {
            self.mirror_files
                .get_or_create(&ResultLabels { result })
                .inc_by(n as u64);
        }
    }

    /// Counts a step of a remote action.
    pub fn action(&self, action: &'static str, via: &'static str, result: &'static str) {
        self.actions
            .get_or_create(&ActionLabels {
                action,
                via,
                result,
            })
            .inc();
    }

    /// Counts a security event.
    pub fn security_event(&self, event: &'static str) {
        self.security.get_or_create(&EventLabels { event }).inc();
    }

    /// Sets the device counts (read from the inventory at scrape time).
    pub fn set_devices(&self, counts: &[(String, i64)]) {
        self.devices.clear();
        for (state, n) in counts {
            self.devices
                .get_or_create(&StateLabels {
                    state: state.clone(),
                })
                .set(*n);
        }
    }

    /// The Prometheus text exposition.
    /// One sync of the log archive: files sent, and files that could not be.
    pub fn log_archive_sync(&self, uploaded: usize, failed: usize) {
        for (result, n) in [("uploaded", uploaded), ("failed", failed)] {
            self.log_archive
                .get_or_create(&ResultLabels { result })
                .inc_by(n as u64);
        }
    }

    /// A change to the shared inventory was heard (`device` or `all`).
    pub fn change_heard(&self, result: &'static str) {
        self.changes_heard
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
