//! The admin REST API (`/api/v1`, bearer token) and `/metrics`. It calls the inventory and the
//! upload store; it never talks to phones.

use crate::auth::constant_time_eq;
use crate::core::Core;
use crate::metrics::Metrics;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use polyprov_model::config::{check_param_name, check_param_value};
use polyprov_model::{Mac, Params, UploadKind};
use polyprov_store::{Assignment, InventoryError};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;

/// The API's paths, by name; each one is described in `openapi.json` (a test checks it).
pub mod paths {
    pub const OPENAPI_JSON: &str = "/api/v1/openapi.json";
    pub const HEALTH: &str = "/api/v1/health";
    pub const DEVICES: &str = "/api/v1/devices";
    pub const DEVICE: &str = "/api/v1/devices/{mac}";
    pub const DEVICE_CONFIG: &str = "/api/v1/devices/{mac}/config";
    pub const DEVICE_UPLOADS: &str = "/api/v1/devices/{mac}/uploads";
    pub const DEVICE_UPLOAD: &str = "/api/v1/devices/{mac}/uploads/{kind}/{version}";
    pub const DEVICE_UPLOAD_KIND: &str = "/api/v1/devices/{mac}/uploads/{kind}";
    pub const PROFILES: &str = "/api/v1/profiles";
    pub const PROFILE: &str = "/api/v1/profiles/{name}";
    pub const SITE: &str = "/api/v1/site";
    pub const DEVICE_RELEASE: &str = "/api/v1/devices/{mac}/release";
    pub const DEVICE_REASSIGN: &str = "/api/v1/devices/{mac}/reassign";
    pub const DEVICE_RESTORE: &str = "/api/v1/devices/{mac}/restore";
    pub const DEVICE_RETIRE: &str = "/api/v1/devices/{mac}/retire";
    pub const DEVICE_HISTORY: &str = "/api/v1/devices/{mac}/history";
    pub const DEVICE_QUARANTINE: &str = "/api/v1/devices/{mac}/quarantine";
    pub const DEVICE_DOCTOR: &str = "/api/v1/devices/{mac}/doctor";
    pub const DEVICE_LOGIN: &str = "/api/v1/devices/{mac}/login";
    pub const ACTIONS: &str = "/api/v1/actions";
    pub const ACTION: &str = "/api/v1/actions/{id}";
}

/// Every path of the API (the OpenAPI document must describe each; a test checks it).
#[cfg(test)]
const ROUTES: &[&str] = &[
    paths::OPENAPI_JSON,
    paths::HEALTH,
    paths::DEVICES,
    paths::DEVICE,
    paths::DEVICE_CONFIG,
    paths::DEVICE_UPLOADS,
    paths::DEVICE_UPLOAD,
    paths::DEVICE_UPLOAD_KIND,
    paths::PROFILES,
    paths::PROFILE,
    paths::SITE,
    paths::DEVICE_RELEASE,
    paths::DEVICE_REASSIGN,
    paths::DEVICE_RESTORE,
    paths::DEVICE_RETIRE,
    paths::DEVICE_HISTORY,
    paths::DEVICE_QUARANTINE,
    paths::DEVICE_DOCTOR,
    paths::DEVICE_LOGIN,
    paths::ACTIONS,
    paths::ACTION,
];

/// The OpenAPI 3.1 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the admin API needs.
pub struct AdminState {
    pub core: Arc<Core>,
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the admin token.
    pub token_hash: [u8; 32],
    /// DHCP options the admin declares (settings), for `doctor`; changed by a reload.
    pub dhcp: std::sync::RwLock<std::collections::BTreeMap<u8, String>>,
    /// Remote actions on phones (resync, reboot).
    pub actions: Arc<crate::actions::Actions>,
    /// Signed-in console browsers.
    pub sessions: crate::console::Sessions,
    /// The console's live activity samples.
    pub activity: Arc<crate::console::Activity>,
}

impl AdminState {
    /// The DHCP options declared now.
    pub fn dhcp(&self) -> std::collections::BTreeMap<u8, String> {
        self.dhcp.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The admin router: `/api/v1/...` behind the bearer token, `/metrics` and the OpenAPI document open.
pub fn router(state: Arc<AdminState>) -> Router {
    let api = Router::new()
        .route(paths::DEVICES, get(list_devices).put(put_devices))
        .route(
            paths::DEVICE,
            get(get_device).put(put_device).delete(delete_device),
        )
        .route(paths::DEVICE_CONFIG, get(device_config))
        .route(paths::DEVICE_UPLOADS, get(list_uploads))
        .route(paths::DEVICE_UPLOAD, get(get_upload))
        .route(paths::DEVICE_UPLOAD_KIND, put(put_upload))
        .route(paths::PROFILES, get(list_profiles))
        .route(
            paths::PROFILE,
            get(get_profile).put(put_profile).delete(delete_profile),
        )
        .route(paths::SITE, get(get_site).put(put_site))
        .route(paths::DEVICE_RELEASE, post(release_device))
        .route(paths::DEVICE_REASSIGN, post(reassign_device))
        .route(paths::DEVICE_RESTORE, post(restore_device))
        .route(paths::DEVICE_RETIRE, post(retire_device))
        .route(paths::DEVICE_HISTORY, get(device_history))
        .route(paths::DEVICE_QUARANTINE, get(device_quarantine))
        .route(paths::DEVICE_DOCTOR, get(device_doctor))
        .route(paths::DEVICE_LOGIN, get(device_login))
        .route(paths::ACTIONS, get(list_actions).post(start_action))
        .route(paths::ACTION, get(get_action))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route(
            paths::OPENAPI_JSON,
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route(paths::HEALTH, get(health))
        .route("/metrics", get(metrics))
        .merge(crate::console::router())
        .merge(api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API path") })
        .with_state(state)
}

/// An API error: a status and `{"error": "..."}`, and for server-side failures the cause, which
/// is logged once, when the response is made (conversions only classify).
pub struct ApiError {
    status: StatusCode,
    message: String,
    cause: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            message: msg.into(),
            cause: None,
        }
    }

    /// A failure of the server's own, with the cause to log.
    fn failure(status: StatusCode, msg: impl Into<String>, cause: impl ToString) -> Self {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(status, msg)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.cause {
            if self.status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!(status = self.status.as_u16(), error = %cause, "admin API request failed for want of a resource");
            } else {
                tracing::error!(status = self.status.as_u16(), error = %cause, "admin API request failed");
            }
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

impl From<crate::core::LifecycleError> for ApiError {
    fn from(e: crate::core::LifecycleError) -> Self {
        match e {
            crate::core::LifecycleError::Inventory(e) => e.into(),
            crate::core::LifecycleError::Storage(e) => {
                ApiError::failure(StatusCode::INTERNAL_SERVER_ERROR, "upload storage error", e)
            }
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::NoSuchProfile(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            InventoryError::ProfileInUse(..) | InventoryError::InvalidTransition { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            InventoryError::NoSuchDevice(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            other if other.is_resource() => ApiError::failure(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the inventory is unavailable, try again: {other}"),
                &other,
            ),
            other => ApiError::failure(StatusCode::INTERNAL_SERVER_ERROR, "inventory error", other),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn require_token(
    State(state): State<Arc<AdminState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
    match given {
        Some(h) if constant_time_eq(&h, &state.token_hash) => next.run(req).await,
        other => {
            if other.is_some() {
                state.core.security_event(
                    "admin_bad_token",
                    peer.ip(),
                    "admin",
                    req.uri().path(),
                    &"not the admin token",
                );
            }
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a valid 'Authorization: Bearer <token>' is required",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// Open (no token): what a load balancer or a monitor asks every few seconds.
async fn health(State(state): State<Arc<AdminState>>) -> Response {
    let h = state.core.health().await;
    let status = if h.ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "status": if h.ok() { "ok" } else { "failing" },
            "inventory": h.inventory,
            "uploads": h.uploads,
        })),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    match state.core.device_counts().await {
        Ok(counts) => {
            let counts: Vec<(String, i64)> = counts
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect();
            state.metrics.set_devices(&counts);
        }
        Err(e) => tracing::warn!(error = %e, "cannot count devices for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

fn parse_mac(s: &str) -> ApiResult<Mac> {
    s.parse().map_err(|e: polyprov_model::MacError| {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    })
}

/// An upload kind from a path (`phone.cfg`, `app.log`, …).
fn parse_kind(s: &str) -> ApiResult<UploadKind> {
    UploadKind::from_suffix(s).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{s:?} is not an upload kind"),
        )
    })
}

/// Names that are XML attribute names, values XML 1.0 can carry: anything else would make the
/// phone's file malformed, and the phone would drop all of it (422).
fn check_params(params: &Params) -> ApiResult<()> {
    for (name, value) in params {
        check_param_name(name)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        check_param_value(name, value)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    }
    Ok(())
}

/// 1-64 letters, digits, `.`, `_`, `-` (the API and the console accept the same names).
pub(crate) fn is_profile_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_profile_name(name: &str) -> ApiResult<()> {
    if is_profile_name(name) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a profile name: use 1-64 letters, digits, '.', '_', '-'"),
        ))
    }
}

/// `?limit=N&after=MAC`: one page, by MAC (the next page starts after the last MAC shown).
/// Without `limit`: every device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<u32>,
    after: Option<String>,
}

async fn list_devices(
    State(s): State<Arc<AdminState>>,
    Query(page): Query<Page>,
) -> ApiResult<Response> {
    let after = page.after.as_deref().map(parse_mac).transpose()?;
    match page.limit {
        Some(limit) => {
            Ok(Json(s.core.devices_page(after, limit.clamp(1, 10_000)).await?).into_response())
        }
        None => Ok(Json(s.core.devices().await?).into_response()),
    }
}

/// One device of a bulk assignment: its MAC and what `PUT /devices/{mac}` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkDevice {
    mac: String,
    profile: Option<String>,
    admin_password: Option<String>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    lines: Vec<Line>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkDoc {
    devices: Vec<BulkDevice>,
}

/// Assigns many devices at once (an import): every document is checked before any is written;
/// then they are written in transactions of a thousand.
async fn put_devices(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(doc): Json<BulkDoc>,
) -> ApiResult<Response> {
    let mut items = Vec::with_capacity(doc.devices.len());
    for d in doc.devices {
        let mac = parse_mac(&d.mac)?;
        let a = DeviceDoc {
            profile: d.profile,
            admin_password: d.admin_password,
            params: d.params,
            lines: d.lines,
        }
        .into_assignment()
        .map_err(|e| ApiError::new(e.status, format!("{mac}: {}", e.message)))?;
        items.push((mac, a));
    }
    let n = s.core.assign_many(&items, &actor(&headers)).await?;
    tracing::info!(devices = n, "devices assigned in bulk");
    Ok(Json(serde_json::json!({ "assigned": n })).into_response())
}

async fn get_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    match s.core.device(mac).await? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device {mac}"),
        )),
    }
}

/// A registration line, the common case of `reg.N.*` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    address: String,
    user: Option<String>,
    password: Option<String>,
    label: Option<String>,
    display_name: Option<String>,
}

/// The document a device is assigned with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceDoc {
    profile: Option<String>,
    admin_password: Option<String>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    lines: Vec<Line>,
}

impl DeviceDoc {
    fn into_assignment(self) -> ApiResult<Assignment> {
        let mut params = self.params;
        for (i, line) in self.lines.into_iter().enumerate() {
            let n = i + 1;
            let mut set = |k: &str, v: Option<String>| {
                if let Some(v) = v {
                    params.insert(format!("reg.{n}.{k}"), v);
                }
            };
            set("address", Some(line.address));
            set("auth.userId", line.user);
            set("auth.password", line.password);
            set("label", line.label);
            set("displayName", line.display_name);
        }
        check_params(&params)?;
        if let Some(p) = &self.profile {
            check_profile_name(p)?;
        }
        if self.admin_password.as_deref() == Some("") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "admin_password must not be empty",
            ));
        }
        if let Some(pw) = &self.admin_password {
            check_param_value("admin_password", pw)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
        }
        Ok(Assignment {
            profile: self.profile,
            admin_password: self.admin_password,
            params,
        })
    }
}

/// Who is acting: the admin token, and the local user the CLI names in `X-Polyprov-Actor`.
fn actor(headers: &HeaderMap) -> String {
    let user = headers
        .get("x-polyprov-actor")
        .and_then(|v| v.to_str().ok())
        .map(|u| {
            u.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect::<String>()
        })
        .filter(|u| !u.is_empty());
    match user {
        Some(u) => format!("admin-token ({u})"),
        None => "admin-token".to_string(),
    }
}

async fn put_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
    Json(doc): Json<DeviceDoc>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let a = doc.into_assignment()?;
    let d = s.core.assign(mac, &a, &actor(&headers)).await?;
    tracing::info!(%mac, profile = d.assignment.profile.as_deref().unwrap_or("-"), "device assigned");
    Ok(Json(d).into_response())
}

async fn delete_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    if s.core.remove(mac, &actor(&headers)).await? {
        tracing::info!(%mac, "device removed from the inventory (its uploads are kept)");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no device {mac}"),
        ))
    }
}

async fn device_config(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    match s.core.device_config(mac).await {
        Ok(Some(g)) => Ok(([(header::CONTENT_TYPE, g.content_type)], g.body).into_response()),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("device {mac} has no assignment"),
        )),
        Err(e) => Err(ApiError::failure(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.to_string(),
            &e,
        )),
    }
}

async fn list_uploads(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let list = s.core.uploads_of(mac).await?;
    Ok(Json(list).into_response())
}

/// Stores a file as the device's upload (an import from another server).
async fn put_upload(
    State(s): State<Arc<AdminState>>,
    Path((mac, kind)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let kind = parse_kind(&kind)?;
    let info = s
        .core
        .store_upload(
            mac,
            kind,
            body.to_vec(),
            &actor(&headers),
            "stored through the admin API",
        )
        .await
        .map_err(|r| {
            ApiError::new(
                StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                r.to_string(),
            )
        })?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn get_upload(
    State(s): State<Arc<AdminState>>,
    Path((mac, kind, version)): Path<(String, String, u64)>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let kind = parse_kind(&kind)?;
    let found = s.core.upload_bytes(mac, kind, version).await?;
    match found {
        Some(bytes) => Ok((
            [(
                header::CONTENT_TYPE,
                crate::core::content_type(kind.suffix()),
            )],
            bytes,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {kind} version {version} for {mac}"),
        )),
    }
}

async fn list_profiles(State(s): State<Arc<AdminState>>) -> ApiResult<Response> {
    Ok(Json(s.core.profiles().await?).into_response())
}

async fn get_profile(
    State(s): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    match s.core.profile(&name).await? {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no profile {name:?}"),
        )),
    }
}

/// The document a profile or the site defaults are set with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsDoc {
    #[serde(default)]
    params: Params,
}

async fn put_profile(
    State(s): State<Arc<AdminState>>,
    Path(name): Path<String>,
    Json(doc): Json<ParamsDoc>,
) -> ApiResult<Response> {
    check_profile_name(&name)?;
    check_params(&doc.params)?;
    Ok(Json(s.core.put_profile(&name, &doc.params).await?).into_response())
}

async fn delete_profile(
    State(s): State<Arc<AdminState>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    if s.core.delete_profile(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no profile {name:?}"),
        ))
    }
}

async fn get_site(State(s): State<Arc<AdminState>>) -> ApiResult<Response> {
    let params = s.core.site_defaults().await?;
    Ok(Json(serde_json::json!({ "params": params })).into_response())
}

async fn put_site(
    State(s): State<Arc<AdminState>>,
    Json(doc): Json<ParamsDoc>,
) -> ApiResult<Response> {
    check_params(&doc.params)?;
    s.core.put_site_defaults(&doc.params).await?;
    Ok(Json(serde_json::json!({ "params": doc.params })).into_response())
}

/// `{"reason": "..."}`, for release and retire.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonDoc {
    #[serde(default)]
    reason: String,
}

async fn start_action(
    State(s): State<Arc<AdminState>>,
    headers: HeaderMap,
    Json(req): Json<crate::actions::JobRequest>,
) -> ApiResult<Response> {
    match s.actions.start(req, &actor(&headers)).await {
        Ok(job) => Ok((StatusCode::ACCEPTED, Json(job)).into_response()),
        Err(crate::actions::ActionError::Invalid(m)) => {
            Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))
        }
        Err(crate::actions::ActionError::Core(e)) => Err(e.into()),
    }
}

async fn list_actions(State(s): State<Arc<AdminState>>) -> Json<Vec<crate::actions::Job>> {
    Json(s.actions.jobs())
}

async fn get_action(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    s.actions
        .job(&id)
        .map(|j| Json(j).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no action job {id}")))
}

async fn release_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ReasonDoc>>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let r = s.core.release(mac, &actor(&headers), &reason).await?;
    Ok(Json(r).into_response())
}

async fn retire_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ReasonDoc>>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    Ok(Json(s.core.retire(mac, &actor(&headers), &reason).await?).into_response())
}

/// A reassignment: the new assignment and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReassignDoc {
    #[serde(default)]
    reason: String,
    #[serde(flatten)]
    device: DeviceDoc,
}

async fn reassign_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
    Json(doc): Json<ReassignDoc>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let a = doc.device.into_assignment()?;
    let (released, device) = s
        .core
        .reassign(mac, &a, &actor(&headers), &doc.reason)
        .await?;
    Ok(Json(serde_json::json!({ "released": released, "device": device })).into_response())
}

/// `{"version": "<quarantine set id>"}`; without it the newest set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreDoc {
    version: Option<String>,
}

async fn restore_device(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
    body: Option<Json<RestoreDoc>>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let version = body.and_then(|b| b.0.version);
    match s.core.restore(mac, version, &actor(&headers)).await? {
        Some((id, files)) => {
            Ok(Json(serde_json::json!({ "restored": id, "files": files })).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no quarantined files for {mac}"),
        )),
    }
}

async fn device_history(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    Ok(Json(s.core.history(mac).await?).into_response())
}

async fn device_quarantine(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let sets = s.core.quarantine_sets(mac).await?;
    Ok(Json(sets).into_response())
}

/// The device's own provisioning login: its user, whether the phone has used it, whether a
/// rotation's previous login still works — never the password.
async fn device_login(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    match s.core.login_state(mac) {
        Some(state) => Ok(Json(state).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "{mac} has no provisioning login of its own (never assigned, or per-device logins are off)"
            ),
        )),
    }
}

async fn device_doctor(
    State(s): State<Arc<AdminState>>,
    Path(mac): Path<String>,
) -> ApiResult<Response> {
    let mac = parse_mac(&mac)?;
    let report = crate::doctor::diagnose(&s.core, &s.dhcp(), mac)
        .await
        .map_err(|e| ApiError::failure(StatusCode::INTERNAL_SERVER_ERROR, "doctor failed", e))?;
    Ok(Json(report).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for r in ROUTES {
            assert!(paths.contains_key(*r), "{r} missing from openapi.json");
        }
        assert_eq!(
            paths.len(),
            ROUTES.len(),
            "openapi.json describes paths the router lacks"
        );
    }
}
