//! Every menu reset item and the key combination: what each keeps and what it clears, before and
//! after UC Software 4.0.0. The key combination is typed through the same keystroke generator the
//! reset guide prints.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use polyprov_model::Mac;
use polyprov_model::catalog::Catalog;
use polyprov_model::keypad::{LetterCase, ModeCycle, events, keystrokes};
use polyprov_phone::PhoneState;
use polyprov_phone::phone::{ActionError, MenuReset};

/// A phone with something in every place a reset can touch.
fn loaded(firmware: &str, mac: &str) -> PhoneState {
    let c = Catalog::embedded().unwrap();
    let mut p = PhoneState::new(mac.parse().unwrap(), c.find("VVX 410").unwrap(), firmware);
    p.flash
        .insert("device.prov.serverName".into(), "http://prov/".into());
    p.flash
        .insert("device.auth.localAdminPassword".into(), "F1".into());
    p.cache.insert("site.cfg".into(), "<polycomConfig/>".into());
    p.config_files = vec!["site.cfg".into()];
    p.local_override =
        Some("<PHONE_CONFIG><OVERRIDES reg.1.label=\"mine\"/></PHONE_CONFIG>".into());
    p.web_override = Some(
        "<PHONE_CONFIG><OVERRIDES device.auth.localAdminPassword=\"W1\"/></PHONE_CONFIG>".into(),
    );
    p.directory = Some("<directory/>".into());
    p.calls = Some("<calls/>".into());
    p.app_log = vec!["booted".into()];
    p
}

/// (flash server, flash password, cache, local, web, directory, calls, log) present?
fn inventory(p: &PhoneState) -> [bool; 8] {
    [
        p.flash.contains_key("device.prov.serverName"),
        p.flash.contains_key("device.auth.localAdminPassword"),
        !p.cache.is_empty(),
        p.local_override.is_some(),
        p.web_override.is_some(),
        p.directory.is_some(),
        p.calls.is_some(),
        !p.app_log.is_empty(),
    ]
}

#[test]
fn each_menu_reset_clears_exactly_its_part() {
    let cases = [
        (
            MenuReset::Local,
            [true, true, true, false, true, true, true, true],
        ),
        (
            MenuReset::Web,
            [true, true, true, true, false, true, true, true],
        ),
        (
            MenuReset::Device,
            [false, true, true, true, true, true, true, true],
        ),
        (
            MenuReset::Format,
            [true, true, false, true, true, false, false, false],
        ),
    ];
    for firmware in ["3.2.7", "5.9.7.4477"] {
        for (what, want) in cases {
            let mut p = loaded(firmware, "0004f2aa814c");
            p.menu_reset(what, None).unwrap();
            assert_eq!(inventory(&p), want, "{what:?} on {firmware}");
        }
    }
}

#[test]
fn reset_to_factory_needs_4_0_0_and_the_admin_password() {
    let mut p = loaded("3.2.7", "0004f2aa814c");
    assert_eq!(
        p.menu_reset(MenuReset::Factory, Some("W1")),
        Err(ActionError::NotAvailable("3.2.7".into()))
    );
    assert_eq!(inventory(&p), [true; 8]);

    let mut p = loaded("4.0.0", "0004f2aa814c");
    // The web override's W1 is the effective admin password, not flash's F1.
    assert_eq!(
        p.menu_reset(MenuReset::Factory, Some("F1")),
        Err(ActionError::WrongPassword)
    );
    p.menu_reset(MenuReset::Factory, Some("W1")).unwrap();
    assert_eq!(inventory(&p), [false; 8]);
    assert_eq!(p.admin_password(), "456");
}

#[test]
fn the_key_combination_accepts_the_mac_typed_on_the_keypad() {
    for mac in [
        "0004f2aa814c",
        "00e0dbabcdef",
        "64167f0a1b2c",
        "0004f2ccccdd",
    ] {
        for (cycle, case, setting) in [
            (ModeCycle::Seed, LetterCase::Lower, "seed"),
            (ModeCycle::Labels, LetterCase::Lower, "labels"),
            (ModeCycle::Seed, LetterCase::Upper, "seed"),
        ] {
            let steps = keystrokes(mac.parse::<Mac>().unwrap(), cycle, case);
            // From 4.0.0: a factory reset.
            let mut p = loaded("5.9.7.4477", mac);
            p.assumptions.mode_cycle = setting.into();
            assert_eq!(
                p.keys_reset(&events(&steps)),
                Ok(MenuReset::Factory),
                "{mac} {setting}"
            );
            assert_eq!(inventory(&p), [false; 8]);
            // Before 4.0.0: device settings (all flash parameters) and logs only.
            let mut p = loaded("3.3.1", mac);
            p.assumptions.mode_cycle = setting.into();
            assert_eq!(p.keys_reset(&events(&steps)), Ok(MenuReset::Device));
            assert_eq!(
                inventory(&p),
                [false, false, true, true, true, true, true, false]
            );
        }
    }
}

#[test]
fn the_key_combination_refuses_anything_else() {
    let mac: Mac = "0004f2aa814c".parse().unwrap();
    let mut p = loaded("5.9.7.4477", "0004f2aa814c");
    // Typed with the label cycle on a phone that follows the seed's: two mode presses give
    // UPPER case instead of lower, one press from there returns to numeric — so the letters
    // come out in the other case: accepted only where the check ignores case.
    let wrong_cycle = events(&keystrokes(mac, ModeCycle::Labels, LetterCase::Lower));
    p.assumptions.mac_case_sensitive = true;
    assert_eq!(p.keys_reset(&wrong_cycle), Err(ActionError::WrongPassword));
    let upper = events(&keystrokes(mac, ModeCycle::Seed, LetterCase::Upper));
    assert_eq!(p.keys_reset(&upper), Err(ActionError::WrongPassword));
    // Without the wait between the two a's, 'aa' becomes 'b'.
    let mut hurried = keystrokes(mac, ModeCycle::Seed, LetterCase::Lower);
    for s in &mut hurried {
        s.actions
            .retain(|a| !matches!(a, polyprov_model::keypad::Action::Wait { .. }));
    }
    p.assumptions.mac_case_sensitive = false;
    assert_eq!(
        p.keys_reset(&events(&hurried)),
        Err(ActionError::WrongPassword)
    );
    assert_eq!(inventory(&p), [true; 8]);
}
