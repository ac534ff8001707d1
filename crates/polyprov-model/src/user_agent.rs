//! The HTTP `User-Agent` a Poly phone sends, e.g.
//! `FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 (SN:0004f2aa814c) Type/Application`.
//!
//! It tells the family, model, software version and boot stage (Updater or Application), and with
//! "Tag SN to UA" (`device.prov.tagSerialNo`) the phone's own MAC, which a server can cross-check
//! against the MAC in the requested file name (domain.md §6).

use crate::Mac;
use std::fmt;

/// Longest product, model or version token kept (real ones are under 30 characters).
const MAX_TOKEN_LEN: usize = 64;

/// What a Poly phone says about itself. Phones vary (`FileTransport PolycomVVX-VVX_500-UA/…`,
/// `Polycom/5.5.2.8571 PolycomVVX-VVX_310-UA/5.5.2.8571`, …): whatever could be read is here,
/// the rest is `None`, and `unrecognised` says that something looked like a phone but was not
/// understood. Only the `SN:` tag can make a User-Agent unacceptable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAgent {
    /// `VVX`, `SoundPointIP`, `SoundStationIP`, `Edge`, … (the text after `Polycom`/`Poly`).
    pub family: Option<String>,
    /// The model token, e.g. `VVX_500`, `SPIP_550`, `Edge_E450`.
    pub model: Option<String>,
    /// Software version, e.g. `5.9.7.4477` (a `_<MAC>` suffix some firmware adds is dropped).
    pub version: Option<String>,
    /// The `SN:` tag, when the phone is set to send it.
    pub serial: Option<Mac>,
    /// Which program is asking: the boot-time Updater or the phone application.
    pub stage: Option<Stage>,
    /// It names Poly or the phones' `FileTransport`, but its product token or `Type/` could not
    /// be read: recorded and counted, never a reason to refuse.
    pub unrecognised: bool,
}

/// The program on the phone that makes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The Updater (BootROM on old phones): uploads the boot log, fetches firmware.
    Updater,
    /// The phone application: fetches configuration, uploads overrides and logs.
    Application,
}

impl Stage {
    /// The stage's name, as recorded in the inventory.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Updater => "Updater",
            Stage::Application => "Application",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a User-Agent's `SN:` tag cannot be trusted: the only reason a User-Agent is refused,
/// because the tag is what ties a request to one phone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserAgentError {
    #[error("User-Agent carries {0} SN tags; a phone sends one")]
    SeveralSerialTags(usize),
    #[error("User-Agent has an SN tag that is not '(SN:<12 hex digits>)': {0}")]
    BadSerial(String),
}

impl UserAgent {
    /// Reads a User-Agent.
    ///
    /// `Ok(None)` for a client that neither names Poly nor carries an `SN:` tag (curl, a
    /// browser). Any shape is accepted; an error only for an `SN:` tag that is repeated or does
    /// not parse (`sn:`, `SN=`, a full-width colon, no parentheses, not a MAC).
    pub fn parse(s: &str) -> Result<Option<UserAgent>, UserAgentError> {
        let serial = serial_tag(s)?;
        let mut ua = UserAgent {
            serial,
            ..UserAgent::default()
        };
        let mut names_poly = false;
        for w in s.split_ascii_whitespace() {
            if w.starts_with("Poly") || w.starts_with("FileTransport") {
                names_poly = true;
            }
            if ua.model.is_none()
                && w.contains("-UA/")
                && let Some((family, model, version)) = parse_product(w)
            {
                ua.family = Some(family);
                ua.model = Some(model);
                ua.version = Some(version);
            } else if let Some(t) = w.strip_prefix("Type/") {
                match t {
                    "Application" => ua.stage = Some(Stage::Application),
                    "Updater" => ua.stage = Some(Stage::Updater),
                    _ => ua.unrecognised = true,
                }
            }
        }
        if !names_poly && ua.serial.is_none() {
            return Ok(None);
        }
        ua.unrecognised |= ua.model.is_none();
        Ok(Some(ua))
    }
}

/// `Polycom<family>-<model>-UA/<version>` (or `Poly…`); `None` when the token is not that.
fn parse_product(p: &str) -> Option<(String, String, String)> {
    let rest = p
        .strip_prefix("Polycom")
        .or_else(|| p.strip_prefix("Poly"))?;
    let (head, version) = rest.split_once("-UA/")?;
    let (family, model) = head.split_once('-')?;
    let token_ok = |t: &str, extra: &[u8]| {
        !t.is_empty()
            && t.len() <= MAX_TOKEN_LEN
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || extra.contains(&b))
    };
    let version = strip_mac_suffix(version);
    (token_ok(family, b"-") && token_ok(model, b"-") && token_ok(version, b".-"))
        .then(|| (family.to_string(), model.to_string(), version.to_string()))
}

/// `3.3.5.0247_0004f2f18103` → `3.3.5.0247`: some firmware appends the phone's MAC.
fn strip_mac_suffix(version: &str) -> &str {
    match version.rsplit_once('_') {
        Some((v, mac)) if mac.len() == 12 && mac.bytes().all(|b| b.is_ascii_hexdigit()) => v,
        _ => version,
    }
}

/// The one `SN:` tag, if any. Anything that looks like a tag counts — any case, `:` or `=` or a
/// full-width colon, full-width letters, with or without parentheses — and must be exactly
/// `(SN:<12 hex digits>)`, once.
fn serial_tag(s: &str) -> Result<Option<Mac>, UserAgentError> {
    // Most User-Agents have no `sn` at all: answered without the copies below.
    if s.is_ascii()
        && !s
            .as_bytes()
            .windows(2)
            .any(|w| w.eq_ignore_ascii_case(b"sn"))
    {
        return Ok(None);
    }
    // Full-width forms (U+FF01..U+FF5E) fold to ASCII, so `ＳＮ：` is seen as `SN:`.
    let folded: Vec<char> = s
        .chars()
        .map(|c| match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect();
    let original: Vec<char> = s.chars().collect();
    let mut found = Vec::new();
    for i in 0..folded.len().saturating_sub(2) {
        let starts_word = i == 0 || !folded[i - 1].is_alphanumeric();
        if !starts_word
            || !folded[i].eq_ignore_ascii_case(&'s')
            || !folded[i + 1].eq_ignore_ascii_case(&'n')
        {
            continue;
        }
        let mut j = i + 2;
        while j < folded.len() && folded[j] == ' ' {
            j += 1;
        }
        if j < folded.len() && matches!(folded[j], ':' | '=') {
            found.push(i);
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [i] => {
            let i = *i;
            let tail: String = original[i..].iter().take(16).collect();
            let canonical = i > 0
                && original[i - 1] == '('
                && tail.len() == 16
                && tail.starts_with("SN:")
                && tail.ends_with(')');
            let shown = || original[i.saturating_sub(1)..].iter().take(40).collect();
            if !canonical {
                return Err(UserAgentError::BadSerial(shown()));
            }
            Mac::from_hex12(&tail[3..15])
                .map(Some)
                .map_err(|_| UserAgentError::BadSerial(shown()))
        }
        several => Err(UserAgentError::SeveralSerialTags(several.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ua(s: &str) -> UserAgent {
        UserAgent::parse(s).unwrap().unwrap()
    }

    fn product(u: &UserAgent) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            u.family.as_deref(),
            u.model.as_deref(),
            u.version.as_deref(),
        )
    }

    #[test]
    fn reads_observed_user_agents() {
        let u = ua("FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477 Type/Application");
        assert_eq!(
            product(&u),
            (Some("VVX"), Some("VVX_500"), Some("5.9.7.4477"))
        );
        assert_eq!((u.serial, u.stage), (None, Some(Stage::Application)));
        assert!(!u.unrecognised);

        let u = ua(
            "FileTransport PolycomSoundPointIP-SPIP_550-UA/4.0.15.1047 (SN:0004a11a1a1a) Type/Application",
        );
        assert_eq!(u.model.as_deref(), Some("SPIP_550"));
        assert_eq!(
            u.serial.map(|m| m.to_string()).as_deref(),
            Some("0004a11a1a1a")
        );

        let u = ua("FileTransport PolycomSoundStationIP-SSIP_5000-UA/4.0.3.7562 Type/Updater");
        assert_eq!(
            (u.family.as_deref(), u.stage),
            (Some("SoundStationIP"), Some(Stage::Updater))
        );

        let u = ua("FileTransport PolyEdge-Edge_E450-UA/8.0.3.1234 Type/Application");
        assert_eq!(
            (u.family.as_deref(), u.model.as_deref()),
            (Some("Edge"), Some("Edge_E450"))
        );
    }

    /// Shapes real phones send that the first parser refused (400 for a booting phone).
    #[test]
    fn reads_other_real_shapes() {
        for (s, model, version) in [
            (
                "Polycom/5.5.2.8571 PolycomVVX-VVX_310-UA/5.5.2.8571",
                "VVX_310",
                "5.5.2.8571",
            ),
            (
                "Polycom/5.5.2.8571 PolycomVVX-VVX_500-UA/5.5.2.8571",
                "VVX_500",
                "5.5.2.8571",
            ),
            (
                "Polycom/5.4.1.17597 PolycomRealPresenceTrio-Trio_8800-UA/5.4.1.17597",
                "Trio_8800",
                "5.4.1.17597",
            ),
            (
                "FileTransport PolycomSoundPointIP-SPIP_335-UA/3.3.5.0247_0004f2f18103 Type/Application",
                "SPIP_335",
                "3.3.5.0247",
            ),
        ] {
            let u = ua(s);
            assert_eq!(
                (u.model.as_deref(), u.version.as_deref()),
                (Some(model), Some(version)),
                "{s}"
            );
            assert!(!u.unrecognised, "{s}");
        }
    }

    #[test]
    fn unknown_shapes_are_recorded_not_refused() {
        for s in [
            "FileTransport Type/Application",
            "FileTransport PolycomVVX-UA/5.9 Type/Application",
            "FileTransport PolycomVVX-VVX_500-UA/ Type/Application",
            "FileTransport PolycomVVX-VVX_500-UA/5.9 Type/Flasher",
            "FileTransport PolycomVVX-VVX<500-UA/5.9 Type/Application",
            "Polycom/7.0.0.1234",
        ] {
            let u = ua(s);
            assert!(u.unrecognised, "{s}");
        }
        let long = format!("FileTransport {}", "x".repeat(600));
        assert!(ua(&long).unrecognised);
    }

    #[test]
    fn other_clients_are_not_phones() {
        assert_eq!(UserAgent::parse("curl/8.5.0"), Ok(None));
        assert_eq!(UserAgent::parse(""), Ok(None));
        assert_eq!(UserAgent::parse("Mozilla/5.0 (X11; Linux)"), Ok(None));
    }

    /// The `SN:` tag ties a request to one phone: anything that looks like one must be exactly
    /// one well-formed tag.
    #[test]
    fn serial_tags_that_cannot_be_trusted_are_errors() {
        let base = "FileTransport PolycomVVX-VVX_500-UA/5.9.7.4477";
        for tag in [
            "(SN:0004f2aa9999) (SN:0004f2aa8100)",
            "(SN:0004f2aa8100)(SN:0004f2aa8100)",
            "(sn:0004f2aa8100)",
            "(Sn:0004f2aa8100)",
            "SN:0004f2aa8100",
            "(SN:0004f2aa8100",
            "(SN\u{ff1a}0004f2aa8100)",
            "(\u{ff33}\u{ff2e}:0004f2aa8100)",
            "(SN=0004f2aa8100)",
            "(SN :0004f2aa8100)",
            "(SN:nothex)",
            "(SN:000000000000)",
            "(SN:0004f2aa81000)",
            "sn:x",
        ] {
            let s = format!("{base} {tag} Type/Application");
            assert!(UserAgent::parse(&s).is_err(), "{s}");
        }
        // Without any product token a tag still counts.
        assert!(UserAgent::parse("curl/8 (sn:0004f2aa8100)").is_err());
        let u = ua("curl/8 (SN:0004f2aa8100)");
        assert_eq!(
            u.serial.map(|m| m.to_string()).as_deref(),
            Some("0004f2aa8100")
        );
        // Words that merely contain the letters are not tags.
        assert_eq!(ua(&format!("{base} JSN:1 Type/Application")).serial, None);
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
            prop_assert_eq!(u, UserAgent {
                family: Some(family), model: Some(model), version: Some(version), serial,
                stage: Some(stage), unrecognised: false,
            });
        }

        /// A well-formed User-Agent with a second tag, in any spelling, is refused.
        #[test]
        fn a_second_tag_is_always_refused(
            sn in "[0-9a-f]{12}", other in "[sS][nN][:=][0-9a-f]{0,12}",
        ) {
            let s = format!("FileTransport PolycomVVX-VVX_500-UA/5.9 (SN:{sn}) ({other}) Type/Application");
            prop_assert!(UserAgent::parse(&s).is_err());
        }
    }
}
