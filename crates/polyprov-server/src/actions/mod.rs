//! Remote actions on phones: resync and reboot over SIP NOTIFY, as jobs over one phone or many.
//!
//! A job acts on its phones in waves (`rate` phones a second, at most `max_in_flight` NOTIFYs
//! in flight), and for each phone records what was sent, what the phone answered, and whether
//! it **came back**: whether the server then saw it fetch its master file (`<mac>.cfg`, the
//! first request of every boot and of every check-sync), with what it fetched in the seconds
//! after. A phone's answer is an acknowledgement, not proof: some firmware answers 200 and does
//! nothing (the resyncs that "silently do nothing" admins complain about), so the server's own
//! view of the phone's requests is what counts as done.
//!
//! Jobs live in memory (the audit log keeps one entry per phone acted on); the newest
//! `keep_jobs` can be read back.

mod rest;
mod sip;

use crate::core::{Core, Seen, now_ms};
use crate::settings::ActionSettings;
use polyprov_model::Mac;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What to do to a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Re-read the configuration (`check-sync`).
    Resync,
    /// Restart.
    Reboot,
    /// Back to factory settings (needs the phone's REST API).
    FactoryReset,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Resync => "resync",
            ActionKind::Reboot => "reboot",
            ActionKind::FactoryReset => "factory-reset",
        }
    }
}

/// How to reach the phone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Via {
    Sip,
    Rest,
    /// SIP for resync and reboot; REST for a factory reset.
    #[default]
    Auto,
}

/// Which devices, besides those named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    pub profile: Option<String>,
    pub model: Option<String>,
    pub state: Option<String>,
    pub all: bool,
}

impl Selector {
    fn is_empty(&self) -> bool {
        !self.all && self.profile.is_none() && self.model.is_none() && self.state.is_none()
    }
}

/// A job as asked for (`POST /api/v1/actions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub action: ActionKind,
    #[serde(default)]
    pub macs: Vec<String>,
    #[serde(default)]
    pub select: Selector,
    #[serde(default)]
    pub via: Via,
    /// `HOST[:PORT]`: send here instead of the address the phone was last seen from.
    pub target: Option<String>,
    /// `udp` or `tcp` (default: the `sip_transport` setting).
    pub transport: Option<String>,
    /// Phones a second.
    pub rate: Option<f64>,
    /// Seconds to watch each phone for coming back (0: do not watch).
    pub wait_secs: Option<u64>,
    #[serde(default)]
    pub reason: String,
    /// Release the device (quarantine, withdraw) before a factory reset, with the admin
    /// password read first: the seed's story in one request.
    #[serde(default)]
    pub release: bool,
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Core(#[from] crate::core::LifecycleError),
}

/// What came of the NOTIFY (or request) sent to a phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// `accepted`, `rejected`, `unauthorized`, `timed_out`, `unreachable`.
    pub outcome: &'static str,
    pub code: Option<u16>,
    pub detail: String,
    pub transmissions: u32,
    pub challenged: bool,
    pub elapsed_ms: u64,
    /// Replies that were ignored (malformed, from another address, for another request).
    pub ignored: Vec<String>,
}

/// The phone's requests after it acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CameBack {
    /// When it fetched its master file, Unix ms, and how long after the action.
    pub at_ms: i64,
    pub after_ms: i64,
    pub firmware: Option<String>,
    pub stage: Option<String>,
    /// Whether the Updater (the boot-time program) made any request since the action: a reboot;
    /// `false` when only the application did (a resync); `None` when User-Agents did not say.
    pub rebooted: Option<bool>,
    /// After a release and factory reset: rebooted, was served no per-device file, and
    /// uploaded no override back.
    pub clean: Option<bool>,
    /// After a release and factory reset: whether the server's reset heuristic (a boot log
    /// that shrank) also saw the reset. It needs a previous boot log of some size, so `false`
    /// is not a failure.
    pub reset_seen: Option<bool>,
    /// What it fetched and uploaded from its master fetch on, in order, with the status
    /// answered (`GET 0004f2aa814c.cfg 200`, `PUT 0004f2aa814c-app.log 204`).
    pub files: Vec<String>,
}

/// One phone's part of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhoneResult {
    pub mac: String,
    /// `pending`, `sending`, `watching`, `done`.
    pub state: &'static str,
    pub via: Option<String>,
    pub target: Option<String>,
    pub sent_at_ms: Option<i64>,
    pub answer: Option<Answer>,
    pub acknowledged: bool,
    pub came_back: Option<CameBack>,
    /// Why nothing could be sent, or what is wrong with the answer.
    pub error: Option<String>,
}

/// A job and each phone's result so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: String,
    pub action: ActionKind,
    pub via: Via,
    /// `running` or `done`.
    pub state: &'static str,
    pub actor: String,
    pub reason: String,
    pub created_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub counts: Counts,
    pub results: Vec<PhoneResult>,
}

/// Totals over a job's phones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub phones: usize,
    pub sent: usize,
    pub acknowledged: usize,
    pub came_back: usize,
    pub failed: usize,
}

impl Job {
    fn recount(&mut self) {
        let r = &self.results;
        self.counts = Counts {
            phones: r.len(),
            sent: r.iter().filter(|p| p.sent_at_ms.is_some()).count(),
            acknowledged: r.iter().filter(|p| p.acknowledged).count(),
            came_back: r.iter().filter(|p| p.came_back.is_some()).count(),
            failed: r
                .iter()
                .filter(|p| p.state == "done" && (p.error.is_some() || !p.acknowledged))
                .count(),
        };
    }
}

/// The jobs of one server.
pub struct Actions {
    core: Arc<Core>,
    /// Changed by a settings reload (SIGHUP); a job reads them as it goes.
    settings: std::sync::RwLock<ActionSettings>,
    jobs: Mutex<BTreeMap<String, Arc<Mutex<Job>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a phone that came back is watched further, for the files it fetches.
const SETTLE: Duration = Duration::from_secs(3);
/// Most phones in one job.
const MAX_PHONES: usize = 100_000;

impl Actions {
    pub fn new(core: Arc<Core>, settings: ActionSettings) -> Arc<Actions> {
        Arc::new(Actions {
            core,
            settings: std::sync::RwLock::new(settings),
            jobs: Mutex::new(BTreeMap::new()),
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> ActionSettings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the settings (a reload); jobs already running read the new ones as they go.
    pub fn set_settings(&self, settings: ActionSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    }

    /// A job's state, if it is still kept.
    pub fn job(&self, id: &str) -> Option<Job> {
        lock(&self.jobs).get(id).map(|j| lock(j).clone())
    }

    /// The kept jobs, newest first, without their per-phone results.
    pub fn jobs(&self) -> Vec<Job> {
        lock(&self.jobs)
            .values()
            .rev()
            .map(|j| {
                let mut j = lock(j).clone();
                j.results.clear();
                j
            })
            .collect()
    }

    /// Checks a job request, picks its phones and starts it; returns its id at once.
    pub async fn start(self: &Arc<Self>, req: JobRequest, actor: &str) -> Result<Job, ActionError> {
        let invalid = |m: String| ActionError::Invalid(m);
        let rest_ready = self.settings().rest_ca.is_some() || self.settings().rest_insecure;
        let via = match (req.via, req.action) {
            (Via::Sip, ActionKind::FactoryReset) => {
                return Err(invalid(
                    "a factory reset cannot be sent over SIP: Poly phones take only check-sync \
                     (resync, reboot) in a NOTIFY; it needs the phone's REST API (--via rest)"
                        .into(),
                ));
            }
            (Via::Rest, ActionKind::Resync) => {
                if let Err(e) = rest::endpoint(ActionKind::Resync) {
                    return Err(invalid(e));
                }
                Via::Rest
            }
            (Via::Rest, _) | (Via::Auto, ActionKind::FactoryReset) => Via::Rest,
            (Via::Auto, ActionKind::Reboot) if rest_ready => Via::Rest,
            (Via::Sip | Via::Auto, _) => Via::Sip,
        };
        let transport: polyprov_sip::Transport = req
            .transport
            .as_deref()
            .unwrap_or(&self.settings().sip_transport)
            .parse()
            .map_err(invalid)?;
        // The phone's certificate is checked against rest_ca for HTTPS and for SIP over TLS.
        let roots = match (via, transport) {
            (Via::Rest, _) | (_, polyprov_sip::Transport::Tls) => {
                Some(rest::trust(&self.settings()).map_err(invalid)?)
            }
            _ => None,
        };
        if req.release && req.action != ActionKind::FactoryReset {
            return Err(invalid("release goes with a factory reset only".into()));
        }
        let rate = req.rate.unwrap_or(f64::from(self.settings().rate));
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid(format!(
                "rate {rate} is not a positive number of phones a second"
            )));
        }
        let wait = Duration::from_secs(req.wait_secs.unwrap_or(self.settings().wait_secs));
        let target = match &req.target {
            Some(t) => Some(
                sip::parse_target(t, self.settings().sip_port)
                    .await
                    .map_err(invalid)?,
            ),
            None => None,
        };
        let macs = self.select(&req).await?;
        if macs.is_empty() {
            return Err(invalid("no device matches".into()));
        }
        if target.is_some() && macs.len() > 1 {
            return Err(invalid(
                "--target names one phone's address: give one MAC with it".into(),
            ));
        }
        let job = Job {
            id: format!(
                "{:020}",
                now_ms() as u128 * 1000 + u128::from(rand::random::<u16>() % 1000)
            ),
            action: req.action,
            via,
            state: "running",
            actor: actor.to_string(),
            reason: req.reason.clone(),
            created_at_ms: now_ms(),
            finished_at_ms: None,
            counts: Counts::default(),
            results: macs
                .iter()
                .map(|m| PhoneResult {
                    mac: m.to_string(),
                    state: "pending",
                    via: None,
                    target: None,
                    sent_at_ms: None,
                    answer: None,
                    acknowledged: false,
                    came_back: None,
                    error: None,
                })
                .collect(),
        };
        let mut snapshot = job.clone();
        snapshot.recount();
        let shared = Arc::new(Mutex::new(job));
        {
            let mut jobs = lock(&self.jobs);
            jobs.insert(snapshot.id.clone(), shared.clone());
            while jobs.len() > self.settings().keep_jobs.max(1) {
                let oldest_done = jobs
                    .iter()
                    .find(|(_, j)| lock(j).state == "done")
                    .map(|(id, _)| id.clone());
                match oldest_done {
                    Some(id) => {
                        jobs.remove(&id);
                    }
                    None => break,
                }
            }
        }
        tracing::info!(job = %snapshot.id, action = req.action.as_str(), phones = macs.len(), actor, "remote action started");
        let plan = Plan {
            action: req.action,
            via,
            transport,
            target,
            wait,
            actor: actor.to_string(),
            reason: req.reason.clone(),
            release: req.release,
            roots: roots.flatten(),
        };
        let this = self.clone();
        tokio::spawn(async move { this.run(shared, macs, rate, plan).await });
        Ok(snapshot)
    }

    /// The MACs named and selected, each once, in order.
    async fn select(&self, req: &JobRequest) -> Result<Vec<Mac>, ActionError> {
        let mut out: Vec<Mac> = Vec::new();
        for m in &req.macs {
            let mac: Mac = m
                .parse()
                .map_err(|e| ActionError::Invalid(format!("{m:?}: {e}")))?;
            if !out.contains(&mac) {
                out.push(mac);
            }
        }
        if !req.select.is_empty() {
            let s = &req.select;
            for d in self.core.devices().await? {
                let model_ok = s.model.as_ref().is_none_or(|m| {
                    d.model
                        .as_deref()
                        .is_some_and(|dm| dm.eq_ignore_ascii_case(m))
                });
                let profile_ok = s
                    .profile
                    .as_ref()
                    .is_none_or(|p| d.assignment.profile.as_deref() == Some(p.as_str()));
                let state_ok = s
                    .state
                    .as_ref()
                    .is_none_or(|st| d.state.as_str().eq_ignore_ascii_case(st));
                if model_ok
                    && profile_ok
                    && state_ok
                    && let Ok(mac) = d.mac.parse::<Mac>()
                    && !out.contains(&mac)
                {
                    out.push(mac);
                }
            }
        }
        if out.len() > MAX_PHONES {
            return Err(ActionError::Invalid(format!(
                "{} phones in one job; at most {MAX_PHONES}",
                out.len()
            )));
        }
        Ok(out)
    }

    async fn run(self: Arc<Self>, job: Arc<Mutex<Job>>, macs: Vec<Mac>, rate: f64, plan: Plan) {
        let plan = Arc::new(plan);
        let slots = Arc::new(tokio::sync::Semaphore::new(
            self.settings().max_in_flight.max(1),
        ));
        let start = tokio::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, mac) in macs.into_iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let (this, job, plan) = (self.clone(), job.clone(), plan.clone());
            tasks.spawn(async move {
                this.act_on(&job, i, mac, &plan).await;
                drop(slot);
            });
        }
        while tasks.join_next().await.is_some() {}
        let mut j = lock(&job);
        j.state = "done";
        j.finished_at_ms = Some(now_ms());
        j.recount();
        tracing::info!(job = %j.id, sent = j.counts.sent, acknowledged = j.counts.acknowledged, came_back = j.counts.came_back, "remote action finished");
    }

    fn update(job: &Mutex<Job>, i: usize, f: impl FnOnce(&mut PhoneResult)) {
        let mut j = lock(job);
        if let Some(r) = j.results.get_mut(i) {
            f(r);
        }
        j.recount();
    }

    /// One phone: send, record the answer, audit, then watch for it coming back.
    async fn act_on(&self, job: &Mutex<Job>, i: usize, mac: Mac, plan: &Plan) {
        let action = plan.action.as_str();
        let via_label = match plan.via {
            Via::Rest => "rest",
            _ => "sip",
        };
        Self::update(job, i, |r| r.state = "sending");
        let fail = |e: String| {
            self.core.metrics().action(action, via_label, "failed");
            Self::update(job, i, |r| {
                r.state = "done";
                r.error = Some(e);
            });
        };
        let sending = match plan.via {
            Via::Rest => rest_prepare(&self.core, &self.settings(), mac, plan)
                .await
                .map(Sending::Rest),
            _ => sip::prepare(&self.core, &self.settings(), mac, plan)
                .await
                .map(Sending::Sip),
        };
        let sending = match sending {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        if plan.release {
            match self.core.release(mac, &plan.actor, &plan.reason).await {
                Ok(r) => {
                    tracing::info!(%mac, quarantine = ?r.quarantine, "released before a factory reset")
                }
                Err(e) => return fail(format!("release: {e}")),
            }
        }
        let watch = self.core.watch(mac);
        let sent_at = now_ms();
        let (target, via_text) = match &sending {
            Sending::Sip(p) => (p.request.target, format!("sip/{}", plan.transport)),
            Sending::Rest(p) => (p.target, "rest/https".to_string()),
        };
        Self::update(job, i, |r| {
            r.via = Some(via_text.clone());
            r.target = Some(target.to_string());
            r.sent_at_ms = Some(sent_at);
        });
        let (answer, what) = match &sending {
            Sending::Sip(p) => {
                let report = polyprov_sip::notify::send(&p.request).await;
                let mut answer = sip::answer_of(&report);
                if report.challenged {
                    answer.detail.push_str(", after a Digest challenge");
                }
                (answer, format!("event {:?}", p.request.event))
            }
            Sending::Rest(p) => {
                let timeout = Duration::from_secs(self.settings().rest_timeout_secs.max(1));
                let (mut answer, fingerprint) =
                    rest::call(p, mac, plan.roots.clone(), timeout).await;
                if plan.roots.is_none()
                    && let Some(f) = fingerprint
                {
                    answer
                        .detail
                        .push_str(&format!(" (unverified certificate, SHA-256 {f})"));
                }
                (answer, format!("POST {}", p.path))
            }
        };
        let acknowledged = answer.outcome == "accepted";
        self.core
            .metrics()
            .action(action, via_label, result_label(answer.outcome));
        let detail = format!("via {via_text} to {target} ({what}): {}", answer.detail);
        if let Err(e) = self.core.record(&plan.actor, mac, action, &detail).await {
            tracing::warn!(%mac, error = %e, "could not write the audit entry of a remote action");
        }
        tracing::info!(%mac, action, %target, outcome = answer.outcome, code = answer.code, "remote action sent");
        Self::update(job, i, |r| {
            r.answer = Some(answer);
            r.acknowledged = acknowledged;
            r.state = if acknowledged && !plan.wait.is_zero() {
                "watching"
            } else {
                "done"
            };
        });
        if !acknowledged || plan.wait.is_zero() {
            return;
        }
        let mut came_back = watch_for_return(&watch, mac, sent_at, plan.wait).await;
        if let Some(c) = came_back.as_mut()
            && plan.release
        {
            c.clean = Some(is_clean(c, mac));
            // Sightings (and so the heuristic's verdict) reach the inventory in batches.
            self.core.flush().await;
            c.reset_seen = match self.core.device(mac).await {
                Ok(Some(d)) => Some(
                    d.reset_suspected_at
                        .is_some_and(|t| t * 1000 >= sent_at - 1000),
                ),
                _ => None,
            };
        }
        if came_back.is_some() {
            self.core.metrics().action(action, via_label, "came_back");
        }
        if plan.release {
            let verdict = match came_back.as_ref().and_then(|c| c.clean) {
                Some(true) => {
                    "came back clean: rebooted, served as an unassigned phone, no override uploaded back"
                }
                Some(false) => "came back, but not clean (see the job's files)",
                None => "not seen coming back",
            };
            let _ = self
                .core
                .record(&plan.actor, mac, "reset-checked", verdict)
                .await;
        }
        Self::update(job, i, |r| {
            r.came_back = came_back;
            r.state = "done";
        });
    }
}

/// What a phone is sent.
enum Sending {
    Sip(sip::Prepared),
    Rest(rest::Prepared),
}

/// The metric label of an answer's outcome.
fn result_label(outcome: &str) -> &'static str {
    match outcome {
        "accepted" => "acknowledged",
        "rejected" | "unauthorized" => "refused",
        "timed_out" => "no_answer",
        _ => "unreachable",
    }
}

/// After a release and a factory reset: the phone rebooted (or its stage is unknown) and
/// uploaded no override back (a reset phone has none; one that uploads them was not reset).
fn is_clean(c: &CameBack, mac: Mac) -> bool {
    let device_file = format!(
        "GET {mac}-{} 200",
        polyprov_model::path::DEVICE_CONFIG_SUFFIX
    );
    let uploaded_override = |f: &String| {
        f.starts_with("PUT ")
            && (f.contains(&format!("{mac}-phone.cfg")) || f.contains(&format!("{mac}-web.cfg")))
    };
    c.rebooted != Some(false)
        && !c
            .files
            .iter()
            .any(|f| *f == device_file || uploaded_override(f))
}

/// The REST call for `mac`: its admin password (read now, before any release), to `--target`
/// or the address it was last seen from, on `rest_port`.
async fn rest_prepare(
    core: &Core,
    settings: &ActionSettings,
    mac: Mac,
    plan: &Plan,
) -> Result<rest::Prepared, String> {
    let path = rest::endpoint(plan.action)?;
    let (device, params) = core
        .effective_params(mac)
        .await
        .map_err(|e| format!("reading the inventory: {e}"))?
        .ok_or_else(|| {
            format!("{mac} is not in the inventory: polyprov holds no admin password for it")
        })?;
    let password = params
        .get(crate::render::ADMIN_PASSWORD_PARAM)
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| {
            format!(
                "polyprov holds no admin password for {mac} (the REST API needs it): assign one"
            )
        })?;
    let target = match plan.target {
        Some(t) => t,
        None => {
            let ip = sip::last_ip(core, mac, &device).await?;
            std::net::SocketAddr::new(ip, settings.rest_port)
        }
    };
    Ok(rest::Prepared {
        target,
        path,
        password,
    })
}

/// A job's settings, fixed when it starts.
pub(crate) struct Plan {
    pub action: ActionKind,
    pub via: Via,
    pub transport: polyprov_sip::Transport,
    pub target: Option<std::net::SocketAddr>,
    pub wait: Duration,
    pub actor: String,
    pub reason: String,
    /// Release the device first (see [`JobRequest::release`]).
    pub release: bool,
    /// For REST: the CA the phone's certificate must chain to (`None`: insecure, allowed).
    pub roots: Option<Vec<rustls::pki_types::TrustAnchor<'static>>>,
}

/// Waits (at most `wait`) for the phone to fetch its master file, then collects what it does
/// for a few seconds more.
async fn watch_for_return(
    watch: &crate::core::Watch,
    mac: Mac,
    sent_at: i64,
    wait: Duration,
) -> Option<CameBack> {
    let deadline = tokio::time::Instant::now() + wait;
    let master = format!("{mac}.cfg");
    let is_master = |s: &Seen| !s.upload && s.file.rsplit('/').next() == Some(master.as_str());
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        if settle_until.is_none() && watch.seen().iter().any(is_master) {
            settle_until = Some((now + SETTLE).min(deadline));
        }
        if let Some(until) = settle_until
            && now >= until
        {
            break;
        }
        if now >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = watch.seen();
    let first = seen.iter().position(is_master)?;
    let m = &seen[first];
    let ua_of = seen[first..].iter().rev().find(|s| s.firmware.is_some());
    let stages: Vec<&str> = seen.iter().filter_map(|s| s.stage.as_deref()).collect();
    Some(CameBack {
        at_ms: m.at_ms,
        after_ms: m.at_ms - sent_at,
        firmware: ua_of.and_then(|s| s.firmware.clone()),
        stage: ua_of.and_then(|s| s.stage.clone()),
        rebooted: (!stages.is_empty()).then(|| stages.contains(&"Updater")),
        clean: None,
        reset_seen: None,
        files: seen[first..]
            .iter()
            .map(|s| {
                let method = if s.upload { "PUT" } else { "GET" };
                format!("{method} {} {}", s.file, s.status)
            })
            .collect(),
    })
}
