//! The phone: its state (this file), how it finds its server (`discovery.rs`), its boot, stage by
//! stage (`boot.rs`), and what people do to it: password changes, menu and key resets
//! (`actions.rs`).

mod actions;
mod boot;
mod discovery;
mod listen;
pub mod rest;

use polyprov_model::Mac;
use polyprov_model::catalog::Model;
use polyprov_model::config::Params;
use polyprov_model::config_file::{ConfigFile, ParseError};
use polyprov_model::effective::{PhoneSources, Resolved, effective, known_defaults};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// The admin password parameter.
pub use polyprov_model::config::ADMIN_PASSWORD;
/// The user password parameter.
pub use polyprov_model::config::USER_PASSWORD;

/// Behaviour the vendor does not document, as settings with the best-supported default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Assumptions {
    /// DHCP options tried, in order, when `device.dhcp.bootSrvUseOpt` is Default. Option 160's
    /// rank against 66 is not documented; 160 is widely used as "the Polycom provisioning URL".
    pub default_dhcp_options: Vec<u8>,
    /// Where a password changed in the phone menu goes: `override` (the local override file,
    /// uploaded, as issue-level descriptions have it) or `flash` (device settings only).
    pub menu_password_store: String,
    /// Flash the image when its version differs from the running one (`any-difference`), or only
    /// when it is newer (`newer-only`).
    pub upgrade: String,
    /// Whether the MAC typed at the reset prompt must match case.
    pub mac_case_sensitive: bool,
    /// Mode-key order of the password prompt.
    pub mode_cycle: String,
    /// Whether `Event: check-sync;reboot=true` reboots the phone. Poly documents only
    /// `voIpProt.SIP.specialEvent.checkSync.alwaysReboot`; the parameter is what other vendors
    /// honour, not confirmed on Poly, so off by default.
    pub checksync_reboot_param: bool,
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            default_dhcp_options: vec![160, 66],
            menu_password_store: "override".into(),
            upgrade: "any-difference".into(),
            mac_case_sensitive: false,
            mode_cycle: "seed".into(),
            checksync_reboot_param: false,
        }
    }
}

/// What the phone's network offers it (simulated DHCP and a ZTP-style redirect).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// DHCP options by number (66, 160, a custom 128–254) with their string values.
    pub dhcp: BTreeMap<u8, String>,
    /// The server a ZTP-style redirect service gives for this MAC.
    pub ztp: Option<String>,
}

/// Everything the phone keeps. Serialises to one JSON document (the `sim` state folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneState {
    pub mac: Mac,
    /// Catalog id, e.g. `VVX500`.
    pub model: String,
    /// User-Agent model token, e.g. `VVX_500`.
    pub ua_model: String,
    /// User-Agent family, e.g. `VVX`.
    pub ua_family: String,
    pub part_number: Option<String>,
    /// Running software version.
    pub firmware: String,
    /// `device.*` settings kept in flash (network, provisioning server, passwords, …).
    pub flash: Params,
    /// Files downloaded at the last boot (master and CONFIG_FILES), by name.
    pub cache: BTreeMap<String, String>,
    /// The master's CONFIG_FILES at the last boot, in order.
    pub config_files: Vec<String>,
    /// `<mac>-phone.cfg`: changes made in the phone menu.
    pub local_override: Option<String>,
    /// `<mac>-web.cfg`: changes made in the web UI.
    pub web_override: Option<String>,
    pub directory: Option<String>,
    pub calls: Option<String>,
    pub app_log: Vec<String>,
    pub network: Network,
    pub assumptions: Assumptions,
    /// The server used at the last boot, and how it was found.
    pub last_server: Option<String>,
    pub last_server_source: Option<String>,
    /// `*_DIRECTORY` attributes of the last master.
    pub directories: BTreeMap<String, String>,
    pub powered: bool,
}

/// One request the phone made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// HTTP status, or 0 when the server could not be reached.
    pub status: u16,
    pub bytes: u64,
    /// `Updater` or `Application`.
    pub stage: String,
    /// What kind of file (master, firmware, config, override, licence, calls, directory, log).
    pub kind: String,
    pub micros: u64,
}

/// Parsed configuration files shared between emulated phones. A storm downloads the same files
/// thousands of times; parsing each distinct file once is the runner's saving, not a change in
/// what any phone does with it.
#[derive(Default)]
pub struct ParseCache {
    files: Mutex<HashMap<(String, u64), Arc<ConfigFile>>>,
}

impl ParseCache {
    /// The parsed file for this name and text, parsing it the first time.
    pub fn parse(&self, name: &str, text: &str) -> Result<Arc<ConfigFile>, ParseError> {
        // A fast non-cryptographic hash: the text itself is what phones downloaded.
        let mut h = std::hash::BuildHasher::build_hasher(&foldhash::fast::FixedState::with_seed(
            0x706f6c79,
        ));
        text.hash(&mut h);
        let key = (name.to_string(), h.finish());
        if let Some(f) = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(f.clone());
        }
        let f = Arc::new(ConfigFile::parse(name, text)?);
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, f.clone());
        Ok(f)
    }
}

/// What a boot did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReport {
    pub server: Option<String>,
    pub server_source: Option<String>,
    pub requests: Vec<RequestRecord>,
    /// Problems the phone noticed (missing files, unreachable server, bad XML).
    pub problems: Vec<String>,
    /// Set when the phone flashed new software.
    pub upgraded_to: Option<String>,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("wrong admin password")]
    WrongPassword,
    #[error("Reset to Factory is not in the menu before UC Software 4.0.0 (this phone runs {0})")]
    NotAvailable(String),
    #[error("{0}")]
    Model(String),
}

/// Menu resets (Settings > Advanced > Admin Settings > Reset to Defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MenuReset {
    /// Reset Local Configuration: the phone-menu override.
    Local,
    /// Reset Web Configuration: the web-UI override.
    Web,
    /// Reset Device Settings: `device.*` in flash.
    Device,
    /// Format File System: cached configuration, logs, directory, call lists.
    Format,
    /// Reset to Factory (UC Software 4.0.0+): all of the above.
    Factory,
}

/// Where a password or setting came from, for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    pub value: Option<String>,
    pub source: String,
}

/// What the phone would show about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub mac: String,
    pub model: String,
    pub firmware: String,
    pub admin_password: Explained,
    pub user_password: Explained,
    /// `reg.N.address` for each line with one.
    pub lines: Vec<(String, Explained)>,
    pub provisioning_server: Explained,
    pub local_override: bool,
    pub web_override: bool,
}

/// An image header the emulated phone understands: `POLYPROV-SIM-IMAGE <version>` on the first
/// line. Real images are opaque to it: it does not flash what it cannot read.
pub const IMAGE_MAGIC: &str = "POLYPROV-SIM-IMAGE ";

const OVERRIDE_SKELETON: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<PHONE_CONFIG>\n  <OVERRIDES/>\n</PHONE_CONFIG>\n";

impl PhoneState {
    /// A phone fresh from the factory.
    pub fn new(mac: Mac, model: &Model, firmware: &str) -> PhoneState {
        let tokens = model.tokens.value.clone().unwrap_or_default();
        let ua_model = tokens
            .iter()
            .find(|t| t.contains('_'))
            .cloned()
            .unwrap_or_else(|| model.id.clone());
        PhoneState {
            mac,
            model: model.id.clone(),
            ua_family: ua_model
                .split('_')
                .next()
                .unwrap_or(&model.family)
                .to_string(),
            ua_model,
            part_number: model
                .part_numbers
                .value
                .as_ref()
                .and_then(|p| p.first().cloned()),
            firmware: firmware.to_string(),
            flash: Params::new(),
            cache: BTreeMap::new(),
            config_files: Vec::new(),
            local_override: None,
            web_override: None,
            directory: None,
            calls: None,
            app_log: Vec::new(),
            network: Network::default(),
            assumptions: Assumptions::default(),
            last_server: None,
            last_server_source: None,
            directories: BTreeMap::new(),
            powered: false,
        }
    }

    /// The User-Agent for a stage, as a real phone writes it (domain.md §6).
    pub fn user_agent(&self, stage: &str) -> String {
        let family = match self.ua_family.as_str() {
            "SPIP" => "SoundPointIP",
            "SSIP" => "SoundStationIP",
            other => other,
        };
        let sn = if self
            .flash
            .get("device.prov.tagSerialNo")
            .map(String::as_str)
            == Some("1")
        {
            format!(" (SN:{})", self.mac)
        } else {
            String::new()
        };
        format!(
            "FileTransport Polycom{family}-{}-UA/{}{sn} Type/{stage}",
            self.ua_model, self.firmware
        )
    }

    fn parsed(name: &str, text: &Option<String>) -> Option<ConfigFile> {
        text.as_ref().and_then(|t| ConfigFile::parse(name, t).ok())
    }

    /// The effective configuration now, with every parameter's chain.
    pub fn effective(&self) -> BTreeMap<String, Resolved> {
        let files: Vec<ConfigFile> = self
            .config_files
            .iter()
            .filter_map(|n| self.cache.get(n).and_then(|t| ConfigFile::parse(n, t).ok()))
            .collect();
        self.effective_with(&files)
    }

    /// The effective configuration with the CONFIG_FILES already parsed (a boot parses once).
    fn effective_with(&self, files: &[ConfigFile]) -> BTreeMap<String, Resolved> {
        let local = Self::parsed(&format!("{}-phone.cfg", self.mac), &self.local_override);
        let web = Self::parsed(&format!("{}-web.cfg", self.mac), &self.web_override);
        let defaults = known_defaults();
        effective(&PhoneSources {
            local_override: local.as_ref(),
            web_override: web.as_ref(),
            config_files: files,
            flash: Some(&self.flash),
            defaults: Some(&defaults),
        })
    }

    fn explain(e: &BTreeMap<String, Resolved>, name: &str) -> Explained {
        match e.get(name) {
            Some(r) => Explained {
                value: r.value.clone(),
                source: r
                    .winner()
                    .map_or("nothing applies".into(), |c| match &c.file {
                        Some(f) => format!("{} ({f})", c.layer),
                        None => c.layer.to_string(),
                    }),
            },
            None => Explained {
                value: None,
                source: "not set".into(),
            },
        }
    }

    /// The admin password the phone would accept now.
    pub fn admin_password(&self) -> String {
        self.effective()
            .get(ADMIN_PASSWORD)
            .and_then(|r| r.value.clone())
            .unwrap_or_else(|| "456".into())
    }

    /// What the phone shows about itself, with where each value came from.
    pub fn summary(&self) -> Summary {
        let e = self.effective();
        let lines = e
            .keys()
            .filter(|k| {
                k.starts_with("reg.") && k.ends_with(".address") && k.split('.').count() == 3
            })
            .filter(|k| e[*k].value.as_deref().is_some_and(|v| !v.is_empty()))
            .map(|k| (k.clone(), Self::explain(&e, k)))
            .collect();
        Summary {
            mac: self.mac.to_string(),
            model: self.model.clone(),
            firmware: self.firmware.clone(),
            admin_password: Self::explain(&e, ADMIN_PASSWORD),
            user_password: Self::explain(&e, USER_PASSWORD),
            lines,
            provisioning_server: Explained {
                value: self.last_server.clone(),
                source: self
                    .last_server_source
                    .clone()
                    .unwrap_or_else(|| "none found".into()),
            },
            local_override: self.local_override.is_some(),
            web_override: self.web_override.is_some(),
        }
    }

    fn log(&mut self, line: &str) {
        self.app_log.push(line.to_string());
    }
}

/// A downloaded body as text: valid UTF-8 as it is (fast path), anything else with replacement
/// characters.
fn text_of(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// `dir/name` for a `*_DIRECTORY` attribute; empty means the provisioning root.
fn dir_join(dirs: &BTreeMap<String, String>, attr: &str, name: &str) -> String {
    match dirs.get(attr).map(|d| d.trim_matches('/')) {
        Some(d) if !d.is_empty() => format!("{d}/{name}"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_skeleton_parses() {
        assert!(ConfigFile::parse("x", OVERRIDE_SKELETON).is_ok());
    }
}
