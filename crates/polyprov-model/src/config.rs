//! Writing `<polycomConfig>` files and the `device.*` gating rule.
//!
//! A Poly phone reads parameters as dotted XML *attributes* (`reg.1.address="…"`); element names
//! only group them (domain.md §4). A `device.*` parameter is applied only when `device.set="1"`
//! **and** its own `<name>.set="1"` are present, so a generated file must add both.

use std::collections::BTreeMap;

/// The phone's local admin password (the one a factory reset brings back to 456).
pub const ADMIN_PASSWORD: &str = "device.auth.localAdminPassword";
/// The phone's local user password.
pub const USER_PASSWORD: &str = "device.auth.localUserPassword";

/// Parameter names and values, ordered by name so that rendering is deterministic.
pub type Params = BTreeMap<String, String>;

/// Why a parameter name cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a parameter name: use dotted names of letters, digits, '_' and '-', e.g. reg.1.address"
)]
pub struct ParamNameError(pub String);

/// Checks a parameter name: dot-separated, non-empty words of ASCII letters, digits, `_`, `-`,
/// starting with a letter, at most 255 bytes. Anything else would not be a valid XML attribute.
pub fn check_param_name(name: &str) -> Result<(), ParamNameError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.as_bytes()[0].is_ascii_alphabetic()
        && name.split('.').all(|w| {
            !w.is_empty()
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ParamNameError(name.chars().take(80).collect()))
    }
}

/// Adds the gates a phone needs before it applies `device.*` parameters: `device.set="1"` and,
/// for each `device.X`, `device.X.set="1"` — unless the caller set a gate explicitly.
pub fn add_device_gates(params: &mut Params) {
    let gated: Vec<String> = params
        .keys()
        .filter(|k| k.starts_with("device.") && *k != "device.set" && !k.ends_with(".set"))
        .map(|k| format!("{k}.set"))
        .collect();
    if gated.is_empty() {
        return;
    }
    for g in gated {
        params.entry(g).or_insert_with(|| "1".to_string());
    }
    params
        .entry("device.set".to_string())
        .or_insert_with(|| "1".to_string());
}

/// Escapes text for a double-quoted XML attribute value. Tabs and line breaks are written as
/// character references so that they survive attribute-value normalisation. A character XML
/// 1.0 cannot carry at all becomes U+FFFD, so that what is written is always well-formed (the
/// admin API refuses such values before they are stored; see [`check_param_value`]).
pub fn escape_attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            c if !is_xml_char(c) => out.push('\u{FFFD}'),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Renders parameters as a `<polycomConfig>` document, one element per first name segment
/// (`<reg reg.1.address=…/>`), in name order. Same input, same bytes.
///
/// Names must have passed [`check_param_name`]; `comment` must not contain `--`.
pub fn render_polycom_config(params: &Params, comment: &str) -> String {
    let mut out = String::with_capacity(128 + params.len() * 48);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n");
    out.push_str("<!-- ");
    out.push_str(&comment.replace("--", "- -"));
    out.push_str(" -->\n");
    out.push_str("<polycomConfig xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:noNamespaceSchemaLocation=\"polycomConfig.xsd\">\n");
    let mut current: Option<&str> = None;
    for (name, value) in params {
        let group = name.split('.').next().unwrap_or(name);
        if current != Some(group) {
            if current.is_some() {
                out.push_str("/>\n");
            }
            out.push_str("  <");
            out.push_str(group);
            current = Some(group);
        }
        out.push_str("\n    ");
        out.push_str(name);
        out.push_str("=\"");
        out.push_str(&escape_attr(value));
        out.push('"');
    }
    if current.is_some() {
        out.push_str("/>\n");
    }
    out.push_str("</polycomConfig>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn device_parameters_get_both_gates() {
        let mut p = params(&[
            ("device.auth.localAdminPassword", "s3cret"),
            ("reg.1.address", "100"),
        ]);
        add_device_gates(&mut p);
        assert_eq!(p["device.set"], "1");
        assert_eq!(p["device.auth.localAdminPassword.set"], "1");
        assert!(!p.contains_key("reg.1.address.set"));
    }

    #[test]
    fn explicit_gates_are_kept() {
        let mut p = params(&[
            ("device.prov.serverName", "x"),
            ("device.prov.serverName.set", "0"),
        ]);
        add_device_gates(&mut p);
        assert_eq!(p["device.prov.serverName.set"], "0");
        assert_eq!(p["device.set"], "1");
    }

    #[test]
    fn no_device_parameters_no_gates() {
        let mut p = params(&[("reg.1.address", "100")]);
        add_device_gates(&mut p);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn renders_grouped_and_escaped() {
        let p = params(&[
            ("reg.1.address", "100@pbx"),
            ("reg.1.label", "A \"B\" & <C>"),
            ("tcpIpApp.sntp.address", "pool"),
        ]);
        let xml = render_polycom_config(&p, "test -- file");
        assert!(xml.contains("<!-- test - - file -->"));
        assert!(xml.contains("  <reg\n    reg.1.address=\"100@pbx\"\n    reg.1.label=\"A &quot;B&quot; &amp; &lt;C&gt;\"/>\n"));
        assert!(xml.contains("  <tcpIpApp\n    tcpIpApp.sntp.address=\"pool\"/>\n"));
        assert_eq!(xml, render_polycom_config(&p, "test -- file"));
    }

    #[test]
    fn param_names() {
        for ok in [
            "reg.1.address",
            "device.auth.localAdminPassword",
            "voIpProt.SIP.x-y_z",
        ] {
            assert!(check_param_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "1reg", "reg..1", "reg.", "reg 1", "reg\"1", "a=b", ".reg",
        ] {
            assert!(check_param_name(bad).is_err(), "{bad}");
        }
    }
}

/// Why uploaded XML is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not well-formed XML at byte {at}: {message}")]
pub struct XmlError {
    /// Byte offset of the error.
    pub at: u64,
    /// What the parser found.
    pub message: String,
}

/// Whether XML 1.0 can carry `c` at all (its `Char` production): no control characters but
/// tab, line feed and carriage return, no U+FFFE or U+FFFF. A phone's parser rejects a file
/// with any other, and with it every setting in the file.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Why a parameter value cannot be written into a phone's file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: character U+{code:04X} at position {at} cannot be carried by XML 1.0")]
pub struct ParamValueError {
    pub name: String,
    pub code: u32,
    pub at: usize,
}

/// Checks a parameter value: only characters XML 1.0 can carry (see [`is_xml_char`]).
pub fn check_param_value(name: &str, value: &str) -> Result<(), ParamValueError> {
    match value.chars().enumerate().find(|(_, c)| !is_xml_char(*c)) {
        Some((at, c)) => Err(ParamValueError {
            name: name.chars().take(80).collect(),
            code: c as u32,
            at,
        }),
        None => Ok(()),
    }
}

/// Checks that `text` is one well-formed XML document (with a root element). Phones upload
/// overrides, directories and call lists as XML; anything else is truncated or forged. Beyond
/// the structure: every character, raw or as a reference (`&#0;`), must be one XML 1.0 can
/// carry, entity references must be the predefined ones, and no attribute may appear twice.
pub fn check_well_formed(text: &str) -> Result<(), XmlError> {
    use quick_xml::events::Event;
    if let Some((at, c)) = text.char_indices().find(|(_, c)| !is_xml_char(*c)) {
        return Err(XmlError {
            at: at as u64,
            message: format!("character U+{:04X} is not allowed in XML 1.0", c as u32),
        });
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        let at = reader.buffer_position();
        let bad = |message: String| XmlError { at, message };
        match reader.read_event() {
            Ok(Event::GeneralRef(r)) => match r.resolve_char_ref() {
                Ok(Some(c)) if is_xml_char(c) => {}
                Ok(Some(c)) => {
                    return Err(bad(format!(
                        "reference to character U+{:04X}, not allowed in XML 1.0",
                        c as u32
                    )));
                }
                Ok(None) if matches!(&*r, "amp" | "lt" | "gt" | "quot" | "apos") => {}
                Ok(None) => {
                    let name: String = r.chars().take(40).collect();
                    return Err(bad(format!("unknown entity &{name};")));
                }
                Err(e) => return Err(bad(e.to_string())),
            },
            Ok(Event::Start(e)) => {
                check_attributes(&e).map_err(bad)?;
                if depth == 0 {
                    roots += 1;
                }
                depth += 1;
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Empty(e)) => {
                check_attributes(&e).map_err(bad)?;
                if depth == 0 {
                    roots += 1;
                }
            }
            Ok(Event::Text(t)) if depth == 0 && !t.as_ref().trim_ascii().is_empty() => {
                return Err(XmlError {
                    at: reader.buffer_position(),
                    message: "text outside the root element".into(),
                });
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(XmlError {
                    at: reader.error_position(),
                    message: e.to_string(),
                });
            }
        }
    }
    match (depth, roots) {
        (0, 1) => Ok(()),
        (0, 0) => Err(XmlError {
            at: 0,
            message: "no root element".into(),
        }),
        (0, _) => Err(XmlError {
            at: 0,
            message: "more than one root element".into(),
        }),
        _ => Err(XmlError {
            at: text.len() as u64,
            message: "unclosed element at end of document".into(),
        }),
    }
}

/// Every attribute once, with a value whose references resolve to characters XML 1.0 carries.
fn check_attributes(e: &quick_xml::events::BytesStart<'_>) -> Result<(), String> {
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("attribute value: {e}"))?;
        if let Some(c) = value.chars().find(|c| !is_xml_char(*c)) {
            return Err(format!(
                "attribute value refers to character U+{:04X}, not allowed in XML 1.0",
                c as u32
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod xml_tests {
    use super::*;

    #[test]
    fn well_formed_documents() {
        assert!(
            check_well_formed(
                "<?xml version=\"1.0\"?>\n<PHONE_CONFIG><OVERRIDES a=\"1\"/></PHONE_CONFIG>\n"
            )
            .is_ok()
        );
        assert!(check_well_formed(&render_polycom_config(&Params::new(), "x")).is_ok());
    }

    #[test]
    fn malformed_documents() {
        for bad in [
            "",
            "hello",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "<a x=\"1></a>",
            "<a/>trailing",
            "<a>&bogus;</a",
            "<a>&bogus;</a>",
            "<a x=\"&#0;\"/>",
            "<a x=\"&#x1;\"/>",
            "<a x=\"a\0b\"/>",
            "<a>\u{1b}[2J</a>",
            "<a>&#0;</a>",
            "<a>&#xFFFE;</a>",
            "<a x=\"1\" x=\"2\"/>",
            "<a x=\"&bogus;\"/>",
        ] {
            assert!(check_well_formed(bad).is_err(), "{bad:?}");
        }
        assert!(check_well_formed("<a x=\"&#9;&#10;&amp;&#x263A;\">&lt;&#65;</a>").is_ok());
    }

    #[test]
    fn values_xml_cannot_carry_are_refused() {
        assert!(check_param_value("reg.1.label", "Zoë \t ☺").is_ok());
        for bad in ["a\0b", "\u{1b}[2J", "x\u{FFFF}", "\u{8}"] {
            assert!(check_param_value("reg.1.label", bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the values, the rendered file is well-formed; those that pass the check read
        /// back unchanged.
        #[test]
        fn every_rendered_file_is_well_formed(
            values in proptest::collection::vec("\\PC{0,12}|[\\x00-\\x7f]{0,12}", 1..6),
        ) {
            let params: Params = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("reg.{i}.label"), v))
                .collect();
            let xml = render_polycom_config(&params, "test");
            proptest::prop_assert!(check_well_formed(&xml).is_ok(), "{xml}");
            let back = crate::config_file::ConfigFile::parse("x", &xml).unwrap().to_params();
            for (k, v) in params.iter().filter(|(k, v)| check_param_value(k, v).is_ok()) {
                proptest::prop_assert_eq!(back.get(k), Some(v));
            }
        }
    }
}
