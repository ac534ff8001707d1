//! The reset guide: numbered steps for one model and software version, built from the catalog,
//! saying what is unknown instead of guessing.

use crate::Mac;
use crate::catalog::{Catalog, Confidence, Fact, Model};
use crate::keypad::{CharSteps, LetterCase, ModeCycle, keystrokes};
use std::cmp::Ordering;

/// One part of the guide (a route: reboot, menu reset, key reset, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub title: String,
    /// False when this route does not exist for the model/version or nothing is known of it.
    pub available: bool,
    pub steps: Vec<String>,
    pub notes: Vec<String>,
    pub confidence: Confidence,
    pub sources: Vec<String>,
}

/// The guide for one phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guide {
    pub model_id: String,
    pub model_name: String,
    pub firmware: Option<String>,
    pub sections: Vec<Section>,
    /// The keystrokes for typing the MAC at the password prompt, when a MAC was given.
    pub mac_keystrokes: Option<(Mac, Vec<CharSteps>)>,
}

/// Compares dotted versions numerically (`5.9.7.4477` > `4.0.15`); missing parts count as 0.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    let (x, y) = (parts(a), parts(b));
    for i in 0..x.len().max(y.len()) {
        match x.get(i).unwrap_or(&0).cmp(y.get(i).unwrap_or(&0)) {
            Ordering::Equal => continue,
            other => return other,
        }
    }
    Ordering::Equal
}

fn keys_text(keys: &[String]) -> String {
    match keys {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn section<T>(title: &str, fact: &Fact<T>) -> Section {
    Section {
        title: title.to_string(),
        available: fact.value.is_some(),
        steps: Vec::new(),
        notes: fact.note.iter().cloned().collect(),
        confidence: fact.confidence,
        sources: fact.source.clone(),
    }
}

impl Guide {
    /// Builds the guide for `model`, optionally for a software version and a MAC.
    pub fn build(
        catalog: &Catalog,
        model: &Model,
        firmware: Option<&str>,
        mac: Option<Mac>,
        cycle: ModeCycle,
        case: LetterCase,
    ) -> Guide {
        let rule = |name: &str| catalog.rules.get(name);
        let since = |name: &str| rule(name).and_then(|r| r.since.clone().or(r.version.clone()));
        let before = |name: &str| match (firmware, since(name)) {
            (Some(f), Some(v)) => Some(compare_versions(f, &v) == Ordering::Less),
            _ => None,
        };
        let ucs = model.software == "UCS";
        let mac_text = mac.map_or_else(|| "<MAC>".to_string(), |m| m.to_string());
        let mut sections = Vec::new();

        // 1. What to do on the server first.
        sections.push(Section {
            title: "Before you reset".into(),
            available: true,
            steps: vec![
                format!("See what would bring the old configuration back: polyprov doctor {mac_text}"),
                format!("Release the phone on the provisioning server, so it is served nothing of its own (its uploaded files are kept in quarantine): polyprov device release {mac_text}"),
                "If the phone is registered with Poly ZTP or Poly Lens, remove it there too (the account owner's task).".into(),
            ],
            notes: vec!["A phone that finds a provisioning server (DHCP option 66/160, a server set in the phone, ZTP, Lens) downloads its old configuration again right after a factory reset, old admin password included: a reset clears the phone, not the server.".into()],
            confidence: Confidence::Vendor,
            sources: vec!["S1".into()],
        });

        // 2. Reboot.
        let mut s = section("Reboot", &model.reboot_keys);
        match &model.reboot_keys.value {
            Some(keys) => {
                let secs = rule("reboot_hold_seconds").and_then(|r| r.value).unwrap_or(3);
                s.steps.push(format!("Hold {} together for about {secs} seconds, until you hear a confirmation tone.", keys_text(keys)));
                s.notes.push("A reboot downloads new software and configuration if the server has them.".into());
            }
            None => s.steps.push("Unknown: no source gives this model's reboot keys. Unplug the power (or PoE) and plug it back in.".into()),
        }
        sections.push(s);

        // 3. Menu reset (UC Software 4.0.0+).
        if ucs {
            let r = rule("menu_reset_to_factory");
            let mut s = Section {
                title: "Factory reset from the menu".into(),
                available: true,
                steps: Vec::new(),
                notes: Vec::new(),
                confidence: r.map_or(Confidence::Unknown, |r| r.confidence),
                sources: r.map(|r| r.source.clone()).unwrap_or_default(),
            };
            if before("menu_reset_to_factory") == Some(true) {
                s.available = false;
                s.steps.push(format!(
                    "Not available: Reset to Factory exists from UC Software {} on; this phone runs {}. Use the key combination below, or upgrade first.",
                    since("menu_reset_to_factory").unwrap_or_default(),
                    firmware.unwrap_or_default()
                ));
            } else {
                s.steps = vec![
                    "Press the Menu (Home) key and select Settings.".into(),
                    "Select Advanced and enter the admin password (456 unless it was changed)."
                        .into(),
                    "Select Admin Settings > Reset to Defaults.".into(),
                    "Select Reset to Factory and confirm; the phone restarts.".into(),
                ];
                s.notes.push("Reset to Defaults also offers partial resets: Reset Local Configuration (phone-menu changes), Reset Web Configuration (web-UI changes), Reset Device Settings (network and provisioning server), Format File System (cached software, configuration, logs).".into());
                if firmware.is_none() {
                    s.notes.push(format!(
                        "Needs UC Software {} or later.",
                        since("menu_reset_to_factory").unwrap_or_default()
                    ));
                }
            }
            sections.push(s);
        }

        // 4. Key combination.
        let mut s = section("Factory reset with the keys", &model.reset_keys);
        match &model.reset_keys.value {
            Some(keys) => {
                s.steps
                    .push("Unplug the power (or PoE) and plug it back in.".into());
                if ucs {
                    match before("cancel_at_starting_application") {
                        Some(true) => {}
                        Some(false) => s.steps.push("When \"Starting application\" appears, press Cancel to get the countdown.".into()),
                        None => s.steps.push(format!(
                            "With UC Software {} or later: when \"Starting application\" appears, press Cancel to get the countdown.",
                            since("cancel_at_starting_application").unwrap_or_default()
                        )),
                    }
                }
                match &model.reset_keys.procedure {
                    Some(p) => s.steps.push(format!("{p}: {}.", keys_text(keys))),
                    None => s.steps.push(format!(
                        "During the countdown, hold {} together until the password prompt appears.",
                        keys_text(keys)
                    )),
                }
                let password = model
                    .reset_password
                    .as_ref()
                    .and_then(|f| f.value.as_deref())
                    .unwrap_or("admin-or-mac");
                s.steps.push(match password {
                    "mac" => format!("Enter the MAC address as the password ({mac_text}; keystrokes below)."),
                    "admin" => "Enter the admin password.".into(),
                    _ => format!("Enter the admin password; if it is unknown, the MAC address ({mac_text}; keystrokes below)."),
                });
                s.steps
                    .push("Confirm; the phone resets and restarts.".into());
                if ucs {
                    if before("keys_reset_device_only_before") == Some(true) {
                        s.notes.push(format!(
                            "Before UC Software {} this key combination resets device settings only (flash parameters, log files), not the whole phone.",
                            since("keys_reset_device_only_before").unwrap_or_default()
                        ));
                    } else if firmware.is_none() {
                        s.notes.push("Before UC Software 4.0.0 this key combination resets device settings only (flash parameters, log files).".into());
                    }
                    s.notes.push("Afterwards the admin password is 456 again; some software then makes you choose a new one that is not 456.".into());
                }
            }
            None => {
                s.steps.push(format!(
                    "Unknown: no source gives a key combination for the {}.{}",
                    model.name,
                    model
                        .reset_keys
                        .note
                        .as_ref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ));
                s.notes.clear();
            }
        }
        sections.push(s);

        if let Some(t) = &model.touch {
            let mut s = section("Factory reset from the touch screen", t);
            match &t.value {
                Some(p) => s.steps.push(format!("{}.", capitalized(p))),
                None => {
                    // The note is the whole story here; it goes in the step.
                    let note = t.note.as_ref().map(|n| format!(": {n}"));
                    s.steps
                        .push(format!("Unknown{}.", note.unwrap_or_default()));
                    s.notes.clear();
                }
            }
            sections.push(s);
        }
        if let Some(b) = &model.button {
            let mut s = section("Factory reset with the button", b);
            if let Some(v) = &b.value {
                s.steps
                    .push(format!("Hold the {} for {} seconds.", v.button, v.seconds));
            }
            sections.push(s);
        }
        if let Some(ms) = &model.min_software
            && let Some(v) = &ms.value
            && let Some(f) = firmware
            && compare_versions(f, v) == Ordering::Less
            && let Some(first) = sections.first_mut()
        {
            first.notes.push(format!(
                "Software {f} is older than {v}: {}.",
                ms.note
                    .clone()
                    .unwrap_or_else(|| "the model needs a newer release".into())
            ));
        }
        Guide {
            model_id: model.id.clone(),
            model_name: model.name.clone(),
            firmware: firmware.map(str::to_string),
            sections,
            mac_keystrokes: mac.map(|m| (m, keystrokes(m, cycle, case))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guide(model: &str, fw: Option<&str>) -> Guide {
        let c = Catalog::embedded().unwrap();
        let m = c.find(model).unwrap();
        Guide::build(
            &c,
            m,
            fw,
            Some("0004f2aa814c".parse().unwrap()),
            ModeCycle::Seed,
            LetterCase::Lower,
        )
    }

    fn section<'a>(g: &'a Guide, title: &str) -> &'a Section {
        g.sections.iter().find(|s| s.title == title).unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("5.9.7.4477", "4.0.0"), Ordering::Greater);
        assert_eq!(compare_versions("3.2.7", "3.3.0"), Ordering::Less);
        assert_eq!(compare_versions("4.0", "4.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("10.0.0", "9.9.9"), Ordering::Greater);
    }

    #[test]
    fn new_software_has_the_cancel_step_and_the_menu_reset() {
        let g = guide("VVX_410", Some("5.9.7.4477"));
        let keys = section(&g, "Factory reset with the keys");
        assert!(
            keys.steps
                .iter()
                .any(|s| s.starts_with("When \"Starting application\" appears, press Cancel"))
        );
        assert!(
            keys.steps
                .iter()
                .any(|s| s.contains("hold 1, 3 and 5 together"))
        );
        assert!(section(&g, "Factory reset from the menu").available);
        assert!(
            !keys
                .notes
                .iter()
                .any(|n| n.contains("device settings only"))
        );
        assert!(
            section(&g, "Before you reset").steps[1]
                .contains("polyprov device release 0004f2aa814c")
        );
    }

    #[test]
    fn old_software_has_no_cancel_step_no_menu_reset_and_a_device_only_key_reset() {
        let g = guide("SoundPoint IP 650", Some("3.2.7"));
        let keys = section(&g, "Factory reset with the keys");
        assert!(!keys.steps.iter().any(|s| s.contains("Cancel")));
        assert!(
            keys.notes
                .iter()
                .any(|n| n.contains("device settings only"))
        );
        assert!(!section(&g, "Factory reset from the menu").available);
        let g = guide("SoundPoint IP 650", Some("3.3.1"));
        assert!(
            section(&g, "Factory reset with the keys")
                .steps
                .iter()
                .any(|s| s.contains("Cancel"))
        );
        assert!(!section(&g, "Factory reset from the menu").available);
    }

    #[test]
    fn unknown_facts_are_said_to_be_unknown() {
        let g = guide("Edge B20", None);
        let keys = section(&g, "Factory reset with the keys");
        assert!(!keys.available && keys.steps[0].starts_with("Unknown"));
        assert_eq!(keys.confidence, Confidence::Unknown);
        let g = guide("Rove B4", None);
        assert_eq!(
            section(&g, "Factory reset with the button").steps,
            ["Hold the Pair button on top for 20 seconds."]
        );
        let g = guide("VVX 450", Some("6.3.1"));
        assert!(
            section(&g, "Before you reset")
                .notes
                .iter()
                .any(|n| n.contains("older than 6.4.3"))
        );
    }
}
