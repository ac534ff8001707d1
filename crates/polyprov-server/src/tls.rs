//! TLS for the HTTPS door: the server configuration (reloaded without a restart when its files
//! change or on SIGHUP), the phone a verified device certificate names, and the private CA that
//! `polyprov tls init` makes for a lab or a small site.

use crate::settings::{ClientAuth, HttpsSettings};
use anyhow::Context;
use polyprov_model::Mac;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// Where `polyprov tls init` writes, inside the data directory.
pub const TLS_DIR: &str = "tls";
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server-key.pem";

/// The files an HTTPS configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    /// The configured files, or those of `polyprov tls init` under `data`.
    pub fn from_settings(s: &HttpsSettings, data: &Path) -> TlsFiles {
        let dir = data.join(TLS_DIR);
        TlsFiles {
            cert: s.cert.clone().unwrap_or_else(|| dir.join(SERVER_CERT)),
            key: s.key.clone().unwrap_or_else(|| dir.join(SERVER_KEY)),
            client_ca: s.client_ca.clone(),
            client_auth: s.client_auth,
        }
    }

    fn paths(&self) -> Vec<&Path> {
        let mut p = vec![self.cert.as_path(), self.key.as_path()];
        p.extend(self.client_ca.as_deref());
        p
    }

    /// Builds the rustls configuration: TLS 1.2 and 1.3 with rustls's safe defaults (no
    /// TLS 1.0/1.1, no RC4, 3DES or CBC-SHA1 suites), ALPN http/1.1, session resumption.
    pub fn load(&self) -> anyhow::Result<rustls::ServerConfig> {
        let certs = read_certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("reading the key {}", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match (self.client_auth, &self.client_ca) {
            (ClientAuth::Off, _) => builder.with_no_client_auth(),
            (_, None) => anyhow::bail!(
                "client_auth = \"{}\" needs [https] client_ca (the CA that signs the phones' certificates)",
                if self.client_auth == ClientAuth::Required {
                    "required"
                } else {
                    "optional"
                }
            ),
            (auth, Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs(ca)? {
                    roots.add(c).with_context(|| {
                        format!("{}: not a usable CA certificate", ca.display())
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let verifier = if auth == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build()?)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .context("the certificate and key do not match")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
        Ok(config)
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.paths()
            .iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", path.display());
    Ok(certs)
}

/// The running HTTPS configuration. A reload builds a new one and swaps it in: handshakes from
/// then on use it, connections already open keep theirs.
pub struct ServerTls {
    files: TlsFiles,
    current: Mutex<Arc<rustls::ServerConfig>>,
    seen: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl ServerTls {
    /// Loads the configuration; an error here stops the start.
    pub fn load(files: TlsFiles) -> anyhow::Result<ServerTls> {
        let seen = files.stamps();
        let config = files.load()?;
        Ok(ServerTls {
            files,
            current: Mutex::new(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the files again and, if they make a working configuration, uses it from the next
    /// handshake on; otherwise keeps the running one and says why.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamps = self.files.stamps();
        let config = self.files.load()?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        Ok(())
    }

    /// Reloads if a file's time or size changed since the last load. A failed reload is not
    /// tried again until the files change again (a half-copied key is retried once complete).
    fn reload_if_changed(&self) {
        let stamps = self.files.stamps();
        let changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != stamps;
        if changed {
            self.reload_logged("a certificate file changed");
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamps;
        }
    }

    fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => {
                tracing::info!(cert = %self.files.cert.display(), why, "TLS configuration reloaded")
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                why,
                "TLS configuration not reloaded; the running one stays"
            ),
        }
    }

    /// Watches the files every `every` and reloads on SIGHUP, until `stop`.
    pub fn spawn_reloader(self: Arc<Self>, every: std::time::Duration, stop: CancellationToken) {
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(every.max(std::time::Duration::from_secs(1)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let sighup = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let sighup = std::future::pending::<Option<()>>();
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => self.reload_if_changed(),
                    Some(()) = sighup => self.reload_logged("SIGHUP"),
                }
            }
        });
    }
}

/// The verified client certificate of the connection a request came on (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate(pub CertIdentity);

/// What a verified client certificate says about the phone that presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertIdentity {
    /// Exactly one MAC address in its subject CN or subject alternative names.
    Device(Mac),
    /// Verified, but names no MAC (or several different ones): it proves nothing about which
    /// phone this is, and the request falls back to credentials.
    Unnamed(String),
}

/// Reads the MAC a device certificate names. How Poly's factory certificates carry it (CN or
/// SAN, with or without separators) is not documented where we could check, so every form is
/// read: the subject CN, then DNS, URI and e-mail alternative names; any run of exactly twelve
/// hex digits, or six hex pairs joined by `:` or `-`, counts. Two different MACs name nothing.
pub fn identity_of(der: &[u8]) -> CertIdentity {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return CertIdentity::Unnamed("unreadable certificate".into());
    };
    let subject = cert.subject().to_string();
    let mut texts: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) | GeneralName::URI(s) | GeneralName::RFC822Name(s) => {
                    texts.push(s.to_string())
                }
                _ => {}
            }
        }
    }
    let mut found: Vec<Mac> = texts.iter().flat_map(|t| macs_in(t)).collect();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [mac] => CertIdentity::Device(*mac),
        [] => CertIdentity::Unnamed(subject),
        _ => CertIdentity::Unnamed(format!("{subject} (names several MACs)")),
    }
}

/// The MACs written in `text`: twelve hex digits in a row, or six pairs joined by `:`/`-`, not
/// part of a longer run of hex digits.
fn macs_in(text: &str) -> Vec<Mac> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    let mut i = 0;
    while i < b.len() {
        if !hex(i) || (i > 0 && hex(i - 1)) {
            i += 1;
            continue;
        }
        let mut run = i;
        while hex(run) {
            run += 1;
        }
        if run - i == 12 {
            if let Ok(m) = text[i..run].parse() {
                out.push(m);
            }
            i = run;
            continue;
        }
        // Six pairs with one separator kind: 00:04:f2:aa:81:4c.
        if run - i == 2 && i + 17 <= b.len() {
            // Bytes first: the text may hold multi-byte characters, sliced only once the 17
            // bytes are known to be ASCII.
            let cand = &b[i..i + 17];
            let sep = cand[2];
            let shaped = (sep == b':' || sep == b'-')
                && cand.iter().enumerate().all(|(k, c)| {
                    if k % 3 == 2 {
                        *c == sep
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
                && !hex(i + 17);
            if shaped && let Ok(m) = text[i..i + 17].parse() {
                out.push(m);
                i += 17;
                continue;
            }
        }
        i = run;
    }
    out
}

/// What `polyprov tls init` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Initialised {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether an existing CA was kept (a new server certificate from the same CA keeps the
    /// phones' trust).
    pub kept_ca: bool,
    pub names: Vec<String>,
    pub not_after: String,
}

/// Makes (or keeps) a private CA under `DATA/tls/` and issues a server certificate for `names`
/// (host names and IP addresses; `localhost` and `127.0.0.1` when empty). Keys are written
/// 0600, files appear whole (temp file, rename).
pub fn init(data: &Path, names: &[String]) -> anyhow::Result<Initialised> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let dir = data.join(TLS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let names: Vec<String> = if names.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        names.to_vec()
    };
    let (ca_path, ca_key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let kept_ca = ca_path.exists() && ca_key_path.exists();
    let (ca_pem, ca_key) = if kept_ca {
        let pem = std::fs::read_to_string(&ca_path)?;
        let key_pem = std::fs::read_to_string(&ca_key_path)?;
        let key = KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
            .or_else(|_| KeyPair::from_pem(&key_pem))
            .context("reading the CA key")?;
        (pem, key)
    } else {
        // RSA too: a phone verifies the CA's signature on the server certificate.
        let key = rsa_key()?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "polyprov provisioning CA");
        dn.push(DnType::OrganizationName, "polyprov");
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2024, 1, 1);
        p.not_after = rcgen::date_time_ymd(2044, 1, 1);
        let cert = p.self_signed(&key)?;
        write_private(&ca_key_path, key.serialize_pem().as_bytes())?;
        write_file(&ca_path, cert.pem().as_bytes(), 0o644)?;
        (cert.pem(), key)
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key).context("reading the CA")?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    p.distinguished_name = dn;
    p.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = time_now_date();
    p.not_before = now.0;
    // 397 days: what browsers accept for a server certificate; phones do not check, but a
    // short life keeps a leaked key short-lived. Re-run `tls init` to renew (same CA).
    p.not_after = now.1;
    // RSA, not rcgen's default ECDSA: the cipher list Poly configuration templates carry
    // (`sec.TLS.cipherList`, "…:!ECDSA:…") excludes ECDSA suites, so a phone set that way
    // cannot use an ECDSA certificate at all.
    let key = rsa_key()?;
    let cert = p.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (dir.join(SERVER_CERT), dir.join(SERVER_KEY));
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_file(
        &cert_path,
        format!("{}{}", cert.pem(), ca_pem).as_bytes(),
        0o644,
    )?;
    Ok(Initialised {
        dir,
        ca: ca_path,
        cert: cert_path,
        key: key_path,
        kept_ca,
        names,
        not_after: now.2,
    })
}

/// A new 2048-bit RSA key (ring signs with RSA keys but cannot make them).
fn rsa_key() -> anyhow::Result<rcgen::KeyPair> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
        .context("generating an RSA key")?;
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .context("encoding the RSA key")?;
    rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256)
        .context("loading the RSA key")
}

/// Today and 397 days on, as rcgen dates, and the end as text.
fn time_now_date() -> (time::OffsetDateTime, time::OffsetDateTime, String) {
    let now = time::OffsetDateTime::now_utc();
    let end = now + time::Duration::days(397);
    let text = format!(
        "{}-{:02}-{:02}",
        end.year(),
        u8::from(end.month()),
        end.day()
    );
    (now, end, text)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_file(path, bytes, 0o600)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
        o.open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?
    };
    #[cfg(not(unix))]
    let _ = mode;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_read_in_every_written_form_and_only_whole() {
        let m: Mac = "0004f2aa814c".parse().unwrap();
        for text in [
            "0004f2aa814c",
            "0004F2AA814C",
            "Polycom 0004f2aa814c",
            "00:04:f2:aa:81:4c",
            "00-04-F2-AA-81-4C",
            "mac=0004f2aa814c.example",
        ] {
            assert_eq!(macs_in(text), [m], "{text}");
        }
        for text in [
            "0004f2aa814c0",
            "x0004f2aa814",
            "00:04:f2:aa:81",
            "00:04-f2:aa:81:4c",
        ] {
            assert!(macs_in(text).is_empty(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn reading_macs_never_panics(s in "\\PC{0,80}") {
            let _ = macs_in(&s);
        }

        #[test]
        fn reading_a_certificate_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = identity_of(&b);
        }
    }
}
