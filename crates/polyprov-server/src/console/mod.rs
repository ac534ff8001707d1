//! The web console, served by the admin listener at `/` (nothing on the phones' port): HTML made
//! on the server, one embedded style sheet, no script, no CDN, no build step.
//!
//! Sign-in takes the admin token once and gives a session cookie (`HttpOnly`,
//! `SameSite=Strict`; `Secure` when the request came over HTTPS); every change is a form POST
//! that must carry the session's CSRF token. Everything shown is HTML-escaped (a phone's
//! User-Agent is the phone's to choose). Pages: the fleet (search by any MAC spelling, filter by
//! state, paging by MAC) and a device (its state, what it was last seen doing, its uploads, its
//! audit timeline, and Release with a reason and a confirmation).

mod pages;
mod sessions;

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
        .route("/console/devices/{mac}/action", post(action))
        .route("/console/devices/{mac}/assignment", post(assign))
        .route("/console/actions/{id}", get(job))
        .route("/console/profiles", get(profiles))
        .route("/console/site", get(site).post(save_site))
        .route("/console/profiles/new", get(new_profile))
        .route("/console/profiles/{name}", get(profile).post(save_profile))
        .route("/console/style.css", get(style))
}

const STYLE: &str = include_str!("style.css");

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

/// An HTML page with the console's security headers.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
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
        s.metrics.security_event("console_bad_csrf");
        tracing::warn!(target: "polyprov::security", event = "console_bad_csrf", addr = %peer.ip(), "security event");
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
        s.metrics.security_event("admin_bad_token");
        tracing::warn!(target: "polyprov::security", event = "admin_bad_token", addr = %peer.ip(), path = "/console/signin", "security event");
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
    pub after: String,
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
    let filter = polyprov_store::DeviceFilter {
        state: polyprov_store::DeviceState::from_name(&q.state),
        mac_digits: (!digits.is_empty()).then_some(digits),
        ..Default::default()
    };
    let after = q.after.parse::<Mac>().ok();
    let devices = match s.core.devices_matching(&filter, after, PAGE).await {
        Ok(d) => d,
        Err(e) => return error_page(&e.to_string()),
    };
    let counts = s.core.device_counts().await.unwrap_or_default();
    html(
        StatusCode::OK,
        pages::fleet(
            &session,
            &q,
            &devices,
            &counts,
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

async fn device(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Path(mac): Path<String>,
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
    let doctor = crate::doctor::diagnose(&s.core, &s.dhcp, mac).await.ok();
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
        pages::device(
            &session,
            &device,
            &history,
            &uploads,
            doctor.as_ref(),
            &profiles,
        ),
    )
}

/// A missing CSRF token is an empty one: refused as a wrong one is (403, a security event).
#[derive(Deserialize)]
struct ReleaseForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

async fn release(
    State(s): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(mac): Path<String>,
    Form(f): Form<ReleaseForm>,
) -> Response {
    if let Err(refused) = form_session(&s, &headers, peer, &f.csrf) {
        return *refused;
    }
    let mac = match mac_or_404(&mac) {
        Ok(m) => m,
        Err(page) => return *page,
    };
    if f.confirm != "yes" || f.reason.trim().is_empty() {
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            pages::message(
                "Not released",
                "A release needs a reason and the confirmation box ticked.",
            ),
        );
    }
    let reason: String = f.reason.chars().take(500).collect();
    match s.core.release(mac, "console", reason.trim()).await {
        Ok(_) => Redirect::to(&format!("/console/devices/{mac}")).into_response(),
        Err(e) => html(
            StatusCode::CONFLICT,
            pages::message("Not released", &e.to_string()),
        ),
    }
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

/// Resync or reboot from the device page: a remote action job, then its page.
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
        _ => {
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::message("Unknown action", "Resync or reboot."),
            );
        }
    };
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
        release: false,
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
        profile_page(&session, &name, &text, &findings, affects, None),
    )
}

fn profile_page(
    session: &sessions::Session,
    name: &str,
    text: &str,
    findings: &[ProfileFinding],
    affects: (usize, bool),
    status: Option<&str>,
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
    let ok_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok_name {
        return html(
            StatusCode::BAD_REQUEST,
            pages::message(
                "Not a profile name",
                "Use 1-64 letters, digits, '.', '_', '-'.",
            ),
        );
    }
    let affects = affected(&s, &name).await;
    let (params, mut problems) = parse_params_text(&f.params);
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
            status.as_deref(),
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
    if let Err(refused) = form_session(&s, &headers, peer, &f.csrf) {
        return *refused;
    }
    let mac = match mac_or_404(&mac) {
        Ok(m) => m,
        Err(page) => return *page,
    };
    let (params, problems) = parse_params_text(&f.params);
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
                text: &f.params,
                findings: &findings,
                status: status.as_deref(),
            },
        ),
    )
}
