//! What the console's live activity shows besides the metrics: the phones whose sightings were
//! written last and the latest security events — kept in memory, bounded, filled off the
//! request path (sightings at flush time, security events when they are logged anyway).

use super::*;
use std::collections::VecDeque;

/// Entries kept of each.
pub const RECENT: usize = 100;

/// A security event as the console lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecurityNote {
    pub at: i64,
    pub event: &'static str,
    /// The address it came from (none for events about a device, such as a suspected reset).
    pub addr: Option<String>,
    pub detail: String,
}

/// The two rings.
#[derive(Default)]
pub(super) struct Recent {
    seen: Mutex<VecDeque<Sighting>>,
    security: Mutex<VecDeque<SecurityNote>>,
}

impl Core {
    /// Keeps the newest sighting of each device of a written batch (newest first, one entry
    /// a device).
    pub(super) fn remember_sightings(&self, batch: &[Sighting]) {
        let mut newest: Vec<&Sighting> = batch.iter().collect();
        newest.sort_by_key(|s| s.at);
        let mut ring = lock(&self.recent.seen);
        for s in newest.into_iter().rev().take(RECENT).rev() {
            ring.retain(|r| r.mac != s.mac);
            ring.push_front(s.clone());
        }
        ring.truncate(RECENT);
    }

    /// The devices seen last, newest first (what was written to the inventory so far).
    pub fn recently_seen(&self) -> Vec<Sighting> {
        lock(&self.recent.seen).iter().cloned().collect()
    }

    pub(super) fn remember_security(&self, note: SecurityNote) {
        let mut ring = lock(&self.recent.security);
        ring.push_front(note);
        ring.truncate(RECENT);
    }

    /// The latest security events, newest first.
    pub fn security_notes(&self) -> Vec<SecurityNote> {
        lock(&self.recent.security).iter().cloned().collect()
    }
}
