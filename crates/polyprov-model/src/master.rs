//! Master configuration files (`<APPLICATION …>`), the file a phone reads first (domain.md §2).
//!
//! polyprov gives an assigned phone a master derived from the boot root's own
//! `000000000000.cfg`: the same file, byte for byte, except that the phone's per-device file is
//! put **first** in `CONFIG_FILES` (and in every non-empty `CONFIG_FILES_<model>`). First, because
//! when a parameter is set in several files the phone keeps the value from the file listed first,
//! and the phone's own settings must win over the shared ones.

use crate::Mac;
use crate::config_file::{ConfigFile, Param, ParseError, offset_in};
use quick_xml::events::Event;

/// Why a master file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterError {
    #[error("master file is not well-formed XML at byte {at}: {message}")]
    Xml { at: u64, message: String },
    #[error("master file has no <APPLICATION> element")]
    NoApplication,
}

/// The shared master every phone may read when it has no `<mac>.cfg` of its own.
pub const SHARED_MASTER: &str = "000000000000.cfg";

/// The starter master polyprov writes into a new boot root. It carries no secret and lists no
/// configuration file: every phone, and anyone who guesses a MAC, can read it.
pub const STARTER_MASTER: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<!-- polyprov staging master (000000000000.cfg).
     Every phone polyprov has no assignment for boots from this file, and anyone on the network
     can read it: never put a password or any other secret in it, nor in the files it lists.
     List your shared, secret-free files in CONFIG_FILES (the file listed first wins when two set
     the same parameter). For an assigned phone polyprov serves this same file with the phone's
     own <mac>-polyprov.cfg put in front of CONFIG_FILES. -->
<APPLICATION
  APP_FILE_PATH="sip.ld"
  CONFIG_FILES=""
  MISC_FILES=""
  LOG_FILE_DIRECTORY=""
  OVERRIDES_DIRECTORY=""
  CONTACTS_DIRECTORY=""
  LICENSE_DIRECTORY=""
  USER_PROFILES_DIRECTORY=""
  CALL_LISTS_DIRECTORY=""
  COREFILE_DIRECTORY=""
  CERTIFICATE_DIRECTORY="">
</APPLICATION>
"#;

/// Longest single `CONFIG_FILES` entry a phone accepts.
pub const MAX_CONFIG_FILE_ENTRY: usize = 255;
/// Longest `CONFIG_FILES` list a phone accepts.
pub const MAX_CONFIG_FILES_LIST: usize = 2047;

/// The `*_DIRECTORY` attributes: where a phone uploads and looks for its own files.
pub const DIRECTORY_ATTRIBUTES: &[&str] = &[
    "LOG_FILE_DIRECTORY",
    "OVERRIDES_DIRECTORY",
    "CONTACTS_DIRECTORY",
    "LICENSE_DIRECTORY",
    "USER_PROFILES_DIRECTORY",
    "CALL_LISTS_DIRECTORY",
    "COREFILE_DIRECTORY",
    "CERTIFICATE_DIRECTORY",
    "FLK_DIRECTORY",
    "ICONS_DIRECTORY",
];

/// The model token used in master files (`VVX500`, `SPIP550`, `SSIP5000`) for a User-Agent model
/// (`VVX_500`, `SPIP_550`, `SSIP_5000`): the same letters without underscores.
pub fn model_token(user_agent_model: &str) -> String {
    user_agent_model.chars().filter(|c| *c != '_').collect()
}

/// A master file (`<APPLICATION …>`), read for the phones that use it.
#[derive(Debug, Clone)]
pub struct Master {
    file: ConfigFile,
}

/// Why a file is not a usable master.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterParseError {
    #[error(transparent)]
    Xml(#[from] ParseError),
    #[error("{0}: the root element is <{1}>, not <APPLICATION>")]
    NotAMaster(String, String),
}

/// What one phone model takes from a master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMaster {
    /// The application image (`APP_FILE_PATH` or its per-model form).
    pub app_file_path: Option<String>,
    /// `CONFIG_FILES`, split, trimmed, substituted, in order (the first listed wins).
    pub config_files: Vec<String>,
    /// The raw `CONFIG_FILES` text, for the phone's length limits.
    pub config_files_raw: String,
    /// Every other attribute (directories, `MISC_FILES`, …) after per-model selection.
    pub attributes: Vec<(String, String)>,
}

impl Master {
    /// Parses a master file.
    pub fn parse(name: &str, text: &str) -> Result<Master, MasterParseError> {
        let file = ConfigFile::parse(name, text)?;
        if file.root() != "APPLICATION" {
            return Err(MasterParseError::NotAMaster(
                name.to_string(),
                file.root().to_string(),
            ));
        }
        Ok(Master { file })
    }

    /// The underlying file (text and attribute positions).
    pub fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// An attribute for a model: `NAME_<token>` when present and non-empty, else `NAME`.
    /// The phone matches attribute names, not element names (domain.md §2). An empty per-model
    /// value falls back to the generic one (an assumption: its meaning is not documented).
    pub fn attribute(&self, name: &str, token: Option<&str>) -> Option<&Param> {
        if let Some(t) = token {
            let specific = format!("{name}_{t}");
            if let Some(p) = self
                .file
                .get(&specific)
                .filter(|p| !p.value.trim().is_empty())
            {
                return Some(p);
            }
        }
        self.file.get(name)
    }

    /// What a phone of model `token` (e.g. `VVX500`) with `mac` takes from this master.
    /// `[PHONE_MAC_ADDRESS]` becomes the lower-case MAC, `[PHONE_MODEL]` the token.
    pub fn resolve(&self, token: Option<&str>, mac: Mac) -> ResolvedMaster {
        let subst = |s: &str| {
            let s = s.replace("[PHONE_MAC_ADDRESS]", &mac.to_string());
            match token {
                Some(t) => s.replace("[PHONE_MODEL]", t),
                None => s,
            }
        };
        let raw = self
            .attribute("CONFIG_FILES", token)
            .map(|p| p.value.clone())
            .unwrap_or_default();
        let config_files = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(subst)
            .collect();
        let generic: Vec<&str> = self
            .file
            .params()
            .iter()
            .filter(|p| {
                &*p.element == "APPLICATION"
                    && p.name != "CONFIG_FILES"
                    && p.name != "APP_FILE_PATH"
            })
            .map(|p| p.name.as_str())
            .collect();
        let attributes = generic
            .into_iter()
            .filter_map(|n| {
                self.attribute(n, token)
                    .map(|p| (n.to_string(), subst(&p.value)))
            })
            .collect();
        ResolvedMaster {
            app_file_path: self
                .attribute("APP_FILE_PATH", token)
                .map(|p| subst(&p.value)),
            config_files,
            config_files_raw: raw,
            attributes,
        }
    }
}

/// Returns `master` with `file` put first in `CONFIG_FILES` of the `<APPLICATION>` element and in
/// every non-empty `CONFIG_FILES_<model>` of its per-model children. An empty per-model list is
/// left alone (its meaning for the phone is not documented); a missing `CONFIG_FILES` is added.
/// Everything else — comments, order, spacing — is kept byte for byte.
pub fn prepend_config_file(master: &str, file: &str) -> Result<String, MasterError> {
    let mut reader = quick_xml::Reader::from_str(master);
    // (byte offset, text to insert), in ascending order.
    let mut inserts: Vec<(usize, String)> = Vec::new();
    let mut seen_application = false;
    loop {
        let event = reader.read_event().map_err(|e| MasterError::Xml {
            at: reader.error_position(),
            message: e.to_string(),
        })?;
        let start = match &event {
            Event::Start(s) | Event::Empty(s) => s,
            Event::Eof => break,
            _ => continue,
        };
        let name = start.name();
        let name = name.as_ref();
        if !name.starts_with("APPLICATION") {
            continue;
        }
        let is_root = name == "APPLICATION";
        let mut has_config_files = false;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| MasterError::Xml {
                at: reader.buffer_position(),
                message: e.to_string(),
            })?;
            let key = attr.key.as_ref();
            let is_list = key == "CONFIG_FILES" || key.starts_with("CONFIG_FILES_");
            if !is_list {
                continue;
            }
            has_config_files |= key == "CONFIG_FILES";
            let offset = offset_in(master, &attr.value).ok_or(MasterError::Xml {
                at: reader.buffer_position(),
                message: "attribute value is not in the source text".into(),
            })?;
            if attr.value.trim().is_empty() {
                if key == "CONFIG_FILES" {
                    inserts.push((offset, file.to_string()));
                }
            } else {
                inserts.push((offset, format!("{file}, ")));
            }
        }
        if is_root {
            seen_application = true;
            if !has_config_files {
                let after_name =
                    offset_in(master, name).ok_or(MasterError::NoApplication)? + name.len();
                inserts.push((after_name, format!(" CONFIG_FILES=\"{file}\"")));
            }
        }
    }
    if !seen_application {
        return Err(MasterError::NoApplication);
    }
    inserts.sort_by_key(|(at, _)| *at);
    let mut out = String::with_capacity(master.len() + inserts.len() * (file.len() + 2));
    let mut pos = 0;
    for (at, text) in inserts {
        out.push_str(&master[pos..at]);
        out.push_str(&text);
        pos = at;
    }
    out.push_str(&master[pos..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_per_model_attributes_by_name() {
        let m = Master::parse(
            "m.cfg",
            r#"<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="a.cfg, [PHONE_MAC_ADDRESS]-x.cfg,, b.cfg" LOG_FILE_DIRECTORY="/logs/">
  <APPLICATION_SPIP300 APP_FILE_PATH_SPIP300="sip_213.ld" CONFIG_FILES_SPIP300="old.cfg"/>
  <ANY_ELEMENT CONFIG_FILES_VVX500="v.cfg" LOG_FILE_DIRECTORY_VVX500=""/>
</APPLICATION>"#,
        )
        .unwrap();
        let mac: Mac = "0004F2AA814C".parse().unwrap();
        let r = m.resolve(None, mac);
        assert_eq!(r.config_files, ["a.cfg", "0004f2aa814c-x.cfg", "b.cfg"]);
        assert_eq!(r.app_file_path.as_deref(), Some("sip.ld"));
        let r = m.resolve(Some("SPIP300"), mac);
        assert_eq!(
            (r.app_file_path.as_deref(), r.config_files.as_slice()),
            (Some("sip_213.ld"), ["old.cfg".to_string()].as_slice())
        );
        let r = m.resolve(Some(&model_token("VVX_500")), mac);
        assert_eq!(r.config_files, ["v.cfg"]);
        assert_eq!(
            r.attributes,
            [("LOG_FILE_DIRECTORY".to_string(), "/logs/".to_string())]
        );
        assert!(matches!(
            Master::parse("x", "<polycomConfig/>"),
            Err(MasterParseError::NotAMaster(..))
        ));
    }

    #[test]
    fn puts_the_device_file_first() {
        let m = r#"<?xml version="1.0"?>
<!-- c -->
<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="phone1.cfg, sip.cfg" MISC_FILES="">
  <APPLICATION_SPIP300 CONFIG_FILES_SPIP300="phone1_213.cfg" />
  <APPLICATION_SPIP320 CONFIG_FILES_SPIP320="" />
</APPLICATION>"#;
        let out = prepend_config_file(m, "d.cfg").unwrap();
        assert_eq!(
            out,
            m.replace("\"phone1.cfg, sip.cfg\"", "\"d.cfg, phone1.cfg, sip.cfg\"")
                .replace("\"phone1_213.cfg\"", "\"d.cfg, phone1_213.cfg\"")
        );
    }

    #[test]
    fn fills_an_empty_list_and_adds_a_missing_one() {
        let out = prepend_config_file(STARTER_MASTER, "d.cfg").unwrap();
        assert!(out.contains("CONFIG_FILES=\"d.cfg\""));
        let out = prepend_config_file("<APPLICATION APP_FILE_PATH=\"sip.ld\"/>", "d.cfg").unwrap();
        assert_eq!(
            out,
            "<APPLICATION CONFIG_FILES=\"d.cfg\" APP_FILE_PATH=\"sip.ld\"/>"
        );
    }

    #[test]
    fn rejects_what_is_not_a_master() {
        assert_eq!(
            prepend_config_file("<polycomConfig/>", "d.cfg"),
            Err(MasterError::NoApplication)
        );
        assert!(matches!(
            prepend_config_file("<APPLICATION CONFIG_FILES=\"a></x>", "d.cfg"),
            Err(MasterError::Xml { .. })
        ));
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;
    use std::path::PathBuf;

    /// Real masters from public deployments (`tests/corpus`).
    fn corpus_masters() -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
                panic!("{}: {e} (tests/corpus of the repository)", dir.display())
            });
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if std::fs::read_to_string(&p).is_ok_and(|t| t.contains("<APPLICATION")) {
                    out.push(p);
                }
            }
        }
        out
    }

    #[test]
    fn every_corpus_master_gets_the_device_file_first() {
        let masters = corpus_masters();
        assert!(masters.len() >= 4, "found {masters:?}");
        for p in masters {
            let text = std::fs::read_to_string(&p).unwrap();
            let out = prepend_config_file(&text, "0004f2aa814c-polyprov.cfg")
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(
                out.contains("CONFIG_FILES=\"0004f2aa814c-polyprov.cfg"),
                "{}",
                p.display()
            );
            // Nothing but the insertions changed.
            assert_eq!(
                out.replace("0004f2aa814c-polyprov.cfg, ", "")
                    .replace("0004f2aa814c-polyprov.cfg", ""),
                text
            );
        }
    }
}
