//! The phone's own logic for combining its sources into one configuration, with the chain of
//! evidence for every parameter.
//!
//! Precedence, highest first (domain.md §4): the local override (`<mac>-phone.cfg`, changes made
//! in the phone menu), the web override (`<mac>-web.cfg`), the `CONFIG_FILES` in order — the file
//! listed first wins —, the phone's flash (for `device.*`), built-in defaults. A `device.*`
//! parameter from a `CONFIG_FILES` file applies only when the effective `device.set` is `1`
//! **and** its own `<name>.set` is `1`; otherwise the phone keeps what its flash holds.
//! The overrides are the phone's own record of changes made on it, so they are applied without
//! gating (an assumption: it is what makes a web-UI admin password survive a factory reset, as
//! the vendor FAQ describes, but the phone's exact handling is not documented).

use crate::config::Params;
use crate::config_file::{ConfigFile, Position};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// `<mac>-phone.cfg`: settings changed in the phone's menu.
    LocalOverride,
    /// `<mac>-web.cfg`: settings changed in the phone's web UI.
    WebOverride,
    /// The n-th file of `CONFIG_FILES` (0 = listed first).
    ConfigFile(usize),
    /// What the phone holds in flash (`device.*`, kept across reboots and format).
    DeviceFlash,
    /// The phone's built-in default.
    Default,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::LocalOverride => f.write_str("local override (phone menu)"),
            Layer::WebOverride => f.write_str("web override (web UI)"),
            Layer::ConfigFile(i) => write!(f, "CONFIG_FILES #{}", i + 1),
            Layer::DeviceFlash => f.write_str("device flash"),
            Layer::Default => f.write_str("built-in default"),
        }
    }
}

/// What became of one candidate value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This is the effective value.
    Wins,
    /// A source with higher precedence (or an earlier place in the same file) set it too.
    Shadowed,
    /// A `device.*` value the phone ignores: the gate named here is not `1`.
    Ungated(String),
}

/// One place that sets a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub layer: Layer,
    /// The file, when the layer is a file.
    pub file: Option<String>,
    /// Where in the file.
    pub position: Option<Position>,
    pub value: String,
    pub verdict: Verdict,
}

/// A parameter's effective value and everything that set it, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `None` when every candidate was ignored (an ungated `device.*` with nothing in flash).
    pub value: Option<String>,
    pub candidates: Vec<Candidate>,
}

impl Resolved {
    /// The candidate that won.
    pub fn winner(&self) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.verdict == Verdict::Wins)
    }
}

/// Everything a phone reads, by layer. `F` lets callers pass shared files (`Arc<ConfigFile>`).
#[derive(Debug, Clone, Copy)]
pub struct PhoneSources<'a, F: Borrow<ConfigFile> = ConfigFile> {
    pub local_override: Option<&'a ConfigFile>,
    pub web_override: Option<&'a ConfigFile>,
    /// In `CONFIG_FILES` order.
    pub config_files: &'a [F],
    pub flash: Option<&'a Params>,
    pub defaults: Option<&'a Params>,
}

impl<F: Borrow<ConfigFile>> Default for PhoneSources<'_, F> {
    fn default() -> Self {
        PhoneSources {
            local_override: None,
            web_override: None,
            config_files: &[],
            flash: None,
            defaults: None,
        }
    }
}

/// Defaults polyprov knows from vendor documents (domain.md §7): admin 456, user 123.
pub fn known_defaults() -> Params {
    [
        (crate::config::ADMIN_PASSWORD, "456"),
        (crate::config::USER_PASSWORD, "123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Whether a parameter is gated: a `device.*` setting other than the gates themselves.
pub fn is_gated(name: &str) -> bool {
    name.starts_with("device.") && name != "device.set" && !name.ends_with(".set")
}

/// The effective configuration: every parameter any source sets, resolved.
pub fn effective<F: Borrow<ConfigFile>>(src: &PhoneSources<'_, F>) -> BTreeMap<String, Resolved> {
    effective_only(src, |_| true)
}

/// The effective configuration of the parameters `keep` accepts (cheaper when a caller needs a
/// few: a booting phone needs only `device.*`). Gates are resolved from what `keep` accepts, so
/// keep `device.set` and the `.set` gates with any `device.*` parameter.
pub fn effective_only<F: Borrow<ConfigFile>>(
    src: &PhoneSources<'_, F>,
    keep: impl Fn(&str) -> bool,
) -> BTreeMap<String, Resolved> {
    let mut all: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    let mut push_file = |layer: Layer, f: &ConfigFile| {
        for p in f.params().iter().filter(|p| keep(&p.name)) {
            all.entry(p.name.clone()).or_default().push(Candidate {
                layer: layer.clone(),
                file: Some(f.name().to_string()),
                position: Some(f.position(p.offset)),
                value: p.value.clone(),
                verdict: Verdict::Shadowed,
            });
        }
    };
    if let Some(f) = src.local_override {
        push_file(Layer::LocalOverride, f);
    }
    if let Some(f) = src.web_override {
        push_file(Layer::WebOverride, f);
    }
    for (i, f) in src.config_files.iter().enumerate() {
        push_file(Layer::ConfigFile(i), f.borrow());
    }
    for (layer, params) in [
        (Layer::DeviceFlash, src.flash),
        (Layer::Default, src.defaults),
    ] {
        for (k, v) in params.into_iter().flatten().filter(|(k, _)| keep(k)) {
            all.entry(k.clone()).or_default().push(Candidate {
                layer: layer.clone(),
                file: None,
                position: None,
                value: v.clone(),
                verdict: Verdict::Shadowed,
            });
        }
    }

    // Gates first: they are ordinary parameters (first candidate wins).
    let gate = |all: &BTreeMap<String, Vec<Candidate>>, name: &str| {
        all.get(name)
            .and_then(|c| c.first())
            .is_some_and(|c| c.value.trim() == "1")
    };
    let device_set = gate(&all, "device.set");
    let mut out = BTreeMap::new();
    let names: Vec<String> = all.keys().cloned().collect();
    for name in names {
        let own_gate = format!("{name}.set");
        let open = device_set && gate(&all, &own_gate);
        let mut candidates = all.remove(&name).unwrap_or_default();
        let mut value = None;
        for c in &mut candidates {
            let from_file = matches!(c.layer, Layer::ConfigFile(_));
            if is_gated(&name) && from_file && !open {
                c.verdict = Verdict::Ungated(if device_set {
                    own_gate.clone()
                } else {
                    "device.set".into()
                });
            } else if value.is_none() {
                c.verdict = Verdict::Wins;
                value = Some(c.value.clone());
            }
        }
        out.insert(name, Resolved { value, candidates });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(name: &str, params: &[(&str, &str)]) -> ConfigFile {
        let p: Params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConfigFile::parse(name, &crate::config::render_polycom_config(&p, name)).unwrap()
    }

    #[test]
    fn the_seed_story_web_override_beats_the_server() {
        let server = [file(
            "site.cfg",
            &[
                ("device.set", "1"),
                ("device.auth.localAdminPassword", "P1"),
                ("device.auth.localAdminPassword.set", "1"),
            ],
        )];
        let web = file(
            "0004f2aa814c-web.cfg",
            &[("device.auth.localAdminPassword", "P2")],
        );
        let defaults = known_defaults();
        let e = effective(&PhoneSources {
            web_override: Some(&web),
            config_files: &server,
            defaults: Some(&defaults),
            ..Default::default()
        });
        let pw = &e["device.auth.localAdminPassword"];
        assert_eq!(pw.value.as_deref(), Some("P2"));
        let verdicts: Vec<(&Layer, &Verdict)> = pw
            .candidates
            .iter()
            .map(|c| (&c.layer, &c.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                (&Layer::WebOverride, &Verdict::Wins),
                (&Layer::ConfigFile(0), &Verdict::Shadowed),
                (&Layer::Default, &Verdict::Shadowed),
            ]
        );
        assert_eq!(
            pw.winner().unwrap().file.as_deref(),
            Some("0004f2aa814c-web.cfg")
        );
    }

    #[test]
    fn overrides_are_not_gated() {
        let web = file("w-web.cfg", &[("device.auth.localAdminPassword", "P2")]);
        let e = effective(&PhoneSources::<ConfigFile> {
            web_override: Some(&web),
            ..Default::default()
        });
        assert_eq!(
            e["device.auth.localAdminPassword"].value.as_deref(),
            Some("P2")
        );
    }

    #[test]
    fn ungated_device_values_fall_back_to_flash_then_default() {
        let files = [file(
            "a.cfg",
            &[("device.auth.localAdminPassword", "x"), ("device.set", "1")],
        )];
        let flash: Params = [(
            "device.auth.localAdminPassword".to_string(),
            "flash".to_string(),
        )]
        .into();
        let e = effective(&PhoneSources {
            config_files: &files,
            flash: Some(&flash),
            ..Default::default()
        });
        let pw = &e["device.auth.localAdminPassword"];
        assert_eq!(pw.value.as_deref(), Some("flash"));
        assert_eq!(
            pw.candidates[0].verdict,
            Verdict::Ungated("device.auth.localAdminPassword.set".into())
        );
        let e = effective(&PhoneSources {
            config_files: &files,
            ..Default::default()
        });
        assert_eq!(e["device.auth.localAdminPassword"].value, None);
    }

    proptest! {
        /// Over any set of files: the value comes from the highest layer that sets it, and among
        /// CONFIG_FILES from the first listed.
        #[test]
        fn precedence_is_local_web_then_first_listed(
            sets in proptest::collection::vec(proptest::option::of("[a-z]{1,4}"), 5),
        ) {
            // sets[0] local, sets[1] web, sets[2..] config files in order.
            let mk = |i: usize, v: &Option<String>| {
                let name = format!("f{i}.cfg");
                match v {
                    Some(v) => file(&name, &[("reg.1.label", v.as_str())]),
                    None => file(&name, &[("other.x", "1")]),
                }
            };
            let local = mk(0, &sets[0]);
            let web = mk(1, &sets[1]);
            let files: Vec<ConfigFile> = sets[2..].iter().enumerate().map(|(i, v)| mk(i + 2, v)).collect();
            let e = effective(&PhoneSources { local_override: Some(&local), web_override: Some(&web), config_files: &files, ..Default::default() });
            let want = sets.iter().flatten().next().cloned();
            prop_assert_eq!(e.get("reg.1.label").and_then(|r| r.value.clone()), want);
        }

        /// A device.* value from a file applies exactly when both gates are 1.
        #[test]
        fn device_values_apply_only_through_both_gates(device_set in any::<bool>(), own_set in any::<bool>(), flash in any::<bool>()) {
            let mut p = vec![("device.prov.serverName", "file")];
            if device_set { p.push(("device.set", "1")); }
            if own_set { p.push(("device.prov.serverName.set", "1")); }
            let files = [file("a.cfg", &p)];
            let fl: Params = [("device.prov.serverName".to_string(), "flash".to_string())].into();
            let e = effective(&PhoneSources { config_files: &files, flash: flash.then_some(&fl), ..Default::default() });
            let got = e["device.prov.serverName"].value.clone();
            let want = if device_set && own_set { Some("file".to_string()) } else if flash { Some("flash".to_string()) } else { None };
            prop_assert_eq!(got, want);
        }
    }
}
