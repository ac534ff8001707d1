//! The model catalog: what is known about each Poly model, from `catalog.toml` (embedded at build
//! time), with a source and a confidence for every fact. A fact nobody documents has no value and
//! confidence `unknown`: polyprov says "unknown" rather than guess.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The catalog shipped with polyprov.
pub const EMBEDDED: &str = include_str!("../catalog.toml");

/// How far a fact can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Confidence {
    /// A vendor document or Poly staff.
    #[serde(rename = "vendor")]
    Vendor,
    /// A page quoting a vendor document word for word.
    #[serde(rename = "vendor-quoted")]
    VendorQuoted,
    /// Seen in real configuration files or traffic.
    #[serde(rename = "observed")]
    Observed,
    /// Several independent third-party pages agree.
    #[serde(rename = "3P-n")]
    ThirdPartyMany,
    /// One third-party page.
    #[serde(rename = "3P-1")]
    ThirdPartyOne,
    /// Stated only in the vendor FAQ the project started from.
    #[serde(rename = "seed")]
    Seed,
    /// Nothing known.
    #[serde(rename = "unknown")]
    Unknown,
}

impl Confidence {
    /// The word used in the catalog and in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Vendor => "vendor",
            Confidence::VendorQuoted => "vendor-quoted",
            Confidence::Observed => "observed",
            Confidence::ThirdPartyMany => "3P-n",
            Confidence::ThirdPartyOne => "3P-1",
            Confidence::Seed => "seed",
            Confidence::Unknown => "unknown",
        }
    }
}

/// One fact with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fact<T> {
    /// `None` when unknown.
    pub value: Option<T>,
    /// Catalog source ids (`S1`, …).
    #[serde(default)]
    pub source: Vec<String>,
    pub confidence: Confidence,
    /// How the steps go, where a key list alone does not say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub procedure: Option<String>,
    /// A caveat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl<T> Fact<T> {
    /// An unknown fact.
    pub fn unknown() -> Self {
        Fact {
            value: None,
            source: Vec::new(),
            confidence: Confidence::Unknown,
            procedure: None,
            note: None,
        }
    }
}

impl<T> Default for Fact<T> {
    fn default() -> Self {
        Fact::unknown()
    }
}

/// A button to hold (base stations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Button {
    pub button: String,
    pub seconds: u32,
}

/// One model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// Canonical id; for phones with a master-file token, that token (`VVX410`).
    pub id: String,
    pub name: String,
    pub family: String,
    /// Other names people use.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `UCS` (UC Software: the 3.3.0/4.0.0 reset rules apply), `n/a`, or `unknown`.
    pub software: String,
    /// Tokens seen in User-Agents (`VVX_410`) and master files (`VVX410`).
    #[serde(default)]
    pub tokens: Fact<Vec<String>>,
    #[serde(default)]
    pub part_numbers: Fact<Vec<String>>,
    /// Keys to hold during the boot countdown for a factory reset.
    #[serde(default)]
    pub reset_keys: Fact<Vec<String>>,
    /// A touch-screen reset procedure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touch: Option<Fact<String>>,
    /// Keys to hold ~3 s to reboot.
    #[serde(default)]
    pub reboot_keys: Fact<Vec<String>>,
    /// What the reset prompt accepts: `admin-or-mac` (default for UCS), `admin`, `mac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_password: Option<Fact<String>>,
    /// A reset button (base stations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub button: Option<Fact<Button>>,
    /// Oldest software the model (or its newest hardware) runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_software: Option<Fact<String>>,
}

/// A version rule with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub value: Option<u32>,
    #[serde(default)]
    pub source: Vec<String>,
    pub confidence: Confidence,
}

/// A cited source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub title: String,
    pub url: String,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub sources: BTreeMap<String, Source>,
    pub rules: BTreeMap<String, Rule>,
    #[serde(rename = "model")]
    pub models: Vec<Model>,
}

/// Why a catalog file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model catalog: {0}")]
pub struct CatalogError(String);

/// A partial catalog a user adds: new sources, rules and models; a model with an existing id
/// replaces it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Overlay {
    #[serde(default)]
    sources: BTreeMap<String, Source>,
    #[serde(default)]
    rules: BTreeMap<String, Rule>,
    #[serde(default, rename = "model")]
    models: Vec<Model>,
}

impl Catalog {
    /// The catalog shipped with polyprov (checked by the tests, so an error here is a build bug).
    pub fn embedded() -> Result<Catalog, CatalogError> {
        toml::from_str(EMBEDDED).map_err(|e| CatalogError(e.to_string()))
    }

    /// Adds a user's catalog file on top: models with the same id are replaced.
    pub fn extend_with(&mut self, text: &str) -> Result<(), CatalogError> {
        let o: Overlay = toml::from_str(text).map_err(|e| CatalogError(e.to_string()))?;
        self.sources.extend(o.sources);
        self.rules.extend(o.rules);
        for m in o.models {
            match self.models.iter_mut().find(|x| x.id == m.id) {
                Some(x) => *x = m,
                None => self.models.push(m),
            }
        }
        self.check()
    }

    /// Every fact cites known sources, and a fact with a value is not `unknown`.
    pub fn check(&self) -> Result<(), CatalogError> {
        for m in &self.models {
            let facts: Vec<(&str, bool, &[String], Confidence)> = [
                (
                    "tokens",
                    m.tokens.value.is_some(),
                    m.tokens.source.as_slice(),
                    m.tokens.confidence,
                ),
                (
                    "part_numbers",
                    m.part_numbers.value.is_some(),
                    &m.part_numbers.source,
                    m.part_numbers.confidence,
                ),
                (
                    "reset_keys",
                    m.reset_keys.value.is_some(),
                    &m.reset_keys.source,
                    m.reset_keys.confidence,
                ),
                (
                    "reboot_keys",
                    m.reboot_keys.value.is_some(),
                    &m.reboot_keys.source,
                    m.reboot_keys.confidence,
                ),
            ]
            .into_iter()
            .chain(m.touch.iter().map(|f| {
                (
                    "touch",
                    f.value.is_some(),
                    f.source.as_slice(),
                    f.confidence,
                )
            }))
            .chain(m.reset_password.iter().map(|f| {
                (
                    "reset_password",
                    f.value.is_some(),
                    f.source.as_slice(),
                    f.confidence,
                )
            }))
            .chain(m.button.iter().map(|f| {
                (
                    "button",
                    f.value.is_some(),
                    f.source.as_slice(),
                    f.confidence,
                )
            }))
            .chain(m.min_software.iter().map(|f| {
                (
                    "min_software",
                    f.value.is_some(),
                    f.source.as_slice(),
                    f.confidence,
                )
            }))
            .collect();
            for (what, known, sources, confidence) in facts {
                if known && (sources.is_empty() || confidence == Confidence::Unknown) {
                    return Err(CatalogError(format!(
                        "{}: {what} has a value but no source or confidence",
                        m.id
                    )));
                }
                if !known && confidence != Confidence::Unknown {
                    return Err(CatalogError(format!(
                        "{}: {what} has no value but claims {}",
                        m.id,
                        confidence.as_str()
                    )));
                }
                if let Some(s) = sources.iter().find(|s| !self.sources.contains_key(*s)) {
                    return Err(CatalogError(format!(
                        "{}: {what} cites unknown source {s}",
                        m.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The model a name refers to: an id, name, alias or token, in any case and spacing
    /// (`vvx410`, `VVX 410`, `VVX_410`), or a whole User-Agent.
    pub fn find(&self, query: &str) -> Option<&Model> {
        let q = match crate::UserAgent::parse(query) {
            Ok(Some(crate::UserAgent { model: Some(m), .. })) => normalize(&m),
            _ => normalize(query),
        };
        self.models
            .iter()
            .find(|m| names(m).any(|n| normalize(n) == q))
    }

    /// The model a User-Agent's model token (`VVX_500`) or a master token (`VVX500`) names.
    pub fn by_token(&self, token: &str) -> Option<&Model> {
        let q = normalize(token);
        self.models.iter().find(|m| {
            normalize(&m.id) == q || m.tokens.value.iter().flatten().any(|t| normalize(t) == q)
        })
    }

    /// The models whose names are closest to `query`, best first.
    pub fn closest(&self, query: &str, n: usize) -> Vec<&Model> {
        let q = normalize(query);
        let mut scored: Vec<(usize, &Model)> = self
            .models
            .iter()
            .map(|m| {
                (
                    names(m)
                        .map(|x| distance(&normalize(x), &q))
                        .min()
                        .unwrap_or(usize::MAX),
                    m,
                )
            })
            .collect();
        scored.sort_by_key(|(d, m)| (*d, m.id.clone()));
        scored.into_iter().take(n).map(|(_, m)| m).collect()
    }
}

fn names(m: &Model) -> impl Iterator<Item = &String> {
    std::iter::once(&m.id)
        .chain(std::iter::once(&m.name))
        .chain(m.aliases.iter())
        .chain(m.tokens.value.iter().flatten())
}

/// Lower-case letters and digits only; "SoundPoint IP" and "IP" prefixes are the same as "SPIP".
fn normalize(s: &str) -> String {
    let mut t: String = s
        .replace('+', "plus")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase();
    // Brand words in front of a model name say nothing: "Polycom SoundPoint IP 550",
    // "Poly RealPresence Trio 8800".
    while let Some(rest) = ["polycom", "poly", "realpresence"]
        .iter()
        .find_map(|p| t.strip_prefix(p).filter(|r| !r.is_empty()))
    {
        t = rest.to_string();
    }
    for (long, short) in [
        ("soundpointip", "spip"),
        ("soundstationip", "ssip"),
        ("soundstation", "ss"),
    ] {
        if let Some(rest) = t.strip_prefix(long) {
            return format!("{short}{rest}");
        }
    }
    if let Some(rest) = t.strip_prefix("ip")
        && rest.chars().next().is_some_and(|c| c.is_ascii_digit())
    {
        return format!("spip{rest}");
    }
    t
}

impl Model {
    /// The token this model's lines in a master file are named with (`CONFIG_FILES_VVX400`):
    /// its master-file token when known, else its id.
    pub fn master_token(&self) -> String {
        self.tokens
            .value
            .iter()
            .flatten()
            .find(|t| !t.contains('_'))
            .cloned()
            .unwrap_or_else(|| self.id.clone())
    }
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_is_complete_and_cited() {
        let c: Catalog = toml::from_str(EMBEDDED).unwrap();
        c.check().unwrap();
        // Every model the seed and reset-procedures.md name.
        for q in [
            "SoundPoint IP 320",
            "IP 321",
            "IP 330",
            "IP 331",
            "IP 335",
            "IP 430",
            "IP 450",
            "IP 301",
            "IP 501",
            "IP 600",
            "IP 601",
            "IP 650",
            "IP 550",
            "IP 560",
            "IP 670",
            "SoundStation IP 4000",
            "SSIP 5000",
            "SSIP6000",
            "SSIP7000",
            "SoundStation Duo",
            "VVX 1500",
            "VVX 101",
            "VVX 150",
            "VVX 201",
            "VVX 250",
            "VVX 300",
            "VVX 301",
            "VVX 310",
            "VVX 311",
            "VVX 350",
            "VVX 400",
            "VVX 401",
            "VVX 410",
            "VVX 411",
            "VVX 450",
            "VVX 500",
            "VVX 501",
            "VVX 600",
            "VVX 601",
            "VVX D60",
            "VVX D230",
            "Trio 8300",
            "Trio 8500",
            "Trio 8800",
            "Trio C60",
            "Trio Visual+",
            "VisualPro",
            "CCX 400",
            "CCX 500",
            "CCX 600",
            "CCX 700",
            "Edge E100",
            "Edge E220",
            "Edge E300",
            "Edge E320",
            "Edge E350",
            "Edge E400",
            "Edge E450",
            "Edge E500",
            "Edge E550",
            "Edge B10",
            "Edge B20",
            "Edge B30",
            "Rove B2",
            "Rove B4",
        ] {
            assert!(c.find(q).is_some(), "{q} missing from the catalog");
        }
        let ids: std::collections::BTreeSet<&str> =
            c.models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids.len(), c.models.len(), "duplicate ids");
    }

    #[test]
    fn names_are_matched_forgivingly() {
        let c = Catalog::embedded().unwrap();
        for q in [
            "vvx410",
            "VVX 410",
            "VVX_410",
            "Polycom VVX 410",
            "FileTransport PolycomVVX-VVX_410-UA/5.9.7.4477 Type/Application",
        ] {
            assert_eq!(c.find(q).map(|m| m.id.as_str()), Some("VVX410"), "{q}");
        }
        assert_eq!(
            c.find("SoundPoint IP 550").map(|m| m.id.as_str()),
            Some("SPIP550")
        );
        // What admins type (found by a session that tried them).
        for (q, id) in [
            ("RealPresence Trio Visual+", "TrioVisualPlus"),
            ("RealPresence Trio 8800", "Trio8800"),
            ("Polycom SoundPoint IP 550", "SPIP550"),
            ("Poly Trio 8800", "Trio8800"),
            ("Rove 30", "Rove30"),
            ("D230", "VVXD230"),
            ("CCX 505", "CCX505"),
            ("VVX 400", "VVX400"),
        ] {
            assert_eq!(c.find(q).map(|m| m.id.as_str()), Some(id), "{q}");
        }
        assert_eq!(c.find("VVX 400").unwrap().master_token(), "VVX400");
        assert_eq!(
            c.by_token("SPIP_550").map(|m| m.id.as_str()),
            Some("SPIP550")
        );
        assert!(c.find("VVX 420").is_none());
        let near: Vec<&str> = c
            .closest("VVX 420", 3)
            .iter()
            .map(|m| m.id.as_str())
            .collect();
        assert!(near.contains(&"VVX410"), "{near:?}");
    }

    #[test]
    fn a_user_file_corrects_and_extends() {
        let mut c = Catalog::embedded().unwrap();
        c.extend_with(
            r#"
[sources]
mine = { title = "our lab", url = "file:lab-notes" }
[[model]]
id = "VVX410"
name = "VVX 410"
family = "VVX"
software = "UCS"
reboot_keys = { value = ["0", "1", "3"], source = ["mine"], confidence = "3P-1" }
[[model]]
id = "Lab1"
name = "Lab phone"
family = "Lab"
software = "unknown"
"#,
        )
        .unwrap();
        assert_eq!(c.find("VVX 410").unwrap().reboot_keys.source, ["mine"]);
        assert!(c.find("Lab phone").is_some());
        assert!(c.extend_with("[[model]]\nid = \"X\"\nname = \"X\"\nfamily = \"X\"\nsoftware = \"u\"\nreset_keys = { value = [\"1\"], confidence = \"unknown\" }\n").is_err());
    }
}
