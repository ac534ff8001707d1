//! Secrets: the provisioning credentials phones present (HTTP Basic or Digest) and the admin
//! API's bearer token.

use polyprov_store::LoginCheck;
use sha2::Sha256;
use std::collections::BTreeMap;

/// The realm phones see in the challenge.
pub const REALM: &str = "polyprov";
/// How long a Digest nonce stays valid.
const NONCE_SECONDS: u64 = 300;

/// Why a Digest answer is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// Signed by us and correct but too old: answer with a fresh challenge (`stale=true`).
    Stale,
    /// Wrong user, realm, URI, password, or not our nonce: wrong credentials.
    Invalid,
    /// A correct answer seen before (the same nonce, cnonce and a count not above the last
    /// one): a captured request sent again.
    Replayed,
}

/// Most (nonce, cnonce) pairs remembered at once; past it, after dropping expired ones, a new
/// pair is asked to authenticate again with a fresh nonce (never let through unchecked).
const MAX_NONCE_USES: usize = 65_536;

/// The highest nonce count accepted for each (nonce, cnonce) still within its lifetime, shared
/// by every door that holds a clone of the credentials.
#[derive(Default)]
struct NonceUses {
    seen: std::collections::HashMap<(String, String), (u32, u64)>,
}

impl NonceUses {
    /// Records `nc` for the pair; `Err` when it is not above the last one accepted.
    fn record(
        &mut self,
        nonce: &str,
        cnonce: &str,
        nc: u32,
        issued: u64,
        now: u64,
    ) -> Result<(), DigestError> {
        if let Some((last, _)) = self.seen.get_mut(&(nonce.to_string(), cnonce.to_string())) {
            if nc <= *last {
                return Err(DigestError::Replayed);
            }
            *last = nc;
            return Ok(());
        }
        if self.seen.len() >= MAX_NONCE_USES {
            self.seen
                .retain(|_, (_, at)| now.saturating_sub(*at) <= NONCE_SECONDS);
            if self.seen.len() >= MAX_NONCE_USES {
                return Err(DigestError::Stale);
            }
        }
        self.seen
            .insert((nonce.to_string(), cnonce.to_string()), (nc, issued));
        Ok(())
    }
}

/// The user and password phones must present for per-device files and uploads.
#[derive(Clone)]
pub struct ProvisioningCredentials {
    user: String,
    password_hash: [u8; 32],
    /// MD5(user:realm:password), the only form of the password Digest needs.
    ha1: String,
    /// Signs nonces, so that only ours are accepted.
    nonce_key: [u8; 32],
    /// Nonce counts seen, against replays.
    uses: std::sync::Arc<std::sync::Mutex<NonceUses>>,
}

use polyprov_sip::digest::md5_hex;

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = <Sha256 as sha2::Digest>::new();
    for p in parts {
        sha2::Digest::update(&mut h, p);
    }
    sha2::Digest::finalize(h).into()
}

impl ProvisioningCredentials {
    /// Credentials from a user name and password.
    pub fn new(user: &str, password: &str) -> Self {
        ProvisioningCredentials {
            user: user.to_string(),
            password_hash: sha256(&[password.as_bytes()]),
            ha1: md5_hex(&format!("{user}:{REALM}:{password}")),
            nonce_key: rand::random(),
            uses: Default::default(),
        }
    }

    /// The shared login, as a device login is checked.
    fn check(&self) -> LoginCheck {
        LoginCheck {
            user: self.user.clone(),
            ha1: self.ha1.clone(),
            password_sha256: hex::encode(self.password_hash),
        }
    }

    /// Whether `user`/`password` (HTTP Basic) are these credentials, in constant time.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let given = sha256(&[password.as_bytes()]);
        constant_time_eq(&given, &self.password_hash) & (user == self.user)
    }

    /// A fresh Digest nonce: the time and a signature over it.
    pub fn nonce(&self, now: u64) -> String {
        let sig = sha256(&[&self.nonce_key, &now.to_be_bytes()]);
        format!("{now:x}-{}", hex::encode(&sig[..12]))
    }

    /// When a nonce was issued, if it is ours and not older than five minutes.
    fn nonce_issued(&self, nonce: &str, now: u64) -> Option<u64> {
        let (ts, sig) = nonce.split_once('-')?;
        let ts = u64::from_str_radix(ts, 16).ok()?;
        let want = sha256(&[&self.nonce_key, &ts.to_be_bytes()]);
        (constant_time_eq(hex::encode(&want[..12]).as_bytes(), sig.as_bytes())
            && ts <= now
            && now - ts <= NONCE_SECONDS)
            .then_some(ts)
    }

    /// Checks an `Authorization: Digest …` answer (RFC 7616 with MD5 and `qop=auth`, the only
    /// quality of protection offered: the RFC 2069 form without `qop`, `cnonce` and `nc` is
    /// refused) for a request of `method` on `request_uri`. A stale nonce is
    /// [`DigestError::Stale`]: the client is asked again. Each (nonce, cnonce) must count up
    /// (`nc`), so a captured answer cannot be sent again within the nonce's lifetime.
    pub fn verify_digest(
        &self,
        params: &BTreeMap<String, String>,
        method: &str,
        request_uri: &str,
        now: u64,
    ) -> Result<(), DigestError> {
        self.verify_digest_for(&self.check(), params, method, request_uri, now)
    }

    /// [`Self::verify_digest`] against another login (a device's own), with the same nonces
    /// and replay memory.
    pub fn verify_digest_for(
        &self,
        login: &LoginCheck,
        params: &BTreeMap<String, String>,
        method: &str,
        request_uri: &str,
        now: u64,
    ) -> Result<(), DigestError> {
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
        if get("username") != login.user || get("realm") != REALM || get("uri") != request_uri {
            return Err(DigestError::Invalid);
        }
        if !matches!(get("algorithm"), "" | "MD5" | "md5") {
            return Err(DigestError::Invalid);
        }
        let nc_ok = get("nc").len() == 8 && get("nc").bytes().all(|b| b.is_ascii_hexdigit());
        if get("qop") != "auth" || get("cnonce").is_empty() || !nc_ok {
            return Err(DigestError::Invalid);
        }
        let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
        let expected = md5_hex(&format!(
            "{}:{}:{}:{}:auth:{ha2}",
            login.ha1,
            get("nonce"),
            get("nc"),
            get("cnonce")
        ));
        if !constant_time_eq(
            expected.as_bytes(),
            get("response").to_ascii_lowercase().as_bytes(),
        ) {
            return Err(DigestError::Invalid);
        }
        let Some(issued) = self.nonce_issued(get("nonce"), now) else {
            return Err(DigestError::Stale);
        };
        let nc = u32::from_str_radix(get("nc"), 16).map_err(|_| DigestError::Invalid)?;
        self.uses.lock().unwrap_or_else(|p| p.into_inner()).record(
            get("nonce"),
            get("cnonce"),
            nc,
            issued,
            now,
        )
    }

    /// The challenges for a 401: Digest first (phones and curl prefer it), then Basic.
    pub fn challenges(&self, now: u64, stale: bool) -> [String; 2] {
        [
            format!(
                "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{}\"{}",
                self.nonce(now),
                if stale { ", stale=true" } else { "" }
            ),
            format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
        ]
    }
}

/// Parses the parameters of `Digest k=v, k2="v 2", …` (shared with SIP: `polyprov-sip`).
pub use polyprov_sip::digest::parse as parse_digest;

/// What checks a login made of `user` and `password`: the Digest HA1 for our realm and a
/// SHA-256 of the password for Basic.
pub fn login_check(user: &str, password: &str) -> LoginCheck {
    LoginCheck {
        user: user.to_string(),
        ha1: md5_hex(&format!("{user}:{REALM}:{password}")),
        password_sha256: hex::encode(sha256(&[password.as_bytes()])),
    }
}

/// Whether `user`/`password` (HTTP Basic, an FTP login) match `login`, in constant time.
pub fn verify_basic_for(login: &LoginCheck, user: &str, password: &str) -> bool {
    let given = hex::encode(sha256(&[password.as_bytes()]));
    constant_time_eq(given.as_bytes(), login.password_sha256.as_bytes()) & (user == login.user)
}

/// [`verify_basic_for`] in the form [`crate::core::Core::own_login`] takes.
pub fn basic_for(login: &LoginCheck, user: &str, password: &str) -> Result<(), DigestError> {
    if verify_basic_for(login, user, password) {
        Ok(())
    } else {
        Err(DigestError::Invalid)
    }
}

/// Compares without an early exit (shared with SIP: `polyprov-sip`).
pub use polyprov_sip::digest::constant_time_eq;

/// A new random secret: 32 lower-case hex digits (128 bits).
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_pair() {
        let c = ProvisioningCredentials::new("PlcmSpIp", "pw");
        assert!(c.verify("PlcmSpIp", "pw"));
        assert!(!c.verify("PlcmSpIp", "pw2"));
        assert!(!c.verify("other", "pw"));
        assert_ne!(new_secret(), new_secret());
        assert_eq!(new_secret().len(), 32);
    }

    #[test]
    fn digest_matches_the_rfc_2617_example_computation() {
        // RFC 2617 §3.5's response, with our realm: computed independently of verify_digest.
        let c = ProvisioningCredentials::new("Mufasa", "Circle Of Life");
        let now = 1_000_000;
        let nonce = c.nonce(now);
        let ha1 = md5_hex(&format!("Mufasa:{REALM}:Circle Of Life"));
        let ha2 = md5_hex("GET:/dir/index.html");
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
        let header = format!(
            "Digest username=\"Mufasa\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\", algorithm=MD5"
        );
        let p = parse_digest(&header).unwrap();
        assert_eq!(
            c.verify_digest(&p, "GET", "/dir/index.html", now + 10),
            Ok(())
        );
        assert_eq!(
            c.verify_digest(&p, "PUT", "/dir/index.html", now + 10),
            Err(DigestError::Invalid),
            "method is signed"
        );
        assert_eq!(
            c.verify_digest(&p, "GET", "/other", now + 10),
            Err(DigestError::Invalid),
            "uri must be the request's"
        );
        assert_eq!(
            c.verify_digest(&p, "GET", "/dir/index.html", now + 400),
            Err(DigestError::Stale),
            "stale"
        );
        let other = ProvisioningCredentials::new("Mufasa", "Circle Of Life");
        assert_eq!(
            other.verify_digest(&p, "GET", "/dir/index.html", now + 10),
            Err(DigestError::Stale),
            "not our nonce"
        );
        // The MD5 itself: RFC 2617's published HA1 for its realm.
        assert_eq!(
            md5_hex("Mufasa:testrealm@host.com:Circle Of Life"),
            "939e7578ed9e3c518a452acee763bce9"
        );
    }

    /// A captured answer sent again is refused; the same client counting up is not.
    #[test]
    fn a_digest_answer_is_accepted_once_per_count() {
        let c = ProvisioningCredentials::new("u", "p");
        let now = 5_000;
        let nonce = c.nonce(now);
        let answer = |nc: &str, cnonce: &str| {
            let ha1 = md5_hex(&format!("u:{REALM}:p"));
            let ha2 = md5_hex("GET:/f.cfg");
            let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            parse_digest(&format!(
                "Digest username=\"u\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/f.cfg\", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{response}\""
            ))
            .unwrap()
        };
        let first = answer("00000001", "abc");
        assert_eq!(c.verify_digest(&first, "GET", "/f.cfg", now), Ok(()));
        assert_eq!(
            c.verify_digest(&first, "GET", "/f.cfg", now + 1),
            Err(DigestError::Replayed)
        );
        // A clone (the HTTPS door's) shares what was seen.
        assert_eq!(
            c.clone().verify_digest(&first, "GET", "/f.cfg", now + 1),
            Err(DigestError::Replayed)
        );
        assert_eq!(
            c.verify_digest(&answer("00000002", "abc"), "GET", "/f.cfg", now + 2),
            Ok(())
        );
        assert_eq!(
            c.verify_digest(&answer("00000002", "abc"), "GET", "/f.cfg", now + 2),
            Err(DigestError::Replayed)
        );
        assert_eq!(
            c.verify_digest(&answer("00000001", "other"), "GET", "/f.cfg", now + 3),
            Ok(())
        );
    }

    /// Only `qop=auth` with a client nonce and a count: the RFC 2069 form (no `qop`) lets a
    /// captured response be replayed for as long as its nonce lives, and is not what we offer.
    #[test]
    fn digest_without_qop_cnonce_or_nc_is_refused() {
        let c = ProvisioningCredentials::new("PlcmSpIp", "pw");
        let now = 1_000_000;
        let nonce = c.nonce(now);
        let ha1 = md5_hex(&format!("PlcmSpIp:{REALM}:pw"));
        let ha2 = md5_hex("GET:/a.cfg");
        let rfc2069 = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        let header = format!(
            "Digest username=\"PlcmSpIp\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/a.cfg\", response=\"{rfc2069}\""
        );
        let p = parse_digest(&header).unwrap();
        assert_eq!(
            c.verify_digest(&p, "GET", "/a.cfg", now),
            Err(DigestError::Invalid)
        );
        for (nc, cnonce) in [("00000001", ""), ("1", "abc"), ("0000000g", "abc")] {
            let r = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            let header = format!(
                "digest username=\"PlcmSpIp\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/a.cfg\", qop=auth, nc={nc}, cnonce=\"{cnonce}\", response=\"{r}\""
            );
            let p = parse_digest(&header).unwrap();
            assert_eq!(
                c.verify_digest(&p, "GET", "/a.cfg", now),
                Err(DigestError::Invalid),
                "{nc} {cnonce:?}"
            );
        }
        // The same with a proper count and client nonce, the scheme in lower case, passes.
        let r = md5_hex(&format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
        let header = format!(
            "digest username=\"PlcmSpIp\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"/a.cfg\", qop=auth, nc=00000001, cnonce=\"abc\", response=\"{r}\""
        );
        assert_eq!(
            c.verify_digest(&parse_digest(&header).unwrap(), "GET", "/a.cfg", now),
            Ok(())
        );
    }

    #[test]
    fn digest_headers_parse_defensively() {
        assert!(parse_digest("Digest a=1, a=2").is_none());
        assert!(parse_digest("Basic abc").is_none());
        assert!(parse_digest("Digest username=\"unterminated").is_none());
        let p = parse_digest("Digest a=1, b=\"x, y\",c=3").unwrap();
        assert_eq!(
            (p["a"].as_str(), p["b"].as_str(), p["c"].as_str()),
            ("1", "x, y", "3")
        );
    }
}
