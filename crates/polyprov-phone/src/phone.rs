//! The phone: its state, its boot, and what people do to it.

use crate::transport::{Login, Reply, Transport, TransportError};
use crate::url::ServerUrl;
use polyprov_model::Mac;
use polyprov_model::catalog::Model;
use polyprov_model::config::Params;
use polyprov_model::config_file::{ConfigFile, ParseError};
use polyprov_model::effective::{
    Layer, PhoneSources, Resolved, effective, effective_only, is_gated, known_defaults,
};
use polyprov_model::guide::compare_versions;
use polyprov_model::keypad::{KeyEvent, ModeCycle, decode};
use polyprov_model::master::{Master, model_token};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
}

impl Default for Assumptions {
    fn default() -> Self {
        Assumptions {
            default_dhcp_options: vec![160, 66],
            menu_password_store: "override".into(),
            upgrade: "any-difference".into(),
            mac_case_sensitive: false,
            mode_cycle: "seed".into(),
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

    /// Finds the provisioning server as the phone does: per `device.dhcp.bootSrvUseOpt`, then the
    /// server stored in flash, then a ZTP-style redirect when ZTP is enabled.
    pub fn discover(&self) -> Option<(String, String)> {
        let flash = |k: &str| self.flash.get(k).map(String::as_str).unwrap_or_default();
        let dhcp = |opt: u8| {
            self.network
                .dhcp
                .get(&opt)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v.clone(), format!("DHCP option {opt}")))
        };
        let custom = flash("device.dhcp.bootSrvOpt").parse::<u8>().ok();
        let static_server = || {
            Some(flash("device.prov.serverName"))
                .filter(|s| !s.is_empty())
                .map(|s| (s.to_string(), "device.prov.serverName in flash".to_string()))
        };
        let from_dhcp = match flash("device.dhcp.bootSrvUseOpt") {
            "2" | "Static" => return static_server(),
            "1" | "Custom" => custom.and_then(dhcp),
            "3" | "CustomAndDefault" => custom.and_then(dhcp).or_else(|| dhcp(66)),
            _ => self
                .assumptions
                .default_dhcp_options
                .iter()
                .find_map(|o| dhcp(*o)),
        };
        from_dhcp.or_else(static_server).or_else(|| {
            let ztp_on = !matches!(flash("device.prov.ztpEnabled"), "0" | "false");
            self.network
                .ztp
                .clone()
                .filter(|_| ztp_on)
                .map(|s| (s, "ZTP redirect".into()))
        })
    }

    /// Powers on and boots: finds the server, runs the Updater and the application requests in
    /// the order real phones make them, and applies the effective configuration.
    pub async fn boot<T: Transport>(&mut self, transport: &T) -> BootReport {
        self.boot_with(transport, None).await
    }

    /// [`PhoneState::boot`], sharing parsed files with other emulated phones through `cache`.
    pub async fn boot_with<T: Transport>(
        &mut self,
        transport: &T,
        parses: Option<&ParseCache>,
    ) -> BootReport {
        self.powered = true;
        let mut report = BootReport::default();
        let Some((server_text, source)) = self.discover() else {
            report
                .problems
                .push("no provisioning server found; booting from the cached configuration".into());
            self.log("no provisioning server");
            return report;
        };
        let server = match ServerUrl::parse(&server_text) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(e.to_string());
                return report;
            }
        };
        report.server = Some(server.to_string());
        report.server_source = Some(source.clone());
        self.last_server = Some(server_text.clone());
        self.last_server_source = Some(source);
        let login = self.login_for(&server);
        let mut session = Session {
            transport,
            server: &server,
            login: &login,
            report: &mut report,
        };
        let mac = self.mac;

        // Updater: boot log, master, firmware.
        let updater = self.user_agent("Updater");
        self.log(&format!("Updater {} booting", self.firmware));
        let boot_log = self.app_log.join("\n").into_bytes();
        session
            .put(
                &updater,
                &dir_join(
                    &self.directories,
                    "LOG_FILE_DIRECTORY",
                    &format!("{mac}-boot.log"),
                ),
                "log",
                boot_log,
            )
            .await;
        let mut candidates: Vec<String> = Vec::new();
        if let Some(f) = server.file.as_ref().filter(|f| f.len() >= 5) {
            candidates.push(f.clone());
        }
        candidates.push(format!("{mac}.cfg"));
        candidates.push(polyprov_model::master::SHARED_MASTER.into());
        let mut master = None;
        for name in candidates {
            match session.get(&updater, &name, "master").await {
                Some(r) if r.ok() => {
                    let text = text_of(&r.body);
                    match Master::parse(&name, &text) {
                        Ok(m) => {
                            master = Some(m);
                            break;
                        }
                        Err(e) => session.report.problems.push(format!("{name}: {e}")),
                    }
                }
                Some(_) => continue,
                None => break,
            }
        }
        let Some(master) = master else {
            report
                .problems
                .push("no usable master file; booting from the cached configuration".into());
            return report;
        };
        let token = model_token(&self.ua_model);
        let resolved = master.resolve(Some(&token), mac);
        self.directories = resolved
            .attributes
            .iter()
            .filter(|(k, _)| k.ends_with("_DIRECTORY"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(app) = resolved.app_file_path.as_ref().filter(|a| !a.is_empty()) {
            let mut image = None;
            if let Some(part) = &self.part_number {
                image = session
                    .get(&updater, &format!("{part}.{app}"), "firmware")
                    .await
                    .filter(Reply::ok);
            }
            if image.is_none() {
                image = session
                    .get(&updater, app, "firmware")
                    .await
                    .filter(Reply::ok);
            }
            if let Some(img) = image {
                self.maybe_upgrade(&img.body, session.report);
            }
        }

        // Application: configuration, overrides, licences, call lists, directory, log.
        let app = self.user_agent("Application");
        let mut cache = BTreeMap::new();
        let mut parsed = Vec::new();
        for name in &resolved.config_files {
            if name.contains("://") {
                session.report.problems.push(format!(
                    "{name}: CONFIG_FILES URLs are not followed by the emulated phone"
                ));
                continue;
            }
            match session.get(&app, name, "config").await {
                Some(r) if r.ok() => {
                    let text = text_of(&r.body);
                    let file = match parses {
                        Some(c) => c.parse(name, &text),
                        None => ConfigFile::parse(name, &text).map(Arc::new),
                    };
                    match file {
                        Ok(f) => parsed.push(f),
                        Err(e) => session.report.problems.push(e.to_string()),
                    }
                    cache.insert(name.clone(), text);
                }
                Some(r) => session.report.problems.push(format!(
                    "{name}: listed in CONFIG_FILES, server answered {}",
                    r.status
                )),
                None => {}
            }
        }
        self.cache = cache;
        self.config_files = resolved.config_files.clone();
        let ov = |n: &str| dir_join(&self.directories, "OVERRIDES_DIRECTORY", n);
        if let Some(r) = session
            .get(&app, &ov(&format!("{mac}-phone.cfg")), "override")
            .await
            .filter(Reply::ok)
        {
            self.local_override = Some(text_of(&r.body));
        }
        if let Some(r) = session
            .get(&app, &ov(&format!("{mac}-web.cfg")), "override")
            .await
            .filter(Reply::ok)
        {
            self.web_override = Some(text_of(&r.body));
        }
        let lic = |n: &str| dir_join(&self.directories, "LICENSE_DIRECTORY", n);
        session
            .get(&app, &lic("000000000000-license.cfg"), "licence")
            .await;
        session
            .get(&app, &lic(&format!("{mac}-license.cfg")), "licence")
            .await;
        let calls_name = dir_join(
            &self.directories,
            "CALL_LISTS_DIRECTORY",
            &format!("{mac}-calls.xml"),
        );
        if let Some(r) = session
            .get(&app, &calls_name, "calls")
            .await
            .filter(Reply::ok)
        {
            self.calls = Some(text_of(&r.body));
        }
        let contacts = |n: &str| dir_join(&self.directories, "CONTACTS_DIRECTORY", n);
        let own_dir = session
            .get(
                &app,
                &contacts(&format!("{mac}-directory.xml")),
                "directory",
            )
            .await
            .filter(Reply::ok);
        let seed_dir = session
            .get(&app, &contacts("000000000000-directory.xml"), "directory")
            .await
            .filter(Reply::ok);
        if let Some(r) = own_dir.or(if self.directory.is_none() {
            seed_dir
        } else {
            None
        }) {
            self.directory = Some(text_of(&r.body));
        }
        let log_name = dir_join(
            &self.directories,
            "LOG_FILE_DIRECTORY",
            &format!("{mac}-app.log"),
        );
        session.head(&app, &log_name, "log").await;
        self.apply_to_flash(&parsed);
        self.log("application started");
        let log = self.app_log.join("\n").into_bytes();
        session.put(&app, &log_name, "log", log).await;
        report
    }

    fn maybe_upgrade(&mut self, image: &[u8], report: &mut BootReport) {
        let header = std::str::from_utf8(&image[..image.len().min(80)]).unwrap_or_default();
        let Some(version) = header
            .strip_prefix(IMAGE_MAGIC)
            .and_then(|r| r.lines().next())
            .map(str::trim)
        else {
            report
                .problems
                .push("the software image's version cannot be read; not flashed".into());
            return;
        };
        let newer = compare_versions(version, &self.firmware) == Ordering::Greater;
        let differs = version != self.firmware;
        if differs && (newer || self.assumptions.upgrade != "newer-only") {
            self.log(&format!("flashing {version} over {}", self.firmware));
            self.firmware = version.to_string();
            report.upgraded_to = Some(version.to_string());
        }
    }

    /// Stores gated `device.*` values from the configuration files in flash, as the phone does.
    fn apply_to_flash(&mut self, files: &[Arc<ConfigFile>]) {
        let local = Self::parsed("local", &self.local_override);
        let web = Self::parsed("web", &self.web_override);
        let e = effective_only(
            &PhoneSources {
                local_override: local.as_ref(),
                web_override: web.as_ref(),
                config_files: files,
                flash: Some(&self.flash),
                defaults: None,
            },
            |name| name.starts_with("device."),
        );
        for (name, r) in e {
            if let (true, Some(w)) = (is_gated(&name), r.winner())
                && matches!(w.layer, Layer::ConfigFile(_))
            {
                self.flash.insert(name, w.value.clone());
            }
        }
    }

    fn log(&mut self, line: &str) {
        self.app_log.push(line.to_string());
    }

    /// `text` (or a new override file) with `param` set on its `<OVERRIDES>` element.
    fn set_in_override(
        text: &Option<String>,
        name: &str,
        param: &str,
        value: &str,
    ) -> Result<String, ActionError> {
        let base = text.as_deref().unwrap_or(OVERRIDE_SKELETON);
        let mut f = ConfigFile::parse(name, base)
            .or_else(|_| ConfigFile::parse(name, OVERRIDE_SKELETON))
            .map_err(|e| ActionError::Model(e.to_string()))?;
        f.set_in("OVERRIDES", param, value)
            .map_err(|e| ActionError::Model(e.to_string()))?;
        Ok(f.text().to_string())
    }

    /// Changes the admin password in the web UI (→ web override, uploaded) or the phone menu
    /// (→ per [`Assumptions::menu_password_store`]). Returns the upload's record, if any.
    pub async fn set_admin_password<T: Transport>(
        &mut self,
        via_web: bool,
        new: &str,
        transport: &T,
    ) -> Result<Option<RequestRecord>, ActionError> {
        let mac = self.mac;
        let (name, text) = if via_web {
            let name = format!("{mac}-web.cfg");
            let text = Self::set_in_override(&self.web_override, &name, ADMIN_PASSWORD, new)?;
            self.web_override = Some(text.clone());
            (name, text)
        } else if self.assumptions.menu_password_store == "flash" {
            self.flash.insert(ADMIN_PASSWORD.into(), new.into());
            return Ok(None);
        } else {
            let name = format!("{mac}-phone.cfg");
            let text = Self::set_in_override(&self.local_override, &name, ADMIN_PASSWORD, new)?;
            self.local_override = Some(text.clone());
            (name, text)
        };
        Ok(self.upload(&name, text.into_bytes(), transport).await)
    }

    /// The login a phone presents to `server`: credentials in the URL win over the ones in
    /// flash (`device.prov.user`/`device.prov.password`).
    fn login_for(&self, server: &ServerUrl) -> Login {
        match (&server.user, &server.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => match (
                self.flash.get("device.prov.user"),
                self.flash.get("device.prov.password"),
            ) {
                (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p.clone())),
                _ => None,
            },
        }
    }

    /// Uploads a file to the last server (a phone that cannot upload keeps the change locally).
    async fn upload<T: Transport>(
        &mut self,
        name: &str,
        body: Vec<u8>,
        transport: &T,
    ) -> Option<RequestRecord> {
        let server = ServerUrl::parse(self.last_server.as_deref()?).ok()?;
        let login = self.login_for(&server);
        let mut report = BootReport::default();
        let ua = self.user_agent("Application");
        let path = dir_join(&self.directories, "OVERRIDES_DIRECTORY", name);
        let mut session = Session {
            transport,
            server: &server,
            login: &login,
            report: &mut report,
        };
        session.put(&ua, &path, "override", body).await;
        report.requests.pop()
    }

    /// A menu reset. Reset to Factory needs UC Software 4.0.0 and the admin password.
    pub fn menu_reset(
        &mut self,
        what: MenuReset,
        password: Option<&str>,
    ) -> Result<(), ActionError> {
        if what == MenuReset::Factory {
            if compare_versions(&self.firmware, "4.0.0") == Ordering::Less {
                return Err(ActionError::NotAvailable(self.firmware.clone()));
            }
            if password != Some(self.admin_password().as_str()) {
                return Err(ActionError::WrongPassword);
            }
        }
        self.reset(what);
        Ok(())
    }

    fn reset(&mut self, what: MenuReset) {
        match what {
            MenuReset::Local => self.local_override = None,
            MenuReset::Web => self.web_override = None,
            // device.* in flash: network and provisioning settings. Passwords are kept (an
            // assumption: the menu item is about device settings).
            MenuReset::Device => self.flash.retain(|k, _| k.starts_with("device.auth.")),
            MenuReset::Format => {
                self.cache.clear();
                self.config_files.clear();
                self.app_log.clear();
                self.directory = None;
                self.calls = None;
            }
            MenuReset::Factory => {
                self.flash.clear();
                self.cache.clear();
                self.config_files.clear();
                self.app_log.clear();
                self.directory = None;
                self.calls = None;
                self.local_override = None;
                self.web_override = None;
                self.directories.clear();
            }
        }
    }

    /// The key combination during the boot countdown: the prompt reads keypad events and accepts
    /// the admin password or the MAC. From UC Software 4.0.0 it resets to factory; before, it
    /// resets device settings only (flash parameters and logs).
    pub fn keys_reset(&mut self, events: &[KeyEvent]) -> Result<MenuReset, ActionError> {
        let cycle = if self.assumptions.mode_cycle == "labels" {
            ModeCycle::Labels
        } else {
            ModeCycle::Seed
        };
        let typed = decode(events, cycle);
        let mac = self.mac.to_string();
        let mac_ok = if self.assumptions.mac_case_sensitive {
            typed == mac
        } else {
            typed.eq_ignore_ascii_case(&mac)
        };
        if !(mac_ok || typed == self.admin_password()) {
            return Err(ActionError::WrongPassword);
        }
        if compare_versions(&self.firmware, "4.0.0") == Ordering::Less {
            self.flash.clear();
            self.app_log.clear();
            Ok(MenuReset::Device)
        } else {
            self.reset(MenuReset::Factory);
            Ok(MenuReset::Factory)
        }
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

/// One boot's requests, recorded.
struct Session<'a, T: Transport> {
    transport: &'a T,
    server: &'a ServerUrl,
    login: &'a Login,
    report: &'a mut BootReport,
}

impl<T: Transport> Session<'_, T> {
    fn record(
        &mut self,
        method: &str,
        path: &str,
        ua: &str,
        kind: &str,
        started: Instant,
        r: &Result<Reply, TransportError>,
    ) {
        let (status, bytes) = match r {
            Ok(r) => (r.status, r.body.len() as u64),
            Err(e) => {
                self.report.problems.push(format!("{method} {path}: {e}"));
                (0, 0)
            }
        };
        self.report.requests.push(RequestRecord {
            method: method.into(),
            path: path.into(),
            status,
            bytes,
            stage: if ua.ends_with("Type/Updater") {
                "Updater".into()
            } else {
                "Application".into()
            },
            kind: kind.into(),
            micros: started.elapsed().as_micros() as u64,
        });
    }

    async fn get(&mut self, ua: &str, path: &str, kind: &str) -> Option<Reply> {
        let t = Instant::now();
        let r = self.transport.get(self.server, path, ua, self.login).await;
        self.record("GET", path, ua, kind, t, &r);
        r.ok()
    }

    async fn head(&mut self, ua: &str, path: &str, kind: &str) -> Option<Reply> {
        let t = Instant::now();
        let r = self.transport.head(self.server, path, ua, self.login).await;
        self.record("HEAD", path, ua, kind, t, &r);
        r.ok()
    }

    async fn put(&mut self, ua: &str, path: &str, kind: &str, body: Vec<u8>) -> Option<Reply> {
        let t = Instant::now();
        let r = self
            .transport
            .put(self.server, path, ua, self.login, body)
            .await;
        self.record("PUT", path, ua, kind, t, &r);
        r.ok()
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
