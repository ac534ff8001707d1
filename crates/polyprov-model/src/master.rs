//! Master configuration files (`<APPLICATION …>`), the file a phone reads first (domain.md §2).
//!
//! polyprov gives an assigned phone a master derived from the boot root's own
//! `000000000000.cfg`: the same file, byte for byte, except that the phone's per-device file is
//! put **first** in `CONFIG_FILES` (and in every non-empty `CONFIG_FILES_<model>`). First, because
//! when a parameter is set in several files the phone keeps the value from the file listed first,
//! and the phone's own settings must win over the shared ones.

use quick_xml::events::Event;

/// Why a master file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterError {
    #[error("master file is not well-formed XML at byte {at}: {message}")]
    Xml { at: u64, message: String },
    #[error("master file has no <APPLICATION> element")]
    NoApplication,
}

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

/// Where `part`, a slice borrowed from `whole`, starts in it; `None` for text from elsewhere.
fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len() && whole.is_char_boundary(at)).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Real masters from public deployments (`shared/corpus`, next to the repository).
    fn corpus_masters() -> Vec<PathBuf> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (shared/corpus must sit beside the repository)",
                    dir.display()
                )
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
