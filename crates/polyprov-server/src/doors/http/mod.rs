//! The phone-facing HTTP door: translates GET/HEAD/PUT into [`Core`] calls and answers back,
//! with entity tags, conditional requests and byte ranges. No provisioning rule lives here.
//! HTTP/1.x itself is read and written by `wire.rs` and `conn.rs`, not by a framework: see
//! there for why.

pub(crate) mod conn;
mod range;
pub mod wire;

use crate::auth::ProvisioningCredentials;
use crate::core::{Answer, Core, Credential, Door, Refusal, Request, UserAgentMemo, kind_label};
use crate::metrics::Metrics;
use crate::tls::{CertIdentity, PeerCertificate};
use base64::Engine;
use bytes::Bytes;
use conn::BodyError;
use range::RangeAnswer;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::AsyncSeekExt;
use wire::{Framing, Head, Method};

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

/// A phone door's answer, before it is written.
pub(crate) struct Reply {
    status: u16,
    /// Fixed values (most of them) are borrowed: a storm's answers allocate little.
    headers: Vec<(&'static str, Cow<'static, str>)>,
    /// The `Content-Length` sent (for HEAD: the length a GET would get).
    length: u64,
    body: ReplyBody,
}

pub(crate) enum ReplyBody {
    Empty,
    Bytes(Bytes),
    /// An open file positioned at the first byte to send, and how many to send.
    File(tokio::fs::File, u64),
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            length: 0,
            body: ReplyBody::Empty,
        }
    }

    /// A short plain-text answer (refusals).
    fn text(status: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        let text: Cow<'static, str> = text.into();
        let body = match text {
            Cow::Borrowed(t) => Bytes::from_static(t.as_bytes()),
            Cow::Owned(t) => Bytes::from(t),
        };
        Reply {
            length: body.len() as u64,
            body: ReplyBody::Bytes(body),
            ..Reply::new(status).header("content-type", "text/plain; charset=utf-8")
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

/// Answers one request: a read goes to [`Core::fetch`], an upload's body is read (only once
/// the core has accepted its path and credentials) and handed to the core. No provisioning rule
/// lives here.
async fn answer<IO>(
    door: &PhoneDoor,
    conn: &mut conn::Conn<IO>,
    head: &Head,
    peer: SocketAddr,
    cert: Option<&PeerCertificate>,
    user_agent_memo: &UserAgentMemo,
) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    // A verified device certificate that names a MAC is the phone's identity; without one
    // (or over plain HTTP) the credentials in `Authorization` are.
    let credential = match cert {
        Some(PeerCertificate(CertIdentity::Device(mac))) => Credential::Device(*mac),
        _ => credential(door, head, &mut conn.shared_login),
    };
    let req = Request {
        door: door.door,
        path: head.path(),
        user_agent: head.user_agent.as_deref(),
        user_agent_memo: Some(user_agent_memo),
        peer: peer.ip(),
        credential,
    };
    // The core counts what it answers; the door counts what it sent, and what the core never
    // sees (a method phones do not use).
    let reply = match head.method {
        Method::Get | Method::Head => match door.core.fetch(&req).await {
            Ok(answer) => {
                let kind = answer.kind();
                let (reply, sent) = send(answer, head).await;
                door.metrics.sent(door.door.as_str(), kind, sent);
                reply
            }
            Err(r) => refusal_reply(&r),
        },
        Method::Put | Method::Post => receive(door, conn, &req, head).await,
        Method::Other(_) => {
            door.metrics
                .request(door.door.as_str(), kind_label(head.path()), 405);
            Reply::text(405, "method not allowed\n").header("allow", "GET, HEAD, PUT")
        }
    };
    if reply.status == 401 {
        if credential == Credential::Invalid {
            // An address that keeps guessing waits longer for each answer.
            let delay = door.core.login_failed(peer.ip());
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        return challenge(door.credentials.as_ref());
    }
    reply
}

/// What the request's `Authorization` proves: Basic or Digest (RFC 7616, MD5) against the
/// shared provisioning credentials, or against a device's own login (its user name is its MAC;
/// the previous login too, while a rotation keeps it valid). A stale Digest nonce counts as no
/// credentials: the 401 that follows carries a fresh one. `shared_login` is the connection's
/// last value proven against the shared credentials (compared in constant time: a proxy may
/// carry several clients' requests on one connection).
fn credential(door: &PhoneDoor, head: &Head, shared_login: &mut Option<Vec<u8>>) -> Credential {
    let raw = match &head.authorization {
        wire::Authorization::Absent => return Credential::Absent,
        wire::Authorization::One(one) => one,
        wire::Authorization::Several => return Credential::Invalid,
    };
    if let Some(proven) = shared_login.as_deref()
        && polyprov_sip::digest::constant_time_eq(proven, raw)
    {
        return Credential::Valid;
    }
    // A header value is visible ASCII (RFC 9110 §5.5); anything else is not a credential.
    let Some(value) = std::str::from_utf8(raw)
        .ok()
        .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
    else {
        return Credential::Invalid;
    };
    let method = head.method.as_str();
    let Some(expected) = door.credentials.as_ref() else {
        return Credential::Valid;
    };
    // Auth schemes are case-insensitive (RFC 9110 §11.1): `basic`, `DIGEST` alike.
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("digest") {
        let request_uri = head.target.as_str();
        let Some(p) = crate::auth::parse_digest(value) else {
            return Credential::Invalid;
        };
        let user = p.get("username").map(String::as_str).unwrap_or_default();
        let now = unix_now();
        let verify = |check: Option<&polyprov_store::LoginCheck>| match check {
            None => expected.verify_digest(&p, method, request_uri, now),
            Some(c) => expected.verify_digest_for(c, &p, method, request_uri, now),
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
    let mut stack = [0u8; 384];
    let decoded = Some(token)
        .filter(|_| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|b64| base64_decoded(b64.trim(), &mut stack));
    let basic = decoded
        .as_deref()
        .and_then(|raw| std::str::from_utf8(raw).ok());
    match basic.and_then(|s| s.split_once(':')) {
        Some((user, password)) => door
            .core
            .own_login(user, |check| crate::auth::basic_for(check, user, password))
            .unwrap_or_else(|| {
                if !expected.verify(user, password) {
                    return Credential::Invalid;
                }
                // A MAC as user name could become a device's own login later: not kept.
                if polyprov_model::Mac::recognise(user).is_none() {
                    *shared_login = Some(raw.clone());
                }
                Credential::Valid
            }),
        // Another scheme: ask again rather than call it wrong.
        None => Credential::Absent,
    }
}

/// `b64` decoded into `stack` when it fits (every request of a boot carries the same Basic
/// credentials: no allocation for them), into a new buffer when it does not.
fn base64_decoded<'a>(b64: &str, stack: &'a mut [u8]) -> Option<Cow<'a, [u8]>> {
    let engine = base64::engine::general_purpose::STANDARD;
    match engine.decode_slice(b64, stack) {
        Ok(n) => Some(Cow::Borrowed(&stack[..n])),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            engine.decode(b64).ok().map(Cow::Owned)
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => None,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A 401 with a Digest and a Basic challenge (or Basic only when no credentials are set).
fn challenge(expected: Option<&ProvisioningCredentials>) -> Reply {
    let mut reply = Reply::text(401, "credentials required\n");
    match expected {
        Some(c) => {
            for ch in c.challenges(unix_now(), false) {
                reply = reply.header("www-authenticate", ch);
            }
        }
        None => reply = reply.header("www-authenticate", "Basic realm=\"polyprov\""),
    }
    reply
}

/// Reads an upload body whole (at most the largest limit, within the body timeout) and hands
/// it to the core. A body that breaks off, is malformed (bad chunk size) or too slow stores
/// nothing.
async fn receive<IO>(
    door: &PhoneDoor,
    conn: &mut conn::Conn<IO>,
    req: &Request<'_>,
    head: &Head,
) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let core: &Core = &door.core;
    // Path, uploadability, SN tag and credentials are checked before the body is read.
    let ticket = match core.begin_upload(req, false) {
        Ok(t) => t,
        Err(r) => return refusal_reply(&r),
    };
    let max = ticket.limit();
    let too_large = |size| Refusal::TooLarge { size, limit: max };
    let body = match head.framing {
        Framing::Length(n) if n > max => Err(too_large(n)),
        framing => {
            if head.expect_continue {
                conn.send_continue().await;
            }
            conn.read_body(framing, max, door.body_timeout)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge => too_large(max + 1),
                    BodyError::Malformed(e) => {
                        Refusal::BadBody(format!("the request body is malformed: {e}"))
                    }
                    BodyError::TimedOut => Refusal::BodyTimeout,
                })
        }
    };
    let result = match body {
        Ok(bytes) => core.finish_upload(req, ticket, bytes).await,
        Err(r) => Err(core.abandon_upload(req, ticket, r)),
    };
    match result {
        Ok(info) if info.version == 0 => Reply::new(204),
        Ok(_) => Reply::new(201),
        Err(r) => refusal_reply(&r),
    }
}

fn refusal_reply(r: &Refusal) -> Reply {
    if *r == Refusal::NotUploadable {
        return Reply::text(405, "this file cannot be uploaded\n").header("allow", "GET, HEAD");
    }
    // AuthRequired/BadCredentials: the caller replaces this with the challenges.
    let text: Cow<'static, str> = match r {
        Refusal::Internal(_) => "server error\n".into(),
        Refusal::Unavailable(_) => "server busy, try again\n".into(),
        // Most of a storm's refusals: files a phone asks for that are not there.
        Refusal::NotFound => "no such file\n".into(),
        other => format!("{other}\n").into(),
    };
    let reply = Reply::text(r.status(), text);
    match r {
        Refusal::Unavailable(_) => reply.header("retry-after", "5"),
        _ => reply,
    }
}

/// The answer to a read, honouring If-None-Match and Range. Returns it and the body bytes it
/// will send.
async fn send(answer: Answer, head: &Head) -> (Reply, u64) {
    let len = answer.len();
    let not_modified = head
        .if_none_match
        .as_ref()
        .is_some_and(|inm| etag_matches(inm, answer.etag()));
    let mut reply = Reply::new(200)
        .header("etag", answer.etag().to_string())
        .header("accept-ranges", "bytes")
        .header("cache-control", "no-cache");
    if not_modified {
        reply.status = 304;
        return (reply, 0);
    }
    let (start, count) = match range::interpret(head.range.as_deref(), len) {
        RangeAnswer::Full => (0, len),
        RangeAnswer::Partial { start, end } => {
            reply.status = 206;
            reply = reply.header("content-range", format!("bytes {start}-{end}/{len}"));
            (start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            reply.status = 416;
            return (reply.header("content-range", format!("bytes */{len}")), 0);
        }
    };
    reply = reply.header("content-type", answer.content_type());
    reply.length = count;
    if head.method == Method::Head {
        return (reply, 0);
    }
    reply.body = match answer {
        Answer::Generated(g) => {
            ReplyBody::Bytes(g.body.slice(start as usize..(start + count) as usize))
        }
        Answer::File(f) => match open_at(&f.path, start).await {
            Ok(file) => ReplyBody::File(file, count),
            Err(e) => {
                // Vanished: 404. Out of descriptors: 503, never 404 (a phone told 404 boots
                // without the file; one told 503 tries again).
                let refusal = Refusal::from_io(&e, &f.path.display().to_string());
                tracing::warn!(file = %f.path.display(), error = %e, "cannot open a file to serve");
                return (refusal_reply(&refusal), 0);
            }
        },
    };
    (reply, count)
}

async fn open_at(path: &std::path::Path, start: u64) -> std::io::Result<tokio::fs::File> {
    let mut f = tokio::fs::File::open(path).await?;
    if start > 0 {
        f.seek(std::io::SeekFrom::Start(start)).await?;
    }
    Ok(f)
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.trim() == "*"
        || if_none_match
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Decoding on the stack (or past it) reads what the allocating decoder reads.
        #[test]
        fn base64_on_the_stack_agrees(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..700),
            junk in "[A-Za-z0-9+/=]{0,40}",
        ) {
            let engine = base64::engine::general_purpose::STANDARD;
            for b64 in [engine.encode(&raw), junk] {
                let mut stack = [0u8; 384];
                proptest::prop_assert_eq!(
                    base64_decoded(&b64, &mut stack).map(Cow::into_owned),
                    engine.decode(&b64).ok()
                );
            }
        }
    }

    /// The texts written out to save an allocation say what the refusal's own message says.
    #[test]
    fn fixed_refusal_texts_match_the_refusals() {
        let r = Refusal::NotFound;
        let ReplyBody::Bytes(body) = refusal_reply(&r).body else {
            panic!("a refusal has a text body");
        };
        assert_eq!(body, format!("{r}\n").as_bytes());
    }
}
