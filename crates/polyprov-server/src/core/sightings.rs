//! What phones did, remembered in memory and written to the inventory in batches.

use super::*;

impl Core {
    /// Remembers what a phone did; written to the inventory in batches by [`Core::flush`].
    pub(super) fn note(
        &self,
        mac: Mac,
        req: &Request<'_>,
        ua: Option<&UserAgent>,
        fetch: Option<&str>,
        upload: Option<&str>,
    ) {
        let mut map = lock(&self.sightings);
        if !map.contains_key(&mac) && !self.inventory.is_assigned(mac) {
            // Possibly a device the inventory does not hold yet: a row only for what looks
            // like a phone, and only so many a minute from one address. (A device already in
            // the inventory is updated as ever; which ones those are is not kept in memory, so
            // the same limits apply to its first sighting after a start.)
            if let Some(reason) = self.not_recorded(mac, req, ua) {
                self.metrics.device_not_recorded(reason);
                return;
            }
        }
        let s = map.entry(mac).or_insert_with(|| Sighting {
            mac: mac.to_string(),
            ..Default::default()
        });
        s.at = polyprov_store::inventory::now();
        s.addr = Some(req.peer.to_string());
        if let Some(raw) = req.user_agent {
            s.user_agent = Some(raw.chars().take(256).collect());
        }
        if let Some(ua) = ua {
            // What could not be read keeps the last value that could.
            if ua.model.is_some() {
                s.model = ua.model.clone();
                s.family = ua.family.clone();
                s.firmware = ua.version.clone();
            }
            if let Some(stage) = ua.stage {
                s.stage = Some(stage.to_string());
            }
            if let Some(serial) = ua.serial {
                s.serial = Some(serial.to_string());
            }
        }
        if let Some(f) = fetch {
            s.last_fetch = Some(f.to_string());
        }
        if let Some(u) = upload {
            s.last_upload = Some(u.to_string());
        }
    }

    /// Writes the batched sightings to the inventory in one transaction. Returns how many.
    pub async fn flush(&self) -> usize {
        // One flush at a time: a caller that flushes (shutdown, a test) returns only once
        // everything seen so far is written, including what a periodic flush had taken.
        let _one = self.flushing.lock().await;
        let batch: Vec<Sighting> = std::mem::take(&mut *lock(&self.sightings))
            .into_values()
            .collect();
        if batch.is_empty() {
            return 0;
        }
        match self.inventory.record_sightings(&batch).await {
            Ok(()) => batch.len(),
            Err(e) => {
                tracing::warn!(error = %e, devices = batch.len(), "could not record device sightings; will retry");
                let mut map = lock(&self.sightings);
                for s in batch {
                    if let Ok(mac) = s.mac.parse() {
                        map.entry(mac).or_insert(s);
                    }
                }
                0
            }
        }
    }

    /// Why a request for a MAC not yet known adds no device, if it does not. Over HTTP(S) it
    /// must look like a phone: a Poly User-Agent, the provisioning credentials or a device
    /// certificate. TFTP and FTP carry no User-Agent (and TFTP no login): only the per-address
    /// rate applies to them.
    fn not_recorded(
        &self,
        mac: Mac,
        req: &Request<'_>,
        ua: Option<&UserAgent>,
    ) -> Option<&'static str> {
        let identified = ua.is_some()
            || matches!(req.credential, Credential::Valid | Credential::Device(_))
            || matches!(req.door, Door::Tftp | Door::Ftp);
        if !identified {
            return Some("not_a_phone");
        }
        if !self.guard.admit_new_device(req.peer, mac) {
            return Some("rate");
        }
        None
    }
}
