//! The HTTP `User-Agent` a Poly phone sends, e.g.
//! `FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2aa814c) Type/Application`.
//!
//! It tells the family, model, software version and boot stage (Updater or Application), and with
//! "Tag SN to UA" (`device.prov.tagSerialNo`) the phone's own MAC, which a server can cross-check
//! against the MAC in the requested file name (domain.md §6).

use crate::Mac;
use std::fmt;

/// Longest User-Agent we look at; real ones are under 120 characters.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// What a Poly phone says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// `VVX`, `SoundPointIP`, `SoundStationIP`, `Edge`, … (the text after `Polycom`/`Poly`).
    pub family: String,
    /// The model token, e.g. `VVX_500`, `SPIP_550`, `Edge_E450`.
    pub model: String,
    /// Software version, e.g. `5.9.7.4477`.
    pub version: String,
    /// The `SN:` tag, when the phone is set to send it.
    pub serial: Option<Mac>,
    /// Which program is asking: the boot-time Updater or the phone application.
    pub stage: Option<Stage>,
}

/// The program on the phone that makes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The Updater (BootROM on old phones): uploads the boot log, fetches firmware.
    Updater,
    /// The phone application: fetches configuration, uploads overrides and logs.
    Application,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Updater => "Updater",
            Stage::Application => "Application",
        })
    }
}

/// Why a User-Agent that claims to be a Poly phone cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserAgentError {
    #[error("User-Agent is longer than {MAX_USER_AGENT_LEN} bytes")]
    TooLong,
    #[error("User-Agent has no 'Poly…-<model>-UA/<version>' product token")]
    NoProduct,
    #[error("User-Agent product token {0:?} is malformed")]
    BadProduct(String),
    #[error("User-Agent SN tag is not a MAC address: {0}")]
    BadSerial(String),
    #[error("User-Agent Type/{0:?} is neither Application nor Updater")]
    BadStage(String),
}

impl UserAgent {
    /// Parses a Poly phone's User-Agent.
    ///
    /// Returns `Ok(None)` for a client that does not claim to be a Poly phone (curl, a browser),
    /// and an error for one that claims to be a Poly phone but is malformed.
    pub fn parse(s: &str) -> Result<Option<UserAgent>, UserAgentError> {
        if s.len() > MAX_USER_AGENT_LEN {
            return Err(UserAgentError::TooLong);
        }
        let mut words = s.split_ascii_whitespace();
        let Some(product) = words.clone().find(|w| w.starts_with("Poly")) else {
            if s.starts_with("FileTransport") {
                return Err(UserAgentError::NoProduct);
            }
            return Ok(None);
        };
        let (family, model, version) = parse_product(product)?;
        let mut serial = None;
        let mut stage = None;
        for w in words.by_ref() {
            if let Some(sn) = w.strip_prefix("(SN:") {
                let sn = sn
                    .strip_suffix(')')
                    .ok_or_else(|| UserAgentError::BadSerial(w.to_string()))?;
                serial = Some(
                    Mac::from_hex12(sn).map_err(|e| UserAgentError::BadSerial(e.to_string()))?,
                );
            } else if let Some(t) = w.strip_prefix("Type/") {
                stage = Some(match t {
                    "Application" => Stage::Application,
                    "Updater" => Stage::Updater,
                    other => {
                        return Err(UserAgentError::BadStage(other.chars().take(40).collect()));
                    }
                });
            }
        }
        Ok(Some(UserAgent {
            family,
            model,
            version,
            serial,
            stage,
        }))
    }
}

fn parse_product(p: &str) -> Result<(String, String, String), UserAgentError> {
    let bad = || UserAgentError::BadProduct(p.chars().take(80).collect());
    let rest = p
        .strip_prefix("Polycom")
        .or_else(|| p.strip_prefix("Poly"))
        .ok_or_else(bad)?;
    let (head, version) = rest.split_once("-UA/").ok_or_else(bad)?;
    let (family, model) = head.split_once('-').ok_or_else(bad)?;
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let version_ok = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !token_ok(family) || !token_ok(model) || !version_ok {
        return Err(bad());
    }
    Ok((family.to_string(), model.to_string(), version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ua(s: &str) -> UserAgent {
        UserAgent::parse(s).unwrap().unwrap()
    }

    #[test]
    fn reads_observed_user_agents() {
        let u = ua("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application");
        assert_eq!(
            (u.family.as_str(), u.model.as_str(), u.version.as_str()),
            ("VVX", "VVX_500", "5.9.7.4477")
        );
        assert_eq!((u.serial, u.stage), (None, Some(Stage::Application)));

        let u = ua(
            "FileTransport PolycomSoundPointIP-SPIP_550-UA/4.0.15.1047 (SN:0004a11a1a1a) Type/Application",
        );
        assert_eq!(u.model, "SPIP_550");
        assert_eq!(
            u.serial.map(|m| m.to_string()).as_deref(),
            Some("0004a11a1a1a")
        );

        let u = ua("FileTransport PolycomSoundStationIP-SSIP_5000-UA/4.0.3.7562 Type/Updater");
        assert_eq!(
            (u.family.as_str(), u.stage),
            ("SoundStationIP", Some(Stage::Updater))
        );

        let u = ua("FileTransport PolyEdge-Edge_E450-UA/8.0.3.1234 Type/Application");
        assert_eq!((u.family.as_str(), u.model.as_str()), ("Edge", "Edge_E450"));
    }

    #[test]
    fn other_clients_are_not_phones() {
        assert_eq!(UserAgent::parse("curl/8.5.0"), Ok(None));
        assert_eq!(UserAgent::parse(""), Ok(None));
    }

    #[test]
    fn malformed_phone_user_agents_are_errors() {
        for s in [
            "FileTransport Type/Application",
            "FileTransport PolycomVVX-UA/5.9 Type/Application",
            "FileTransport PolycomVVX-VVX_500-UA/ Type/Application",
            "FileTransport PolycomVVX-VVX_500-UA/5.9 (SN:nothex) Type/Application",
            "FileTransport PolycomVVX-VVX_500-UA/5.9 (SN:0004f2aa814c Type/Application",
            "FileTransport PolycomVVX-VVX_500-UA/5.9 Type/Flasher",
            "FileTransport PolycomVVX-VVX<500-UA/5.9 Type/Application",
        ] {
            assert!(UserAgent::parse(s).is_err(), "{s}");
        }
        assert_eq!(
            UserAgent::parse(&"x".repeat(600)),
            Err(UserAgentError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = UserAgent::parse(&s);
        }

        #[test]
        fn generated_user_agents_parse_back(
            family in "[A-Za-z]{1,12}", model in "[A-Za-z0-9_]{1,12}",
            version in "[0-9]{1,2}(\\.[0-9]{1,4}){1,3}", sn in proptest::option::of(any::<[u8; 6]>()),
            updater in any::<bool>(),
        ) {
            let serial = sn.filter(|b| *b != [0; 6]).map(Mac::from_bytes);
            let stage = if updater { Stage::Updater } else { Stage::Application };
            let tag = serial.map(|m| format!(" (SN:{m})")).unwrap_or_default();
            let s = format!("FileTransport Polycom{family}-{model}-UA/{version}{tag} Type/{stage}");
            let u = UserAgent::parse(&s).unwrap().unwrap();
            prop_assert_eq!(u, UserAgent { family, model, version, serial, stage: Some(stage) });
        }
    }
}
