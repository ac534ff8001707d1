//! Findings on a set of Poly configuration files, as a phone would see them: malformed XML,
//! parameters set twice, `device.*` values the phone will ignore, `CONFIG_FILES` over the phone's
//! limits or naming missing files, and secrets in files every phone can download.
//!
//! Pure: the caller reads the files and says which names exist.

use crate::config_file::{ConfigFile, Position};
use crate::effective::{PhoneSources, Verdict, effective, effective_only, is_gated};
use crate::master::{MAX_CONFIG_FILE_ENTRY, MAX_CONFIG_FILES_LIST, Master};
use crate::role::{Role, is_master_name};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

/// How bad a finding is. `Error` and `Security` make `config check` fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Security,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Security => "security",
            Severity::Warning => "warning",
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// A stable identifier, e.g. `secret-in-shared-file`.
    pub code: &'static str,
    pub file: String,
    pub position: Option<Position>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{p}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        write!(f, "{}[{}]: {}", self.severity, self.code, self.message)
    }
}

/// Files to check: `(name relative to the boot root, text)`, and every name that exists in the
/// boot root (for `CONFIG_FILES` that name missing files).
#[derive(Debug, Default, Clone)]
pub struct LintInput {
    pub files: Vec<(String, String)>,
    pub existing: BTreeSet<String>,
    /// Files that could not be read as text (UTF-16, not UTF-8) or at all, with why.
    pub unreadable: Vec<crate::config_file::ParseError>,
}

impl LintInput {
    /// Adds a file from its bytes: decoded as UTF-8, or recorded as unreadable with where.
    pub fn add_bytes(&mut self, name: String, bytes: &[u8]) {
        match crate::config_file::decode(&name, bytes) {
            Ok(text) => self.files.push((name, text)),
            Err(e) => self.unreadable.push(e),
        }
    }
}

/// Ungated values per file above which they are reported as one finding.
const UNGATED_DETAIL_LIMIT: usize = 5;

/// Whether a parameter carries a secret: a password, passphrase, key or `device.auth.*` value.
pub fn is_secret(name: &str) -> bool {
    if name.ends_with(".set") {
        return false;
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    // Case-insensitive without allocating: this runs for every parameter of every file.
    let ends_ci = |s: &str, tail: &str| {
        s.len() >= tail.len()
            && s.is_char_boundary(s.len() - tail.len())
            && s[s.len() - tail.len()..].eq_ignore_ascii_case(tail)
    };
    ends_ci(last, "password")
        || last.eq_ignore_ascii_case("passwd")
        || last.eq_ignore_ascii_case("passphrase")
        || last.eq_ignore_ascii_case("secret")
        || name.starts_with("device.auth.")
        || (name.starts_with("device.wifi.")
            && (last.eq_ignore_ascii_case("key")
                || (last.len() > 3
                    && last.is_char_boundary(3)
                    && last[..3].eq_ignore_ascii_case("key")
                    && last[3..].parse::<u8>().is_ok())))
        || name == "device.sec.configEncryption.key"
}

/// What secret a parameter carries, if any: by its name (a password, key, passphrase), or in
/// its value — a URL with a user and password (`ldap://admin:pw@…`), a PEM private key, or a
/// digit string sent after a pause or DTMF step of a key macro (a voicemail PIN, most likely).
pub fn secret_kind(name: &str, value: &str) -> Option<&'static str> {
    if is_secret(name) {
        return Some("is set");
    }
    if url_with_password(value) {
        return Some("names a URL with a user and password");
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    // A key itself: PEM, or key material under a `…privateKey` name (not a short flag such as
    // `sec.uploadDevice.privateKey="0"`, which says whether to upload one).
    let key_material =
        value.trim().len() >= 32 && !value.trim().chars().all(|c| c.is_ascii_digit());
    if value.contains("PRIVATE KEY-----")
        || (last.to_ascii_lowercase().ends_with("privatekey") && key_material)
    {
        return Some("holds a private key");
    }
    let lower = name.to_ascii_lowercase();
    if (lower.contains("action") || lower.contains("macro")) && macro_sends_digits(value) {
        return Some("sends a digit string after a pause or DTMF step (a PIN?)");
    }
    None
}

/// `scheme://user:password@host…` anywhere in a value (a list of URLs too).
fn url_with_password(value: &str) -> bool {
    value.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', ',', ' ', '"']).next().unwrap_or("");
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    })
}

/// A key macro (`*97$P2N4$1234$Tdtmf$#`) that, after its first `$…$` step, sends four or more
/// digits: the shape of a voicemail PIN typed by the macro.
fn macro_sends_digits(value: &str) -> bool {
    let Some((_, after)) = value.split_once('$') else {
        return false;
    };
    let mut run = 0;
    for c in after.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 4 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// Whether a file is specific to one phone (`<mac>…`), rather than downloadable by every phone.
fn is_per_device(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.get(..12)
        .is_some_and(|h| crate::Mac::hex12(h).is_some())
}

fn dir_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(d, _)| d)
}

fn join(dir: &str, entry: &str) -> String {
    let entry = entry.trim_start_matches('/');
    if dir.is_empty() {
        entry.to_string()
    } else {
        format!("{dir}/{entry}")
    }
}

/// Checks the files. Findings are sorted by file, position and code.
pub fn lint(input: &LintInput) -> Vec<Finding> {
    let mut out: Vec<Finding> = input
        .unreadable
        .iter()
        .map(|e| Finding {
            severity: Severity::Error,
            code: "unreadable-file",
            file: e.file.clone(),
            position: Some(e.at),
            message: e.message.clone(),
        })
        .collect();
    let mut parsed: BTreeMap<String, ConfigFile> = BTreeMap::new();
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for (name, text) in &input.files {
        match ConfigFile::parse(name, text) {
            Ok(f) => {
                let role = Role::of(name, text, Some(f.root()));
                if is_master_name(name) && role != Role::Master {
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "master-not-application",
                        file: name.clone(),
                        position: None,
                        message: format!(
                            "phones read this name as a master file, but its root is <{}>, not <APPLICATION>: a phone cannot use it",
                            f.root()
                        ),
                    });
                } else if let Role::Other(what) = &role {
                    out.push(not_poly(name, what));
                }
                roles.insert(name.clone(), role);
                parsed.insert(name.clone(), f);
            }
            Err(e) => match Role::of(name, text, None) {
                Role::Other(what) if !text.trim_start().starts_with('<') => {
                    out.push(not_poly(name, &what));
                }
                _ => out.push(Finding {
                    severity: Severity::Error,
                    code: "malformed-xml",
                    file: name.clone(),
                    position: Some(e.at),
                    message: e.message,
                }),
            },
        }
    }
    let role = |name: &str| {
        roles
            .get(name)
            .cloned()
            .unwrap_or(Role::Other(String::new()))
    };

    // Masters: limits, missing files, credentials in URLs; and the sets of files phones read.
    let mut sets: Vec<(String, Vec<String>)> = Vec::new();
    let mut referenced = BTreeSet::new();
    for (name, f) in &parsed {
        if role(name) != Role::Master {
            continue;
        }
        let Ok(master) = Master::parse(name, f.text()) else {
            continue;
        };
        for p in f
            .params()
            .iter()
            .filter(|p| p.name == "CONFIG_FILES" || p.name.starts_with("CONFIG_FILES_"))
        {
            let at = Some(f.position(p.offset));
            if p.value.len() > MAX_CONFIG_FILES_LIST {
                out.push(Finding {
                    severity: Severity::Error,
                    code: "config-files-too-long",
                    file: name.clone(),
                    position: at,
                    message: format!(
                        "{} is {} characters; a phone reads at most {MAX_CONFIG_FILES_LIST}",
                        p.name,
                        p.value.len()
                    ),
                });
            }
            let mut set = Vec::new();
            for entry in p.value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                if entry.len() > MAX_CONFIG_FILE_ENTRY {
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "config-file-entry-too-long",
                        file: name.clone(),
                        position: at,
                        message: format!("an entry of {} is {} characters; a phone reads at most {MAX_CONFIG_FILE_ENTRY}", p.name, entry.len()),
                    });
                }
                if entry.contains("://") {
                    continue; // a URL: its credentials are checked with every attribute below
                }
                if entry.contains('[') {
                    continue; // [PHONE_MAC_ADDRESS] / [PHONE_MODEL]: one file per phone, not checkable here
                }
                let full = join(dir_of(name), entry);
                referenced.insert(full.clone());
                if !input.existing.contains(&full) {
                    out.push(Finding {
                        severity: Severity::Error,
                        code: "missing-config-file",
                        file: name.clone(),
                        position: at,
                        message: format!(
                            "{} lists {entry:?}, which is not in the boot root",
                            p.name
                        ),
                    });
                }
                set.push(full);
            }
            sets.push((format!("{name} {}", p.name), set));
        }
        let _ = master;
        // Any attribute of a shared master (CONFIG_FILES entries, APP_FILE_PATH, directories)
        // naming a URL with a password: every phone can read it.
        if !is_per_device(name) {
            for p in f.params().iter().filter(|p| url_with_password(&p.value)) {
                out.push(Finding {
                    severity: Severity::Security,
                    code: "credentials-in-shared-master",
                    file: name.clone(),
                    position: Some(f.position(p.offset)),
                    message: format!(
                        "{} names a URL with a user and password; every phone can read this master",
                        p.name
                    ),
                });
            }
        }
    }

    for (name, f) in &parsed {
        let file_role = role(name);
        if !file_role.has_parameters() {
            continue;
        }
        // Within one file.
        let mut first: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::with_capacity(f.params().len());
        for p in f.params() {
            // Positions only for what is reported: most parameters are not.
            let at = || f.position(p.offset);
            if let Some(win) = first.get(p.name.as_str()).map(|o| f.position(*o)) {
                out.push(Finding {
                    severity: Severity::Warning,
                    code: "duplicate-parameter",
                    file: name.clone(),
                    position: Some(at()),
                    message: format!(
                        "{} is set again; the one at {win} is read first and wins",
                        p.name
                    ),
                });
            } else {
                first.insert(&p.name, p.offset);
            }
            if !is_per_device(name)
                && !p.value.trim().is_empty()
                && let Some(what) = secret_kind(&p.name, &p.value)
            {
                out.push(Finding {
                    severity: Severity::Security,
                    code: "secret-in-shared-file",
                    file: name.clone(),
                    position: Some(at()),
                    message: format!("{} {what} in a file every phone can download; give each phone its own value in a per-device file", p.name),
                });
            }
        }
        // The templates are UC Software's: legacy SIP 1.x/2.x files (`<sip>`, `<ipmid>`,
        // `<phone1>`) name things otherwise.
        if matches!(f.root(), "polycomConfig" | "PHONE_CONFIG") {
            names(name, f, &mut out);
        }
        // A file no master lists is checked for gating on its own — a phone's overrides are
        // applied without gating, so not those (the rule `effective` applies too).
        if !referenced.contains(name) && file_role.is_gated() {
            ungated(std::slice::from_ref(f), &mut out);
        }
    }

    // Across the files one master list makes a phone read. A value shadowed in one list may
    // apply through another (the generic CONFIG_FILES for other models): "never applies" only
    // when no list lets it.
    let mut shadowed: BTreeMap<ValueAt, Vec<(String, String, String)>> = BTreeMap::new();
    let mut applies: BTreeSet<ValueAt> = BTreeSet::new();
    for (label, set) in &sets {
        let files: Vec<ConfigFile> = set
            .iter()
            .filter(|n| role(n).has_parameters())
            .filter_map(|n| parsed.get(n).cloned())
            .collect();
        if files.is_empty() {
            continue;
        }
        let e = effective(&PhoneSources {
            config_files: &files,
            ..Default::default()
        });
        for (param, r) in &e {
            let mut winner: Option<(&str, &str)> = None;
            for c in &r.candidates {
                let file = c.file.as_deref().unwrap_or_default();
                let key = (file.to_string(), c.position, param.clone(), c.value.clone());
                match (&c.verdict, winner) {
                    (Verdict::Wins, _) => {
                        winner = Some((file, &c.value));
                        applies.insert(key);
                    }
                    (Verdict::Shadowed, Some((wf, wv))) if wf != file && wv != c.value => {
                        shadowed.entry(key).or_default().push((
                            label.clone(),
                            wf.to_string(),
                            wv.to_string(),
                        ));
                    }
                    _ => {}
                }
            }
        }
        ungated(&files, &mut out);
    }
    for ((file, position, param, value), by) in shadowed {
        let key = (file, position, param, value);
        let (label, wf, wv) = &by[0];
        let message = if applies.contains(&key) {
            let lists: Vec<&str> = by.iter().map(|(l, _, _)| l.as_str()).collect();
            format!(
                "{}={:?} does not apply to phones that read {}: {wf} is listed before it and sets {wv:?} (phones reading other lists get it)",
                key.2,
                key.3,
                lists.join(", ")
            )
        } else {
            format!(
                "{}={:?} never applies: {wf} is listed before it in {label} and sets {wv:?}",
                key.2, key.3
            )
        };
        out.push(Finding {
            severity: Severity::Warning,
            code: "overridden-parameter",
            file: key.0,
            position: key.1,
            message,
        });
    }

    out.sort_by(|a, b| {
        (&a.file, a.position, a.code, &a.message).cmp(&(&b.file, b.position, b.code, &b.message))
    });
    out.dedup();
    out
}

/// Findings reported per file by name checks before they are summarised as one.
const NAME_DETAIL_LIMIT: usize = 20;

/// Distinct shapes of parameter name looked up in the dictionary per file.
const NAME_LOOKUPS: usize = 5000;

/// Parameter names against the vendor's templates (case, near misses) and settings written as
/// element text, which phones ignore.
fn names(name: &str, f: &ConfigFile, out: &mut Vec<Finding>) {
    use crate::dictionary::{Lookup, lookup};
    let mut found = Vec::new();
    for (element, at) in f.element_text() {
        if element.contains('.') {
            found.push((Some(f.position(*at)), "element-text-setting", format!(
                "<{element}> holds its value as element text; phones read only attributes (write {element}=\"…\" on an element)"
            )));
        }
    }
    // Each shape of name is looked up once (`reg.1.x`, `reg.2.x` are one), and at most
    // `NAME_LOOKUPS` shapes per file: the near-miss search must not make a huge file slow.
    let mut looked = std::collections::HashSet::new();
    for p in f.params() {
        if looked.len() >= NAME_LOOKUPS || !looked.insert(crate::dictionary::normalise(&p.name)) {
            continue;
        }
        let message = match lookup(&p.name) {
            Lookup::WrongCase(k) => format!(
                "{} is not a parameter a phone knows: names are case-sensitive; the vendor's templates write {k}",
                p.name
            ),
            Lookup::Near(k) => format!(
                "{} is not in the vendor's templates; did you mean {k}? (a phone ignores names it does not know)",
                p.name
            ),
            Lookup::Known | Lookup::Unknown => continue,
        };
        found.push((Some(f.position(p.offset)), "unknown-parameter", message));
    }
    let total = found.len();
    for (i, (position, code, message)) in found.into_iter().enumerate() {
        if i == NAME_DETAIL_LIMIT {
            out.push(Finding {
                severity: Severity::Warning,
                code: "unknown-parameter",
                file: name.to_string(),
                position: None,
                message: format!("{} more names like these", total - NAME_DETAIL_LIMIT),
            });
            break;
        }
        out.push(Finding {
            severity: Severity::Warning,
            code,
            file: name.to_string(),
            position,
            message,
        });
    }
}

/// One value in one place: file, position, parameter, value.
type ValueAt = (String, Option<Position>, String, String);

fn not_poly(name: &str, what: &str) -> Finding {
    Finding {
        severity: Severity::Warning,
        code: "not-a-poly-file",
        file: name.to_string(),
        position: None,
        message: format!("{what}; not checked as a Poly file"),
    }
}

/// `device.*` values with a value that the phone ignores for lack of gating, per file.
fn ungated(files: &[ConfigFile], out: &mut Vec<Finding>) {
    // Only `device.*` is gated: the rest of a large file need not be resolved at all.
    let e = effective_only(
        &PhoneSources {
            config_files: files,
            ..Default::default()
        },
        |name| name.starts_with("device."),
    );
    let mut per_file: BTreeMap<String, Vec<(String, Option<Position>, String)>> = BTreeMap::new();
    for (param, r) in &e {
        if !is_gated(param) {
            continue;
        }
        for c in &r.candidates {
            if let Verdict::Ungated(gate) = &c.verdict
                && !c.value.trim().is_empty()
            {
                per_file
                    .entry(c.file.clone().unwrap_or_default())
                    .or_default()
                    .push((param.clone(), c.position, gate.clone()));
            }
        }
    }
    for (file, list) in per_file {
        if list.len() > UNGATED_DETAIL_LIMIT {
            let first = &list[0];
            out.push(Finding {
                severity: Severity::Warning,
                code: "ungated-device-parameter",
                file,
                position: None,
                message: format!(
                    "{} device.* values with a value are ignored by the phone for lack of gating (device.set=\"1\" and <name>.set=\"1\"), e.g. {} (needs {})",
                    list.len(),
                    first.0,
                    first.2
                ),
            });
        } else {
            for (param, position, gate) in list {
                out.push(Finding {
                    severity: Severity::Warning,
                    code: "ungated-device-parameter",
                    file: file.clone(),
                    position,
                    message: format!("{param} is ignored by the phone: {gate} is not \"1\""),
                });
            }
        }
    }
}

impl LintInput {
    /// Reads a file or a whole boot root into a lint input; names are relative to the root
    /// (a single file's root is its directory, whose other files count as existing).
    ///
    /// Each directory is visited once, however symbolic links loop back to it; only regular files
    /// are read (a FIFO named `.cfg` would block forever); a file that cannot be read — a broken
    /// link, no permission, not UTF-8 — is reported and the walk goes on.
    pub fn load(path: &Path) -> Result<LintInput, String> {
        let unreadable = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let mut input = LintInput::default();
        let (root, only) = if path.is_dir() {
            (path.to_path_buf(), None)
        } else {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            (parent.to_path_buf(), Some(path.to_path_buf()))
        };
        let problem = |name: &str, message: String| crate::config_file::ParseError {
            file: name.to_string(),
            at: Position { line: 1, column: 1 },
            message,
        };
        let mut seen_dirs = std::collections::HashSet::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            if let Ok(real) = dir.canonicalize()
                && !seen_dirs.insert(real)
            {
                continue; // reached again through a link
            }
            let entries = std::fs::read_dir(&dir).map_err(|e| unreadable(&dir, e))?;
            for e in entries {
                let p = e.map_err(|e| unreadable(&dir, e))?.path();
                let name = p
                    .strip_prefix(&root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .replace('\\', "/");
                let wanted = match &only {
                    Some(f) => same_file(f, &p) || f == &p,
                    None => name.ends_with(".cfg"),
                };
                // `metadata` follows links: a broken one is an error here.
                let meta = match std::fs::metadata(&p) {
                    Ok(m) => m,
                    Err(e) => {
                        if wanted {
                            input
                                .unreadable
                                .push(problem(&name, format!("cannot be read: {e}")));
                        }
                        continue;
                    }
                };
                if meta.is_dir() {
                    if only.is_none() {
                        stack.push(p);
                    }
                    continue;
                }
                input.existing.insert(name.clone());
                if !wanted {
                    continue;
                }
                if !meta.is_file() {
                    input.unreadable.push(problem(
                        &name,
                        "not a regular file (a FIFO, socket or device): not read".into(),
                    ));
                    continue;
                }
                match std::fs::read(&p) {
                    Ok(bytes) => input.add_bytes(name, &bytes),
                    Err(e) => input
                        .unreadable
                        .push(problem(&name, format!("cannot be read: {e}"))),
                }
            }
        }
        if let Some(f) = only
            && input.files.is_empty()
            && input.unreadable.is_empty()
        {
            return Err(format!("{}: no such file", f.display()));
        }
        input.files.sort();
        input.unreadable.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(input)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(files: &[(&str, &str)]) -> LintInput {
        LintInput {
            files: files
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            existing: files.iter().map(|(n, _)| n.to_string()).collect(),
            ..Default::default()
        }
    }

    fn codes(f: &[Finding]) -> Vec<(&str, &str)> {
        f.iter().map(|f| (f.file.as_str(), f.code)).collect()
    }

    #[test]
    fn finds_each_kind_of_problem() {
        let long = "x".repeat(300);
        let master = format!(
            r#"<APPLICATION CONFIG_FILES="site.cfg, lines.cfg, missing.cfg, ftp://u:p@h/x.cfg" CONFIG_FILES_VVX500="{long}.cfg"/>"#
        );
        let findings = lint(&input(&[
            ("000000000000.cfg", &master),
            (
                "site.cfg",
                r#"<polycomConfig><reg reg.1.label="A"/><device device.set="1" device.auth.localAdminPassword="789" device.prov.serverName="x"/></polycomConfig>"#,
            ),
            (
                "lines.cfg",
                r#"<polycomConfig><reg reg.1.label="B" reg.1.label.x="1"/><x a.b="1"/><y a.b="2"/></polycomConfig>"#,
            ),
            (
                "0004f2aa814c-x.cfg",
                r#"<polycomConfig device.set="1" device.auth.localAdminPassword="ok here" device.auth.localAdminPassword.set="1"/>"#,
            ),
            ("broken.cfg", "<polycomConfig>\n<a>"),
        ]));
        let c = codes(&findings);
        for want in [
            ("000000000000.cfg", "missing-config-file"),
            ("000000000000.cfg", "credentials-in-shared-master"),
            ("000000000000.cfg", "config-file-entry-too-long"),
            ("site.cfg", "secret-in-shared-file"),
            ("site.cfg", "ungated-device-parameter"),
            ("lines.cfg", "overridden-parameter"),
            ("lines.cfg", "duplicate-parameter"),
            ("broken.cfg", "malformed-xml"),
        ] {
            assert!(c.contains(&want), "{want:?} missing from {findings:#?}");
        }
        assert!(
            !c.iter().any(|(f, _)| *f == "0004f2aa814c-x.cfg"),
            "{findings:#?}"
        );
    }

    /// A megabyte on one line, with non-ASCII text before the findings: every finding has its
    /// exact column (characters, not bytes). (Columns were once found by scanning from the start
    /// of the line for every parameter: quadratic, 35 s for 4 MB.)
    #[test]
    fn findings_on_a_long_line_have_exact_columns() {
        let mut text = String::from("<polycomConfig><x");
        let mut chars = text.chars().count();
        for i in 0..40_000 {
            let attr = format!(" p.é{i}=\"ü\"");
            chars += attr.chars().count();
            text.push_str(&attr);
        }
        let secret_at = chars + "/><y ".len() + 1;
        text.push_str("/><y reg.1.auth.password=\"x\" p.é7=\"again\"/></polycomConfig>");
        let dup_at = secret_at + " reg.1.auth.password=\"x\" ".chars().count() - 1;
        let findings = lint(&input(&[("big.cfg", &text)]));
        let at = |code: &str| {
            findings
                .iter()
                .find(|f| f.code == code)
                .and_then(|f| f.position)
                .map(|p| (p.line, p.column))
        };
        assert_eq!(
            at("secret-in-shared-file"),
            Some((1, secret_at as u32)),
            "{findings:?}"
        );
        assert_eq!(at("duplicate-parameter"), Some((1, dup_at as u32)));
    }

    /// A phone's overrides are applied without gating (`effective`), so `check` does not call
    /// their `device.*` values ignored.
    #[test]
    fn overrides_are_not_held_to_gating() {
        let findings = lint(&input(&[
            (
                "0004f2aa814c-web.cfg",
                r#"<PHONE_CONFIG><OVERRIDES device.auth.localAdminPassword="P2"/></PHONE_CONFIG>"#,
            ),
            (
                "shared.cfg",
                r#"<polycomConfig><device device.prov.serverName="x"/></polycomConfig>"#,
            ),
        ]));
        assert_eq!(
            codes(&findings),
            [("shared.cfg", "ungated-device-parameter")],
            "{findings:#?}"
        );
    }

    /// A value shadowed in a per-model list still applies to the models that read the generic
    /// list: "never applies" only when no list lets it.
    #[test]
    fn shadowed_for_one_model_is_not_never() {
        let master = r#"<APPLICATION CONFIG_FILES="first.cfg"><APPLICATION_VVX400 CONFIG_FILES_VVX400="vvx400.cfg, first.cfg"/></APPLICATION>"#;
        let first = r#"<polycomConfig><reg reg.1.label="generic" reg.2.label="only-here"/></polycomConfig>"#;
        let vvx = r#"<polycomConfig><reg reg.1.label="desk"/></polycomConfig>"#;
        let findings = lint(&input(&[
            ("000000000000.cfg", master),
            ("first.cfg", first),
            ("vvx400.cfg", vvx),
        ]));
        let shadowed: Vec<&Finding> = findings
            .iter()
            .filter(|f| f.code == "overridden-parameter")
            .collect();
        assert_eq!(shadowed.len(), 1, "{findings:#?}");
        let m = &shadowed[0].message;
        assert!(!m.contains("never"), "{m}");
        assert!(
            m.contains("CONFIG_FILES_VVX400") && m.contains("other lists"),
            "{m}"
        );
        // Listed only after the per-model file: it never applies.
        let master = r#"<APPLICATION CONFIG_FILES="vvx400.cfg, first.cfg"/>"#;
        let findings = lint(&input(&[
            ("000000000000.cfg", master),
            ("first.cfg", first),
            ("vvx400.cfg", vvx),
        ]));
        let f = findings
            .iter()
            .find(|f| f.code == "overridden-parameter")
            .unwrap();
        assert!(f.message.contains("never applies"), "{f}");
    }

    /// Each file is judged by what it is: a master that is not one is an error (as `explain`
    /// says too); a Yealink file, a Maven POM or an SVG is not a Poly file and gets no Poly
    /// findings — no invented secrets.
    #[test]
    fn files_are_checked_for_what_they_are() {
        let findings = lint(&input(&[
            ("000000000000.cfg", r#"<directory><item_list/></directory>"#),
            ("yealink.cfg", "#!version:1.0.0.1\naccount.1.password = x\n"),
            (
                "pom.cfg",
                r#"<project password="secret" x.y="1" x.y.z="2"/>"#,
            ),
            (
                "icon.cfg",
                r#"<svg xmlns="http://www.w3.org/2000/svg" key="k"/>"#,
            ),
            ("contacts.cfg", r#"<directory><item_list/></directory>"#),
        ]));
        let mut got = codes(&findings);
        got.sort();
        assert_eq!(
            got,
            [
                ("000000000000.cfg", "master-not-application"),
                ("icon.cfg", "not-a-poly-file"),
                ("pom.cfg", "not-a-poly-file"),
                ("yealink.cfg", "not-a-poly-file"),
            ],
            "{findings:#?}"
        );
    }

    /// Names against the vendor's templates: the wrong case and near misses are reported with
    /// the known name; settings written as element text are ignored by phones.
    #[test]
    fn parameter_names_and_element_text() {
        let findings = lint(&input(&[(
            "site.cfg",
            r#"<polycomConfig><reg reg.1.LineKeys="2" reg.2.lineKey="1" reg.3.lineKeys="1" brandNew.thing="1"/><softkey.1.label>Hold</softkey.1.label></polycomConfig>"#,
        )]));
        let m: Vec<(&str, &str)> = findings
            .iter()
            .map(|f| (f.code, f.message.as_str()))
            .collect();
        assert_eq!(m.len(), 3, "{findings:#?}");
        assert!(
            m.iter().any(|(c, s)| *c == "unknown-parameter"
                && s.contains("case-sensitive")
                && s.contains("reg.1.lineKeys")),
            "{m:?}"
        );
        assert!(
            m.iter().any(
                |(c, s)| *c == "unknown-parameter" && s.contains("did you mean reg.2.lineKeys")
            ),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|(c, s)| *c == "element-text-setting" && s.contains("softkey.1.label")),
            "{m:?}"
        );
    }

    #[test]
    fn secrets_in_every_form() {
        for (name, value) in [
            (
                "device.prov.serverName",
                "ftp://user:pass@prov.example.com/",
            ),
            ("dir.corp.address", "ldap://admin:pw@ldap.example.com"),
            (
                "sec.TLS.customDeviceKey.privateKey",
                "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            ),
            ("x.y", "-----BEGIN RSA PRIVATE KEY-----\nMII…"),
            ("efk.efklist.1.action.string", "*97$P2N4$1234$Tdtmf$#"),
            ("softkey.1.action", "*86$Tinvite$$P3N3$98765$Tdtmf$"),
        ] {
            assert!(secret_kind(name, value).is_some(), "{name}={value}");
        }
        for (name, value) in [
            ("device.prov.serverName", "https://prov.example.com/"),
            ("dir.corp.address", "ldap://ldap.example.com"),
            ("efk.efklist.1.action.string", "*97$Tinvite$"),
            ("efk.efklist.1.action.string", "5551234$Tinvite$"),
            ("reg.1.label", "1234"),
            ("sec.uploadDevice.privateKey", "0"),
        ] {
            assert!(secret_kind(name, value).is_none(), "{name}={value}");
        }
        let master =
            r#"<APPLICATION APP_FILE_PATH="http://u:p@h/sip.ld" CONFIG_FILES="site.cfg"/>"#;
        let findings = lint(&input(&[
            ("000000000000.cfg", master),
            (
                "site.cfg",
                r#"<polycomConfig><dir dir.corp.address="ldap://admin:pw@h"/></polycomConfig>"#,
            ),
        ]));
        let c = codes(&findings);
        assert!(
            c.contains(&("000000000000.cfg", "credentials-in-shared-master")),
            "{findings:#?}"
        );
        assert!(
            c.contains(&("site.cfg", "secret-in-shared-file")),
            "{findings:#?}"
        );
    }

    #[test]
    fn secrets_are_recognised_by_name() {
        for s in [
            "device.auth.localAdminPassword",
            "reg.1.auth.password",
            "prov.login.localPassword",
            "device.wifi.wep.key2",
            "device.wifi.psk.key",
            "sec.x.passphrase",
        ] {
            assert!(is_secret(s), "{s}");
        }
        for s in [
            "device.auth.localAdminPassword.set",
            "up.echoPasswordDigits",
            "dir.local.passwordProtected",
            "log.level.change.key",
            "device.wifi.psk.keyType",
            "prov.login.localPassword.hashed",
        ] {
            assert!(!is_secret(s), "{s}");
        }
    }
}
