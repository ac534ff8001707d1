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
    /// The element that holds it, e.g. `reg` or `ALL`.
    pub element: String,
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
    line_starts: Vec<usize>,
}

/// Attributes that are XML plumbing, not parameters.
fn is_plumbing(name: &str) -> bool {
    name == "xmlns" || name.starts_with("xmlns:") || name.starts_with("xsi:")
}

impl ConfigFile {
    /// Parses `text`; `name` is used in errors and provenance.
    pub fn parse(name: &str, text: &str) -> Result<ConfigFile, ParseError> {
        let line_starts = line_starts(text);
        let err = |at: usize, message: String| ParseError {
            file: name.to_string(),
            at: position_in(text, &line_starts, at),
            message,
        };
        // The reader's positions do not count a byte-order mark; offsets here always do.
        let bom = if text.starts_with('\u{feff}') { 3 } else { 0 };
        let mut reader = quick_xml::Reader::from_str(&text[bom..]);
        reader.config_mut().check_end_names = true;
        let mut params = Vec::new();
        let mut elements = Vec::new();
        let mut depth = 0usize;
        let mut root: Option<String> = None;
        let mut root_end = None;
        loop {
            let before = reader.buffer_position() as usize + bom;
            let event = reader
                .read_event()
                .map_err(|e| err(reader.error_position() as usize + bom, e.to_string()))?;
            let (start, empty) = match &event {
                Event::Start(s) => (s, false),
                Event::Empty(s) => (s, true),
                Event::End(_) => {
                    depth -= 1;
                    if depth == 0 {
                        root_end = Some(before);
                    }
                    continue;
                }
                Event::Text(t) if depth == 0 && !t.as_ref().trim_ascii().is_empty() => {
                    return Err(err(before, "text outside the root element".into()));
                }
                Event::Eof => break,
                _ => continue,
            };
            let element = start.name().as_ref().to_string();
            if element.is_empty() {
                return Err(err(before, "an element without a name".into()));
            }
            if depth == 0 {
                if root.is_some() {
                    return Err(err(before, format!("a second root element <{element}>")));
                }
                root = Some(element.clone());
            }
            let name_at = offset_in(text, start.name().as_ref()).unwrap_or(before);
            let mut insert_at = name_at + element.len();
            for attr in start.attributes() {
                let attr = attr.map_err(|e| err(before, e.to_string()))?;
                let key = attr.key.as_ref();
                let key_at = offset_in(text, key)
                    .ok_or_else(|| err(before, "attribute outside the text".into()))?;
                let value_at = offset_in(text, &attr.value)
                    .ok_or_else(|| err(key_at, "attribute value outside the text".into()))?;
                let value_end = value_at + attr.value.len();
                insert_at = value_end + 1;
                if is_plumbing(key) {
                    continue;
                }
                let value = attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| err(value_at, e.to_string()))?
                    .into_owned();
                params.push(Param {
                    name: key.to_string(),
                    value,
                    element: element.clone(),
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
            line_starts,
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

    /// The first occurrence of a parameter.
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Line and column of a byte offset in the file.
    pub fn position(&self, offset: usize) -> Position {
        position_in(&self.text, &self.line_starts, offset)
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

fn line_starts(text: &str) -> Vec<usize> {
    let mut v = vec![0];
    v.extend(
        text.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b'\n')
            .map(|(i, _)| i + 1),
    );
    v
}

fn position_in(text: &str, line_starts: &[usize], offset: usize) -> Position {
    let offset = offset.min(text.len());
    let line = line_starts.partition_point(|&s| s <= offset).max(1);
    let start = line_starts[line - 1];
    let column = text
        .get(start..offset)
        .map_or(offset - start, |s| s.chars().count())
        + 1;
    Position {
        line: line as u32,
        column: column as u32,
    }
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
        assert_eq!(
            (label.value.as_str(), label.element.as_str()),
            ("A & B", "reg")
        );
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
        assert_eq!(
            (f.root(), f.params()[0].element.as_str()),
            ("PHONE_CONFIG", "ALL")
        );
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
