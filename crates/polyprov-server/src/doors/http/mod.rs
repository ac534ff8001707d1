//! The phone-facing HTTP door: translates GET/HEAD/PUT into [`Core`] calls and answers back,
//! with entity tags, conditional requests and byte ranges. No provisioning rule lives here.

mod range;

use crate::auth::ProvisioningCredentials;
use crate::core::{Answer, Core, Credential, Door, Refusal, Request, kind_label};
use crate::metrics::Metrics;
use crate::tls::{CertIdentity, PeerCertificate};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use range::RangeAnswer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// What the phone door needs (one for HTTP, one for HTTPS).
pub struct PhoneDoor {
    /// `Http` or `Https`: the label of what it counts.
    pub door: Door,
    pub core: Arc<Core>,
    pub credentials: Option<ProvisioningCredentials>,
    pub metrics: Arc<Metrics>,
    /// How long an upload's whole body may take to arrive.
    pub body_timeout: std::time::Duration,
}

impl PhoneDoor {
    /// The same door with its own fields (to make the HTTPS door from the HTTP one).
    pub fn cloned(&self) -> PhoneDoor {
        PhoneDoor {
            door: self.door,
            core: self.core.clone(),
            credentials: self.credentials.clone(),
            metrics: self.metrics.clone(),
            body_timeout: self.body_timeout,
        }
    }
}

/// The router phones talk to: every path is a file.
pub fn router(door: Arc<PhoneDoor>) -> Router {
    Router::new().fallback(phone_request).with_state(door)
}

async fn phone_request(
    State(door): State<Arc<PhoneDoor>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    cert: Option<axum::Extension<PeerCertificate>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let user_agent = headers
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // A verified device certificate that names a MAC is the phone's identity; without one
    // (or over plain HTTP) the credentials in `Authorization` are.
    let credential = match cert {
        Some(axum::Extension(PeerCertificate(CertIdentity::Device(mac)))) => {
            Credential::Device(mac)
        }
        _ => credential(&door, &headers, &method, &uri),
    };
    let req = Request {
        door: door.door,
        path: uri.path(),
        user_agent: user_agent.as_deref(),
        peer: peer.ip(),
        credential,
    };
    // The core counts what it answers; the door counts what it sent, and what the core never
    // sees (a method phones do not use).
    let response = match method {
        Method::GET | Method::HEAD => match door.core.fetch(&req).await {
            Ok(answer) => {
                let kind = answer.kind();
                let (response, sent) = send(answer, &headers, method == Method::HEAD).await;
                door.metrics.sent(door.door.as_str(), kind, sent);
                response
            }
            Err(r) => refusal_response(&r),
        },
        Method::PUT | Method::POST => receive(&door, &req, &headers, body).await,
        _ => {
            door.metrics
                .request(door.door.as_str(), kind_label(uri.path()), 405);
            (
                StatusCode::METHOD_NOT_ALLOWED,
                [(header::ALLOW, "GET, HEAD, PUT")],
            )
                .into_response()
        }
    };
    if response.status() == StatusCode::UNAUTHORIZED {
        if credential == Credential::Invalid {
            // An address that keeps guessing waits longer for each answer.
            let delay = door.core.login_failed(peer.ip());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        return challenge(door.credentials.as_ref());
    }
    response
}

/// What the request's `Authorization` proves: Basic or Digest (RFC 7616, MD5) against the
/// shared provisioning credentials, or against a device's own login (its user name is its MAC;
/// the previous login too, while a rotation keeps it valid). A stale Digest nonce counts as no
/// credentials: the 401 that follows carries a fresh one.
fn credential(door: &PhoneDoor, headers: &HeaderMap, method: &Method, uri: &Uri) -> Credential {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None, or two: which one would count is a guess an attacker could steer.
        return if headers.contains_key(header::AUTHORIZATION) {
            Credential::Invalid
        } else {
            Credential::Absent
        };
    };
    let Ok(value) = value.to_str() else {
        return Credential::Invalid;
    };
    let Some(expected) = door.credentials.as_ref() else {
        return Credential::Valid;
    };
    // Auth schemes are case-insensitive (RFC 9110 §11.1): `basic`, `DIGEST` alike.
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("digest") {
        let request_uri = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        let Some(p) = crate::auth::parse_digest(value) else {
            return Credential::Invalid;
        };
        let user = p.get("username").map(String::as_str).unwrap_or_default();
        let now = unix_now();
        let verify = |check: Option<&polyprov_store::LoginCheck>| match check {
            None => expected.verify_digest(&p, method.as_str(), request_uri, now),
            Some(c) => expected.verify_digest_for(c, &p, method.as_str(), request_uri, now),
        };
        return door
            .core
            .own_login(user, |check| verify(Some(check)))
            .unwrap_or_else(|| match verify(None) {
                Ok(()) => Credential::Valid,
                Err(crate::auth::DigestError::Stale) => Credential::Absent,
                // A replayed answer is as wrong as a wrong password (one `bad_credentials`
                // security event).
                Err(crate::auth::DigestError::Invalid | crate::auth::DigestError::Replayed) => {
                    Credential::Invalid
                }
            });
    }
    let basic = Some(token)
        .filter(|_| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    match basic.as_deref().and_then(|s| s.split_once(':')) {
        Some((user, password)) => door
            .core
            .own_login(user, |check| crate::auth::basic_for(check, user, password))
            .unwrap_or_else(|| {
                if expected.verify(user, password) {
                    Credential::Valid
                } else {
                    Credential::Invalid
                }
            }),
        // Another scheme: ask again rather than call it wrong.
        None => Credential::Absent,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A 401 with a Digest and a Basic challenge (or Basic only when no credentials are set).
fn challenge(expected: Option<&ProvisioningCredentials>) -> Response {
    let mut r = (StatusCode::UNAUTHORIZED, "credentials required\n").into_response();
    let headers = r.headers_mut();
    match expected {
        Some(c) => {
            for ch in c.challenges(unix_now(), false) {
                if let Ok(v) = HeaderValue::from_str(&ch) {
                    headers.append(header::WWW_AUTHENTICATE, v);
                }
            }
        }
        None => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"polyprov\""),
            );
        }
    }
    r
}

/// Reads an upload body whole (at most the largest limit, within the body timeout) and hands
/// it to the core. A body that breaks off, is malformed (bad chunk size) or too slow stores
/// nothing.
async fn receive(door: &PhoneDoor, req: &Request<'_>, headers: &HeaderMap, body: Body) -> Response {
    let core: &Core = &door.core;
    // Path, uploadability, SN tag and credentials are checked before the body is read.
    let ticket = match core.begin_upload(req, false) {
        Ok(t) => t,
        Err(r) => return refusal_response(&r),
    };
    let max = ticket.limit();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = |size| Refusal::TooLarge { size, limit: max };
    let body = match declared {
        Some(n) if n > max => Err(too_large(n)),
        _ => read_body(body, max, door.body_timeout)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => too_large(max + 1),
                BodyError::Malformed(e) => {
                    Refusal::BadBody(format!("the request body is malformed: {e}"))
                }
                BodyError::TimedOut => Refusal::BodyTimeout,
            }),
    };
    let result = match body {
        Ok(bytes) => core.finish_upload(req, ticket, bytes).await,
        Err(r) => Err(core.abandon_upload(req, ticket, r)),
    };
    match result {
        Ok(info) if info.version == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(r) => refusal_response(&r),
    }
}

enum BodyError {
    TooLarge,
    Malformed(String),
    TimedOut,
}

async fn read_body(
    body: Body,
    max: u64,
    timeout: std::time::Duration,
) -> Result<bytes::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyError::TimedOut),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Malformed(e.to_string())),
    }
}

fn refusal_response(r: &Refusal) -> Response {
    if *r == Refusal::NotUploadable {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "this file cannot be uploaded\n",
        )
            .into_response();
    }
    // AuthRequired/BadCredentials: the caller replaces this with the challenges.
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = match r {
        Refusal::Internal(_) => "server error\n".to_string(),
        Refusal::Unavailable(_) => "server busy, try again\n".to_string(),
        other => format!("{other}\n"),
    };
    if let Refusal::Unavailable(_) = r {
        return (status, [(header::RETRY_AFTER, "5")], text).into_response();
    }
    (status, text).into_response()
}

/// Sends an answer, honouring If-None-Match and Range. Returns the response and body bytes sent.
async fn send(answer: Answer, headers: &HeaderMap, head: bool) -> (Response, u64) {
    let etag = answer.etag().to_string();
    let len = answer.len();
    let mut h = HeaderMap::new();
    insert(&mut h, header::ETAG, &etag);
    insert(&mut h, header::ACCEPT_RANGES, "bytes");
    insert(&mut h, header::CACHE_CONTROL, "no-cache");
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(inm, &etag)
    {
        return ((StatusCode::NOT_MODIFIED, h).into_response(), 0);
    }
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, count) = match range::interpret(range_header, len) {
        RangeAnswer::Full => (StatusCode::OK, 0, len),
        RangeAnswer::Partial { start, end } => {
            insert(
                &mut h,
                header::CONTENT_RANGE,
                &format!("bytes {start}-{end}/{len}"),
            );
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            insert(&mut h, header::CONTENT_RANGE, &format!("bytes */{len}"));
            return ((StatusCode::RANGE_NOT_SATISFIABLE, h).into_response(), 0);
        }
    };
    insert(&mut h, header::CONTENT_TYPE, answer.content_type());
    insert(&mut h, header::CONTENT_LENGTH, &count.to_string());
    if head {
        return ((status, h).into_response(), 0);
    }
    let body = match answer {
        Answer::Generated(g) => Body::from(g.body.slice(start as usize..(start + count) as usize)),
        Answer::File(f) => match open_at(&f.path, start).await {
            Ok(file) => Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
                file.take(count),
                64 * 1024,
            )),
            Err(e) => {
                // Vanished: 404. Out of descriptors: 503, never 404 (a phone told 404 boots
                // without the file; one told 503 tries again).
                let refusal = Refusal::from_io(&e, &f.path.display().to_string());
                tracing::warn!(file = %f.path.display(), error = %e, "cannot open a file to serve");
                return (refusal_response(&refusal), 0);
            }
        },
    };
    ((status, h, body).into_response(), count)
}

async fn open_at(path: &std::path::Path, start: u64) -> std::io::Result<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await?;
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start)).await?;
    }
    Ok(f)
}

fn insert(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}
