//! Ethernet addresses as phones and admins write them.
//!
//! A Poly phone names its files after its MAC in lower-case hex (`0004f2aa814c.cfg`), labels and
//! admins write it with dashes, colons or Cisco-style dots. [`Mac`] accepts all of those and keeps
//! one canonical form so that every lookup in polyprov agrees.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet address. `Display` gives the canonical 12 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

/// Why a string is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("a MAC address has 12 hex digits, {0:?} has {1}")]
    WrongLength(String, usize),
    #[error("{0:?} is not a MAC address: {1:?} is not a hex digit")]
    NotHex(String, char),
    #[error(
        "{0:?} is not a MAC address: separators must be all ':' or all '-' between byte pairs, or '.' between groups of four"
    )]
    BadSeparators(String),
    #[error("000000000000 is the shared master file's name, not a phone's MAC address")]
    AllZero,
}

impl Mac {
    /// The address from its six bytes.
    pub const fn from_bytes(bytes: [u8; 6]) -> Self {
        Mac(bytes)
    }

    /// The six bytes.
    pub const fn bytes(&self) -> [u8; 6] {
        self.0
    }

    /// Parses exactly 12 hex digits, either case, nothing else (the form used in file names).
    /// The all-zero address is rejected: `000000000000` names the shared master file.
    pub fn from_hex12(s: &str) -> Result<Self, MacError> {
        Mac::hex12(s).ok_or_else(|| hex12_error(s))
    }

    /// [`Mac::from_hex12`] without the reason: whether a name is a MAC, asked on every phone
    /// request, allocates nothing.
    pub fn hex12(s: &str) -> Option<Self> {
        let b: &[u8; 12] = s.as_bytes().try_into().ok()?;
        let mut out = [0u8; 6];
        for (byte, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        (out != [0; 6]).then_some(Mac(out))
    }

    /// `str::parse` without the reason (any accepted form; see [`FromStr`]), allocating
    /// nothing: for asking whether a login name or a folder is a MAC.
    pub fn recognise(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() == 12 {
            return Mac::hex12(s);
        }
        let b = s.as_bytes();
        if !grouped(b) {
            return None;
        }
        let mut digits = [0u8; 12];
        let mut n = 0;
        for &c in b.iter().filter(|c| !b":-.".contains(c)) {
            *digits.get_mut(n)? = c;
            n += 1;
        }
        Mac::hex12(std::str::from_utf8(&digits[..n]).ok()?)
    }

    /// `00-04-F2-AA-81-4C`, the form printed on phone labels.
    pub fn dashed_upper(&self) -> String {
        self.join('-', true)
    }

    /// `00:04:f2:aa:81:4c`, the form most network tools print.
    pub fn colon_lower(&self) -> String {
        self.join(':', false)
    }

    fn join(&self, sep: char, upper: bool) -> String {
        let mut s = String::with_capacity(17);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(sep);
            }
            if upper {
                s.push_str(&format!("{b:02X}"));
            } else {
                s.push_str(&format!("{b:02x}"));
            }
        }
        s
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Byte pairs separated by all `:` or all `-`, or groups of four separated by `.`.
fn grouped(b: &[u8]) -> bool {
    match b.len() {
        17 => {
            let sep = b[2];
            (sep == b':' || sep == b'-') && (0..5).all(|i| b[2 + 3 * i] == sep)
        }
        14 => b[4] == b'.' && b[9] == b'.',
        _ => false,
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Why `s` is not 12 hex digits naming a phone (built only once it is known not to be).
fn hex12_error(s: &str) -> MacError {
    if s.len() != 12 {
        return MacError::WrongLength(truncate(s), s.chars().count());
    }
    match s.chars().find(|c| !c.is_ascii_hexdigit()) {
        Some(bad) => MacError::NotHex(truncate(s), bad),
        None => MacError::AllZero,
    }
}

impl FromStr for Mac {
    type Err = MacError;

    /// Accepts `0004f2aa814c`, `00-04-F2-AA-81-4C`, `00:04:f2:aa:81:4c`, `0004.f2aa.814c`, any case.
    fn from_str(s: &str) -> Result<Self, MacError> {
        if let Some(mac) = Mac::recognise(s) {
            return Ok(mac);
        }
        // Not a MAC: say why.
        let s = s.trim();
        if s.len() == 12 {
            return Err(hex12_error(s));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !c.is_ascii_hexdigit() && !":-.".contains(*c))
        {
            return Err(MacError::NotHex(truncate(s), bad));
        }
        let digits = s.chars().filter(|c| c.is_ascii_hexdigit()).count();
        if digits != 12 {
            return Err(MacError::WrongLength(truncate(s), digits));
        }
        if grouped(s.as_bytes()) {
            return Err(MacError::AllZero);
        }
        Err(MacError::BadSeparators(truncate(s)))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One write of 12 digits: a phone's files are named after it on every request.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 12];
        for (pair, b) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0xf)];
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({self})")
    }
}

impl serde::Serialize for Mac {
    /// As the canonical 12 lower-case hex digits.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Mac {
    /// From any form [`Mac::from_str`] accepts.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_every_written_form() {
        let want = "0004f2aa814c";
        for s in [
            "0004f2aa814c",
            "0004F2AA814C",
            "00-04-F2-AA-81-4C",
            "00:04:f2:aa:81:4c",
            "0004.f2aa.814c",
            " 00:04:F2:aa:81:4C ",
        ] {
            assert_eq!(
                s.parse::<Mac>().map(|m| m.to_string()),
                Ok(want.to_string()),
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        for s in [
            "",
            "0004f2aa814",
            "0004f2aa814cc",
            "0004f2aa814g",
            "00:04-f2:aa:81:4c",
            "000:4f2:aa:81:4c",
            "0004.f2aa814c.",
            "00 04 f2 aa 81 4c",
            "000000000000",
            "０004f2aa814c",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn display_forms() {
        let m: Mac = "0004f2aa814c".parse().unwrap();
        assert_eq!(m.dashed_upper(), "00-04-F2-AA-81-4C");
        assert_eq!(m.colon_lower(), "00:04:f2:aa:81:4c");
    }

    proptest! {
        #[test]
        fn every_display_form_parses_back(bytes in any::<[u8; 6]>().prop_filter("non-zero", |b| *b != [0; 6])) {
            let m = Mac::from_bytes(bytes);
            for s in [m.to_string(), m.dashed_upper(), m.colon_lower(), m.to_string().to_uppercase()] {
                prop_assert_eq!(s.parse::<Mac>(), Ok(m));
            }
        }

        /// The allocation-free answers agree with the ones that say why.
        #[test]
        fn recognise_agrees_with_parse(s in "[0-9a-fA-F:.\\- ]{0,20}|\\PC{0,20}") {
            prop_assert_eq!(Mac::recognise(&s), s.parse::<Mac>().ok());
            prop_assert_eq!(Mac::hex12(&s), Mac::from_hex12(&s).ok());
        }

        #[test]
        fn arbitrary_strings_never_panic(s in "\\PC{0,40}") {
            let _ = s.parse::<Mac>();
        }

        #[test]
        fn accepted_strings_have_twelve_hex_digits(s in "[0-9a-fA-F:.\\-]{0,20}") {
            if let Ok(m) = s.parse::<Mac>() {
                let digits: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
                prop_assert_eq!(digits.to_lowercase(), m.to_string());
            }
        }
    }
}
