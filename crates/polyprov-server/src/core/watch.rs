//! Watching devices: what a device asked for after a moment (a remote action), so that an
//! action can say whether the phone came back and what it fetched. Costs nothing on the request
//! path while nobody watches (one atomic load).

use super::*;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One request of a watched device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The file fetched or uploaded.
    pub file: String,
    pub upload: bool,
    /// The status answered (HTTP terms; 204 for a stored upload).
    pub status: u16,
    pub stage: Option<String>,
    pub firmware: Option<String>,
    pub addr: String,
}

/// One watch's id and what it collected.
type Collected = (u64, Vec<Seen>);

/// Watches registered, by device; each watch collects what its device did from its start.
#[derive(Default)]
pub(super) struct Watches {
    count: AtomicUsize,
    by_device: Mutex<HashMap<Mac, Vec<Collected>>>,
    next_id: AtomicUsize,
}

/// A registered watch; dropping it ends it.
pub struct Watch {
    core: Arc<Core>,
    mac: Mac,
    id: u64,
}

/// Most requests one watch keeps (a phone's boot makes a few dozen).
const MAX_SEEN: usize = 256;

impl Watch {
    /// What the device did since the watch began.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.core.watches.by_device)
            .get(&self.mac)
            .and_then(|w| w.iter().find(|(id, _)| *id == self.id))
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = lock(&self.core.watches.by_device);
        if let Some(list) = map.get_mut(&self.mac) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.mac);
            }
        }
        self.core.watches.count.fetch_sub(1, Ordering::Release);
    }
}

impl Core {
    /// Starts watching `mac`'s requests.
    pub fn watch(self: &Arc<Self>, mac: Mac) -> Watch {
        let id = self.watches.next_id.fetch_add(1, Ordering::Relaxed) as u64;
        lock(&self.watches.by_device)
            .entry(mac)
            .or_default()
            .push((id, Vec::new()));
        self.watches.count.fetch_add(1, Ordering::Release);
        Watch {
            core: self.clone(),
            mac,
            id,
        }
    }

    /// Records a request for the watches of its device, if any.
    pub(super) fn seen_by_watches(
        &self,
        mac: Mac,
        req: &Request<'_>,
        ua: Option<&UserAgent>,
        file: &str,
        upload: bool,
        status: u16,
    ) {
        if self.watches.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut map = lock(&self.watches.by_device);
        let Some(list) = map.get_mut(&mac) else {
            return;
        };
        let seen = Seen {
            at_ms: now_ms(),
            file: file.to_string(),
            upload,
            status,
            stage: ua.and_then(|u| u.stage).map(|s| s.as_str().to_string()),
            firmware: ua.and_then(|u| u.version.clone()),
            addr: req.peer.to_string(),
        };
        for (_, s) in list.iter_mut() {
            if s.len() < MAX_SEEN {
                s.push(seen.clone());
            }
        }
    }
}

impl Core {
    /// A fetch's answer, for the watches of the device its path names (parsed again, only
    /// while something is watched).
    pub(super) fn fetch_for_watches(&self, req: &Request<'_>, result: &Result<Answer, Refusal>) {
        if self.watches.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let Ok(path) = RequestPath::parse(req.path) else {
            return;
        };
        let mac = match path.kind() {
            FileKind::Master(m) | FileKind::DeviceConfig(m) | FileKind::DeviceFile(m, _) => m,
            FileKind::Shared => return,
        };
        let ua = req
            .user_agent
            .and_then(|u| UserAgent::parse(u).ok().flatten());
        let status = result.as_ref().err().map_or(200, Refusal::status);
        self.seen_by_watches(mac, req, ua.as_ref(), path.file_name(), false, status);
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
