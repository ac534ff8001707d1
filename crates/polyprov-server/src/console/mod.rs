//! The web console, served by the admin listener at `/` (nothing on the phones' port): HTML made
//! on the server, one embedded style sheet, no CDN, no build step; no script but the activity
//! page's own, which follows its server-sent event stream.
//!
//! Sign-in takes the admin token once and gives a session cookie (`HttpOnly`,
//! `SameSite=Strict`; `Secure` when the request came over HTTPS); every change is a form POST
//! that must carry the session's CSRF token and a ticked confirmation. Everything shown is
//! HTML-escaped (a phone's User-Agent and uploads are the phone's to choose). Pages: the fleet,
//! a device (see `device_views`), remote action jobs, profiles and site defaults with the
//! linter, live activity (`activity`), the boot root (`boot_root`).

mod activity;
mod boot_root;
mod device_views;
mod pages;
mod sessions;

pub use activity::{Activity, sample as sample_activity};
pub use sessions::Sessions;

use crate::admin::AdminState;
use axum::Router;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use polyprov_model::Mac;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// The console's routes, merged into the admin router.
pub fn router() -> Router<Arc<AdminState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/devices") }))
        .route("/console/signin", get(signin_page).post(signin))
        .route("/console/signout", post(signout))
        .route("/console/devices", get(fleet))
        .route("/console/devices/{mac}", get(device))
        .route("/console/devices/{mac}/release", post(release))
        .route("/console/devices/{mac}/reassign", post(reassign))
        .route("/console/devices/{mac}/restore", post(restore))
        .route("/console/devices/{mac}/retire", post(retire))
        .route("/console/devices/{mac}/drift", post(drift))
        .route("/console/devices/{mac}/action", post(action))
        .route("/console/devices/{mac}/assignment", post(assign))
        .route("/console/actions/{id}", get(job))
        .route("/console/profiles", get(profiles))
        .route("/console/site", get(site).post(save_site))
        .route("/console/profiles/new", get(new_profile))
        .route("/console/profiles/{name}", get(profile).post(save_profile))
        .route("/console/style.css", get(style))
        .route("/console/activity", get(activity_page))
        .route("/console/activity/stream", get(activity_stream))
        .route("/console/activity.js", get(activity_script))
        .route("/console/root", get(boot_root::page))
}

const STYLE: &str = include_str!("style.css");

/// Live activity: charts, phones seen last, security events (refreshed by its stream).
async fn activity_page(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    html_with(
        StatusCode::OK,
        pages::activity(&session, &activity::live_now(&s)),
        CSP_LIVE,
    )
}

/// The live part of the activity page as server-sent events, every few seconds, for a signed-in
/// browser; at most [`activity::MAX_STREAMS`] at once, each for [`activity::STREAM_LIFETIME`].
async fn activity_stream(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    if s.sessions.get(&headers).is_none() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(permit) = s.activity.stream_permit() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "30")],
            "too many live views open",
        )
            .into_response();
    };
    let until = tokio::time::Instant::now() + activity::STREAM_LIFETIME;
    let state = s.clone();
    let events = futures_util::stream::unfold(
        (state, permit, headers, true),
        move |(state, permit, headers, first)| async move {
            if !first {
                tokio::time::sleep(activity::INTERVAL).await;
            }
            if tokio::time::Instant::now() >= until || state.sessions.get(&headers).is_none() {
                return None;
            }
            // One line: a fragment's own line breaks would split the event's data.
            let fragment = activity::live_now(&state).replace(['\r', '\n'], " ");
            let event = Event::default().event("live").data(fragment);
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (state, permit, headers, false),
            ))
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn activity_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        activity::SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// What the assignment editor shows for a secret it does not put on the page.
pub(crate) const KEPT: &str = "<kept>";

/// The console's content security policy: its own style sheet, nothing else.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The activity page's: also its own script and the stream it follows.
const CSP_LIVE: &str = "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An HTML page with the console's security headers.
fn html(status: StatusCode, body: String) -> Response {
    html_with(status, body, CSP)
}

fn html_with(status: StatusCode, body: String, csp: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// The session of a form POST that carries its own CSRF token; else the refusal to send (403:
/// signed out, or a token that is missing or not this session's — a security event).
fn form_session(
    s: &AdminState,
    headers: &HeaderMap,
    peer: SocketAddr,
    csrf: &str,
) -> Result<sessions::Session, Box<Response>> {
    let Some(session) = s.sessions.get(headers) else {
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            pages::message("Signed out", "Sign in again to change anything."),
        )));
    };
    if !session.csrf_ok(csrf) {
        s.core.security_event(
            "console_bad_csrf",
            peer.ip(),
            "console",
            "-",
            &"a form without this session's CSRF token",
        );
        return Err(Box::new(html(
            StatusCode::FORBIDDEN,
            pages::message(
                "Refused",
                "This form is stale or did not come from the console.",
            ),
        )));
    }
    Ok(session)
}

/// A device form's session check (see [`form_session`]) and the MAC of its path.
fn form_mac(
    s: &AdminState,
    headers: &HeaderMap,
    peer: SocketAddr,
    csrf: &str,
    mac: &str,
) -> Result<Mac, Box<Response>> {
    form_session(s, headers, peer, csrf)?;
    mac_or_404(mac)
}

/// A path's MAC, or the "not a MAC" page.
fn mac_or_404(text: &str) -> Result<Mac, Box<Response>> {
    text.parse::<Mac>().map_err(|_| {
        Box::new(html(
            StatusCode::NOT_FOUND,
            pages::message("Not a MAC", "That is not a MAC address."),
        ))
    })
}

fn to_signin() -> Response {
    Redirect::to("/console/signin").into_response()
}

async fn signin_page() -> Response {
    html(StatusCode::OK, pages::signin(None))
}

#[derive(Deserialize)]
struct SigninForm {
    token: String,
}

async fn signin(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SigninForm>,
) -> Response {
    let given: [u8; 32] = Sha256::digest(f.token.trim().as_bytes()).into();
    if !crate::auth::constant_time_eq(&given, &s.token_hash) {
        s.core.security_event(
            "admin_bad_token",
            peer.ip(),
            "console",
            "/console/signin",
            &"not the admin token",
        );
        return html(
            StatusCode::UNAUTHORIZED,
            pages::signin(Some("That is not the admin token.")),
        );
    }
    let id = s.sessions.create();
    let secure = if headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https")
    {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        sessions::COOKIE,
        sessions::IDLE.as_secs()
    );
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/console/devices"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn signout(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Some(session) = s.sessions.get(&headers)
        && session.csrf_ok(&f.csrf)
    {
        s.sessions.remove(&session.id);
    }
    (
        [(
            header::SET_COOKIE,
            format!(
                "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                sessions::COOKIE
            ),
        )],
        Redirect::to("/console/signin"),
    )
        .into_response()
}

/// The fleet page's query.
#[derive(Debug, Default, Deserialize)]
pub struct FleetQuery {
    /// A MAC in any spelling, or part of one.
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub profile: String,
    /// `mac` (the default) or `seen` (last seen first).
    #[serde(default)]
    pub sort: String,
    /// Where the page starts: a MAC, or `<last seen>-<MAC>` when sorted by last seen.
    #[serde(default)]
    pub after: String,
}

impl FleetQuery {
    /// The page's place in its order.
    fn page_after(&self) -> polyprov_store::PageAfter {
        use polyprov_store::PageAfter;
        if self.sort == "seen" {
            PageAfter::Seen(
                self.after
                    .split_once('-')
                    .and_then(|(at, mac)| Some((at.parse().ok()?, mac.parse().ok()?))),
            )
        } else {
            PageAfter::Mac(self.after.parse().ok())
        }
    }
}

/// Devices a page.
const PAGE: u32 = 50;

async fn fleet(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    // A whole MAC goes straight to its device.
    if let Ok(mac) = q.q.trim().parse::<Mac>() {
        return Redirect::to(&format!("/console/devices/{mac}")).into_response();
    }
    let digits: String =
        q.q.chars()
            .filter(char::is_ascii_hexdigit)
            .map(|c| c.to_ascii_lowercase())
            .collect();
    let given = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
    let filter = polyprov_store::DeviceFilter {
        state: polyprov_store::DeviceState::from_name(&q.state),
        mac_digits: (!digits.is_empty()).then_some(digits),
        model: given(&q.model),
        profile: given(&q.profile),
    };
    let devices = match s
        .core
        .devices_in_order(&filter, &q.page_after(), PAGE)
        .await
    {
        Ok(d) => d,
        Err(e) => return error_page(&e.to_string()),
    };
    let counts = s.core.device_counts().await.unwrap_or_default();
    let models = s.core.models().await.unwrap_or_default();
    let profiles: Vec<String> = s
        .core
        .profiles()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.name)
        .collect();
    html(
        StatusCode::OK,
        pages::fleet(
            &session,
            &q,
            &devices,
            &counts,
            (&models, &profiles),
            devices.len() == PAGE as usize,
        ),
    )
}

fn error_page(e: &str) -> Response {
    tracing::error!(error = %e, "console page failed");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message("Try again", "The inventory could not be read just now."),
    )
}

/// The device page's query: the effective configuration's filter, the keystrokes' mode order.
#[derive(Deserialize, Default)]
struct DeviceQuery {
    #[serde(default)]
    param: String,
    #[serde(default)]
    keys: String,
}

async fn device(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Query(q): Query<DeviceQuery>,
) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    let mac = match mac_or_404(&mac) {
        Ok(m) => m,
        Err(page) => return *page,
    };
    let device = match s.core.device(mac).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message("Unknown device", &format!("polyprov has not seen {mac}.")),
            );
        }
        Err(e) => return error_page(&e.to_string()),
    };
    let history = s.core.history(mac).await.unwrap_or_default();
    let uploads = s.core.uploads_of(mac).await.unwrap_or_default();
    let quarantine = s.core.quarantine_sets(mac).await.unwrap_or_default();
    let analysis = crate::doctor::diagnose_all(&s.core, &s.dhcp(), mac)
        .await
        .ok();
    let profiles: Vec<String> = s
        .core
        .profiles()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let view = pages::DeviceView {
        history: &history,
        uploads: &uploads,
        analysis: analysis.as_ref(),
        quarantine: &quarantine,
        filter: &q.param,
        key_labels: q.keys == "labels",
    };
    html(
        StatusCode::OK,
        pages::device(&session, &device, &view, &profiles),
    )
}

/// A lifecycle form: the CSRF token, a reason, the confirmation box, and what the action needs.
#[derive(Deserialize)]
struct LifecycleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
    /// Reassign: the new profile and admin password.
    #[serde(default)]
    profile: String,
    #[serde(default)]
    admin_password: String,
    /// Restore: the quarantine set.
    #[serde(default)]
    set: String,
}

/// The session check, the MAC, and the reason and confirmation every lifecycle form asks for;
/// else the page to answer with.
fn lifecycle_form(
    s: &AdminState,
    headers: &HeaderMap,
    peer: SocketAddr,
    mac: &str,
    f: &LifecycleForm,
    what: &str,
) -> Result<(Mac, String), Box<Response>> {
    let mac = form_mac(s, headers, peer, &f.csrf, mac)?;
    if f.confirm != "yes" || f.reason.trim().is_empty() {
        return Err(Box::new(html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message(
                &format!("Not {what}"),
                "This needs a reason and the confirmation box ticked.",
            ),
        )));
    }
    Ok((mac, f.reason.trim().chars().take(500).collect()))
}

/// Back to the device page after a change, or the failure.
fn after_change(mac: Mac, what: &str, r: Result<(), String>) -> Response {
    match r {
        Ok(()) => Redirect::to(&format!("/console/devices/{mac}")).into_response(),
        Err(e) => html(
            StatusCode::CONFLICT,
            pages::message(&format!("Not {what}"), &e),
        ),
    }
}

async fn reassign(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<LifecycleForm>,
) -> Response {
    let (mac, reason) = match lifecycle_form(&s, &headers, peer, &mac, &f, "reassigned") {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let profile = f.profile.trim();
    let password = f.admin_password.trim();
    let assignment = polyprov_store::Assignment {
        profile: (!profile.is_empty()).then(|| profile.to_string()),
        admin_password: (!password.is_empty()).then(|| password.to_string()),
        params: Default::default(),
    };
    let r = s.core.reassign(mac, &assignment, "console", &reason).await;
    after_change(mac, "reassigned", r.map(|_| ()).map_err(|e| e.to_string()))
}

async fn restore(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<LifecycleForm>,
) -> Response {
    let (mac, reason) = match lifecycle_form(&s, &headers, peer, &mac, &f, "restored") {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let set = Some(f.set.trim().to_string()).filter(|v| !v.is_empty());
    let r = match s.core.restore(mac, set, "console").await {
        Ok(Some((id, _))) => s
            .core
            .record("console", mac, "note", &format!("restored {id}: {reason}"))
            .await
            .map_err(|e| e.to_string()),
        Ok(None) => Err("no such quarantine set for this device".into()),
        Err(e) => Err(e.to_string()),
    };
    after_change(mac, "restored", r)
}

async fn retire(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<LifecycleForm>,
) -> Response {
    let (mac, reason) = match lifecycle_form(&s, &headers, peer, &mac, &f, "retired") {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let r = s.core.retire(mac, "console", &reason).await;
    after_change(mac, "retired", r.map(|_| ()).map_err(|e| e.to_string()))
}

#[derive(Deserialize)]
struct DriftForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "override")]
    which: String,
    #[serde(default)]
    param: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    confirm: String,
}

/// One row of the override drift: keep the value for the device, move it into its profile, or
/// discard it — each then takes it out of the override (a new version; the old one stays).
async fn drift(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<DriftForm>,
) -> Response {
    let mac = match form_mac(&s, &headers, peer, &f.csrf, &mac) {
        Ok(m) => m,
        Err(page) => return *page,
    };
    let kind = match f.which.as_str() {
        "phone" => polyprov_model::UploadKind::PhoneOverride,
        "web" => polyprov_model::UploadKind::WebOverride,
        _ => {
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::message("Unknown override", "The phone menu's or the web UI's."),
            );
        }
    };
    if f.confirm != "yes" {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message("Not changed", "Tick the confirmation box."),
        );
    }
    let param = f.param.trim();
    // The value the override holds now: what "keep" and "move" copy.
    let value = match s.core.override_param(mac, kind, param).await {
        Ok(v) => v,
        Err(e) => return error_page(&e.to_string()),
    };
    let Some(value) = value else {
        return html(
            StatusCode::CONFLICT,
            pages::message(
                "Not changed",
                &format!("The override does not set {param} any more."),
            ),
        );
    };
    let device = match s.core.device(mac).await {
        Ok(Some(d)) => d,
        Ok(None) => return html(StatusCode::NOT_FOUND, pages::message("Unknown device", "")),
        Err(e) => return error_page(&e.to_string()),
    };
    let mut params = polyprov_model::Params::new();
    params.insert(param.to_string(), value.clone());
    if let Some((_, at, why)) = lint_params(&device.mac, &params).first() {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message("Not changed", &format!("{at}: {why}")),
        );
    }
    let why = match f.action.as_str() {
        "keep" => {
            let mut a = device.assignment.clone();
            a.params.insert(param.to_string(), value);
            if let Err(e) = s.core.assign(mac, &a, "console").await {
                return after_change(mac, "changed", Err(e.to_string()));
            }
            "kept for the device"
        }
        "profile" => {
            let Some(name) = device.assignment.profile.clone() else {
                return after_change(mac, "changed", Err("the device has no profile".into()));
            };
            let mut p = match s.core.profile(&name).await {
                Ok(Some(p)) => p.params,
                Ok(None) => Default::default(),
                Err(e) => return error_page(&e.to_string()),
            };
            p.insert(param.to_string(), value);
            if let Err(e) = s.core.put_profile(&name, &p).await {
                return after_change(mac, "changed", Err(e.to_string()));
            }
            "moved into its profile"
        }
        "discard" => "discarded",
        _ => {
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::message("Unknown action", "Keep, move or discard."),
            );
        }
    };
    let r = s
        .core
        .drop_override_param(mac, kind, param, "console", why)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    after_change(mac, "changed", r)
}

async fn release(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<LifecycleForm>,
) -> Response {
    let (mac, reason) = match lifecycle_form(&s, &headers, peer, &mac, &f, "released") {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let r = s.core.release(mac, "console", &reason).await;
    after_change(mac, "released", r.map(|_| ()).map_err(|e| e.to_string()))
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// Resync, reboot or factory reset from the device page: a remote action job, then its page.
async fn action(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Err(refused) = form_session(&s, &headers, peer, &f.csrf) {
        return *refused;
    }
    let kind = match f.action.as_str() {
        "resync" => crate::actions::ActionKind::Resync,
        "reboot" => crate::actions::ActionKind::Reboot,
        "factory-reset" => crate::actions::ActionKind::FactoryReset,
        _ => {
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::message("Unknown action", "Resync, reboot or factory reset."),
            );
        }
    };
    // A factory reset without a release would bring the old configuration straight back:
    // the console releases first (its uploads to quarantine), as `release --factory-reset` does.
    let release = kind == crate::actions::ActionKind::FactoryReset;
    if release && f.reason.trim().is_empty() {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message(
                "Not sent",
                "A factory reset needs a reason (it releases the device).",
            ),
        );
    }
    if f.confirm != "yes" {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message("Not sent", "Tick the confirmation box to act on the phone."),
        );
    }
    let req = crate::actions::JobRequest {
        action: kind,
        macs: vec![mac],
        select: Default::default(),
        via: Default::default(),
        target: None,
        transport: None,
        rate: None,
        wait_secs: Some(60),
        reason: f.reason.chars().take(500).collect(),
        release,
    };
    match s.actions.start(req, "console").await {
        Ok(job) => Redirect::to(&format!("/console/actions/{}", job.id)).into_response(),
        Err(e) => html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message("Not sent", &e.to_string()),
        ),
    }
}

/// A remote action job's page (it refreshes itself while the job runs).
async fn job(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    match s.actions.job(&id) {
        Some(j) => html(StatusCode::OK, pages::job(&session, &j)),
        None => html(
            StatusCode::NOT_FOUND,
            pages::message("No such job", "Jobs are kept in memory; this one is gone."),
        ),
    }
}

#[derive(Deserialize)]
struct NewProfile {
    #[serde(default)]
    name: String,
}

/// The "new profile" form names it; its page is where it is made (saved on the first Save).
async fn new_profile(Query(q): Query<NewProfile>) -> Response {
    Redirect::to(&format!("/console/profiles/{}", pages::url(q.name.trim()))).into_response()
}

async fn profiles(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    match s.core.profiles().await {
        Ok(list) => html(StatusCode::OK, pages::profiles(&session, &list)),
        Err(e) => error_page(&e.to_string()),
    }
}

/// Most devices counted for "a change affects N devices" (past it: "N or more").
const AFFECTED_COUNT: u32 = 10_000;

async fn affected(s: &AdminState, name: &str) -> (usize, bool) {
    let filter = polyprov_store::DeviceFilter {
        profile: Some(name.to_string()),
        ..Default::default()
    };
    let n = s
        .core
        .devices_matching(&filter, None, AFFECTED_COUNT)
        .await
        .map_or(0, |d| d.len());
    (n, n as u32 == AFFECTED_COUNT)
}

async fn profile(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    let params = match s.core.profile(&name).await {
        Ok(Some(p)) => p.params,
        Ok(None) => Default::default(),
        Err(e) => return error_page(&e.to_string()),
    };
    let text = params_text(&params);
    let findings = lint_params(&name, &params);
    let affects = affected(&s, &name).await;
    html(
        StatusCode::OK,
        profile_page(&session, &name, &text, &findings, affects, (None, &[])),
    )
}

/// What `new` changes against `old`, one line a parameter (secret values masked).
fn changes(old: &polyprov_model::Params, new: &polyprov_model::Params) -> Vec<String> {
    let shown = |k: &str, v: &str| {
        if polyprov_model::lint::is_secret(k) {
            "••••".to_string()
        } else {
            format!("{v:?}")
        }
    };
    let mut out = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            None => out.push(format!("+ {k} = {}", shown(k, v))),
            Some(o) if o != v => out.push(format!("~ {k}: {} → {}", shown(k, o), shown(k, v))),
            Some(_) => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("- {k}"));
    }
    out
}

fn profile_page(
    session: &sessions::Session,
    name: &str,
    text: &str,
    findings: &[ProfileFinding],
    affects: (usize, bool),
    (status, changes): (Option<&str>, &[String]),
) -> String {
    let applies = format!(
        "Applies to {}{} device(s): a change reaches each at its next request.",
        affects.0,
        if affects.1 { " or more" } else { "" }
    );
    pages::params_editor(
        session,
        &pages::Editor {
            title: &format!("Profile {name}"),
            action: &format!("/console/profiles/{}", pages::url(name)),
            applies: &applies,
            devices: &format!("/console/devices?profile={}", pages::url(name)),
            changes,
            text,
            findings,
            status,
        },
    )
}

#[derive(Deserialize)]
struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    params: String,
    /// `check` (lint only) or `save`.
    #[serde(default)]
    intent: String,
}

/// Checks a profile's parameters (one `NAME=VALUE` a line) with the linter, and saves them
/// unless a finding is an error.
async fn save_profile(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(f): Form<ProfileForm>,
) -> Response {
    let session = match form_session(&s, &headers, peer, &f.csrf) {
        Ok(session) => session,
        Err(refused) => return *refused,
    };
    if !crate::admin::is_profile_name(&name) {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message(
                "Not a profile name",
                "Use 1-64 letters, digits, '.', '_', '-'.",
            ),
        );
    }
    let affects = affected(&s, &name).await;
    let saved = match s.core.profile(&name).await {
        Ok(p) => p.map(|p| p.params).unwrap_or_default(),
        Err(e) => return error_page(&e.to_string()),
    };
    let (params, mut problems) = parse_params_text(&f.params);
    let changed = if f.intent == "save" {
        Vec::new()
    } else {
        changes(&saved, &params)
    };
    let mut findings = lint_params(&name, &params);
    findings.splice(0..0, problems.drain(..));
    let blocking = findings.iter().any(|f| f.0 == "error");
    let status = if f.intent == "save" && !blocking {
        match s.core.put_profile(&name, &params).await {
            Ok(_) => Some(format!("Saved; it applies to {} device(s).", affects.0)),
            Err(e) => Some(format!("Not saved: {e}")),
        }
    } else if f.intent == "save" {
        Some("Not saved: fix the errors first.".to_string())
    } else {
        None
    };
    html(
        if blocking {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        profile_page(
            &session,
            &name,
            &f.params,
            &findings,
            affects,
            (status.as_deref(), &changed),
        ),
    )
}

/// `NAME=VALUE` lines, sorted by name.
fn params_text(params: &polyprov_model::Params) -> String {
    params.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// A finding as the profile page shows it: (severity, the parameter or line, message).
pub type ProfileFinding = (String, String, String);

/// Parses `NAME=VALUE` lines (blank lines and `#` comments skipped); a line that is not one, or
/// a name or value Poly phones cannot take, is an error finding.
fn parse_params_text(text: &str) -> (polyprov_model::Params, Vec<ProfileFinding>) {
    use polyprov_model::config::{check_param_name, check_param_value};
    let mut params = polyprov_model::Params::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            problems.push((
                "error".into(),
                format!("line {}", i + 1),
                "expected NAME=VALUE".into(),
            ));
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if let Err(e) = check_param_name(k) {
            problems.push(("error".into(), k.to_string(), e.to_string()));
        } else if let Err(e) = check_param_value(k, v) {
            problems.push(("error".into(), k.to_string(), e.to_string()));
        } else {
            params.insert(k.to_string(), v.to_string());
        }
    }
    (params, problems)
}

/// The linter on a profile, as the shared file it becomes for every device that has it.
fn lint_params(name: &str, params: &polyprov_model::Params) -> Vec<ProfileFinding> {
    if params.is_empty() {
        return Vec::new();
    }
    let file = format!("profile-{name}.cfg");
    let text = polyprov_model::config::render_polycom_config(params, "profile");
    let input = polyprov_model::lint::LintInput {
        files: vec![(file, text.clone())],
        ..Default::default()
    };
    polyprov_model::lint::lint(&input)
        .into_iter()
        .map(|f| {
            // Findings point at a line of the rendered file, one parameter a line: name it.
            let at = f
                .position
                .and_then(|p| text.lines().nth(p.line.saturating_sub(1) as usize))
                .map(|l| {
                    let l = l.trim().trim_start_matches('<');
                    l.split('=').next().unwrap_or(l).to_string()
                })
                .unwrap_or_default();
            (f.severity.to_string(), at, f.message)
        })
        .collect()
}

#[derive(Deserialize)]
struct AssignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    profile: String,
    /// Empty: keep the admin password the device has.
    #[serde(default)]
    admin_password: String,
    #[serde(default)]
    params: String,
}

/// The device's assignment from its page: profile, admin password (kept when left empty), its
/// own parameters as `NAME=VALUE` lines — checked as the API checks them, then the linter's
/// errors refuse it.
async fn assign(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<AssignForm>,
) -> Response {
    let mac = match form_mac(&s, &headers, peer, &f.csrf, &mac) {
        Ok(m) => m,
        Err(page) => return *page,
    };
    let (mut params, problems) = parse_params_text(&f.params);
    if let Some((_, at, why)) = problems.first() {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message("Not saved", &format!("{at}: {why}")),
        );
    }
    let current = match s.core.device(mac).await {
        Ok(d) => d,
        Err(e) => return error_page(&e.to_string()),
    };
    // `<kept>`: the secret the page did not show stays as it is.
    for (k, v) in params.iter_mut().filter(|(_, v)| v.as_str() == KEPT) {
        match current.as_ref().and_then(|d| d.assignment.params.get(k)) {
            Some(held) => *v = held.clone(),
            None => {
                return html(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    pages::message(
                        "Not saved",
                        &format!("{k}: no value held to keep; type one"),
                    ),
                );
            }
        }
    }
    let admin_password = match f.admin_password.trim() {
        "" => current.and_then(|d| d.assignment.admin_password),
        pw => Some(pw.to_string()),
    };
    let profile = f.profile.trim();
    let assignment = polyprov_store::Assignment {
        profile: (!profile.is_empty()).then(|| profile.to_string()),
        admin_password,
        params,
    };
    match s.core.assign(mac, &assignment, "console").await {
        Ok(_) => Redirect::to(&format!("/console/devices/{mac}")).into_response(),
        Err(e) => html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message("Not saved", &e.to_string()),
        ),
    }
}

const SITE_APPLIES: &str =
    "Applies to every assigned device, under its profile and its own parameters.";
const SITE_DEVICES: &str = "/console/devices?state=assigned";

async fn site(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    let Some(session) = s.sessions.get(&headers) else {
        return to_signin();
    };
    let params = match s.core.site_defaults().await {
        Ok(p) => p,
        Err(e) => return error_page(&e.to_string()),
    };
    let text = params_text(&params);
    let findings = lint_params("site", &params);
    html(
        StatusCode::OK,
        pages::params_editor(
            &session,
            &pages::Editor {
                title: "Site defaults",
                action: "/console/site",
                applies: SITE_APPLIES,
                devices: SITE_DEVICES,
                changes: &[],
                text: &text,
                findings: &findings,
                status: None,
            },
        ),
    )
}

/// The site defaults checked with the linter and saved unless a finding is an error.
async fn save_site(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<ProfileForm>,
) -> Response {
    let session = match form_session(&s, &headers, peer, &f.csrf) {
        Ok(session) => session,
        Err(refused) => return *refused,
    };
    let (params, mut problems) = parse_params_text(&f.params);
    let changed = if f.intent == "save" {
        Vec::new()
    } else {
        match s.core.site_defaults().await {
            Ok(saved) => changes(&saved, &params),
            Err(e) => return error_page(&e.to_string()),
        }
    };
    let mut findings = lint_params("site", &params);
    findings.splice(0..0, problems.drain(..));
    let blocking = findings.iter().any(|f| f.0 == "error");
    let status = match (f.intent.as_str(), blocking) {
        ("save", false) => Some(match s.core.put_site_defaults(&params).await {
            Ok(()) => "Saved.".to_string(),
            Err(e) => format!("Not saved: {e}"),
        }),
        ("save", true) => Some("Not saved: fix the errors first.".to_string()),
        _ => None,
    };
    html(
        if blocking {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        pages::params_editor(
            &session,
            &pages::Editor {
                title: "Site defaults",
                action: "/console/site",
                applies: SITE_APPLIES,
                devices: SITE_DEVICES,
                changes: &changed,
                text: &f.params,
                findings: &findings,
                status: status.as_deref(),
            },
        ),
    )
}
