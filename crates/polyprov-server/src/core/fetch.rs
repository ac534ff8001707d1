//! Reads: what a phone gets for a path.

use super::*;

/// Size and modification time of a regular file; `Ok(None)` when there is none at `path`, an
/// error when the file system could not say (out of descriptors, I/O error).
///
/// The stat runs inline, not on the blocking pool: on the boot root's local disk it takes
/// microseconds, while a hand-off to a blocking thread and back per request made context
/// switches a third of the server's CPU in a keep-alive storm (perf, `bench/https.sh`).
pub(super) fn file_stamp(path: &Path) -> std::io::Result<Option<Stamp>> {
    let md = match std::fs::metadata(path) {
        Ok(md) => md,
        Err(e) if matches!(Refusal::from_io(&e, ""), Refusal::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !md.is_file() {
        return Ok(None);
    }
    Ok(Some(stamp_of(&md)))
}

/// A file's size and modification time (ns since the Unix epoch).
pub(super) fn stamp_of(md: &std::fs::Metadata) -> Stamp {
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    (md.len(), mtime)
}

impl Core {
    /// Answers a read (HTTP GET/HEAD, TFTP RRQ, FTP RETR).
    /// The request is parsed once here and counted here
    /// (`polyprov_requests_total{door,kind,status}`); the answer carries its kind, for the door
    /// to label the bytes it sends.
    pub async fn fetch(&self, req: &Request<'_>) -> Result<Answer, Refusal> {
        let (label, parsed) = self.parse(req);
        let result = match parsed {
            Ok(p) => self.fetch_parsed(req, p, true).await,
            Err(r) => Err(r),
        };
        self.count(req, label, &result);
        if let Err(r) = &result {
            self.log_refusal(req, "fetch", r);
        }
        self.fetch_for_watches(req, &result);
        result.map(|a| a.labelled(label))
    }

    /// What a phone asking for `path` with the provisioning credentials would get now, without
    /// recording a sighting (for `doctor`).
    pub async fn preview(&self, path: &str) -> Result<Answer, Refusal> {
        let req = Request {
            door: Door::Internal,
            path,
            user_agent: None,
            user_agent_memo: None,
            peer: IpAddr::from([127, 0, 0, 1]),
            credential: Credential::Valid,
        };
        let (label, parsed) = self.parse(&req);
        Ok(self
            .fetch_parsed(&req, parsed?, false)
            .await?
            .labelled(label))
    }

    pub(super) async fn fetch_parsed(
        &self,
        req: &Request<'_>,
        Parsed { path, ua }: Parsed,
        observe: bool,
    ) -> Result<Answer, Refusal> {
        if req.credential == Credential::Invalid {
            return Err(Refusal::BadCredentials);
        }
        let kind = path.kind();
        let _guard = match &kind {
            FileKind::Master(m) | FileKind::DeviceConfig(m) | FileKind::DeviceFile(m, _) => {
                Some(self.device_lock(*m).read().await)
            }
            FileKind::Shared => None,
        };
        match kind {
            FileKind::Shared => self.root_file(&path).await,
            FileKind::Master(mac) => {
                check_identity(req, mac, ua.as_deref())?;
                if observe {
                    self.note(mac, req, ua.as_deref(), Some(path.file_name()), None);
                }
                if let Some(render) = self.device_render(mac).await? {
                    return self.generated_master(mac, &render, &path).await;
                }
                match self.mac_file(&path).await {
                    Err(Refusal::NotFound) => {
                        self.root_file(&path.with_file_name(SHARED_MASTER)).await
                    }
                    other => other,
                }
            }
            FileKind::DeviceConfig(mac) => {
                check_identity(req, mac, ua.as_deref())?;
                self.require_credential(req, mac)?;
                if observe {
                    self.note(mac, req, ua.as_deref(), Some(path.file_name()), None);
                    self.login_used(req, mac).await;
                }
                match self.device_render(mac).await? {
                    Some(render) => {
                        if observe {
                            self.served_own_login(mac);
                        }
                        Ok(Answer::Generated(render.config.clone()))
                    }
                    None => Err(Refusal::NotFound),
                }
            }
            FileKind::DeviceFile(mac, kind) => {
                check_identity(req, mac, ua.as_deref())?;
                self.require_credential(req, mac)?;
                if observe {
                    self.login_used(req, mac).await;
                    self.note(mac, req, ua.as_deref(), Some(path.file_name()), None);
                }
                // An admin-placed licence wins; a directory falls back to an admin-placed seed.
                if kind == UploadKind::License {
                    match self.mac_file(&path).await {
                        Err(Refusal::NotFound) => {}
                        other => return other,
                    }
                }
                match self.latest_upload(mac, kind).await? {
                    Some(info) => {
                        let name = path.file_name();
                        Ok(match info.body {
                            // Kept in the shared database (several nodes).
                            Some(body) => Answer::Generated(Generated::kept(
                                body,
                                info.size,
                                info.modified_nanos,
                                name,
                            )),
                            None => Answer::File(served(
                                info.path,
                                info.size,
                                info.modified_nanos,
                                name,
                            )),
                        })
                    }
                    None if kind == UploadKind::Directory => self.mac_file(&path).await,
                    None => Err(Refusal::NotFound),
                }
            }
        }
    }

    /// A boot-root file, with the part-number fallback (`3111-44500-001.sip.ld` → `sip.ld`).
    pub(super) async fn root_file(&self, path: &RequestPath) -> Result<Answer, Refusal> {
        if path.segments().iter().any(|s| s.starts_with('.')) {
            return Err(Refusal::NotFound);
        }
        // Segments never hold a `/` nor start with one (`RequestPath`), so each push appends.
        let rel: PathBuf = path.segments().iter().collect();
        let stamp = self
            .root_watch
            .stamp(&rel)
            .map_err(|e| Refusal::from_io(&e, &path.to_string()))?;
        let full = self.root.join(rel);
        match stamp {
            Some((len, mtime)) if len <= small_files::MAX_FILE => match self
                .small_file(&full, (len, mtime))
                .map_err(|e| Refusal::from_io(&e, &path.to_string()))?
            {
                Some(body) => Ok(Answer::Generated(Generated::kept(
                    body,
                    len,
                    mtime,
                    path.file_name(),
                ))),
                None => Err(Refusal::NotFound),
            },
            Some((len, mtime)) => Ok(Answer::File(served(full, len, mtime, path.file_name()))),
            None => match strip_part_number(path.file_name()) {
                Some(bare) => Box::pin(self.root_file(&path.with_file_name(bare))).await,
                None => Err(Refusal::NotFound),
            },
        }
    }

    /// A per-MAC boot-root file (`<mac>.cfg`, a licence, a directory seed) in whichever case the
    /// admin named it: as asked, then lower case, then upper case (`0004F2AA8301.cfg` is a name
    /// the vendor allows; phones ask in lower case).
    pub(super) async fn mac_file(&self, path: &RequestPath) -> Result<Answer, Refusal> {
        let asked = path.file_name();
        let (Some(hex), Some(rest)) = (asked.get(..12), asked.get(12..)) else {
            return self.root_file(path).await;
        };
        match self.root_file(path).await {
            Err(Refusal::NotFound) => {}
            other => return other,
        }
        // Phones ask in lower case and most of these lookups find nothing: a case variant is
        // built only when it differs from the name asked.
        for upper in [false, true] {
            let differs = match upper {
                false => hex.bytes().any(|b| b.is_ascii_uppercase()),
                true => hex.bytes().any(|b| b.is_ascii_lowercase()),
            };
            if !differs {
                continue;
            }
            let hex = match upper {
                false => hex.to_ascii_lowercase(),
                true => hex.to_ascii_uppercase(),
            };
            let variant = path.with_file_name(&format!("{hex}{rest}"));
            match self.root_file(&variant).await {
                Err(Refusal::NotFound) => {}
                other => return other,
            }
        }
        Err(Refusal::NotFound)
    }

    pub(super) async fn latest_upload(
        &self,
        mac: Mac,
        kind: UploadKind,
    ) -> Result<Option<UploadInfo>, Refusal> {
        self.uploads.latest(mac, kind).await.map_err(Refusal::from)
    }
}
