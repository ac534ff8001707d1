//! Writes: what happens to what a phone uploads.

use super::*;

pub(super) fn check_xml_body(body: &[u8]) -> Result<(), Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::BadBody("not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    polyprov_model::config::check_well_formed(text).map_err(|e| Refusal::BadBody(e.to_string()))
}

/// An upload the core has admitted, before its data is read: what it is, for whom, and the
/// most the door should read (`limit() + 1` bytes are enough for the core to refuse it as too
/// large). The one way in for every door: [`Core::begin_upload`], then [`Core::finish_upload`]
/// with the body, or [`Core::abandon_upload`] when the body could not be read.
#[derive(Debug)]
pub struct UploadTicket {
    label: &'static str,
    mac: Mac,
    kind: UploadKind,
    limit: u64,
    file_name: String,
    ua: Option<Arc<UserAgent>>,
}

impl UploadTicket {
    /// The largest body this upload may have.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl Core {
    /// What can be checked before an upload's data arrives — path, uploadability, the `SN:`
    /// tag, credentials — so that doors refuse before reading. `continuing` is an upload that
    /// resumes or appends to a stored file (FTP `APPE`, `REST` + `STOR`): only logs, which every
    /// upload appends to anyway; configuration is replaced whole. A refusal is counted and
    /// logged here.
    pub fn begin_upload(
        &self,
        req: &Request<'_>,
        continuing: bool,
    ) -> Result<UploadTicket, Refusal> {
        let (label, parsed) = self.parse(req);
        parsed
            .and_then(|p| self.admit(req, label, p, continuing))
            .map_err(|r| self.refused_upload(req, label, r))
    }

    fn admit(
        &self,
        req: &Request<'_>,
        label: &'static str,
        Parsed { path, ua }: Parsed,
        continuing: bool,
    ) -> Result<UploadTicket, Refusal> {
        if req.credential == Credential::Invalid {
            return Err(Refusal::BadCredentials);
        }
        let FileKind::DeviceFile(mac, kind) = path.kind() else {
            return Err(Refusal::NotUploadable);
        };
        if continuing && !kind.is_log() {
            return Err(Refusal::NotUploadable);
        }
        check_identity(req, mac, ua.as_deref())?;
        self.require_credential(req, mac)?;
        Ok(UploadTicket {
            label,
            mac,
            kind,
            limit: self.uploads.limits().max_bytes(kind),
            file_name: path.file_name().to_string(),
            ua,
        })
    }

    /// Stores an admitted upload's body (over the limit, malformed XML: refused), counted here.
    pub async fn finish_upload(
        &self,
        req: &Request<'_>,
        ticket: UploadTicket,
        body: Bytes,
    ) -> Result<UploadInfo, Refusal> {
        let label = ticket.label;
        match self.store(req, ticket, body).await {
            Ok(info) => {
                self.count(req, label, &Ok::<(), Refusal>(()));
                Ok(info)
            }
            Err(r) => Err(self.refused_upload(req, label, r)),
        }
    }

    /// An admitted upload whose body the door could not read (over the limit as declared or as
    /// sent, malformed, too slow, cut off): counted and logged like every other refusal.
    pub fn abandon_upload(&self, req: &Request<'_>, ticket: UploadTicket, why: Refusal) -> Refusal {
        self.refused_upload(req, ticket.label, why)
    }

    /// [`Core::begin_upload`] and [`Core::finish_upload`] in one, for a body already read.
    pub async fn upload(&self, req: &Request<'_>, body: Bytes) -> Result<UploadInfo, Refusal> {
        let ticket = self.begin_upload(req, false)?;
        self.finish_upload(req, ticket, body).await
    }

    fn refused_upload(&self, req: &Request<'_>, label: &'static str, r: Refusal) -> Refusal {
        self.count(req, label, &Err::<(), _>(r.clone()));
        self.metrics.upload_rejected(refusal_reason(&r));
        self.log_refusal(req, "upload", &r);
        r
    }

    async fn store(
        &self,
        req: &Request<'_>,
        ticket: UploadTicket,
        body: Bytes,
    ) -> Result<UploadInfo, Refusal> {
        let UploadTicket {
            mac,
            kind,
            limit,
            file_name,
            ua,
            ..
        } = ticket;
        let _guard = self.device_lock(mac).read().await;
        if body.len() as u64 > limit {
            return Err(Refusal::TooLarge {
                size: body.len() as u64,
                limit,
            });
        }
        if !kind.is_log() {
            check_xml_body(&body)?;
        }
        if kind == UploadKind::BootLog
            && let Some(evidence) = self.reset_evidence(mac, body.len() as u64)
        {
            self.on_reset_suspected(mac, evidence).await;
        }
        let info = self.put_upload(mac, kind, body).await?;
        self.note(mac, req, ua.as_deref(), None, Some(&file_name));
        if kind.is_log() {
            // Phones send logs at every boot and on a timer: routine, not an event.
            tracing::debug!(%mac, kind = %kind, size = info.size, addr = %req.peer, "log appended");
        } else {
            tracing::info!(%mac, kind = %kind, version = info.version, size = info.size, addr = %req.peer, "upload stored");
        }
        Ok(info)
    }

    /// Stores an upload. A log append of ordinary size runs right here on the async worker: it
    /// is one `write` into the page cache, and handing it to the blocking pool and back cost
    /// more than the write (two thread wake-ups per upload; a storm of 5,000 phones at 1,000
    /// at once spent 10% less system time and got its log answers 35% sooner without them).
    /// If appends keep making the thread wait (a disk under pressure, dirty-page throttling),
    /// they go to the pool for a while, so a slow disk never holds the phones' requests for long.
    /// Everything else (overrides: write, fsync, rename) always runs on the pool.
    async fn put_upload(
        &self,
        mac: Mac,
        kind: UploadKind,
        body: Bytes,
    ) -> Result<UploadInfo, Refusal> {
        let inline = kind.is_log()
            && body.len() <= INLINE_APPEND_MAX
            && self.slow_appends.inline_now(now_ms());
        if inline {
            let began = std::time::Instant::now();
            let slept_before = voluntary_switches();
            let result = self.uploads.folder().put(mac, kind, &body);
            let took = began.elapsed();
            // Slow *because the disk made the thread wait*: a thread preempted on a busy
            // machine is slow too, but moving appends to the pool would not help it. A log's
            // first upload (or the first after a rotation) is not evidence: it made a file, and
            // perhaps the device's folder — in a storm of new phones those wait on the upload
            // folder's lock, not on a slow disk, and counting them sent every append of such a
            // storm to the pool.
            let appended = result
                .as_ref()
                .is_ok_and(|info| info.size > body.len() as u64);
            if took > SLOW_APPEND
                && appended
                && voluntary_switches() != slept_before
                && self.slow_appends.record_slow(now_ms())
            {
                tracing::warn!(%mac, took_ms = took.as_millis() as u64, "log appends are slow; they run off the request threads for a while");
            }
            return result.map_err(Refusal::from);
        }
        self.uploads
            .put(mac, kind, body)
            .await
            .map_err(Refusal::from)
    }
}

/// Largest log upload appended on the async worker (see [`Core::put_upload`]).
const INLINE_APPEND_MAX: usize = 256 * 1024;
/// An inline append that made its thread wait longer than this is slow…
const SLOW_APPEND: std::time::Duration = std::time::Duration::from_millis(5);
/// …and this many slow ones within [`SLOW_WINDOW_MS`] send appends to the blocking pool…
const SLOW_APPENDS: u32 = 3;
const SLOW_WINDOW_MS: u64 = 1_000;
/// …for this long.
const SLOW_APPEND_PAUSE_MS: u64 = 30_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether log appends run inline or on the blocking pool. One slow append is not a slow
/// disk: on a journaled file system an append now and then waits ~10 ms for a journal commit
/// (seen in a 10,000-phone storm on ext4: one in 20,000), and sending every append of the next
/// 30 s through the pool for it cost the storm ~10% of the server's CPU. Several within a
/// second are.
#[derive(Default)]
pub(super) struct SlowAppends {
    /// Until when (ms since the Unix epoch) appends go to the pool.
    pool_until: std::sync::atomic::AtomicU64,
    /// When the current window of slow appends began (ms), and how many it has seen.
    window: Mutex<(u64, u32)>,
}

impl SlowAppends {
    fn inline_now(&self, now_ms: u64) -> bool {
        self.pool_until.load(std::sync::atomic::Ordering::Relaxed) <= now_ms
    }

    /// Counts a slow append; true when it sends appends to the pool (once per pause).
    fn record_slow(&self, now_ms: u64) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if now_ms.saturating_sub(w.0) > SLOW_WINDOW_MS {
            *w = (now_ms, 0);
        }
        w.1 += 1;
        if w.1 < SLOW_APPENDS || !self.inline_now(now_ms) {
            return false;
        }
        *w = (now_ms, 0);
        self.pool_until.store(
            now_ms + SLOW_APPEND_PAUSE_MS,
            std::sync::atomic::Ordering::Relaxed,
        );
        true
    }
}

/// How many times this thread has slept waiting (for I/O, a lock), or 0 when the kernel
/// will not say — then no append is ever judged slow, and appends stay inline.
fn voluntary_switches() -> std::ffi::c_long {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_THREAD).map_or(0, |u| u.voluntary_context_switches())
}

#[cfg(test)]
mod slow_append_tests {
    use super::SlowAppends;

    #[test]
    fn one_slow_append_is_not_a_slow_disk() {
        let s = SlowAppends::default();
        assert!(!s.record_slow(10_000));
        assert!(!s.record_slow(12_000)); // a new window: the first one has passed
        assert!(s.inline_now(12_001));
    }

    #[test]
    fn several_within_a_second_send_appends_to_the_pool_for_a_while() {
        let s = SlowAppends::default();
        assert!(!s.record_slow(10_000));
        assert!(!s.record_slow(10_400));
        assert!(s.record_slow(10_900));
        assert!(!s.inline_now(10_901));
        assert!(!s.inline_now(40_899));
        assert!(s.inline_now(40_900));
        // More slow appends while paused do not announce it again.
        assert!(!s.record_slow(11_000));
    }
}
