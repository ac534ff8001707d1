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
}
