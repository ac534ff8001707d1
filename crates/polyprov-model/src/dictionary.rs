//! Parameter names phones know, from the vendor's own template files (`known_params.txt`,
//! generated from `tests/corpus/openspork__pp/Config/*.cfg` and `configs/*.cfg` — UC Software
//! templates as published; see `tests/corpus/SOURCES.md`). Numbered segments are kept as `x`
//! (`reg.x.lineKeys`), so one entry covers every line or key.
//!
//! Names are case-sensitive to a phone: `reg.1.LineKeys` is not `reg.1.lineKeys`, and a phone
//! silently ignores what it does not know. The dictionary is not complete (newer firmware adds
//! parameters), so only names *close* to a known one are reported — likely typos — never every
//! name it lacks.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// The generated list, one normalised name per line; `#` lines are provenance.
const KNOWN: &str = include_str!("known_params.txt");

/// What the dictionary says of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A known name (or one the dictionary cannot judge: a group it has no names for).
    Known,
    /// Unknown, but a known name differs only in letter case.
    WrongCase(String),
    /// Unknown, and a known name is one or two edits away.
    Near(String),
    /// Unknown, and nothing known is close: possibly newer than the templates.
    Unknown,
}

struct Dictionary {
    names: HashSet<&'static str>,
    by_lower: HashMap<String, &'static str>,
    /// Names by their first segment (`reg`, `device`), for near-miss search.
    by_group: HashMap<&'static str, Vec<&'static str>>,
}

fn dictionary() -> &'static Dictionary {
    static D: OnceLock<Dictionary> = OnceLock::new();
    D.get_or_init(|| {
        let names: HashSet<&'static str> = KNOWN
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let by_lower = names.iter().map(|n| (n.to_ascii_lowercase(), *n)).collect();
        let mut by_group: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
        for n in &names {
            by_group.entry(group(n)).or_default().push(n);
        }
        for v in by_group.values_mut() {
            v.sort_unstable();
        }
        Dictionary {
            names,
            by_lower,
            by_group,
        }
    })
}

fn group(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// `reg.12.line.3.x` → `reg.x.line.x.x`: numbered segments stand for any number.
pub fn normalise(name: &str) -> String {
    name.split('.')
        .map(|s| {
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                "x"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Looks a parameter name up. Cheap for known names (one hash lookup); the near-miss search
/// only looks at names of the same group and nearly the same length.
pub fn lookup(name: &str) -> Lookup {
    let d = dictionary();
    let n = normalise(name);
    if d.names.contains(n.as_str()) {
        return Lookup::Known;
    }
    let Some(candidates) = d.by_group.get(group(&n)) else {
        // A group the templates do not have (a new feature, a legacy file): no judgement.
        return Lookup::Known;
    };
    if let Some(k) = d.by_lower.get(&n.to_ascii_lowercase()) {
        return Lookup::WrongCase(denormalise(k, name));
    }
    // A near miss is a misspelt word, not another number or a named slot (`ringer.1` is not a
    // typo of `ringer.A3`): numbered segments must line up.
    let shape = |s: &str| -> Vec<bool> { s.split('.').map(|w| w == "x").collect() };
    let want = shape(&n);
    let near = candidates
        .iter()
        .filter(|c| c.len().abs_diff(n.len()) <= 2 && shape(c) == want)
        .map(|c| (distance_within(c, &n, 2), *c))
        .filter_map(|(d, c)| d.map(|d| (d, c)))
        .min();
    match near {
        Some((_, c)) => Lookup::Near(denormalise(c, name)),
        None => Lookup::Unknown,
    }
}

/// A known pattern with the numbers of the name asked about put back (`reg.x.lineKeys` for
/// `reg.3.LineKeys` → `reg.3.lineKeys`), when they line up.
fn denormalise(known: &str, asked: &str) -> String {
    let k: Vec<&str> = known.split('.').collect();
    let a: Vec<&str> = asked.split('.').collect();
    if k.len() != a.len() {
        return known.to_string();
    }
    k.iter()
        .zip(&a)
        .map(|(k, a)| {
            if *k == "x" && a.bytes().all(|b| b.is_ascii_digit()) {
                *a
            } else {
                *k
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Levenshtein distance if it is at most `max`.
fn distance_within(a: &str, b: &str, max: usize) -> Option<usize> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        if cur.iter().min().is_some_and(|m| *m > max) {
            return None;
        }
        prev = cur;
    }
    prev.last().copied().filter(|d| *d <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_case_and_typos() {
        assert_eq!(lookup("reg.1.lineKeys"), Lookup::Known);
        assert_eq!(lookup("reg.17.lineKeys"), Lookup::Known);
        assert_eq!(
            lookup("reg.1.LineKeys"),
            Lookup::WrongCase("reg.1.lineKeys".into())
        );
        assert_eq!(
            lookup("reg.2.lineKey"),
            Lookup::Near("reg.2.lineKeys".into())
        );
        assert_eq!(lookup("reg.1.somethingNewInUcs9"), Lookup::Unknown);
        assert_eq!(lookup("brandnew.feature.enabled"), Lookup::Known);
        // Another slot, not a typo.
        assert_eq!(lookup("tone.chord.ringer.1.freq.1"), Lookup::Unknown);
    }
}
