//! The file a phone asks for, read from an untrusted request path.
//!
//! Every door (HTTP, TFTP, FTP) hands the raw path here first. [`RequestPath::parse`] decodes it
//! and refuses anything that could escape the boot root or confuse a file system (`..`, encoded
//! slashes, back-slashes, control characters, absolute paths inside the path). [`FileKind`] then
//! says what the file *is* to a Poly phone, from its name alone (domain.md §2, §5).

use crate::Mac;
use std::fmt;

/// Longest request path accepted; the phone's own limit for a CONFIG_FILES entry is 255.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest single path segment (a typical file-system name limit).
pub const MAX_SEGMENT_LEN: usize = 255;

/// A decoded, safe, relative path: non-empty segments, none of them `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestPath {
    segments: Vec<String>,
}

/// Why a request path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    #[error("path names no file")]
    Empty,
    #[error("path has a malformed percent-escape")]
    BadEscape,
    #[error("path is not valid UTF-8 once decoded")]
    NotUtf8,
    #[error("path has an encoded '/' or '\\' (%2F, %5C)")]
    EncodedSeparator,
    #[error("path has a '\\'")]
    Backslash,
    #[error("path has a control character")]
    ControlCharacter,
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    #[error("path has an empty segment ('//')")]
    EmptySegment,
    #[error("path has a segment longer than {MAX_SEGMENT_LEN} bytes")]
    SegmentTooLong,
    #[error("path has a drive letter or a ':'")]
    Colon,
}

impl RequestPath {
    /// Decodes a request path such as `/polycom/0004f2aa814c.cfg` (a leading `/` is optional;
    /// a query string must already be removed). Percent-escapes are decoded once.
    pub fn parse(raw: &str) -> Result<RequestPath, PathError> {
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        let trimmed = raw.strip_prefix('/').unwrap_or(raw);
        if trimmed.is_empty() {
            return Err(PathError::Empty);
        }
        Self::from_segments(trimmed)
    }

    /// A directory path, by the same rules (FTP `CWD`, `LIST`): `/`, empty, and a trailing `/`
    /// are allowed and `/` is the boot root itself (no segments).
    pub fn parse_dir(raw: &str) -> Result<RequestPath, PathError> {
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        let trimmed = raw.strip_prefix('/').unwrap_or(raw);
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        if trimmed.is_empty() {
            return Ok(RequestPath {
                segments: Vec::new(),
            });
        }
        Self::from_segments(trimmed)
    }

    fn from_segments(trimmed: &str) -> Result<RequestPath, PathError> {
        let mut segments = Vec::new();
        for raw_seg in trimmed.split('/') {
            if raw_seg.is_empty() {
                return Err(PathError::EmptySegment);
            }
            let seg = percent_decode(raw_seg)?;
            if seg == "." || seg == ".." {
                return Err(PathError::DotSegment);
            }
            if seg.contains('\\') {
                return Err(PathError::Backslash);
            }
            if seg.chars().any(char::is_control) {
                return Err(PathError::ControlCharacter);
            }
            if seg.contains(':') {
                return Err(PathError::Colon);
            }
            if seg.len() > MAX_SEGMENT_LEN {
                return Err(PathError::SegmentTooLong);
            }
            segments.push(seg);
        }
        Ok(RequestPath { segments })
    }

    /// The directories and the file name, decoded.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The last segment: the file name.
    pub fn file_name(&self) -> &str {
        self.segments.last().map(String::as_str).unwrap_or_default()
    }

    /// The same path with its file name replaced.
    pub fn with_file_name(&self, name: &str) -> RequestPath {
        let mut segments = self.segments.clone();
        if let Some(last) = segments.last_mut() {
            *last = name.to_string();
        }
        RequestPath { segments }
    }

    /// What the file is to a phone.
    pub fn kind(&self) -> FileKind {
        FileKind::of(self.file_name())
    }
}

impl fmt::Display for RequestPath {
    /// The relative path, `/`-joined, decoded.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(segment)?;
        }
        Ok(())
    }
}

fn percent_decode(seg: &str) -> Result<String, PathError> {
    if !seg.contains('%') {
        return Ok(seg.to_string());
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let v = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(PathError::BadEscape)?;
            if v == b'/' || v == b'\\' {
                return Err(PathError::EncodedSeparator);
            }
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

/// A file a phone writes to its provisioning server (and reads back at the next boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UploadKind {
    /// `<mac>-phone.cfg`: settings changed in the phone's menu.
    PhoneOverride,
    /// `<mac>-web.cfg`: settings changed in the phone's web UI.
    WebOverride,
    /// `<mac>-app.log`: the application log.
    AppLog,
    /// `<mac>-boot.log`: the Updater's log.
    BootLog,
    /// `<mac>-directory.xml`: the local contact directory.
    Directory,
    /// `<mac>-calls.xml`: the call lists.
    CallLists,
    /// `<mac>-license.cfg`: feature licences.
    License,
}

impl UploadKind {
    /// Every kind, in a stable order.
    pub const ALL: [UploadKind; 7] = [
        UploadKind::PhoneOverride,
        UploadKind::WebOverride,
        UploadKind::AppLog,
        UploadKind::BootLog,
        UploadKind::Directory,
        UploadKind::CallLists,
        UploadKind::License,
    ];

    /// The part of the file name after `<mac>-`.
    pub const fn suffix(self) -> &'static str {
        match self {
            UploadKind::PhoneOverride => "phone.cfg",
            UploadKind::WebOverride => "web.cfg",
            UploadKind::AppLog => "app.log",
            UploadKind::BootLog => "boot.log",
            UploadKind::Directory => "directory.xml",
            UploadKind::CallLists => "calls.xml",
            UploadKind::License => "license.cfg",
        }
    }

    /// The kind whose suffix this is.
    pub fn from_suffix(s: &str) -> Option<UploadKind> {
        UploadKind::ALL.into_iter().find(|k| k.suffix() == s)
    }

    /// Logs grow by appending; everything else is replaced as a new version.
    pub const fn is_log(self) -> bool {
        matches!(self, UploadKind::AppLog | UploadKind::BootLog)
    }

    /// The phone's file name for this kind, e.g. `0004f2aa814c-web.cfg`.
    pub fn file_name(self, mac: Mac) -> String {
        format!("{mac}-{}", self.suffix())
    }
}

impl fmt::Display for UploadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.suffix())
    }
}

/// Suffix of the per-device configuration file polyprov generates: `<mac>-polyprov.cfg`.
pub const DEVICE_CONFIG_SUFFIX: &str = "polyprov.cfg";

/// What a requested file name means to a Poly phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `<mac>.cfg`: the phone's own master file.
    Master(Mac),
    /// `<mac>-polyprov.cfg`: the per-device configuration polyprov generates.
    DeviceConfig(Mac),
    /// `<mac>-<kind>`: a file the phone uploads and reads back.
    DeviceFile(Mac, UploadKind),
    /// Anything else: `000000000000.cfg`, firmware, shared configuration, `<mac>-other.cfg`, …
    Shared,
}

impl FileKind {
    /// Classifies a file name. MAC digits may be in either case.
    pub fn of(name: &str) -> FileKind {
        if let Some(stem) = name.strip_suffix(".cfg")
            && stem.len() == 12
            && let Some(mac) = Mac::hex12(stem)
        {
            return FileKind::Master(mac);
        }
        if let Some((head, suffix)) = name.split_at_checked(12)
            && let Some(suffix) = suffix.strip_prefix('-')
            && let Some(mac) = Mac::hex12(head)
        {
            if suffix.eq_ignore_ascii_case(DEVICE_CONFIG_SUFFIX) {
                return FileKind::DeviceConfig(mac);
            }
            if let Some(kind) = UploadKind::from_suffix(suffix) {
                return FileKind::DeviceFile(mac, kind);
            }
        }
        FileKind::Shared
    }
}

/// If `name` starts with a Poly part number (`3111-44500-001.sip.ld`), the name without it
/// (`sip.ld`): phones ask for `<part>.<APP_FILE_PATH>` first and admins often keep one image.
pub fn strip_part_number(name: &str) -> Option<&str> {
    let b = name.as_bytes();
    let shape_ok = b.len() > 15
        && b[4] == b'-'
        && b[10] == b'-'
        && b[14] == b'.'
        && [0..4, 5..10, 11..14]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit));
    shape_ok.then(|| &name[15..])
}

#[cfg(test)]
mod dir_tests {
    use super::*;

    #[test]
    fn directory_paths_follow_the_same_rules() {
        assert!(RequestPath::parse_dir("/").unwrap().segments().is_empty());
        assert!(RequestPath::parse_dir("").unwrap().segments().is_empty());
        assert_eq!(
            RequestPath::parse_dir("/firmware/").unwrap().segments(),
            ["firmware"]
        );
        for bad in ["/../etc", "/a//b", "/a\\b", "/a%2Fb", "/c:/x", "/a\u{0}"] {
            assert!(RequestPath::parse_dir(bad).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mac() -> Mac {
        Mac::from_hex12("0004f2aa814c").unwrap()
    }

    #[test]
    fn decodes_ordinary_paths() {
        let p = RequestPath::parse("/polycom/0004F2AA814C.cfg").unwrap();
        assert_eq!(p.segments(), ["polycom", "0004F2AA814C.cfg"]);
        assert_eq!(p.kind(), FileKind::Master(mac()));
        let p = RequestPath::parse("/my%20dir/sip.ld").unwrap();
        assert_eq!(p.to_string(), "my dir/sip.ld");
    }

    #[test]
    fn refuses_escapes_and_traversal() {
        use PathError::*;
        for (raw, want) in [
            ("/../etc/passwd", DotSegment),
            ("/a/%2e%2e/b", DotSegment),
            ("/a/./b", DotSegment),
            ("/a%2Fb", EncodedSeparator),
            ("/a%5cb", EncodedSeparator),
            ("/a\\b", Backslash),
            ("//etc/passwd", EmptySegment),
            ("/a//b", EmptySegment),
            ("/C:/x", Colon),
            ("/", Empty),
            ("", Empty),
            ("/a%zz", BadEscape),
            ("/a%2", BadEscape),
            ("/a%00b", ControlCharacter),
            ("/a%ff", NotUtf8),
        ] {
            assert_eq!(RequestPath::parse(raw), Err(want), "{raw}");
        }
        assert_eq!(
            RequestPath::parse(&format!("/{}", "a".repeat(2000))),
            Err(TooLong)
        );
        assert_eq!(
            RequestPath::parse(&format!("/{}", "a".repeat(300))),
            Err(SegmentTooLong)
        );
    }

    #[test]
    fn classifies_phone_files() {
        let m = mac();
        assert_eq!(FileKind::of("0004f2aa814c.cfg"), FileKind::Master(m));
        assert_eq!(FileKind::of("000000000000.cfg"), FileKind::Shared);
        assert_eq!(
            FileKind::of("0004f2aa814c-polyprov.cfg"),
            FileKind::DeviceConfig(m)
        );
        assert_eq!(
            FileKind::of("0004f2aa814c-web.cfg"),
            FileKind::DeviceFile(m, UploadKind::WebOverride)
        );
        assert_eq!(
            FileKind::of("0004F2AA814C-app.log"),
            FileKind::DeviceFile(m, UploadKind::AppLog)
        );
        assert_eq!(FileKind::of("000000000000-directory.xml"), FileKind::Shared);
        assert_eq!(FileKind::of("0004f2aa814c-lines.cfg"), FileKind::Shared);
        assert_eq!(FileKind::of("sip.ld"), FileKind::Shared);
        assert_eq!(FileKind::of("é"), FileKind::Shared);
    }

    #[test]
    fn part_number_prefix() {
        assert_eq!(strip_part_number("3111-44500-001.sip.ld"), Some("sip.ld"));
        assert_eq!(strip_part_number("2345-12600-001.sip.ld"), Some("sip.ld"));
        assert_eq!(strip_part_number("sip.ld"), None);
        assert_eq!(strip_part_number("3111-44500-001."), None);
        assert_eq!(strip_part_number("3111-4450a-001.sip.ld"), None);
        assert_eq!(strip_part_number("ééééééééééééééééé"), None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,300}") {
            if let Ok(p) = RequestPath::parse(&s) {
                let _ = p.kind();
                let _ = strip_part_number(p.file_name());
            }
        }

        #[test]
        fn accepted_paths_stay_inside_the_root(s in "[a-z0-9./%\\\\:A-F-]{0,60}") {
            if let Ok(p) = RequestPath::parse(&s) {
                for seg in p.segments() {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..");
                    prop_assert!(!seg.contains('/') && !seg.contains('\\') && !seg.contains(':'));
                }
            }
        }

        #[test]
        fn safe_paths_round_trip(segs in proptest::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9_.-]{0,20}", 1..5)) {
            let segs: Vec<String> = segs.into_iter().filter(|s| s != "." && s != "..").collect();
            prop_assume!(!segs.is_empty());
            let p = RequestPath::parse(&format!("/{}", segs.join("/"))).unwrap();
            prop_assert_eq!(p.segments(), segs.as_slice());
        }
    }
}
