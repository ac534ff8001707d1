//! The core's operations on the fleet for the admin API, the doctor and embedders: every read
//! and write of the inventory and the upload store goes through here, and every change to one
//! device takes that device's lock, so a phone request sees a change whole or not at all.

use super::{Core, LifecycleError, Refusal};
use polyprov_model::{Mac, Params, UploadKind};
use polyprov_store::inventory::{AuditEntry, Device, DeviceState, Profile};
use polyprov_store::uploads::{QuarantineSet, UploadInfo};

impl Core {
    /// Every device.
    pub async fn devices(&self) -> Result<Vec<Device>, LifecycleError> {
        Ok(self.inventory.devices().await?)
    }

    /// At most `limit` devices after `after`, by MAC.
    pub async fn devices_page(
        &self,
        after: Option<Mac>,
        limit: u32,
    ) -> Result<Vec<Device>, LifecycleError> {
        Ok(self.inventory.devices_page(after, limit).await?)
    }

    /// At most `limit` devices after `after` that match `filter`, by MAC.
    pub async fn devices_matching(
        &self,
        filter: &polyprov_store::DeviceFilter,
        after: Option<Mac>,
        limit: u32,
    ) -> Result<Vec<Device>, LifecycleError> {
        Ok(self
            .inventory
            .devices_matching(filter, after, limit)
            .await?)
    }

    /// At most `limit` devices that match `filter`, in the order and after the place `after`
    /// names.
    pub async fn devices_in_order(
        &self,
        filter: &polyprov_store::DeviceFilter,
        after: &polyprov_store::PageAfter,
        limit: u32,
    ) -> Result<Vec<Device>, LifecycleError> {
        Ok(self
            .inventory
            .devices_in_order(filter, after, limit)
            .await?)
    }

    /// The models the inventory has seen.
    pub async fn models(&self) -> Result<Vec<String>, LifecycleError> {
        Ok(self.inventory.models().await?)
    }

    /// One device, if known.
    pub async fn device(&self, mac: Mac) -> Result<Option<Device>, LifecycleError> {
        Ok(self.inventory.device(mac).await?)
    }

    /// A device and the parameters its assignment gives it (site defaults < profile < its own),
    /// as rendered — whatever its state, for actions that need its line or admin password.
    pub async fn effective_params(
        &self,
        mac: Mac,
    ) -> Result<Option<(Device, Params)>, LifecycleError> {
        let Some(d) = self.inventory.device(mac).await? else {
            return Ok(None);
        };
        let site = self.inventory.site_defaults().await?;
        let profile = match &d.assignment.profile {
            Some(name) => self.inventory.profile(name).await?,
            None => None,
        };
        let params =
            crate::render::merged_params(&site, profile.as_ref().map(|p| &p.params), &d.assignment);
        Ok(Some((d, params)))
    }

    /// Appends an entry to a device's audit log (for what happens outside the inventory).
    pub async fn record(
        &self,
        actor: &str,
        mac: Mac,
        action: &str,
        detail: &str,
    ) -> Result<(), LifecycleError> {
        Ok(self.inventory.record(actor, mac, action, detail).await?)
    }

    /// The boot root it serves.
    pub fn root_dir(&self) -> &std::path::Path {
        &self.root
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// How many devices are in each state.
    pub async fn device_counts(&self) -> Result<Vec<(DeviceState, i64)>, LifecycleError> {
        Ok(self.inventory.count_by_state().await?)
    }

    /// Takes a released (or never assigned) device out of service, under its lock.
    pub async fn retire(
        &self,
        mac: Mac,
        actor: &str,
        reason: &str,
    ) -> Result<Device, LifecycleError> {
        let _guard = self.device_lock(mac).write().await;
        Ok(self.inventory.retire(mac, actor, reason).await?)
    }

    /// Removes a device from the inventory (its uploads are kept), under its lock. Whether it
    /// was there.
    pub async fn remove(&self, mac: Mac, actor: &str) -> Result<bool, LifecycleError> {
        let _guard = self.device_lock(mac).write().await;
        let removed = self.inventory.remove(mac, actor).await?;
        self.forget_login(mac).await?;
        Ok(removed)
    }

    /// A device's audit log, oldest first.
    pub async fn history(&self, mac: Mac) -> Result<Vec<AuditEntry>, LifecycleError> {
        Ok(self.inventory.history(mac).await?)
    }

    /// Every profile.
    pub async fn profiles(&self) -> Result<Vec<Profile>, LifecycleError> {
        Ok(self.inventory.profiles().await?)
    }

    /// One profile.
    pub async fn profile(&self, name: &str) -> Result<Option<Profile>, LifecycleError> {
        Ok(self.inventory.profile(name).await?)
    }

    /// Creates or replaces a profile.
    pub async fn put_profile(
        &self,
        name: &str,
        params: &Params,
    ) -> Result<Profile, LifecycleError> {
        Ok(self.inventory.put_profile(name, params).await?)
    }

    /// Deletes an unused profile. Whether it was there.
    pub async fn delete_profile(&self, name: &str) -> Result<bool, LifecycleError> {
        Ok(self.inventory.delete_profile(name).await?)
    }

    /// The site defaults.
    pub async fn site_defaults(&self) -> Result<Params, LifecycleError> {
        Ok(self.inventory.site_defaults().await?)
    }

    /// Replaces the site defaults.
    pub async fn put_site_defaults(&self, params: &Params) -> Result<(), LifecycleError> {
        Ok(self.inventory.put_site_defaults(params).await?)
    }

    /// What a device uploaded (every stored version, logs included).
    pub async fn uploads_of(&self, mac: Mac) -> Result<Vec<UploadInfo>, LifecycleError> {
        Ok(self.uploads.list(mac).await?)
    }

    /// One stored upload's bytes.
    pub async fn upload_bytes(
        &self,
        mac: Mac,
        kind: UploadKind,
        version: u64,
    ) -> Result<Option<Vec<u8>>, LifecycleError> {
        match self.uploads.version(mac, kind, version).await? {
            Some(info) => Ok(Some(self.uploads.bytes(&info).await?)),
            None => Ok(None),
        }
    }

    /// Stores `body` as the device's upload of `kind`, as the admin (an import from another
    /// server): checked as a phone's upload is (size, well-formed XML), a new version or, for a
    /// log, appended; audited.
    pub async fn store_upload(
        &self,
        mac: Mac,
        kind: UploadKind,
        body: Vec<u8>,
        actor: &str,
        why: &str,
    ) -> Result<UploadInfo, Refusal> {
        let _guard = self.device_lock(mac).write().await;
        if !kind.is_log() {
            super::upload::check_xml_body(&body)?;
        }
        let size = body.len();
        let info = self
            .uploads
            .put(mac, kind, body.into())
            .await
            .map_err(Refusal::from)?;
        self.inventory
            .record(
                actor,
                mac,
                "upload-stored",
                &format!(
                    "{} ({size} bytes, v{}): {why}",
                    kind.file_name(mac),
                    info.version
                ),
            )
            .await
            .map_err(Refusal::from_inventory)?;
        Ok(info)
    }

    /// The value one parameter has in a device's newest stored override (`-phone.cfg` or
    /// `-web.cfg`), if it sets it.
    pub async fn override_param(
        &self,
        mac: Mac,
        kind: UploadKind,
        param: &str,
    ) -> Result<Option<String>, LifecycleError> {
        let name = param.to_string();
        Ok(latest_override(&self.uploads, mac, kind)
            .await?
            .and_then(|(_, f)| f.get(&name).map(|p| p.value.clone())))
    }

    /// Takes one parameter out of a device's stored override (`<mac>-phone.cfg` or
    /// `<mac>-web.cfg`) as a new version; the version before stays, so nothing is lost. The
    /// phone gets the new version at its next boot. False when the override does not set it.
    pub async fn drop_override_param(
        &self,
        mac: Mac,
        kind: UploadKind,
        param: &str,
        actor: &str,
        why: &str,
    ) -> Result<bool, LifecycleError> {
        let _guard = self.device_lock(mac).write().await;
        let name = param.to_string();
        let Some((old, mut f)) = latest_override(&self.uploads, mac, kind).await? else {
            return Ok(false);
        };
        if !f
            .remove(&name)
            .map_err(|e| LifecycleError::Storage(e.to_string()))?
        {
            return Ok(false);
        }
        let new = self
            .uploads
            .put(
                mac,
                kind,
                bytes::Bytes::copy_from_slice(f.text().as_bytes()),
            )
            .await?
            .version;
        self.inventory
            .record(
                actor,
                mac,
                "override-edited",
                &format!(
                    "{param} taken out of {mac}{} (v{old} kept, v{new} served): {why}",
                    kind.suffix()
                ),
            )
            .await?;
        Ok(true)
    }

    /// Puts the files phones download back where this node keeps them: on a shared inventory
    /// what its folder holds moves into the database (`UploadStore::adopt_folder`); on one node
    /// what a formerly shared database holds moves into the folder
    /// (`UploadStore::adopt_database`). Returns how many files moved.
    pub async fn adopt_upload_folder(&self) -> Result<usize, LifecycleError> {
        if self.uploads.is_shared() {
            Ok(self.uploads.adopt_folder().await?)
        } else {
            Ok(self.uploads.adopt_database(&self.inventory).await?)
        }
    }

    /// A device's quarantine sets, oldest first.
    pub async fn quarantine_sets(&self, mac: Mac) -> Result<Vec<QuarantineSet>, LifecycleError> {
        Ok(self.uploads.quarantined(mac).await?)
    }

    /// Closes the inventory (at shutdown, after the last flush).
    /// Whether the inventory answers and the upload store takes a write, each part in words
    /// (`ok`, or why not).
    pub async fn health(&self) -> Health {
        let inventory = match self.inventory.ping().await {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        let folder = self.uploads.folder().clone();
        let writable = tokio::task::spawn_blocking(move || folder.check_writable())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        let uploads = match writable {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        Health { inventory, uploads }
    }

    pub async fn close(&self) {
        self.inventory.close().await;
    }
}

/// What [`Core::health`] found.
#[derive(Debug, Clone)]
pub struct Health {
    pub inventory: String,
    pub uploads: String,
}

impl Health {
    pub fn ok(&self) -> bool {
        self.inventory == "ok" && self.uploads == "ok"
    }
}

/// A device's newest stored override of `kind`, parsed, with its version.
async fn latest_override(
    u: &polyprov_store::UploadStore,
    mac: Mac,
    kind: UploadKind,
) -> Result<Option<(u64, polyprov_model::config_file::ConfigFile)>, LifecycleError> {
    let Some(latest) = u.latest(mac, kind).await? else {
        return Ok(None);
    };
    let bytes = u.bytes(&latest).await?;
    let name = kind.file_name(mac);
    let f = polyprov_model::config_file::decode(&name, &bytes)
        .and_then(|text| polyprov_model::config_file::ConfigFile::parse(&name, &text))
        .map_err(|e| LifecycleError::Storage(format!("{name}: {e}")))?;
    Ok(Some((latest.version, f)))
}
