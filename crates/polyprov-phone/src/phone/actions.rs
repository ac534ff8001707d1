//! What people do to a phone: change its admin password, reset it from the menu or with the
//! key combination at boot.

use super::boot::Session;
use super::{
    ADMIN_PASSWORD, ActionError, BootReport, MenuReset, OVERRIDE_SKELETON, PhoneState,
    RequestRecord, dir_join,
};
use crate::transport::{Login, Transport};
use crate::url::ServerUrl;
use polyprov_model::config_file::ConfigFile;
use polyprov_model::guide::compare_versions;
use polyprov_model::keypad::{KeyEvent, ModeCycle, decode};
use std::cmp::Ordering;

impl PhoneState {
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
    pub(super) fn login_for(&self, server: &ServerUrl) -> Login {
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
