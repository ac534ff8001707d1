//! Digest authentication as HTTP (RFC 7616) and SIP (RFC 3261 §22) use it: MD5, with or without
//! `qop=auth`. Parsing is defensive: a malformed header is `None`, never a panic.

use md5::{Digest as _, Md5};
use std::collections::BTreeMap;

/// Hex MD5 of `s`.
pub fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `HA1 = MD5(user:realm:password)`, the only form of the password Digest needs.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    md5_hex(&format!("{user}:{realm}:{password}"))
}

/// The `response` of a Digest answer. With `qop` (`auth`), `nc` and `cnonce` take part
/// (RFC 7616); without, it is the RFC 2069 form that SIP phones still send.
pub fn response(
    ha1: &str,
    nonce: &str,
    qop: Option<(&str, &str)>,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    match qop {
        Some((nc, cnonce)) => md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// Parses the parameters of `Digest k=v, k2="v 2", …` (the scheme in any case); `None` when
/// malformed, when a parameter is given twice, or past 16 parameters.
pub fn parse(value: &str) -> Option<BTreeMap<String, String>> {
    let (scheme, rest) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut rest = rest.trim();
    let mut out = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if key.is_empty() || out.len() > 16 {
            return None;
        }
        if out.insert(key, val).is_some() {
            return None;
        }
        rest = tail
            .trim_start()
            .strip_prefix(',')
            .unwrap_or(tail)
            .trim_start();
    }
    Some(out)
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the challenge is not a well-formed Digest challenge")]
    Malformed,
    #[error("the challenge asks for algorithm {0}; only MD5 is supported")]
    Algorithm(String),
    #[error("the challenge offers qop {0}; only auth (or none) is supported")]
    Qop(String),
}

/// The `Authorization` value answering a `WWW-Authenticate`/`Proxy-Authenticate` Digest
/// challenge for `method` on `uri`, with a fresh client nonce.
pub fn answer(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
) -> Result<String, ChallengeError> {
    let p = parse(challenge).ok_or(ChallengeError::Malformed)?;
    let realm = p.get("realm").ok_or(ChallengeError::Malformed)?;
    let nonce = p.get("nonce").ok_or(ChallengeError::Malformed)?;
    if let Some(a) = p.get("algorithm")
        && !a.eq_ignore_ascii_case("md5")
    {
        return Err(ChallengeError::Algorithm(a.clone()));
    }
    let qop = match p.get("qop") {
        None => None,
        Some(q) if q.split(',').any(|o| o.trim().eq_ignore_ascii_case("auth")) => Some("auth"),
        Some(q) => return Err(ChallengeError::Qop(q.clone())),
    };
    let h1 = ha1(user, realm, password);
    let mut out = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5"
    );
    match qop {
        Some(_) => {
            let cnonce = hex::encode(rand::random::<[u8; 8]>());
            let nc = "00000001";
            let r = response(&h1, nonce, Some((nc, &cnonce)), method, uri);
            out.push_str(&format!(
                ", response=\"{r}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
            ));
        }
        None => {
            let r = response(&h1, nonce, None, method, uri);
            out.push_str(&format!(", response=\"{r}\""));
        }
    }
    if let Some(opaque) = p.get("opaque") {
        out.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Ok(out)
}

/// Whether an `Authorization` answer is right for `ha1` (user and realm already checked by the
/// caller), a nonce the caller issued, `method` and `uri`. Accepts both forms (with and
/// without `qop=auth`).
pub fn verify(params: &BTreeMap<String, String>, ha1: &str, method: &str) -> bool {
    let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    if !matches!(get("algorithm"), "" | "MD5" | "md5") {
        return false;
    }
    let qop = match get("qop") {
        "" => None,
        "auth" => Some((get("nc"), get("cnonce"))),
        _ => return false,
    };
    let expected = response(ha1, get("nonce"), qop, method, get("uri"));
    constant_time_eq(
        expected.as_bytes(),
        get("response").to_ascii_lowercase().as_bytes(),
    )
}

/// Compares without an early exit, so timing does not reveal how much of a secret matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2617_example() {
        // RFC 2617 §3.5: Mufasa / Circle Of Life.
        let h1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = response(
            &h1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
            "GET",
            "/dir/index.html",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn an_answer_verifies_with_and_without_qop() {
        for challenge in [
            r#"Digest realm="PolycomSPIP", nonce="abc", qop="auth""#,
            r#"Digest realm="PolycomSPIP", nonce="abc""#,
        ] {
            let a = answer(challenge, "1001", "pw", "NOTIFY", "sip:1001@10.0.0.5").unwrap();
            let p = parse(&a).unwrap();
            assert_eq!(p["username"], "1001");
            assert!(verify(&p, &ha1("1001", "PolycomSPIP", "pw"), "NOTIFY"));
            assert!(!verify(&p, &ha1("1001", "PolycomSPIP", "other"), "NOTIFY"));
            assert!(!verify(&p, &ha1("1001", "PolycomSPIP", "pw"), "INVITE"));
        }
    }

    #[test]
    fn unsupported_challenges_are_errors() {
        assert_eq!(
            answer(
                r#"Digest realm="r", nonce="n", algorithm=SHA-256"#,
                "u",
                "p",
                "M",
                "u"
            ),
            Err(ChallengeError::Algorithm("SHA-256".into()))
        );
        assert_eq!(
            answer(
                r#"Digest realm="r", nonce="n", qop="auth-int""#,
                "u",
                "p",
                "M",
                "u"
            ),
            Err(ChallengeError::Qop("auth-int".into()))
        );
        assert_eq!(
            answer("Basic realm=\"r\"", "u", "p", "M", "u"),
            Err(ChallengeError::Malformed)
        );
    }

    #[test]
    fn parsing_is_defensive() {
        for bad in [
            "",
            "Digest",
            "Digest a",
            "Digest a=\"unterminated",
            "Digest a=1, a=2",
            "Bearer x=1",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let p = parse(r#"digest Realm="a b", nonce=xyz , qop="auth,auth-int""#).unwrap();
        assert_eq!(
            (p["realm"].as_str(), p["nonce"].as_str(), p["qop"].as_str()),
            ("a b", "xyz", "auth,auth-int")
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,200}") {
            let _ = parse(&s);
            let _ = answer(&s, "u", "p", "NOTIFY", "sip:x");
        }
    }
}
