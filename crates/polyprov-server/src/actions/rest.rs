//! Actions over the phone's REST API (UC Software 5.9+ on VVX, 7.2+ on Trio 8500/8800; needs
//! `apps.restapi.enabled="1"`): `POST /api/v1/mgmt/safeReboot` and `/factoryReset` over HTTPS,
//! user `Polycom` with the phone's admin password (Basic). A phone answers
//! `{"Status":"2000"}` when it will do it; `4xxx` codes say why not (4010: the admin password
//! is still the default, which the API refuses).
//!
//! The admin password goes only to a phone that proved who it is: its certificate must chain to
//! `[actions] rest_ca` (Poly's device CA, or the admin's own) and name the device's MAC — the
//! phone is addressed by IP, so the name checked is the MAC, not a host name. Without a CA,
//! `rest_insecure = true` sends it to whatever answers (as third-party bulk tools do), and the
//! result records the certificate's SHA-256 so the admin can check it afterwards.

use super::{ActionKind, Answer};
use crate::settings::ActionSettings;
use polyprov_model::Mac;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The user the phones' REST API takes.
pub const REST_USER: &str = "Polycom";

/// A REST call ready to make.
pub(super) struct Prepared {
    pub target: SocketAddr,
    pub path: &'static str,
    pub password: String,
}

/// The endpoint for an action, or why there is none.
pub(super) fn endpoint(action: ActionKind) -> Result<&'static str, String> {
    match action {
        ActionKind::Reboot => Ok("/api/v1/mgmt/safeReboot"),
        ActionKind::FactoryReset => Ok("/api/v1/mgmt/factoryReset"),
        ActionKind::Resync => {
            Err("the phones' REST API has no resync; a resync goes over SIP (--via sip)".into())
        }
    }
}

/// What the phone's certificate must prove, per call.
pub(super) struct Verifier {
    roots: Option<Vec<rustls::pki_types::TrustAnchor<'static>>>,
    mac: Mac,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The SHA-256 of the certificate the phone presented.
    seen: Mutex<Option<String>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verifier for {}", self.mac)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(hex::encode(Sha256::digest(end_entity.as_ref())));
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("phone certificate: {e}")))?;
        // A device certificate may be marked for client or server use: either will do.
        let chained = [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ]
        .into_iter()
        .any(|usage| {
            cert.verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                roots,
                intermediates,
                now,
                usage,
                None,
                None,
            )
            .is_ok()
        });
        if !chained {
            return Err(rustls::Error::General(
                "the phone's certificate does not chain to rest_ca".into(),
            ));
        }
        match crate::tls::identity_of(end_entity.as_ref()) {
            crate::tls::CertIdentity::Device(m) if m == self.mac => {
                Ok(ServerCertVerified::assertion())
            }
            crate::tls::CertIdentity::Device(m) => Err(rustls::Error::General(format!(
                "the certificate is {m}'s, not {}'s",
                self.mac
            ))),
            crate::tls::CertIdentity::Unnamed(why) => Err(rustls::Error::General(format!(
                "the certificate names no MAC ({why})"
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The trust anchors in `rest_ca`, or `None` when the settings allow an unverified phone;
/// an error when neither is set.
pub(super) fn trust(
    settings: &ActionSettings,
) -> Result<Option<Vec<rustls::pki_types::TrustAnchor<'static>>>, String> {
    let Some(path) = &settings.rest_ca else {
        return if settings.rest_insecure {
            Ok(None)
        } else {
            Err(
                "the phone's REST API needs [actions] rest_ca (the CA of the phones' \
                 certificates, e.g. Poly's device CA) — or rest_insecure = true to send the \
                 admin password to an unverified phone"
                    .into(),
            )
        };
    };
    let pem = std::fs::read(path).map_err(|e| format!("rest_ca {}: {e}", path.display()))?;
    let mut anchors = Vec::new();
    for der in rustls_pemfile_certs(&pem) {
        let a = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| format!("rest_ca {}: {e}", path.display()))?;
        anchors.push(a.to_owned());
    }
    if anchors.is_empty() {
        return Err(format!("rest_ca {}: no certificate in it", path.display()));
    }
    Ok(Some(anchors))
}

/// The certificates in a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// A TLS client configuration that takes only `mac`'s certificate (chained to `roots`; any,
/// when `roots` is `None` and the settings allow it), and the verifier, which remembers the
/// certificate's fingerprint.
pub(super) fn client_config(
    mac: Mac,
    roots: Option<Vec<rustls::pki_types::TrustAnchor<'static>>>,
) -> Result<(Arc<rustls::ClientConfig>, Arc<Verifier>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Verifier {
        roots,
        mac,
        provider: provider.clone(),
        seen: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    Ok((Arc::new(config), verifier))
}

/// Makes the call: HTTPS (the phone's certificate checked as above), Basic `Polycom:<admin
/// password>`, an empty JSON body, at most `timeout` in all.
pub(super) async fn call(
    prepared: &Prepared,
    mac: Mac,
    roots: Option<Vec<rustls::pki_types::TrustAnchor<'static>>>,
    timeout: Duration,
) -> (Answer, Option<String>) {
    let started = Instant::now();
    let (config, verifier) = match client_config(mac, roots) {
        Ok(c) => c,
        Err(e) => {
            return (
                Answer {
                    outcome: "unreachable",
                    code: None,
                    detail: e,
                    transmissions: 0,
                    challenged: false,
                    elapsed_ms: 0,
                    ignored: Vec::new(),
                },
                None,
            );
        }
    };
    let result = tokio::time::timeout(timeout, exchange(prepared, config)).await;
    let fingerprint = verifier
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let answer = |outcome, code, detail: String| Answer {
        outcome,
        code,
        detail,
        transmissions: 1,
        challenged: false,
        elapsed_ms,
        ignored: Vec::new(),
    };
    let a = match result {
        Err(_) => answer(
            "timed_out",
            None,
            format!("no answer within {} s", timeout.as_secs()),
        ),
        Ok(Err(e)) => answer("unreachable", None, e),
        Ok(Ok((http, body))) => {
            let status = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("Status").and_then(|s| s.as_str().map(str::to_string)));
            match (http, status.as_deref()) {
                (200, Some("2000")) => answer("accepted", Some(200), "2000 API executed successfully".into()),
                (401, _) => answer(
                    "unauthorized",
                    Some(401),
                    "the phone refused user Polycom with the admin password polyprov holds for it".into(),
                ),
                (_, Some(code)) => answer("rejected", Some(http), format!("{code} {}", meaning(code))),
                (404, None) => answer(
                    "rejected",
                    Some(404),
                    "404: no REST API here (apps.restapi.enabled=\"1\" and UC Software 5.9+ needed)".into(),
                ),
                (_, None) => answer("rejected", Some(http), format!("HTTP {http} without a Status")),
            }
        }
    };
    (a, fingerprint)
}

/// What a REST API status code means (the vendor's list).
fn meaning(code: &str) -> &'static str {
    match code {
        "2000" => "API executed successfully",
        "4000" => "Invalid input parameters",
        "4001" => "Device busy",
        "4002" => "Line not registered",
        "4003" => "Operation not allowed",
        "4004" => "Operation not supported",
        "4005" => "Line does not exist",
        "4006" => "URLs not configured",
        "4007" => "Call does not exist",
        "4008" => "Configuration export failed",
        "4009" => "Input size limit exceeded",
        "4010" => {
            "Default password not allowed: the API refuses a phone whose admin password is the \
             default; give the device an admin password and let it boot once"
        }
        "5000" => "Failed to process request",
        _ => "unknown status",
    }
}

async fn exchange(
    prepared: &Prepared,
    config: Arc<rustls::ClientConfig>,
) -> Result<(u16, Vec<u8>), String> {
    use base64::Engine as _;
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(prepared.target)
        .await
        .map_err(|e| format!("connecting to {}: {e}", prepared.target))?;
    let name = ServerName::IpAddress(prepared.target.ip().into());
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", prepared.target))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{REST_USER}:{}", prepared.password));
    let req = hyper::Request::post(prepared.path)
        .header(hyper::header::HOST, prepared.target.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Basic {basic}"))
        .header(
            hyper::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes()
        .to_vec();
    Ok((status, body))
}
