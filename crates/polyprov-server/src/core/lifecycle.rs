//! A device's life: assign, release (all or nothing, across a crash too), reassign, restore,
//! and the signs of a factory reset.

use super::*;

/// Devices assigned in one transaction by [`Core::assign_many`].
pub const BULK_CHUNK: usize = 1000;

/// Why a lifecycle action failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Inventory(#[from] polyprov_store::InventoryError),
    #[error("upload storage: {0}")]
    Storage(String),
}

impl From<polyprov_store::UploadError> for LifecycleError {
    fn from(e: polyprov_store::UploadError) -> LifecycleError {
        match e {
            polyprov_store::UploadError::Database(e) => LifecycleError::Inventory(e),
            other => LifecycleError::Storage(other.to_string()),
        }
    }
}

/// What a release did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Released {
    pub device: polyprov_store::Device,
    /// False when the device was already released (nothing changed).
    pub changed: bool,
    /// The quarantine set holding its former overrides, directory, call lists, licence.
    pub quarantine: Option<String>,
}

impl Core {
    /// Looks at a boot-log upload for the sign of a factory reset: the log shrank below half of
    /// the previous one (the phone's files were wiped). Returns the evidence.
    pub(super) fn reset_evidence(&self, mac: Mac, size: u64) -> Option<String> {
        let previous = lock(&self.last_boot_log).insert(mac, size)?;
        (previous >= self.lifecycle().reset_log_min_bytes && size * 2 < previous).then(|| {
            format!("boot log shrank from {previous} to {size} bytes: the phone's files were wiped (factory reset or Format File System)")
        })
    }

    pub(super) async fn on_reset_suspected(&self, mac: Mac, evidence: String) {
        use crate::settings::ResetPolicy;
        let at = polyprov_store::inventory::now();
        let mut detail = evidence;
        if self.lifecycle().reset_policy == ResetPolicy::Quarantine {
            let id = polyprov_store::uploads::new_quarantine_id();
            match self.uploads.quarantine_as(mac, &id).await {
                Ok(Some(id)) => {
                    detail.push_str(&format!("; policy quarantine: overrides moved to {id}"))
                }
                Ok(None) => detail.push_str("; policy quarantine: nothing to move"),
                Err(e) => {
                    tracing::error!(%mac, error = %e, "could not quarantine after a suspected reset")
                }
            }
        }
        if let Err(e) = self.inventory.suspect_reset(mac, at, &detail).await {
            tracing::warn!(%mac, error = %e, "could not record a suspected reset");
        }
        self.metrics.security_event("reset_suspected");
        self.remember_security(activity::SecurityNote {
            at,
            event: "reset_suspected",
            addr: None,
            detail: format!("{mac}: {detail}"),
        });
        if self.lifecycle().reset_policy == ResetPolicy::Alert {
            tracing::warn!(target: "polyprov::lifecycle", %mac, evidence = %detail, "phone probably factory-reset: check `polyprov doctor {mac}`");
        } else {
            tracing::info!(target: "polyprov::lifecycle", %mac, evidence = %detail, "phone probably factory-reset");
        }
    }

    /// Releases a device: in one step, under its lock, its overrides, directory, call lists and
    /// licence move to a quarantine set and its assignment is withdrawn; from then on it is
    /// served what a never-seen phone is served. Idempotent: releasing a released device only
    /// quarantines what the phone uploaded since (`changed` says whether anything moved).
    pub async fn release(
        &self,
        mac: Mac,
        actor: &str,
        reason: &str,
    ) -> Result<Released, LifecycleError> {
        self.holding(mac, self.release_locked(mac, actor, reason))
            .await
    }

    /// Runs `work` holding the device: this node's lock for writing and, on a shared
    /// PostgreSQL, every node's (see `Inventory::hold_device`) — a release's steps never
    /// interleave with an upload or a release of the same device through another node.
    async fn holding<T>(
        &self,
        mac: Mac,
        work: impl std::future::Future<Output = Result<T, LifecycleError>>,
    ) -> Result<T, LifecycleError> {
        let _guard = self.device_lock(mac).write().await;
        let hold = self.inventory.hold_device(mac).await?;
        let result = work.await;
        if let Some(hold) = hold
            && let Err(e) = hold.unlock().await
        {
            // Its session is closed instead, which releases it.
            tracing::warn!(%mac, error = %e, "could not let go of a device held across nodes");
        }
        result
    }

    pub(super) async fn release_locked(
        &self,
        mac: Mac,
        actor: &str,
        reason: &str,
    ) -> Result<Released, LifecycleError> {
        let current = self
            .inventory
            .device(mac)
            .await?
            .ok_or_else(|| polyprov_store::InventoryError::NoSuchDevice(mac.to_string()))?;
        // Refused before any file moves; the inventory checks the same rule again in its
        // transaction.
        current.state.allows(mac, polyprov_store::Change::Release)?;
        // The intent first: a crash from here until the inventory transaction that ends it
        // leaves a record that start-up uses to undo the half-done release.
        let id = polyprov_store::uploads::new_quarantine_id();
        self.inventory.begin_release(mac, &id).await?;
        let quarantine = match self.uploads.quarantine_as(mac, &id).await {
            Ok(q) => q,
            Err(e) => {
                self.inventory.end_release_intent(mac).await?;
                return Err(e.into());
            }
        };
        let why = if reason.is_empty() { "-" } else { reason };
        let recorded = if current.state == DeviceState::Released {
            // Released already: only files the phone uploaded since moved.
            match &quarantine {
                Some(q) => {
                    let detail =
                        format!("reason: {why}; quarantine: {q} (uploaded after the last release)");
                    self.inventory
                        .record_rerelease(actor, mac, &detail)
                        .await
                        .map(|()| (current, false))
                }
                None => self
                    .inventory
                    .end_release_intent(mac)
                    .await
                    .map(|()| (current, false)),
            }
        } else {
            let detail = format!(
                "reason: {why}; quarantine: {}",
                quarantine.as_deref().unwrap_or("nothing to keep")
            );
            self.inventory.release(mac, actor, &detail).await
        };
        match recorded {
            Ok((device, changed)) => {
                if changed {
                    tracing::info!(%mac, actor, quarantine = quarantine.as_deref().unwrap_or("-"), "device released");
                    // The next user's phone gets a new login; the old one works for a while.
                    self.rotate_login(mac, actor).await?;
                }
                Ok(Released {
                    device,
                    changed: changed || quarantine.is_some(),
                    quarantine,
                })
            }
            Err(e) => {
                // Nothing was recorded: put the files back, then end the intent (if this
                // fails too, start-up finishes the undo).
                self.uploads.unquarantine(mac, &id).await?;
                self.inventory.end_release_intent(mac).await?;
                Err(e.into())
            }
        }
    }

    /// Undoes releases that a crash interrupted (an intent with no recorded release): their
    /// files come back from quarantine, the device keeps the state it had, and the audit log
    /// says so. Runs at start-up, before any phone is served. Returns how many were undone.
    pub async fn reconcile(&self) -> Result<usize, LifecycleError> {
        let intents = self.inventory.release_intents().await?;
        for (mac, id) in &intents {
            let (mac, id) = (*mac, id.clone());
            let moved = self.uploads.unquarantine(mac, &id).await?;
            let detail = format!(
                "a release interrupted by a crash was undone: {moved} kinds of upload back from quarantine {id}"
            );
            if self.inventory.device(mac).await?.is_some() {
                self.inventory
                    .record("polyprov", mac, "release-undone", &detail)
                    .await?;
            }
            self.inventory.end_release_intent(mac).await?;
            tracing::warn!(target: "polyprov::lifecycle", %mac, quarantine = %id, moved, "undid a release interrupted by a crash");
        }
        Ok(intents.len())
    }

    /// Release and assign in one step, under the device's lock.
    pub async fn reassign(
        &self,
        mac: Mac,
        assignment: &polyprov_store::Assignment,
        actor: &str,
        reason: &str,
    ) -> Result<(Released, polyprov_store::Device), LifecycleError> {
        self.holding(mac, self.reassign_locked(mac, assignment, actor, reason))
            .await
    }

    async fn reassign_locked(
        &self,
        mac: Mac,
        assignment: &polyprov_store::Assignment,
        actor: &str,
        reason: &str,
    ) -> Result<(Released, polyprov_store::Device), LifecycleError> {
        let released = match self.inventory.device(mac).await? {
            Some(_) => self.release_locked(mac, actor, reason).await?,
            None => {
                // Never seen: nothing to release; assign creates it.
                let device = self.inventory.assign(mac, assignment, actor).await?;
                self.ensure_login(mac, actor).await?;
                return Ok((
                    Released {
                        device: device.clone(),
                        changed: false,
                        quarantine: None,
                    },
                    device,
                ));
            }
        };
        let device = self.inventory.assign(mac, assignment, actor).await?;
        self.ensure_login(mac, actor).await?;
        Ok((released, device))
    }

    /// Assigns many devices (a site's import): in transactions of [`BULK_CHUNK`], each all or
    /// nothing, under every device lock (phone requests wait a moment, never see half of it);
    /// devices without a login get one, in one transaction per chunk. Returns how many.
    pub async fn assign_many(
        &self,
        items: &[(Mac, polyprov_store::Assignment)],
        actor: &str,
    ) -> Result<usize, LifecycleError> {
        let mut done = 0;
        for chunk in items.chunks(BULK_CHUNK) {
            let mut guards = Vec::with_capacity(self.device_locks.len());
            for l in &self.device_locks {
                guards.push(l.write().await);
            }
            done += self.inventory.assign_many(chunk, actor).await?;
            self.issue_logins(chunk.iter().map(|(m, _)| *m), actor)
                .await?;
        }
        Ok(done)
    }

    /// Assigns a device (under its lock, so phone requests never see half of it).
    pub async fn assign(
        &self,
        mac: Mac,
        assignment: &polyprov_store::Assignment,
        actor: &str,
    ) -> Result<polyprov_store::Device, LifecycleError> {
        let _guard = self.device_lock(mac).write().await;
        let device = self.inventory.assign(mac, assignment, actor).await?;
        self.ensure_login(mac, actor).await?;
        Ok(device)
    }

    /// Brings a quarantine set back (the newest when `id` is `None`).
    pub async fn restore(
        &self,
        mac: Mac,
        id: Option<String>,
        actor: &str,
    ) -> Result<Option<(String, usize)>, LifecycleError> {
        self.holding(mac, async {
            let restored = self.uploads.restore(mac, id).await?;
            if let Some((id, n)) = &restored {
                self.inventory
                    .record(
                        actor,
                        mac,
                        "restore",
                        &format!("quarantine {id}: {n} files back"),
                    )
                    .await?;
            }
            Ok(restored)
        })
        .await
    }
}
