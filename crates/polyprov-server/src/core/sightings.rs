//! What phones did, remembered in memory and written to the inventory in batches.

use super::*;
use std::fmt::Write as _;

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
        let noted = map.entry(mac).or_insert_with(|| Noted {
            sighting: Sighting {
                mac: mac.to_string(),
                ..Default::default()
            },
            peer: None,
        });
        // Every request of a storm comes here, under one lock: fields are replaced only when
        // they changed, and rewritten in place, so a phone's tenth request allocates nothing
        // (and formats its address only if it moved).
        let s = &mut noted.sighting;
        s.at = polyprov_store::inventory::now();
        if noted.peer != Some(req.peer) {
            noted.peer = Some(req.peer);
            let addr = s.addr.get_or_insert_default();
            addr.clear();
            let _ = write!(addr, "{}", req.peer);
        }
        if let Some(raw) = req.user_agent {
            set_if_changed(&mut s.user_agent, Some(first_chars(raw, USER_AGENT_KEPT)));
        }
        if let Some(ua) = ua {
            // What could not be read keeps the last value that could.
            if ua.model.is_some() {
                set_if_changed(&mut s.model, ua.model.as_deref());
                set_if_changed(&mut s.family, ua.family.as_deref());
                set_if_changed(&mut s.firmware, ua.version.as_deref());
            }
            if let Some(stage) = ua.stage {
                set_if_changed(&mut s.stage, Some(stage.as_str()));
            }
            if let Some(serial) = ua.serial {
                let text = s.serial.get_or_insert_default();
                text.clear();
                let _ = write!(text, "{serial}");
            }
        }
        if let Some(f) = fetch {
            set_if_changed(&mut s.last_fetch, Some(f));
        }
        if let Some(u) = upload {
            set_if_changed(&mut s.last_upload, Some(u));
        }
        let waiting = map.len();
        drop(map);
        if waiting == self.flush_batch {
            self.flush_soon.notify_one();
        }
        // Fetches are seen by watches with their answer (`Core::fetch`); an upload is noted
        // once stored.
        if let Some(file) = upload {
            self.seen_by_watches(mac, req, ua, file, true, 204);
        }
    }

    /// The address a device's requests came from since the last flush, if any (newer than
    /// what the inventory holds).
    pub fn unflushed_address(&self, mac: Mac) -> Option<String> {
        lock(&self.sightings)
            .get(&mac)
            .and_then(|n| n.sighting.addr.clone())
    }

    /// Resolves once a full batch of sightings waits (`flush_batch` devices): the flusher
    /// then writes it without waiting for its interval.
    pub async fn flush_wanted(&self) {
        self.flush_soon.notified().await;
    }

    /// Writes the batched sightings to the inventory, `flush_batch` devices a transaction.
    /// Returns how many were written; what could not be is kept for the next flush.
    pub async fn flush(&self) -> usize {
        // One flush at a time: a caller that flushes (shutdown, a test) returns only once
        // everything seen so far is written, including what a periodic flush had taken.
        let _one = self.flushing.lock().await;
        let batch: Vec<Sighting> = std::mem::take(&mut *lock(&self.sightings))
            .into_values()
            .map(|n| n.sighting)
            .collect();
        let mut written = 0;
        for (i, chunk) in batch.chunks(self.flush_batch).enumerate() {
            if let Err(e) = self.inventory.record_sightings(chunk).await {
                let unwritten = &batch[i * self.flush_batch..];
                tracing::warn!(error = %e, devices = unwritten.len(), "could not record device sightings; will retry");
                let mut map = lock(&self.sightings);
                for s in unwritten {
                    if let Ok(mac) = s.mac.parse() {
                        // A newer sighting noted meanwhile is kept as it is.
                        map.entry(mac).or_insert_with(|| Noted {
                            sighting: s.clone(),
                            peer: None,
                        });
                    }
                }
                break;
            }
            self.remember_sightings(chunk);
            written += chunk.len();
        }
        written
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

/// What is noted of a device between flushes: its sighting, and the address its `addr` was
/// formatted from (`None`: not formatted yet), so that it is formatted again only when it changes.
pub(super) struct Noted {
    sighting: Sighting,
    peer: Option<std::net::IpAddr>,
}

/// Characters of a User-Agent kept in the inventory.
const USER_AGENT_KEPT: usize = 256;

/// The first `n` characters of `text` (all of it when shorter); a text of at most `n` bytes is
/// not walked.
fn first_chars(text: &str, n: usize) -> &str {
    if text.len() <= n {
        return text;
    }
    text.char_indices().nth(n).map_or(text, |(i, _)| &text[..i])
}

/// Sets `field` to `value`, reusing its buffer, when it differs.
fn set_if_changed(field: &mut Option<String>, value: Option<&str>) {
    match (field.as_mut(), value) {
        (Some(old), Some(new)) if old == new => {}
        (Some(old), Some(new)) => {
            old.clear();
            old.push_str(new);
        }
        (_, value) => *field = value.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The short cut (no walk of a text of at most `n` bytes) keeps what walking keeps.
        #[test]
        fn first_chars_keeps_the_first_n_characters(text in "\\PC{0,300}", n in 0usize..300) {
            let walked = text.char_indices().nth(n).map_or(text.as_str(), |(i, _)| &text[..i]);
            prop_assert_eq!(first_chars(&text, n), walked);
        }
    }
}
