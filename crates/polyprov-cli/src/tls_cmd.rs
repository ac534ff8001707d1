//! `polyprov tls`: a private CA for the HTTPS door, and a look at a server as a phone sees it.

use crate::args::TlsCommand;
use crate::client::{CliError, Exit};
use crate::out::outln;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex};

pub(crate) async fn run(cmd: TlsCommand) -> Result<(), CliError> {
    match cmd {
        TlsCommand::Init { data, hosts, json } => init(&data, &hosts, json),
        TlsCommand::Check {
            url,
            ca_file,
            cert,
            key,
            json,
        } => {
            let client = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => None,
            };
            check(&url, ca_file.as_deref(), client, json).await
        }
    }
}

fn init(data: &Path, hosts: &[String], json: bool) -> Result<(), CliError> {
    let done = polyprov_server::tls::init(data, hosts)
        .map_err(|e| CliError::new(Exit::Failed, format!("{e:#}")))?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&done).unwrap_or_default()
        );
        return Ok(());
    }
    let ca = if done.kept_ca { "kept" } else { "new" };
    outln!("CA ({ca})           {}", done.ca.display());
    outln!("server certificate {}", done.cert.display());
    outln!("server key         {} (0600)", done.key.display());
    outln!("names              {}", done.names.join(", "));
    outln!(
        "valid until        {} (run `tls init` again to renew; the CA stays)",
        done.not_after
    );
    outln!();
    outln!(
        "`polyprov serve --https 0.0.0.0:443 --data {}` uses them.",
        data.display()
    );
    outln!("Phones must trust the CA before they can provision over HTTPS:");
    outln!("  1. Serve its PEM text to them once over a path they already trust (HTTP on a");
    outln!("     network you trust, or TFTP/FTP on it) in a configuration parameter:");
    outln!("       device.sec.TLS.customCaCert1      = <the text of ca.pem>");
    outln!("       device.sec.TLS.customCaCert1.set  = 1");
    outln!("     and select it for provisioning in the phone's TLS profile");
    outln!("     (device.sec.TLS.profile.caCertList1; the list's syntax varies by software");
    outln!("     version: see the administrator guide's \"Set TLS Profiles\").");
    outln!(
        "     e.g. polyprov site set device.sec.TLS.customCaCert1=\"$(cat {})\"",
        done.ca.display()
    );
    outln!("  2. Then point them at https://<one of the names above>/ (DHCP option 160, or");
    outln!("     device.prov.serverName with device.prov.serverType = HTTPS).");
    outln!("A phone that has not installed the CA refuses the server: that first boot cannot be");
    outln!("over HTTPS unless the certificate chains to a CA the phone already ships with.");
    Ok(())
}

/// What `tls check` found.
#[derive(Debug, Serialize)]
struct Report {
    url: String,
    protocol: Option<String>,
    cipher: Option<String>,
    chain: Vec<CertInfo>,
    /// Whether the chain verifies against `--ca-file` for the URL's host (absent: not asked).
    verified: Option<Result<(), String>>,
    /// What a Poly phone would refuse the server for.
    problems: Vec<String>,
    /// What some phones might refuse, where the vendor's behaviour is not confirmed.
    notes: Vec<String>,
    client_certificate_requested: bool,
}

#[derive(Debug, Serialize)]
struct CertInfo {
    subject: String,
    issuer: String,
    not_before: String,
    not_after: String,
    days_left: i64,
    names: Vec<String>,
    key: String,
}

/// Records the server's chain and whether it asked for a client certificate, and accepts
/// whatever it is shown: the verdict is computed apart, so a bad chain is reported, not a
/// failed connection.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    schemes: Vec<rustls::SignatureScheme>,
}

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = chain;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _m: &[u8],
        _c: &CertificateDer<'_>,
        _d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.schemes.clone()
    }
}

/// Notes whether the server asked for a client certificate (and sends the one given, if any).
#[derive(Debug)]
struct ClientCert {
    asked: Mutex<bool>,
    inner: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        *self.asked.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.inner.clone()
    }
    fn has_certs(&self) -> bool {
        true
    }
}

async fn check(
    url: &str,
    ca_file: Option<&Path>,
    client: Option<(std::path::PathBuf, std::path::PathBuf)>,
    json: bool,
) -> Result<(), CliError> {
    let usage = |m: String| CliError::new(Exit::Usage, m);
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| usage(format!("{url}: not an https:// URL")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
            h,
            p.parse::<u16>()
                .map_err(|_| usage(format!("{url}: bad port")))?,
        ),
        _ => (authority, 443),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
    });
    let certified = match &client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| usage(format!("{}: {e}", cert.display())))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| usage(format!("{}: {e}", key.display())))?;
            let signer = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| usage(format!("client key: {e}")))?;
            Some(Arc::new(rustls::sign::CertifiedKey::new(certs, signer)))
        }
        None => None,
    };
    let resolver = Arc::new(ClientCert {
        asked: Mutex::new(false),
        inner: certified,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_client_cert_resolver(resolver.clone());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name =
        ServerName::try_from(host.clone()).map_err(|e| usage(format!("{host}: {e}")))?;
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| CliError::new(Exit::Unreachable, format!("{host}:{port}: timed out")))?
    .map_err(|e| CliError::new(Exit::Unreachable, format!("{host}:{port}: {e}")))?;
    let mut report = Report {
        url: url.to_string(),
        protocol: None,
        cipher: None,
        chain: Vec::new(),
        verified: None,
        problems: Vec::new(),
        notes: Vec::new(),
        client_certificate_requested: false,
    };
    let handshake = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connector.connect(server_name.clone(), tcp),
    )
    .await;
    match handshake {
        Ok(Ok(stream)) => {
            let conn = stream.get_ref().1;
            report.protocol = conn.protocol_version().map(|v| format!("{v:?}"));
            report.cipher = conn
                .negotiated_cipher_suite()
                .map(|c| format!("{:?}", c.suite()));
            // Over TLS 1.3 the server's refusal of a client certificate arrives after the
            // handshake: read once to see it.
            let mut stream = stream;
            let _ = tokio::time::timeout(std::time::Duration::from_millis(300), async {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let _ = stream
                    .write_all(
                        b"HEAD /000000000000.cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                let mut b = [0u8; 16];
                if let Err(e) = stream.read(&mut b).await {
                    report
                        .problems
                        .push(format!("the server ended the connection: {e}"));
                }
            })
            .await;
        }
        Ok(Err(e)) => report.problems.push(format!("handshake failed: {e}")),
        Err(_) => report.problems.push("handshake timed out".into()),
    }
    report.client_certificate_requested = *resolver.asked.lock().unwrap_or_else(|p| p.into_inner());
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    report.chain = chain.iter().filter_map(|c| cert_info(c)).collect();
    if let Some(leaf) = report.chain.first() {
        if leaf.days_left < 0 {
            report
                .problems
                .push("the server certificate has expired".into());
        } else if leaf.days_left < 30 {
            report.problems.push(format!(
                "the server certificate expires in {} days",
                leaf.days_left
            ));
        }
        if !leaf.names.iter().any(|n| n.eq_ignore_ascii_case(&host)) {
            report.problems.push(format!(
                "{host} is not among the certificate's names ({}): phones that check names refuse it",
                leaf.names.join(", ")
            ));
        }
        if leaf.key.starts_with("EC") {
            report.notes.push(
                "ECDSA key: which Poly software versions offer ECDSA suites is not confirmed; for old phones bring an RSA certificate ([https] cert/key)".into(),
            );
        }
    }
    if let Some(ca) = ca_file {
        report.verified = Some(verify(&chain, ca, &server_name, provider));
        if let Some(Err(e)) = &report.verified {
            report
                .problems
                .push(format!("does not verify against {}: {e}", ca.display()));
        }
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        outln!("url           {}", report.url);
        outln!(
            "protocol      {}",
            report.protocol.as_deref().unwrap_or("-")
        );
        outln!("cipher        {}", report.cipher.as_deref().unwrap_or("-"));
        outln!(
            "client cert   {}",
            if report.client_certificate_requested {
                "asked for"
            } else {
                "not asked for"
            }
        );
        for (i, c) in report.chain.iter().enumerate() {
            outln!("chain[{i}]      {}", c.subject);
            outln!("  issuer      {}", c.issuer);
            outln!(
                "  valid       {} to {} ({} days left)",
                c.not_before,
                c.not_after,
                c.days_left
            );
            outln!("  names       {}", c.names.join(", "));
            outln!("  key         {}", c.key);
        }
        match &report.verified {
            Some(Ok(())) => outln!(
                "verified      yes, against {}",
                ca_file.map(|p| p.display().to_string()).unwrap_or_default()
            ),
            Some(Err(_)) => outln!("verified      NO"),
            None => outln!("verified      not checked (give --ca-file, the CA the phones trust)"),
        }
        for n in &report.notes {
            outln!("note          {n}");
        }
        if report.problems.is_empty() {
            outln!("a Poly phone  would accept it (once it trusts the CA)");
        } else {
            for p in &report.problems {
                outln!("problem       {p}");
            }
        }
    }
    if report.problems.is_empty() {
        Ok(())
    } else {
        // The problems are printed above (or in the JSON).
        Err(CliError::new(Exit::Failed, String::new()))
    }
}

fn verify(
    chain: &[CertificateDer<'static>],
    ca: &Path,
    name: &ServerName<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", ca.display()))?
    {
        roots.add(c).map_err(|e| e.to_string())?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
    let (leaf, rest) = chain.split_first().ok_or("no certificate was shown")?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        leaf,
        rest,
        name,
        &[],
        UnixTime::now(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

fn cert_info(der: &CertificateDer<'_>) -> Option<CertInfo> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(der).ok()?;
    let names = c
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(d.to_string()),
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => {
                            Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string())
                        }
                        16 => Some(
                            std::net::IpAddr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                        ),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let key = match c.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => format!("RSA {} bits", k.key_size()),
        Ok(x509_parser::public_key::PublicKey::EC(p)) => format!("EC {} bits", p.key_size()),
        Ok(_) => "other".into(),
        Err(_) => "unreadable".into(),
    };
    Some(CertInfo {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        not_before: c.validity().not_before.to_string(),
        not_after: c.validity().not_after.to_string(),
        days_left: (c.validity().not_after.timestamp() - now) / 86_400,
        names,
        key,
    })
}
