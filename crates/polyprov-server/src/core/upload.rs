//! Writes: what happens to what a phone uploads.

use super::*;

pub(super) fn check_xml_body(body: &[u8]) -> Result<(), Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::BadBody("not UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    polyprov_model::config::check_well_formed(text).map_err(|e| Refusal::BadBody(e.to_string()))
}

impl Core {
    /// The largest upload accepted at `path` (0: nothing can be uploaded there), for doors that
    /// must refuse before any data arrives.
    pub fn upload_limit(&self, path: &str) -> u64 {
        match RequestPath::parse(path).map(|p| p.kind()) {
            Ok(FileKind::DeviceFile(_, kind)) => self.uploads.limits().max_bytes(kind),
            _ => 0,
        }
    }

    /// What can be checked before an upload's data arrives (path, uploadability, credentials),
    /// for doors that must refuse before reading: the size limit, or the refusal (counted and
    /// logged like any other). `continuing` is an upload that resumes or appends to a stored
    /// file (FTP `APPE`, `REST` + `STOR`): only logs, which every upload appends to anyway;
    /// configuration is replaced whole.
    pub fn admit_upload(&self, req: &Request<'_>, continuing: bool) -> Result<u64, Refusal> {
        let path = RequestPath::parse(req.path);
        let label = path.as_ref().map_or("invalid", |p| label_of(&p.kind()));
        let checked = path
            .map_err(Refusal::from)
            .and_then(|p| match p.kind() {
                FileKind::DeviceFile(_, kind) if kind.is_log() || !continuing => {
                    Ok(self.uploads.limits().max_bytes(kind))
                }
                _ => Err(Refusal::NotUploadable),
            })
            .and_then(|limit| self.require_credential(req).map(|()| limit));
        checked.map_err(|r| self.refused_upload(req, label, r))
    }

    /// The largest upload body any kind accepts: doors stop reading past it.
    pub fn max_upload_bytes(&self) -> u64 {
        self.uploads.limits().max_any()
    }

    /// Stores an upload (HTTP PUT, TFTP WRQ, FTP STOR); parsed once and counted here.
    pub async fn upload(&self, req: &Request<'_>, body: Bytes) -> Result<UploadInfo, Refusal> {
        let (label, parsed) = self.parse(req);
        let result = match parsed {
            Ok(p) => self.upload_parsed(req, p, body).await,
            Err(r) => Err(r),
        };
        match result {
            Ok(info) => {
                self.count(req, label, &Ok::<(), Refusal>(()));
                Ok(info)
            }
            Err(r) => Err(self.refused_upload(req, label, r)),
        }
    }

    /// Refuses an upload the door could not even read (too large, malformed, too slow), counted
    /// and logged like every other refusal.
    pub fn refuse_upload(&self, req: &Request<'_>, r: Refusal) -> Result<UploadInfo, Refusal> {
        Err(self.refused_upload(req, kind_label(req.path), r))
    }

    fn refused_upload(&self, req: &Request<'_>, label: &'static str, r: Refusal) -> Refusal {
        self.count(req, label, &Err::<(), _>(r.clone()));
        self.metrics.upload_rejected(refusal_reason(&r));
        self.log_refusal(req, "upload", &r);
        r
    }

    pub(super) async fn upload_parsed(
        &self,
        req: &Request<'_>,
        Parsed { path, ua }: Parsed,
        body: Bytes,
    ) -> Result<UploadInfo, Refusal> {
        if req.credential == Credential::Invalid {
            return Err(Refusal::BadCredentials);
        }
        let FileKind::DeviceFile(mac, kind) = path.kind() else {
            return Err(Refusal::NotUploadable);
        };
        let _guard = self.device_lock(mac).read().await;
        check_serial(mac, ua.as_ref())?;
        self.require_credential(req)?;
        let limit = self.uploads.limits().max_bytes(kind);
        if body.len() as u64 > limit {
            return Err(Refusal::TooLarge {
                size: body.len() as u64,
                limit,
            });
        }
        if !kind.is_log() {
            check_xml_body(&body)?;
        }
        if kind == UploadKind::BootLog
            && let Some(evidence) = self.reset_evidence(mac, body.len() as u64)
        {
            self.on_reset_suspected(mac, evidence).await;
        }
        let uploads = self.uploads.clone();
        let info = tokio::task::spawn_blocking(move || uploads.put(mac, kind, &body))
            .await
            .map_err(|e| Refusal::Internal(e.to_string()))?
            .map_err(|e| match e {
                polyprov_store::UploadError::Io(e) => Refusal::from_io(&e, "storing an upload"),
                other => Refusal::Internal(other.to_string()),
            })?;
        self.note(mac, req, ua.as_ref(), None, Some(path.file_name()));
        tracing::info!(%mac, kind = %kind, version = info.version, size = info.size, addr = %req.peer, "upload stored");
        Ok(info)
    }
}
