//! The boot, stage by stage, in the order real phones make their requests: the Updater (boot
//! log, master file, software image), then the application (configuration files, overrides,
//! licences, call list, directory, its log), then the effective configuration applied.

use super::{BootReport, IMAGE_MAGIC, ParseCache, PhoneState, RequestRecord, dir_join, text_of};
use crate::transport::{Call, Login, Method, Reply, Transport, TransportError};
use crate::url::ServerUrl;
use polyprov_model::config_file::ConfigFile;
use polyprov_model::effective::{Layer, PhoneSources, effective_only, is_gated};
use polyprov_model::guide::compare_versions;
use polyprov_model::master::{Master, ResolvedMaster, model_token};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl PhoneState {
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
        self.run(transport, parses, true).await
    }

    /// What a running phone does on a `check-sync` that does not reboot it: the application
    /// reads its master file and configuration again (no boot log, no software check) and
    /// applies them.
    pub async fn check_sync<T: Transport>(&mut self, transport: &T) -> BootReport {
        self.log("check-sync: reading the configuration again");
        self.run(transport, None, false).await
    }

    /// A whole boot (`full`), or the application's part of it.
    async fn run<T: Transport>(
        &mut self,
        transport: &T,
        parses: Option<&ParseCache>,
        full: bool,
    ) -> BootReport {
        self.powered = true;
        let mut report = BootReport::default();
        let Some(server) = self.find_server(&mut report) else {
            return report;
        };
        let login = self.login_for(&server);
        let mut session = Session {
            transport,
            server: &server,
            login: &login,
            report: &mut report,
        };

        let updater = self.user_agent(if full { "Updater" } else { "Application" });
        if full {
            self.upload_boot_log(&mut session, &updater).await;
        }
        let Some(master) = self.fetch_master(&mut session, &updater, &server).await else {
            report
                .problems
                .push("no usable master file; booting from the cached configuration".into());
            return report;
        };
        let resolved = master.resolve(Some(&model_token(&self.ua_model)), self.mac);
        self.directories = resolved
            .attributes
            .iter()
            .filter(|(k, _)| k.ends_with("_DIRECTORY"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if full {
            self.fetch_software(&mut session, &updater, &resolved).await;
        }

        let app = self.user_agent("Application");
        let parsed = self
            .fetch_config_files(&mut session, &app, &resolved, parses)
            .await;
        self.fetch_overrides(&mut session, &app).await;
        self.fetch_licences_and_lists(&mut session, &app).await;
        let log_name = dir_join(
            &self.directories,
            "LOG_FILE_DIRECTORY",
            &format!("{}-app.log", self.mac),
        );
        session.head(&app, &log_name, "log").await;
        self.apply_to_flash(&parsed);
        self.log("application started");
        let log = self.app_log.join("\n").into_bytes();
        session.put(&app, &log_name, "log", log).await;
        report
    }

    /// The server, from discovery; `None` (with the reason in the report) boots from the cache.
    fn find_server(&mut self, report: &mut BootReport) -> Option<ServerUrl> {
        let Some((server_text, source)) = self.discover() else {
            report
                .problems
                .push("no provisioning server found; booting from the cached configuration".into());
            self.log("no provisioning server");
            return None;
        };
        let server = match ServerUrl::parse(&server_text) {
            Ok(s) => s,
            Err(e) => {
                report.problems.push(e.to_string());
                return None;
            }
        };
        report.server = Some(server.to_string());
        report.server_source = Some(source.clone());
        self.last_server = Some(server_text);
        self.last_server_source = Some(source);
        Some(server)
    }

    /// Updater: the boot log goes up first.
    async fn upload_boot_log<T: Transport>(&mut self, session: &mut Session<'_, T>, ua: &str) {
        self.log(&format!("Updater {} booting", self.firmware));
        let name = dir_join(
            &self.directories,
            "LOG_FILE_DIRECTORY",
            &format!("{}-boot.log", self.mac),
        );
        let boot_log = self.app_log.join("\n").into_bytes();
        session.put(ua, &name, "log", boot_log).await;
    }

    /// Updater: the master named in the URL (5 characters or more), else `<mac>.cfg`, else the
    /// shared master; the first that parses wins, and a transport error stops the search.
    async fn fetch_master<T: Transport>(
        &mut self,
        session: &mut Session<'_, T>,
        ua: &str,
        server: &ServerUrl,
    ) -> Option<Master> {
        let mut candidates: Vec<String> = Vec::new();
        if let Some(f) = server.file.as_ref().filter(|f| f.len() >= 5) {
            candidates.push(f.clone());
        }
        candidates.push(format!("{}.cfg", self.mac));
        candidates.push(polyprov_model::master::SHARED_MASTER.into());
        for name in candidates {
            match session.get(ua, &name, "master").await {
                Some(r) if r.ok() => match Master::parse(&name, &text_of(&r.body)) {
                    Ok(m) => return Some(m),
                    Err(e) => session.report.problems.push(format!("{name}: {e}")),
                },
                Some(_) => continue,
                None => break,
            }
        }
        None
    }

    /// Updater: the software image (`<part>.<APP_FILE_PATH>` first when the part number is
    /// known), flashed per [`super::Assumptions::upgrade`].
    async fn fetch_software<T: Transport>(
        &mut self,
        session: &mut Session<'_, T>,
        ua: &str,
        resolved: &ResolvedMaster,
    ) {
        let Some(app) = resolved.app_file_path.as_ref().filter(|a| !a.is_empty()) else {
            return;
        };
        let mut image = None;
        if let Some(part) = &self.part_number {
            image = session
                .get(ua, &format!("{part}.{app}"), "firmware")
                .await
                .filter(Reply::ok);
        }
        if image.is_none() {
            image = session.get(ua, app, "firmware").await.filter(Reply::ok);
        }
        if let Some(img) = image {
            self.maybe_upgrade(&img.body, session.report);
        }
    }

    /// Application: every `CONFIG_FILES` entry, in order, parsed (shared through `parses`) and
    /// cached as the phone caches them.
    async fn fetch_config_files<T: Transport>(
        &mut self,
        session: &mut Session<'_, T>,
        ua: &str,
        resolved: &ResolvedMaster,
        parses: Option<&ParseCache>,
    ) -> Vec<Arc<ConfigFile>> {
        let mut cache = BTreeMap::new();
        let mut parsed = Vec::new();
        for name in &resolved.config_files {
            if name.contains("://") {
                session.report.problems.push(format!(
                    "{name}: CONFIG_FILES URLs are not followed by the emulated phone"
                ));
                continue;
            }
            match session.get(ua, name, "config").await {
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
        parsed
    }

    /// Application: the phone's own overrides (`<mac>-phone.cfg`, `<mac>-web.cfg`).
    async fn fetch_overrides<T: Transport>(&mut self, session: &mut Session<'_, T>, ua: &str) {
        let mac = self.mac;
        let ov = |n: &str| dir_join(&self.directories, "OVERRIDES_DIRECTORY", n);
        let (local, web) = (
            ov(&format!("{mac}-phone.cfg")),
            ov(&format!("{mac}-web.cfg")),
        );
        if let Some(r) = session.get(ua, &local, "override").await.filter(Reply::ok) {
            self.local_override = Some(text_of(&r.body));
        }
        if let Some(r) = session.get(ua, &web, "override").await.filter(Reply::ok) {
            self.web_override = Some(text_of(&r.body));
        }
    }

    /// Application: licences, the call list, the directory (its own, else the seed one for a
    /// phone that has none yet).
    async fn fetch_licences_and_lists<T: Transport>(
        &mut self,
        session: &mut Session<'_, T>,
        ua: &str,
    ) {
        let mac = self.mac;
        let dir = |attr: &str, n: &str| dir_join(&self.directories, attr, n);
        let licences = [
            dir("LICENSE_DIRECTORY", "000000000000-license.cfg"),
            dir("LICENSE_DIRECTORY", &format!("{mac}-license.cfg")),
        ];
        let calls = dir("CALL_LISTS_DIRECTORY", &format!("{mac}-calls.xml"));
        let own_dir = dir("CONTACTS_DIRECTORY", &format!("{mac}-directory.xml"));
        let seed_dir = dir("CONTACTS_DIRECTORY", "000000000000-directory.xml");
        for name in &licences {
            session.get(ua, name, "licence").await;
        }
        if let Some(r) = session.get(ua, &calls, "calls").await.filter(Reply::ok) {
            self.calls = Some(text_of(&r.body));
        }
        let own = session
            .get(ua, &own_dir, "directory")
            .await
            .filter(Reply::ok);
        let seed = session
            .get(ua, &seed_dir, "directory")
            .await
            .filter(Reply::ok);
        if let Some(r) = own.or(if self.directory.is_none() { seed } else { None }) {
            self.directory = Some(text_of(&r.body));
        }
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
}

/// One boot's requests, recorded.
pub(super) struct Session<'a, T: Transport> {
    pub(super) transport: &'a T,
    pub(super) server: &'a ServerUrl,
    pub(super) login: &'a Login,
    pub(super) report: &'a mut BootReport,
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

    async fn send(
        &mut self,
        method: Method,
        ua: &str,
        path: &str,
        kind: &str,
        body: Vec<u8>,
    ) -> Option<Reply> {
        let t = Instant::now();
        let call = Call {
            server: self.server,
            name: path,
            user_agent: ua,
            login: self.login,
        };
        let r = self.transport.send(call, method, body).await;
        self.record(method.as_str(), path, ua, kind, t, &r);
        r.ok()
    }

    async fn get(&mut self, ua: &str, path: &str, kind: &str) -> Option<Reply> {
        self.send(Method::Get, ua, path, kind, Vec::new()).await
    }

    async fn head(&mut self, ua: &str, path: &str, kind: &str) -> Option<Reply> {
        self.send(Method::Head, ua, path, kind, Vec::new()).await
    }

    pub(super) async fn put(
        &mut self,
        ua: &str,
        path: &str,
        kind: &str,
        body: Vec<u8>,
    ) -> Option<Reply> {
        self.send(Method::Put, ua, path, kind, body).await
    }
}
