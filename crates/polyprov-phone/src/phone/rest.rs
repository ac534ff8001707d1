//! The phone's REST API, emulated: HTTPS with the phone's device certificate, user `Polycom`
//! with its current admin password (Basic), so that a reset changes what it accepts.
//!
//! `GET /api/v1/mgmt/device/info`, `POST /api/v1/mgmt/safeRestart`, `safeReboot` and
//! `factoryReset` answer `{"Status":"2000"}` and then act. The API is served only when the
//! phone's configuration sets `apps.restapi.enabled="1"` (else 404), and refuses a phone whose
//! admin password is still the default with status 4010, as the vendor lists it. The HTTP
//! status of a 4010 answer is not documented: 403 here.

use super::PhoneState;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the REST API needs to know of the phone, refreshed after each action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestView {
    pub enabled: bool,
    pub admin_password: String,
    pub mac: String,
    pub model: String,
    pub firmware: String,
}

/// What the phone was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestAction {
    Reboot,
    FactoryReset,
}

/// The admin password phones ship with.
const DEFAULT_ADMIN_PASSWORD: &str = "456";
/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

impl PhoneState {
    /// The REST API's view of the phone now.
    pub fn rest_view(&self) -> RestView {
        let enabled = self
            .effective()
            .get("apps.restapi.enabled")
            .and_then(|r| r.value.clone())
            .is_some_and(|v| v.trim() == "1");
        RestView {
            enabled,
            admin_password: self.admin_password(),
            mac: self.mac.to_string(),
            model: self.ua_model.clone(),
            firmware: self.firmware.clone(),
        }
    }
}

/// The TLS configuration of the phone's web server: its device certificate and key (PEM).
pub fn rest_tls(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("device certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("device key: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// Serves the REST API on `listener` until dropped; each accepted action goes to `actions`.
pub async fn serve_rest(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    view: Arc<Mutex<RestView>>,
    actions: tokio::sync::mpsc::Sender<RestAction>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, view, actions) = (acceptor.clone(), view.clone(), actions.clone());
        tokio::spawn(async move {
            let deadline = std::time::Duration::from_secs(10);
            let _ = tokio::time::timeout(deadline, async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some((method, path, authorization)) = read_request(&mut tls).await else {
                    return;
                };
                let current = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let (status, body, action) = answer(&current, &method, &path, authorization.as_deref());
                let reason = match status {
                    200 => "OK",
                    401 => "Unauthorized",
                    403 => "Forbidden",
                    404 => "Not Found",
                    _ => "Bad Request",
                };
                let auth = if status == 401 {
                    "WWW-Authenticate: Basic realm=\"Polycom\"\r\n"
                } else {
                    ""
                };
                let head = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body.as_bytes()).await;
                let _ = tls.shutdown().await;
                if let Some(a) = action {
                    let _ = actions.send(a).await;
                }
            })
            .await;
        });
    }
}

/// Reads one request: method, path, Authorization (the body, if any, is read and ignored).
async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
) -> Option<(String, String, Option<String>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let mut authorization = None;
    let mut length = 0usize;
    for l in lines {
        let (k, v) = l.split_once(':')?;
        if k.eq_ignore_ascii_case("authorization") {
            authorization = Some(v.trim().to_string());
        } else if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse().ok()?;
        }
    }
    let mut have = buf.len() - (head_end + 4);
    while have < length.min(64 * 1024) {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Some((method, path, authorization))
}

/// The answer to a request, and the action it starts.
fn answer(
    v: &RestView,
    method: &str,
    path: &str,
    authorization: Option<&str>,
) -> (u16, String, Option<RestAction>) {
    if !v.enabled {
        return (404, String::new(), None);
    }
    let status = |s: &str| format!("{{\"Status\":\"{s}\"}}");
    if !authorized(v, authorization) {
        return (401, String::new(), None);
    }
    if v.admin_password == DEFAULT_ADMIN_PASSWORD {
        return (403, status("4010"), None);
    }
    match (method, path) {
        ("GET", "/api/v1/mgmt/device/info") => (
            200,
            serde_json::json!({
                "Status": "2000",
                "data": {"MACAddress": v.mac, "ModelNumber": v.model, "FirmwareRelease": v.firmware}
            })
            .to_string(),
            None,
        ),
        ("POST", "/api/v1/mgmt/safeRestart" | "/api/v1/mgmt/safeReboot") => {
            (200, status("2000"), Some(RestAction::Reboot))
        }
        ("POST", "/api/v1/mgmt/factoryReset") => {
            (200, status("2000"), Some(RestAction::FactoryReset))
        }
        (_, p) if p.starts_with("/api/v1/") => (200, status("4004"), None),
        _ => (404, String::new(), None),
    }
}

/// Basic `Polycom:<admin password>`, compared without an early exit.
fn authorized(v: &RestView, authorization: Option<&str>) -> bool {
    use base64::Engine as _;
    let Some(given) = authorization
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
    else {
        return false;
    };
    let want = format!("Polycom:{}", v.admin_password).into_bytes();
    given.len() == want.len() && given.iter().zip(&want).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn view(pw: &str, enabled: bool) -> RestView {
        RestView {
            enabled,
            admin_password: pw.into(),
            mac: "0004f2aa814c".into(),
            model: "VVX_410".into(),
            firmware: "6.4.3.5018".into(),
        }
    }

    fn basic(pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("Polycom:{pw}"))
        )
    }

    #[test]
    fn the_api_takes_its_admin_password_and_acts() {
        let v = view("S3cret", true);
        let reset = answer(
            &v,
            "POST",
            "/api/v1/mgmt/factoryReset",
            Some(&basic("S3cret")),
        );
        assert_eq!(
            reset,
            (
                200,
                "{\"Status\":\"2000\"}".into(),
                Some(RestAction::FactoryReset)
            )
        );
        assert_eq!(
            answer(&v, "POST", "/api/v1/mgmt/safeReboot", Some(&basic("wrong"))).0,
            401
        );
        assert_eq!(answer(&v, "POST", "/api/v1/mgmt/safeReboot", None).0, 401);
        let info = answer(
            &v,
            "GET",
            "/api/v1/mgmt/device/info",
            Some(&basic("S3cret")),
        );
        assert!(info.1.contains("0004f2aa814c"));
    }

    #[test]
    fn a_default_password_or_a_disabled_api_refuses() {
        let d = view(DEFAULT_ADMIN_PASSWORD, true);
        let r = answer(
            &d,
            "POST",
            "/api/v1/mgmt/factoryReset",
            Some(&basic(DEFAULT_ADMIN_PASSWORD)),
        );
        assert_eq!(
            (r.0, r.1.as_str(), r.2),
            (403, "{\"Status\":\"4010\"}", None)
        );
        let off = view("S3cret", false);
        assert_eq!(
            answer(
                &off,
                "POST",
                "/api/v1/mgmt/factoryReset",
                Some(&basic("S3cret"))
            )
            .0,
            404
        );
    }
}
