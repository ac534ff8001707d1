//! What a file in a boot root is to a phone, from its name and its content — so that every tool
//! (`config check`, `config explain`, the server) applies the rules that fit it: a master's to a
//! master, gating to shared configuration but not to a phone's own overrides, and nothing at all
//! to a file that is not a Poly file.

use crate::path::{FileKind, UploadKind};

/// The role of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `<APPLICATION …>`: which files a phone reads, in order.
    Master,
    /// Parameters a phone applies: `<polycomConfig>`, or a legacy root (`PHONE_CONFIG`, `sip`,
    /// `ipmid`, `phone1` of SIP 1.x/2.x).
    Configuration,
    /// A phone's own record of changes made on it (`<mac>-phone.cfg`, `<mac>-web.cfg`), which it
    /// applies without `device.*` gating.
    Override(UploadKind),
    /// A contact directory (`<directory>`).
    Directory,
    /// Not a Poly configuration file; says what it looks like.
    Other(String),
}

/// Roots of configuration files phones apply, current and legacy.
const CONFIGURATION_ROOTS: &[&str] = &["polycomConfig", "PHONE_CONFIG", "sip", "ipmid", "phone1"];

impl Role {
    /// The role of the file `name` (a path; its last segment counts) whose text starts with
    /// `text` and whose root element is `root` (`None` when it is not well-formed XML).
    pub fn of(name: &str, text: &str, root: Option<&str>) -> Role {
        let base = name.rsplit('/').next().unwrap_or(name);
        let start = text.trim_start_matches('\u{feff}').trim_start();
        if start.starts_with("#!version") {
            return Role::Other("a Yealink configuration file (#!version), not a Poly one".into());
        }
        match (FileKind::of(base), root) {
            (_, Some("APPLICATION")) => Role::Master,
            (
                FileKind::DeviceFile(_, k @ (UploadKind::PhoneOverride | UploadKind::WebOverride)),
                _,
            ) => Role::Override(k),
            (_, Some(r)) if CONFIGURATION_ROOTS.contains(&r) => Role::Configuration,
            (_, Some("directory")) => Role::Directory,
            (_, Some(r)) => Role::Other(format!(
                "XML whose root <{}> is not a Poly configuration file",
                r.chars().take(40).collect::<String>()
            )),
            (_, None) => Role::Other("not XML".into()),
        }
    }

    /// Whether phones apply this file's attributes as parameters (and so whether parameter rules
    /// — duplicates, secrets, gating — apply to it).
    pub fn has_parameters(&self) -> bool {
        matches!(self, Role::Configuration | Role::Override(_))
    }

    /// Whether `device.*` values in it need `device.set` and `<name>.set` to apply. A phone's
    /// overrides are its own changes: applied as they are (see `effective`).
    pub fn is_gated(&self) -> bool {
        matches!(self, Role::Configuration)
    }
}

/// Whether a phone reads `name` as a master file: `000000000000.cfg` or `<mac>.cfg`.
pub fn is_master_name(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.eq_ignore_ascii_case(crate::master::SHARED_MASTER)
        || matches!(FileKind::of(base), FileKind::Master(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_name_and_root() {
        for (name, text, root, want) in [
            (
                "000000000000.cfg",
                "<APPLICATION/>",
                Some("APPLICATION"),
                Role::Master,
            ),
            (
                "site.cfg",
                "<polycomConfig/>",
                Some("polycomConfig"),
                Role::Configuration,
            ),
            ("sip.cfg", "<sip/>", Some("sip"), Role::Configuration),
            (
                "x/0004f2aa814c-web.cfg",
                "<PHONE_CONFIG/>",
                Some("PHONE_CONFIG"),
                Role::Override(UploadKind::WebOverride),
            ),
            (
                "0004F2AA814C-phone.cfg",
                "<PHONE_CONFIG/>",
                Some("PHONE_CONFIG"),
                Role::Override(UploadKind::PhoneOverride),
            ),
            (
                "contacts.cfg",
                "<directory/>",
                Some("directory"),
                Role::Directory,
            ),
        ] {
            assert_eq!(Role::of(name, text, root), want, "{name}");
        }
        for (text, root) in [
            ("#!version:1.0.0.1\naccount.1.enable = 1\n", None),
            ("<project/>", Some("project")),
            ("<svg/>", Some("svg")),
            ("hello", None),
        ] {
            let r = Role::of("y.cfg", text, root);
            assert!(matches!(r, Role::Other(_)), "{text}: {r:?}");
            assert!(!r.has_parameters());
        }
        assert!(Role::Configuration.is_gated());
        assert!(!Role::Override(UploadKind::WebOverride).is_gated());
        assert!(is_master_name("boot/000000000000.cfg"));
        assert!(is_master_name("0004F2AA814C.cfg"));
        assert!(!is_master_name("site.cfg"));
    }
}
