//! Reading and editing Poly configuration files with every parameter's provenance.
//!
//! A Poly phone reads parameters as XML attributes; element names only group them (domain.md §4).
//! [`ConfigFile`] keeps the original text and, for every attribute, where it is. An unmodified
//! file is written back byte for byte; [`ConfigFile::set`] and [`ConfigFile::remove`] edit the text
//! in place, so attribute order, comments, spacing and line endings survive. The same reader
//! serves `<polycomConfig>`, legacy roots (`<PHONE_CONFIG><ALL …/>`, `<sip>`…) and masters
//! (`<APPLICATION …>`).

use crate::config::{Params, escape_attr};
use quick_xml::events::Event;
use std::ops::Range;

/// A line and column, both counted from 1; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a file cannot be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{at}: {message}")]
pub struct ParseError {
    pub file: String,
    pub at: Position,
    pub message: String,
}

/// One attribute: a parameter (or, in a master, a master attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The attribute name, e.g. `reg.1.address`.
    pub name: String,
    /// The value with XML escapes resolved.
    pub value: String,
    /// The element that holds it, e.g. `reg` or `ALL` (shared by the element's attributes).
    pub element: std::sync::Arc<str>,
    /// Byte offset of the attribute name in the file.
    pub offset: usize,
    /// The raw value between the quotes.
    value_span: Range<usize>,
    /// From the name to the closing quote.
    attr_span: Range<usize>,
}

/// Where new attributes of an element can be inserted.
#[derive(Debug, Clone)]
struct ElementSlot {
    name: String,
    /// Offset just after the element name or its last attribute.
    insert_at: usize,
}

/// A parsed configuration file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    name: String,
    text: String,
    root: String,
    params: Vec<Param>,
    elements: Vec<ElementSlot>,
    /// Offset of the root's end tag (`</polycomConfig>`), if it has one.
    root_end: Option<usize>,
    index: TextIndex,
    /// Elements that hold text (`<softkey.1.label>Hold</softkey.1.label>`): name and offset.
    element_text: Vec<(String, usize)>,
}

/// Attributes that are XML plumbing, not parameters.
fn is_plumbing(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:") || name.starts_with("xsi:")
}

/// Decodes a file's bytes as the UTF-8 text a Poly file is, or says why it is not: UTF-16 (with
/// or without a byte-order mark), or bytes that are not UTF-8 — with where.
pub fn decode(name: &str, bytes: &[u8]) -> Result<String, ParseError> {
    let at = |offset: usize, message: String| {
        let before = String::from_utf8_lossy(&bytes[..offset.min(bytes.len())]).into_owned();
        let index = TextIndex::new(&before);
        ParseError {
            file: name.to_string(),
            at: index.position(&before, before.len()),
            message,
        }
    };
    let utf16 = "the file is UTF-16; Poly configuration files are UTF-8 (save it as UTF-8)";
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(at(0, utf16.into()));
    }
    // UTF-16 without a mark: ASCII text with a NUL after (or before) every character.
    let head = &bytes[..bytes.len().min(64)];
    if head.len() >= 4
        && head
            .chunks(2)
            .all(|c| c.len() == 2 && (c[0] == 0) != (c[1] == 0))
    {
        return Err(at(0, utf16.into()));
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        at(
            offset,
            format!(
                "byte 0x{:02X} is not UTF-8; Poly configuration files are UTF-8",
                bytes[offset]
            ),
        )
    })
}

impl ConfigFile {
    /// Parses `text`; `name` is used in errors and provenance.
    pub fn parse(name: &str, text: &str) -> Result<ConfigFile, ParseError> {
        let index = TextIndex::new(text);
        let err = |at: usize, message: String| ParseError {
            file: name.to_string(),
            at: index.position(text, at),
            message,
        };
        // What XML cannot carry at all: said where it is, before any parsing (a phone refuses the
        // whole file; an edit of such a file could not be parsed back).
        if let Some((at, c)) = text
            .char_indices()
            .find(|(_, c)| !crate::config::is_xml_char(*c))
        {
            let what = match c {
                '\0' => "a NUL byte".to_string(),
                c => format!("character U+{:04X}", c as u32),
            };
            return Err(err(at, format!("{what}, which XML does not allow")));
        }
        // The reader's positions do not count a byte-order mark; offsets here always do.
        let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let mut reader = quick_xml::Reader::from_str(&text[bom..]);
        reader.config_mut().check_end_names = true;
        let mut params = Vec::new();
        let mut elements = Vec::new();
        let mut depth = 0usize;
        let mut root: Option<String> = None;
        let mut root_end = None;
        let mut open: Vec<String> = Vec::new();
        let mut element_text = Vec::new();
        loop {
            let before = reader.buffer_position() as usize + bom;
            let event = reader.read_event().map_err(|e| {
                let at = reader.error_position() as usize + bom;
                match &e {
                    // quick-xml points at the tag; the quote that never closed is the place.
                    quick_xml::Error::Syntax(
                        quick_xml::errors::SyntaxError::UnclosedDoubleQuotedAttributeValue
                        | quick_xml::errors::SyntaxError::UnclosedSingleQuotedAttributeValue,
                    ) => err(unclosed_quote(text, at).unwrap_or(at), e.to_string()),
                    _ => err(at, e.to_string()),
                }
            })?;
            let (start, empty) = match &event {
                Event::Start(s) => (s, false),
                Event::Empty(s) => (s, true),
                Event::End(_) => {
                    open.pop();
                    depth -= 1;
                    if depth == 0 {
                        root_end = Some(before);
                    }
                    continue;
                }
                Event::Text(t) if depth == 0 && !t.as_ref().trim_ascii().is_empty() => {
                    return Err(err(before, "text outside the root element".into()));
                }
                Event::Text(t) if !t.as_ref().trim_ascii().is_empty() => {
                    if let Some(e) = open.last()
                        && element_text.last().is_none_or(|(n, _)| n != e)
                    {
                        element_text.push((e.clone(), before));
                    }
                    continue;
                }
                Event::GeneralRef(r)
                    if !matches!(&**r, "amp" | "lt" | "gt" | "quot" | "apos")
                        && !matches!(r.resolve_char_ref(), Ok(Some(c)) if crate::config::is_xml_char(c)) =>
                {
                    let name: String = r.chars().take(40).collect();
                    return Err(err(before, format!("unknown entity or character &{name};")));
                }
                Event::Eof => break,
                _ => continue,
            };
            let element = start.name().as_ref().to_string();
            if element.is_empty() {
                return Err(err(before, "an element without a name".into()));
            }
            if !is_xml_name(&element) {
                let shown: String = element.chars().take(40).collect();
                return Err(err(before, format!("{shown:?} is not an element name")));
            }
            if depth == 0 {
                if root.is_some() {
                    return Err(err(before, format!("a second root element <{element}>")));
                }
                root = Some(element.clone());
            }
            let name_at = offset_in(text, start.name().as_ref()).unwrap_or(before);
            let mut insert_at = name_at + element.len();
            let shared_element: std::sync::Arc<str> = element.as_str().into();
            for attr in start.attributes() {
                let attr = attr.map_err(|e| {
                    let (at, message) = attribute_error(&e, name_at, |o| index.position(text, o));
                    err(at, message)
                })?;
                let key = attr.key.as_ref();
                let key_at = offset_in(text, key)
                    .ok_or_else(|| err(before, "attribute outside the text".into()))?;
                if !is_xml_name(key) {
                    let shown: String = key.chars().take(40).collect();
                    return Err(err(key_at, format!("{shown:?} is not an attribute name")));
                }
                let value_at = offset_in(text, &attr.value)
                    .ok_or_else(|| err(key_at, "attribute value outside the text".into()))?;
                let value_end = value_at + attr.value.len();
                insert_at = value_end + 1;
                if is_plumbing(key) {
                    continue;
                }
                let value = attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| match &e {
                        quick_xml::Error::Escape(
                            quick_xml::escape::EscapeError::UnrecognizedEntity(r, name),
                        ) => err(value_at + r.start, format!("unknown entity &{name};")),
                        quick_xml::Error::Escape(
                            quick_xml::escape::EscapeError::UnterminatedEntity(r),
                        ) => err(value_at + r.start, "an `&` without its `;`".into()),
                        _ => err(value_at, e.to_string()),
                    })?
                    .into_owned();
                params.push(Param {
                    name: key.to_string(),
                    value,
                    element: shared_element.clone(),
                    offset: key_at,
                    value_span: value_at..value_end,
                    attr_span: key_at..value_end + 1,
                });
            }
            elements.push(ElementSlot {
                name: element,
                insert_at,
            });
            if !empty {
                depth += 1;
                open.push(
                    elements
                        .last()
                        .map(|e: &ElementSlot| e.name.clone())
                        .unwrap_or_default(),
                );
            }
        }
        if depth != 0 {
            return Err(err(text.len(), "the file ends inside an element".into()));
        }
        let Some(root) = root else {
            return Err(err(0, "no root element".into()));
        };
        Ok(ConfigFile {
            name: name.to_string(),
            text: text.to_string(),
            root,
            params,
            elements,
            root_end,
            index,
            element_text,
        })
    }

    /// The name given at parse time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's text: the original bytes, plus any edits.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The root element's name (`polycomConfig`, `PHONE_CONFIG`, `APPLICATION`, …).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Every parameter in document order, duplicates included.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Elements that hold text rather than attributes, with the offset of the text: phones read
    /// parameters from attributes only, so `<softkey.1.label>Hold</softkey.1.label>` sets nothing.
    pub fn element_text(&self) -> &[(String, usize)] {
        &self.element_text
    }

    /// The first occurrence of a parameter.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Line and column of a byte offset in the file.
    pub fn position(&self, offset: usize) -> Position {
        self.index.position(&self.text, offset)
    }

    /// The parameters as a map; when a file sets one twice, the first occurrence is kept (the
    /// same rule the phone applies across files; within one file it is an assumption).
    pub fn to_params(&self) -> Params {
        let mut out = Params::new();
        for p in &self.params {
            out.entry(p.name.clone()).or_insert_with(|| p.value.clone());
        }
        out
    }

    /// Sets a parameter: every occurrence's value is replaced in place; a new one is added to the
    /// element named after its first segment (`reg` for `reg.1.address`), or as a new such
    /// element at the end of the root.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ParseError> {
        let group = name.split('.').next().unwrap_or(name).to_string();
        self.set_with_home(name, value, &group)
    }

    /// Like [`ConfigFile::set`], but a new parameter goes into the last element named `element`
    /// (for override files, whose parameters all sit on `<OVERRIDES>`).
    pub fn set_in(&mut self, element: &str, name: &str, value: &str) -> Result<(), ParseError> {
        self.set_with_home(name, value, element)
    }

    fn set_with_home(&mut self, name: &str, value: &str, home: &str) -> Result<(), ParseError> {
        // `'` too: the attribute being edited may be single-quoted.
        let escaped = escape_attr(value).replace('\'', "&apos;");
        let mut edits: Vec<(Range<usize>, String)> = self
            .params
            .iter()
            .filter(|p| p.name == name)
            .map(|p| (p.value_span.clone(), escaped.clone()))
            .collect();
        if edits.is_empty() {
            let group = home;
            let attr = format!(" {name}=\"{escaped}\"");
            if let Some(slot) = self.elements.iter().rev().find(|e| e.name == group) {
                edits.push((slot.insert_at..slot.insert_at, attr));
            } else if let Some(end) = self.root_end {
                let nl = if self.text.contains("\r\n") {
                    "\r\n"
                } else {
                    "\n"
                };
                edits.push((end..end, format!("  <{group}{attr}/>{nl}")));
            } else if let Some(slot) = self.elements.first() {
                edits.push((slot.insert_at..slot.insert_at, attr));
            }
        }
        self.apply(edits)
    }

    /// Removes every occurrence of a parameter (and the space before it). Returns whether any was.
    pub fn remove(&mut self, name: &str) -> Result<bool, ParseError> {
        let edits: Vec<(Range<usize>, String)> = self
            .params
            .iter()
            .filter(|p| p.name == name)
            .map(|p| {
                let b = self.text.as_bytes();
                let mut start = p.attr_span.start;
                while start > 0 && b[start - 1].is_ascii_whitespace() {
                    start -= 1;
                }
                (start..p.attr_span.end, String::new())
            })
            .collect();
        let any = !edits.is_empty();
        self.apply(edits)?;
        Ok(any)
    }

    fn apply(&mut self, mut edits: Vec<(Range<usize>, String)>) -> Result<(), ParseError> {
        if edits.is_empty() {
            return Ok(());
        }
        edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        let mut text = self.text.clone();
        for (range, with) in edits {
            if range.end > text.len()
                || !text.is_char_boundary(range.start)
                || !text.is_char_boundary(range.end)
            {
                return Err(ParseError {
                    file: self.name.clone(),
                    at: self.position(range.start),
                    message: "cannot edit here: the position is not inside the text".into(),
                });
            }
            text.replace_range(range, &with);
        }
        *self = ConfigFile::parse(&self.name, &text)?;
        Ok(())
    }
}

/// Line starts and a running count of characters, so that the line and column of any offset
/// cost a binary search and at most one block of counting — not a scan from the start of a line
/// that may be the whole file (a 4 MB configuration on one line made `config check` quadratic).
#[derive(Debug, Clone)]
struct TextIndex {
    line_starts: Vec<usize>,
    /// Characters in `text[..k * BLOCK]`, for every k (empty for ASCII text, where a
    /// character is a byte).
    block_chars: Vec<usize>,
}

const BLOCK: usize = 256;

impl TextIndex {
    fn new(text: &str) -> TextIndex {
        let bytes = text.as_bytes();
        let mut line_starts = vec![0];
        let mut block_chars = Vec::with_capacity(bytes.len() / BLOCK + 1);
        let mut chars = 0;
        for (i, b) in bytes.iter().enumerate() {
            if i % BLOCK == 0 {
                block_chars.push(chars);
            }
            // A line ends at LF, CR LF, or a lone CR (as XML reads them; some files use CR alone).
            if *b == b'\n' || (*b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                line_starts.push(i + 1);
            }
            chars += usize::from(!is_continuation(*b));
        }
        block_chars.push(chars);
        if chars == bytes.len() {
            block_chars = Vec::new();
        }
        TextIndex {
            line_starts,
            block_chars,
        }
    }

    /// Characters in `text[..offset]`.
    fn chars_before(&self, text: &str, offset: usize) -> usize {
        if self.block_chars.is_empty() {
            return offset; // ASCII
        }
        let block = offset / BLOCK;
        let from = block * BLOCK;
        self.block_chars[block]
            + text.as_bytes()[from..offset]
                .iter()
                .filter(|b| !is_continuation(**b))
                .count()
    }

    fn position(&self, text: &str, offset: usize) -> Position {
        let offset = offset.min(text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let column = self.chars_before(text, offset) - self.chars_before(text, start) + 1;
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// Where an attribute error is in the file (quick-xml counts from the element name) and what it
/// means, in words that do not carry quick-xml's tag-relative positions.
fn attribute_error(
    e: &quick_xml::events::attributes::AttrError,
    tag_at: usize,
    position: impl Fn(usize) -> Position,
) -> (usize, String) {
    use quick_xml::events::attributes::AttrError as A;
    match *e {
        A::ExpectedEq(p) => (
            tag_at + p,
            "an attribute name must be followed by `=` and a quoted value".into(),
        ),
        A::ExpectedValue(p) => (tag_at + p, "`=` must be followed by a quoted value".into()),
        A::UnquotedValue(p) => (
            tag_at + p,
            "an attribute value must be enclosed in `\"` or `'`".into(),
        ),
        A::ExpectedQuote(p, q) => (
            tag_at + p,
            format!("this value is not closed by its `{}`", q as char),
        ),
        A::Duplicated(p, first) => (
            tag_at + p,
            format!(
                "the same attribute twice in one element (first at {})",
                position(tag_at + first)
            ),
        ),
    }
}

/// Where the quote that opens a value never closed is, in the tag starting at `from` (`None`
/// when every quote there is closed).
fn unclosed_quote(text: &str, from: usize) -> Option<usize> {
    let mut open: Option<(u8, usize)> = None;
    for (i, b) in text.as_bytes().iter().enumerate().skip(from) {
        match (open, *b) {
            (None, b'>') => return None,
            (None, q @ (b'"' | b'\'')) => open = Some((q, i)),
            (Some((q, _)), c) if c == q => open = None,
            _ => {}
        }
    }
    open.map(|(_, at)| at)
}

/// An XML `Name`, closely enough: starts with a letter, `_` or `:`, goes on with letters, digits,
/// `.`, `-`, `_`, `:` (any alphabetic or numeric character beyond ASCII too). What quick-xml
/// lets through beyond that (quotes, `%`, `<`, a byte-order mark) is refused here, so that an
/// edit never turns an accepted file into one that no longer parses.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c == ':' || c.is_alphabetic())
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '\u{b7}'))
}

/// A UTF-8 continuation byte: part of a character begun earlier.
fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// Where `part`, a slice borrowed from `whole`, starts in it; `None` for text from elsewhere.
pub(crate) fn offset_in(whole: &str, part: &str) -> Option<usize> {
    let at = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (at + part.len() <= whole.len() && whole.is_char_boundary(at)).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "<?xml version=\"1.0\"?>\r\n<!-- c -->\r\n<polycomConfig xmlns:xsi=\"x\" xsi:noNamespaceSchemaLocation=\"polycomConfig.xsd\">\r\n  <reg reg.1.address=\"1001\" reg.1.label=\"A &amp; B\"/>\r\n  <device device.set=\"1\"\r\n     device.auth.localAdminPassword=\"9\"/>\r\n</polycomConfig>\r\n";

    #[test]
    fn reads_parameters_with_provenance() {
        let f = ConfigFile::parse("s.cfg", SAMPLE).unwrap();
        assert_eq!(f.root(), "polycomConfig");
        let names: Vec<&str> = f.params().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "reg.1.address",
                "reg.1.label",
                "device.set",
                "device.auth.localAdminPassword"
            ]
        );
        let label = f.get("reg.1.label").unwrap();
        assert_eq!((label.value.as_str(), &*label.element), ("A & B", "reg"));
        assert_eq!(
            f.position(label.offset),
            Position {
                line: 4,
                column: 29
            }
        );
        let pw = f.get("device.auth.localAdminPassword").unwrap();
        assert_eq!(f.position(pw.offset), Position { line: 6, column: 6 });
        assert_eq!(f.text(), SAMPLE);
    }

    #[test]
    fn edits_keep_everything_else() {
        let mut f = ConfigFile::parse("s.cfg", SAMPLE).unwrap();
        let mut o =
            ConfigFile::parse("o.cfg", "<PHONE_CONFIG>\n  <OVERRIDES/>\n</PHONE_CONFIG>").unwrap();
        o.set_in("OVERRIDES", "device.auth.localAdminPassword", "P2")
            .unwrap();
        assert_eq!(
            o.text(),
            "<PHONE_CONFIG>\n  <OVERRIDES device.auth.localAdminPassword=\"P2\"/>\n</PHONE_CONFIG>"
        );
        let mut q = ConfigFile::parse("q.cfg", "<c a.b='x'/>").unwrap();
        q.set("a.b", "it's").unwrap();
        assert_eq!(q.get("a.b").unwrap().value, "it's");
        f.set("reg.1.label", "Desk <1>").unwrap();
        assert_eq!(f.text(), SAMPLE.replace("A &amp; B", "Desk &lt;1&gt;"));
        f.set("reg.2.address", "1002").unwrap();
        assert!(
            f.text()
                .contains("reg.1.label=\"Desk &lt;1&gt;\" reg.2.address=\"1002\"/>")
        );
        f.set("tcpIpApp.sntp.address", "ntp").unwrap();
        assert!(
            f.text()
                .contains("  <tcpIpApp tcpIpApp.sntp.address=\"ntp\"/>\r\n</polycomConfig>")
        );
        assert!(f.remove("device.auth.localAdminPassword").unwrap());
        assert!(f.text().contains("<device device.set=\"1\"/>"));
        assert!(!f.remove("nothing").unwrap());
        assert_eq!(f.get("reg.2.address").unwrap().value, "1002");
        assert!(
            f.text()
                .starts_with("<?xml version=\"1.0\"?>\r\n<!-- c -->\r\n")
        );
    }

    #[test]
    fn legacy_roots_are_read() {
        let f = ConfigFile::parse(
            "p.cfg",
            "<PHONE_CONFIG><ALL reg.1.address=\"x\" /></PHONE_CONFIG>",
        )
        .unwrap();
        assert_eq!((f.root(), &*f.params()[0].element), ("PHONE_CONFIG", "ALL"));
    }

    #[test]
    fn malformed_files_say_where() {
        let cases = [
            ("<a>\n<b x=\"1\">\n</a>", 3),
            ("<a x=\"1\" x=\"2\"/>", 1),
            ("<a/>\n<b/>", 2),
            ("", 1),
            ("<a>\n\n", 3),
            ("<a x=\"&bogus;\"/>", 1),
        ];
        for (text, line) in cases {
            let e = ConfigFile::parse("bad.cfg", text).unwrap_err();
            assert_eq!(e.at.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn fuzzer_finding_is_an_error_not_a_panic() {
        let input = include_bytes!("../tests/fixtures/fuzz-config-file-crash-1");
        let text = std::str::from_utf8(input).unwrap();
        if let Ok(mut f) = ConfigFile::parse("f.cfg", text) {
            let _ = f.set("fuzz.added", "1");
        }
        assert!(ConfigFile::parse("e.cfg", "<></>").is_err());
    }

    /// `cargo fuzz run -O config_file` found a file (a byte-order mark, quotes and `<` inside an
    /// element name, NUL and control bytes) that parsed, but no longer did after an edit. Such
    /// names and characters are refused at parse time now, with where they are.
    #[test]
    fn what_an_edit_could_not_keep_is_refused_at_parse_time() {
        let input = include_bytes!("../tests/fixtures/fuzz-config-file-crash-2");
        let text = std::str::from_utf8(input).unwrap();
        let e = ConfigFile::parse("f.cfg", text).unwrap_err();
        assert_eq!((e.at.line, e.at.column), (1, 18), "{e}");
        assert!(e.message.contains("NUL"), "{e}");
        let e =
            ConfigFile::parse("f.cfg", &text.replace(['\0', '\u{1}', '\u{1b}'], "")).unwrap_err();
        assert!(e.message.contains("not an element name"), "{e}");
        for (text, at, what) in [
            ("<a>\n<b c.d=\"1\0\"/></a>", (2, 10), "NUL"),
            ("<a>\r<b c.d=\"\u{1b}\"/></a>", (2, 9), "U+001B"),
            (
                "<a>\r\r<b\r c\u{feff}=\"1\"/></a>",
                (4, 2),
                "not an attribute name",
            ),
            ("<a>\n <b c'd=\"1\"/></a>", (2, 6), "not closed"),
        ] {
            let e = ConfigFile::parse("f.cfg", text).unwrap_err();
            assert_eq!((e.at.line, e.at.column), at, "{text:?}: {e}");
            assert!(e.message.contains(what), "{text:?}: {e}");
        }
    }

    #[test]
    fn encodings_that_are_not_utf8_are_named() {
        let utf16: Vec<u8> = "<a b.c=\"1\"/>"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        for bytes in [
            [&[0xFF, 0xFE][..], &utf16].concat(),
            utf16.clone(),
            [&[0xFE, 0xFF][..], b"\0<"].concat(),
        ] {
            let e = decode("u.cfg", &bytes).unwrap_err();
            assert!(e.message.contains("UTF-16"), "{e}");
        }
        let e = decode("l.cfg", b"<a>\n  <b c=\"caf\xe9\"/>\n</a>").unwrap_err();
        assert_eq!((e.at.line, e.at.column), (2, 12), "{e}");
        assert!(e.message.contains("0xE9"), "{e}");
        assert_eq!(decode("ok.cfg", "<a>é</a>".as_bytes()).unwrap(), "<a>é</a>");
    }

    /// Lines end at LF, CR LF or a lone CR: a CR-only file has its errors on their own lines.
    #[test]
    fn cr_only_files_count_lines() {
        let f = ConfigFile::parse("c.cfg", "<a>\r<b x.y=\"1\"/>\r<c z.w=\"2\"/>\r</a>").unwrap();
        assert_eq!(
            f.position(f.get("z.w").unwrap().offset),
            Position { line: 3, column: 4 }
        );
        let e = ConfigFile::parse("c.cfg", "<a>\r\r<b>\r</a>").unwrap_err();
        assert_eq!(e.at.line, 4, "{e}");
    }

    #[test]
    fn a_byte_order_mark_does_not_shift_edits() {
        let mut f =
            ConfigFile::parse("b.cfg", "\u{feff}<polycomConfig>\n</polycomConfig>\n").unwrap();
        f.set("reg.1.label", "x").unwrap();
        assert_eq!(
            f.text(),
            "\u{feff}<polycomConfig>\n  <reg reg.1.label=\"x\"/>\n</polycomConfig>\n"
        );
        let e = ConfigFile::parse("b.cfg", "\u{feff}<a>\n<b>\n</a>").unwrap_err();
        assert_eq!(e.at.line, 3);
    }

    #[test]
    fn the_first_occurrence_wins_within_a_file() {
        let f = ConfigFile::parse("d.cfg", "<c><a x.y=\"1\"/><b x.y=\"2\"/></c>").unwrap();
        assert_eq!(f.to_params()["x.y"], "1");
        assert_eq!(f.params().len(), 2);
    }

    proptest::proptest! {
        /// What polyprov writes, it reads back exactly.
        #[test]
        fn written_configs_parse_back(
            params in proptest::collection::btree_map("[a-z][a-zA-Z0-9]{0,6}(\\.[a-zA-Z0-9_-]{1,6}){0,3}", "\\PC{0,20}", 0..20),
        ) {
            let text = crate::config::render_polycom_config(&params, "generated");
            let f = ConfigFile::parse("g.cfg", &text).unwrap();
            proptest::prop_assert_eq!(f.to_params(), params);
            proptest::prop_assert_eq!(f.text(), text.as_str());
        }

        /// Setting a parameter changes that parameter only.
        #[test]
        fn set_changes_one_parameter(value in "\\PC{0,20}", pick in 0usize..4) {
            let mut f = ConfigFile::parse("s.cfg", SAMPLE).unwrap();
            let before = f.to_params();
            let name = ["reg.1.address", "reg.1.label", "reg.9.new", "zz.new"][pick];
            f.set(name, &value).unwrap();
            let mut want = before;
            want.insert(name.to_string(), value);
            proptest::prop_assert_eq!(f.to_params(), want);
        }

        /// Arbitrary text never panics the reader.
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = ConfigFile::parse("x", &text);
        }

        /// Whatever the reader accepts can be edited and read back: XML-ish noise (names,
        /// quotes, entities, NUL, CR, byte-order marks) in any order.
        #[test]
        fn accepted_files_stay_parseable_after_edits(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "<", ">", "/", "=", "\"", "'", " ", "\n", "\r", "a", "b.c", "x", "&amp;", "&", ";",
                "%", "\u{feff}", "\0", "\u{1}", "<a>", "</a>", "<a ", "b.c=\"1\"", "/>", "<?x?>",
                "<!--c-->", "<APPLICATION", "CONFIG_FILES=", "\u{e9}",
            ]), 0..40),
        ) {
            let text: String = parts.concat();
            if let Ok(mut f) = ConfigFile::parse("x", &text) {
                proptest::prop_assert_eq!(f.text(), text.as_str());
                if let Some(p) = f.params().first().cloned() {
                    f.set(&p.name, "x&<\"").unwrap();
                    proptest::prop_assert_eq!(f.get(&p.name).map(|p| p.value.as_str()), Some("x&<\""));
                }
                f.set("fuzz.added", "1").unwrap();
            }
        }
    }
}

#[cfg(test)]
mod corpus_tests {
    use super::*;
    use std::path::PathBuf;

    /// Every file of `tests/corpus` that is XML.
    pub(crate) fn corpus() -> Vec<(String, String)> {
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
                } else if p.extension().is_some_and(|x| x == "cfg") {
                    let name = p.strip_prefix(&root).unwrap().display().to_string();
                    out.push((name, std::fs::read_to_string(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_corpus_file_parses_and_edits_keep_the_rest() {
        let files = corpus();
        assert_eq!(
            files.len(),
            18,
            "{:?}",
            files.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        let mut params = 0;
        for (name, text) in files {
            let f = ConfigFile::parse(&name, &text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(f.text(), text);
            params += f.params().len();
            // Rewriting the first parameter with its own value changes nothing a phone reads.
            if let Some(p) = f.params().first().cloned() {
                let mut g = f.clone();
                g.set(&p.name, &p.value).unwrap();
                assert_eq!(g.to_params(), f.to_params(), "{name}");
                assert_eq!(g.params().len(), f.params().len(), "{name}");
            }
        }
        assert!(params > 3000, "{params}");
    }
}
