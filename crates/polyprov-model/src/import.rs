//! Moving an existing provisioning folder (a TFTP/FTP/HTTP root) onto polyprov, planned without
//! touching anything: which phones it serves, what each gets there (the phone's own merge, as
//! `config explain` computes it), what becomes a profile, each device's assignment and uploads,
//! what stays in the boot root — and, per phone, every difference between what it gets from the
//! old folder and what it will get from polyprov.
//!
//! The rules: a file whose name holds a phone's MAC is that phone's own (its parameters move
//! into its assignment; the file is not served any more); every other file a master lists is
//! shared and stays in the boot root. polyprov serves one master for every phone, with the
//! phone's generated file first: its `CONFIG_FILES` are the shared master's shared entries (or,
//! without a shared master, the list most phones' own masters share). A phone's assignment holds
//! exactly the parameters whose value it would otherwise lose: each one that won from a file
//! and that the shared files alone do not give it. Parameters every phone of a group (phones
//! that listed the same shared files) got with the same value, secrets aside, become that
//! group's profile. Overrides, directories, call lists, licences and logs become the device's
//! uploads, served as before.

use crate::Mac;
use crate::config::ADMIN_PASSWORD;
use crate::config_file::{ConfigFile, decode};
use crate::effective::{Layer, PhoneSources, Resolved, effective, known_defaults};
use crate::lint::is_secret;
use crate::master::{Master, SHARED_MASTER, STARTER_MASTER};
use crate::{Params, UploadKind};
use std::collections::{BTreeMap, BTreeSet};

/// The folder's text files (configuration, XML, logs), by path relative to it, and the names of
/// every other file (images, sounds) — read by the caller.
#[derive(Debug, Clone, Default)]
pub struct Folder {
    pub texts: BTreeMap<String, Vec<u8>>,
    pub others: BTreeSet<String>,
}

/// One parameter whose value changes with the move.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    pub param: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What happens to one phone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhonePlan {
    pub mac: String,
    /// The master it read in the old folder.
    pub master: String,
    /// Its own files there (not served by polyprov; their parameters are in `params`).
    pub own_files: Vec<String>,
    pub profile: Option<String>,
    pub admin_password: Option<String>,
    /// Its assignment's own parameters.
    pub params: Params,
    /// Files that become its uploads: (kind, path in the folder).
    pub uploads: Vec<(String, String)>,
    /// Parameters it ends up with (built-in defaults aside), before and after.
    pub before: BTreeMap<String, Option<String>>,
    pub after: BTreeMap<String, Option<String>>,
    pub differences: Vec<Difference>,
}

/// The whole move.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportPlan {
    /// polyprov's master after the move (`000000000000.cfg`).
    pub master: String,
    pub master_config_files: Vec<String>,
    /// Files copied into the boot root (shared configuration, images, sounds, …).
    pub boot_root: Vec<String>,
    pub profiles: BTreeMap<String, Params>,
    pub phones: Vec<PhonePlan>,
    /// What could not be read or placed, in words.
    pub notes: Vec<String>,
}

/// The MAC a file name belongs to: `<mac>.cfg`, `<mac>-….` (any case); not the shared master.
fn mac_of(name: &str) -> Option<Mac> {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    let head: String = base.chars().take(12).collect();
    let rest = &base[head.len().min(base.len())..];
    if head.len() == 12
        && head.chars().all(|c| c.is_ascii_hexdigit())
        && head != "000000000000"
        && (rest == ".cfg" || rest.starts_with('-'))
    {
        head.parse().ok()
    } else {
        None
    }
}

/// A `device.*` gate (`device.set`, `device.….set`): not a setting of its own — polyprov writes
/// the gates for the values it sets.
fn is_gate(name: &str) -> bool {
    name == "device.set" || (name.starts_with("device.") && name.ends_with(".set"))
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parse(folder: &Folder, name: &str) -> Result<ConfigFile, String> {
    let bytes = folder
        .texts
        .get(name)
        .or_else(|| {
            // Names in CONFIG_FILES are matched without regard to case on some servers
            // (Windows, FTP); take an exact match first, else a case-insensitive one.
            folder
                .texts
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .ok_or_else(|| format!("{name}: listed in CONFIG_FILES but not in the folder"))?;
    let text = decode(name, bytes).map_err(|e| e.to_string())?;
    ConfigFile::parse(name, &text).map_err(|e| e.to_string())
}

fn values(e: &BTreeMap<String, Resolved>) -> BTreeMap<String, Option<String>> {
    e.iter()
        .filter(|(_, r)| r.winner().is_some_and(|w| w.layer != Layer::Default))
        .map(|(k, r)| (k.clone(), r.value.clone()))
        .collect()
}

/// Plans the move of `folder` (see the module's rules).
pub fn plan(folder: &Folder) -> ImportPlan {
    let mut notes = Vec::new();
    let mut macs: BTreeSet<Mac> = BTreeSet::new();
    for name in folder.texts.keys().chain(folder.others.iter()) {
        if let Some(m) = mac_of(name) {
            macs.insert(m);
        }
    }
    let shared_master = folder
        .texts
        .keys()
        .find(|k| base_name(k) == SHARED_MASTER)
        .cloned();
    let parse_master = |name: &str| -> Option<Master> {
        let bytes = folder.texts.get(name)?;
        let text = decode(name, bytes).ok()?;
        Master::parse(name, &text).ok()
    };
    let shared = shared_master.as_deref().and_then(parse_master);
    let own_master_of = |mac: Mac| {
        folder
            .texts
            .keys()
            .find(|k| base_name(k).eq_ignore_ascii_case(&format!("{mac}.cfg")))
            .cloned()
    };
    let is_own = |name: &str, mac: Mac| name.to_ascii_lowercase().contains(&mac.to_string());
    let is_anyones = |name: &str| macs.iter().any(|m| is_own(name, *m));

    // polyprov's master: the shared master's shared entries, else the list most phones share.
    let mut lists: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut resolved_of: BTreeMap<Mac, (String, Vec<String>)> = BTreeMap::new();
    for &mac in &macs {
        let (name, m) = match own_master_of(mac).and_then(|n| parse_master(&n).map(|m| (n, m))) {
            Some(x) => x,
            None => {
                match (&shared_master, &shared) {
                    (Some(n), Some(m)) => (n.clone(), m.clone()),
                    _ => {
                        notes.push(format!("{mac}: no master of its own and no usable {SHARED_MASTER}: not imported"));
                        continue;
                    }
                }
            }
        };
        let files = m.resolve(None, mac).config_files;
        let shared_part: Vec<String> = files.iter().filter(|f| !is_own(f, mac)).cloned().collect();
        *lists.entry(shared_part).or_default() += 1;
        resolved_of.insert(mac, (name, files));
    }
    let master_files: Vec<String> = match &shared {
        Some(m) => m
            .resolve(None, Mac::from_bytes([0; 6]))
            .config_files
            .into_iter()
            .filter(|f| !is_anyones(f) && !f.contains("000000000000"))
            .collect(),
        None => lists
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(l, _)| l.clone())
            .unwrap_or_default(),
    };
    let base_master = shared_master
        .as_deref()
        .and_then(|n| folder.texts.get(n))
        .and_then(|b| decode(SHARED_MASTER, b).ok())
        .unwrap_or_else(|| STARTER_MASTER.to_string());
    let master = match ConfigFile::parse(SHARED_MASTER, &base_master).and_then(|mut f| {
        f.set_in("APPLICATION", "CONFIG_FILES", &master_files.join(", "))?;
        Ok(f.text().to_string())
    }) {
        Ok(t) => t,
        Err(e) => {
            notes.push(format!("{SHARED_MASTER}: {e}; the starter master is used"));
            STARTER_MASTER.to_string()
        }
    };

    let defaults = known_defaults();
    let mut shared_parsed: BTreeMap<String, ConfigFile> = BTreeMap::new();
    let mut get_shared = |name: &str, notes: &mut Vec<String>| -> Option<ConfigFile> {
        if let Some(f) = shared_parsed.get(name) {
            return Some(f.clone());
        }
        match parse(folder, name) {
            Ok(f) => {
                shared_parsed.insert(name.to_string(), f.clone());
                Some(f)
            }
            Err(e) => {
                if !notes.contains(&e) {
                    notes.push(e);
                }
                None
            }
        }
    };
    let after_files: Vec<ConfigFile> = master_files
        .iter()
        .filter_map(|n| get_shared(n, &mut notes))
        .collect();
    let shared_only = effective(&PhoneSources {
        config_files: &after_files,
        defaults: Some(&defaults),
        ..PhoneSources::default()
    });

    let mut phones = Vec::new();
    let mut group_of: BTreeMap<Mac, Vec<String>> = BTreeMap::new();
    // Each phone's overrides, parsed once: they count before and after the move alike.
    let mut overrides_of: BTreeMap<Mac, (Option<ConfigFile>, Option<ConfigFile>)> = BTreeMap::new();
    for (&mac, (master_name, files)) in &resolved_of {
        let mut parsed = Vec::new();
        for f in files {
            if is_own(f, mac) {
                match parse(folder, f) {
                    Ok(p) => parsed.push(p),
                    Err(e) => notes.push(format!("{mac}: {e}")),
                }
            } else if let Some(p) = get_shared(f, &mut notes) {
                parsed.push(p);
            }
        }
        let find = |kind: UploadKind| {
            let want = kind.file_name(mac);
            folder
                .texts
                .keys()
                .find(|k| base_name(k).eq_ignore_ascii_case(&want))
                .cloned()
        };
        let over = |kind: UploadKind| find(kind).and_then(|n| parse(folder, &n).ok());
        let (local, web) = (
            over(UploadKind::PhoneOverride),
            over(UploadKind::WebOverride),
        );
        let before_e = effective(&PhoneSources {
            local_override: local.as_ref(),
            web_override: web.as_ref(),
            config_files: &parsed,
            flash: None,
            defaults: Some(&defaults),
        });
        // What it would lose: each value its files give (overrides aside: they stay uploads,
        // and what they shadow must survive their discard) that the shared files alone do not.
        let files_only = effective(&PhoneSources {
            config_files: &parsed,
            defaults: Some(&defaults),
            ..PhoneSources::default()
        });
        let mut params = Params::new();
        for (k, r) in &files_only {
            let Some(w) = r.winner() else { continue };
            if is_gate(k) || !matches!(w.layer, Layer::ConfigFile(_)) || r.value.is_none() {
                continue;
            }
            if shared_only.get(k).and_then(|s| s.value.as_ref()) != r.value.as_ref() {
                params.insert(k.clone(), r.value.clone().unwrap_or_default());
            }
        }
        let uploads = UploadKind::ALL
            .into_iter()
            .filter_map(|k| find(k).map(|n| (k.suffix().to_string(), n)))
            .collect();
        group_of.insert(
            mac,
            files.iter().filter(|f| !is_own(f, mac)).cloned().collect(),
        );
        overrides_of.insert(mac, (local, web));
        phones.push(PhonePlan {
            mac: mac.to_string(),
            master: master_name.clone(),
            own_files: files.iter().filter(|f| is_own(f, mac)).cloned().collect(),
            profile: None,
            admin_password: None,
            params,
            uploads,
            before: values(&before_e),
            after: BTreeMap::new(),
            differences: Vec::new(),
        });
    }

    // Profiles: what every phone of a group got alike, secrets aside.
    let mut groups: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
    for (i, p) in phones.iter().enumerate() {
        if let Ok(mac) = p.mac.parse::<Mac>() {
            groups
                .entry(group_of.get(&mac).cloned().unwrap_or_default())
                .or_default()
                .push(i);
        }
    }
    let mut profiles = BTreeMap::new();
    for members in groups.values().filter(|m| m.len() >= 2) {
        let first = &phones[members[0]].params;
        let common: Params = first
            .iter()
            .filter(|(k, v)| {
                !is_secret(k)
                    && members
                        .iter()
                        .all(|&i| phones[i].params.get(*k) == Some(*v))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if common.is_empty() {
            continue;
        }
        let name = format!("imported-{}", profiles.len() + 1);
        for &i in members {
            phones[i].params.retain(|k, _| !common.contains_key(k));
            phones[i].profile = Some(name.clone());
        }
        profiles.insert(name, common);
    }

    // After: the generated file (profile < device) first, then the shared files, overrides.
    for p in &mut phones {
        if let Some(pw) = p.params.remove(ADMIN_PASSWORD) {
            p.admin_password = Some(pw);
        }
        let Ok(mac) = p.mac.parse::<Mac>() else {
            continue;
        };
        let mut generated = p
            .profile
            .as_ref()
            .and_then(|n| profiles.get(n))
            .cloned()
            .unwrap_or_default();
        generated.extend(p.params.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(pw) = &p.admin_password {
            generated.insert(ADMIN_PASSWORD.to_string(), pw.clone());
        }
        crate::config::add_device_gates(&mut generated);
        let text = crate::config::render_polycom_config(&generated, "import plan");
        let mut files = match ConfigFile::parse(&format!("{mac}-polyprov.cfg"), &text) {
            Ok(f) => vec![f],
            Err(e) => {
                notes.push(format!("{mac}: {e}"));
                continue;
            }
        };
        files.extend(after_files.iter().cloned());
        let (local, web) = overrides_of
            .get(&mac)
            .map_or((None, None), |(l, w)| (l.as_ref(), w.as_ref()));
        let after_e = effective(&PhoneSources {
            local_override: local,
            web_override: web,
            config_files: &files,
            flash: None,
            defaults: Some(&defaults),
        });
        p.after = values(&after_e);
        let keys: BTreeSet<&String> = p.before.keys().chain(p.after.keys()).collect();
        p.differences = keys
            .into_iter()
            // The gates polyprov writes for the values it sets are how they apply, not changes.
            .filter(|k| !is_gate(k))
            .filter_map(|k| {
                let b = p.before.get(k).cloned().flatten();
                let a = p.after.get(k).cloned().flatten();
                (b != a).then(|| Difference {
                    param: k.clone(),
                    before: b,
                    after: a,
                })
            })
            .collect();
    }

    let own: BTreeSet<&String> = phones
        .iter()
        .flat_map(|p| p.own_files.iter().chain(p.uploads.iter().map(|(_, n)| n)))
        .collect();
    let boot_root = folder
        .texts
        .keys()
        .chain(folder.others.iter())
        .filter(|n| !own.contains(n) && mac_of(n).is_none() && base_name(n) != SHARED_MASTER)
        .cloned()
        .collect();
    ImportPlan {
        master,
        master_config_files: master_files,
        boot_root,
        profiles,
        phones,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> Folder {
        Folder {
            texts: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            others: ["sip.ld".to_string()].into(),
        }
    }

    const SITE: &str = r#"<polycomConfig><reg reg.1.server.1.address="pbx.example.com"/><tcpIpApp tcpIpApp.sntp.address="ntp.example.com"/></polycomConfig>"#;

    fn per_phone(n: u32) -> String {
        format!(
            r#"<polycomConfig><reg reg.1.address="{n}@pbx.example.com" reg.1.auth.userId="{n}" reg.1.auth.password="secret{n}"/><device device.set="1" device.auth.localAdminPassword="admin{n}" device.auth.localAdminPassword.set="1"/><up up.backlight.idleIntensity="2"/></polycomConfig>"#
        )
    }

    #[test]
    fn own_files_become_assignments_shared_values_a_profile_and_nothing_changes() {
        let master = |own: &str| {
            format!(r#"<APPLICATION APP_FILE_PATH="sip.ld" CONFIG_FILES="{own}, site.cfg"/>"#)
        };
        let (m1, m2) = (
            master("0004f2000001-reg.cfg"),
            master("0004f2000002-reg.cfg"),
        );
        let (r1, r2) = (per_phone(1), per_phone(2));
        let f = folder(&[
            ("0004f2000001.cfg", &m1),
            ("0004f2000002.cfg", &m2),
            ("0004f2000001-reg.cfg", &r1),
            ("0004f2000002-reg.cfg", &r2),
            ("site.cfg", SITE),
            (
                "overrides/0004f2000001-phone.cfg",
                r#"<PHONE_CONFIG><OVERRIDES up.backlight.idleIntensity="1"/></PHONE_CONFIG>"#,
            ),
        ]);
        let p = plan(&f);
        assert_eq!(p.master_config_files, ["site.cfg"]);
        assert!(
            p.boot_root.contains(&"site.cfg".to_string())
                && p.boot_root.contains(&"sip.ld".to_string())
        );
        assert!(
            !p.boot_root.iter().any(|n| n.contains("0004f2")),
            "{:?}",
            p.boot_root
        );
        assert_eq!(p.phones.len(), 2);
        assert_eq!(
            p.profiles["imported-1"]
                .get("up.backlight.idleIntensity")
                .map(String::as_str),
            Some("2")
        );
        let one = &p.phones[0];
        assert_eq!(one.admin_password.as_deref(), Some("admin1"));
        assert_eq!(
            one.params.get("reg.1.auth.password").map(String::as_str),
            Some("secret1")
        );
        assert!(
            !one.params.contains_key("reg.1.server.1.address"),
            "the shared file gives it"
        );
        assert_eq!(
            one.uploads,
            [(
                "phone.cfg".to_string(),
                "overrides/0004f2000001-phone.cfg".to_string()
            )]
        );
        for ph in &p.phones {
            assert!(
                ph.differences.is_empty(),
                "{}: {:?}",
                ph.mac,
                ph.differences
            );
        }
        assert_eq!(
            one.after
                .get("up.backlight.idleIntensity")
                .cloned()
                .flatten()
                .as_deref(),
            Some("1"),
            "the override still wins"
        );
        assert!(
            p.master.contains(r#"CONFIG_FILES="site.cfg""#),
            "{}",
            p.master
        );
    }

    #[test]
    fn a_value_polyprov_cannot_reproduce_is_reported_as_a_difference() {
        // Phone 1 reads a file phone 2 does not; polyprov's one master lists it for both.
        let f = folder(&[
            (
                "000000000000.cfg",
                r#"<APPLICATION CONFIG_FILES="[PHONE_MAC_ADDRESS]-reg.cfg, site.cfg"/>"#,
            ),
            ("0004f2000001-reg.cfg", &per_phone(1)),
            (
                "0004f2000002.cfg",
                r#"<APPLICATION CONFIG_FILES="0004f2000002-reg.cfg"/>"#,
            ),
            ("0004f2000002-reg.cfg", &per_phone(2)),
            ("site.cfg", SITE),
        ]);
        let p = plan(&f);
        let two = p.phones.iter().find(|x| x.mac == "0004f2000002").unwrap();
        assert!(
            two.differences
                .iter()
                .any(|d| d.param == "tcpIpApp.sntp.address" && d.before.is_none()),
            "{:?}",
            two.differences
        );
        let one = p.phones.iter().find(|x| x.mac == "0004f2000001").unwrap();
        assert!(one.differences.is_empty(), "{:?}", one.differences);
    }

    #[test]
    fn file_names_are_matched_to_macs_strictly() {
        assert!(mac_of("0004F2AA814C.cfg").is_some());
        assert!(mac_of("dir/0004f2aa814c-phone.cfg").is_some());
        assert!(mac_of("000000000000.cfg").is_none());
        assert!(mac_of("0004f2aa814cx.cfg").is_none());
        assert!(mac_of("site.cfg").is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_folder_is_planned_without_a_panic(
            files in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "000000000000.cfg", "0004f2000001.cfg", "0004f2000001-reg.cfg",
                        "0004F2000002.cfg", "site.cfg", "x/0004f2000001-phone.cfg",
                        "0004f2000002-web.cfg", "0004f2000001-directory.xml",
                    ]),
                    proptest::prop_oneof![
                        proptest::string::string_regex("<[A-Za-z]{1,12}( [a-z.]{1,20}=\"[^\"<&]{0,20}\")*/>").unwrap(),
                        proptest::string::string_regex("<APPLICATION CONFIG_FILES=\"[a-z0-9\\[\\]_, .-]{0,40}\"/>").unwrap(),
                        ".{0,60}",
                    ],
                ),
                0..8,
            )
        ) {
            let folder = Folder {
                texts: files.into_iter().map(|(n, c)| (n.to_string(), c.into_bytes())).collect(),
                others: Default::default(),
            };
            let p = plan(&folder);
            for ph in &p.phones {
                proptest::prop_assert!(ph.own_files.iter().all(|f| f.to_ascii_lowercase().contains(&ph.mac)));
                proptest::prop_assert!(!p.boot_root.iter().any(|f| mac_of(f).is_some()));
            }
        }
    }
}
