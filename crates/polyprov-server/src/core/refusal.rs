//! Why a request gets no file, and what that means to each protocol.

use super::*;

/// Why a request gets no file. Each door maps these to its own error (HTTP status, TFTP error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no such file")]
    NotFound,
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    #[error("untrustworthy User-Agent: {0}")]
    BadSerialTag(#[from] UserAgentError),
    #[error("User-Agent SN {serial} contradicts the MAC {mac} in the path")]
    SerialMismatch { mac: Mac, serial: Mac },
    #[error("the device certificate names {cert}, not the MAC {mac} in the path")]
    CertificateMismatch { mac: Mac, cert: Mac },
    #[error("the provisioning login of {login} was used for {mac}'s files")]
    WrongDeviceLogin { mac: Mac, login: Mac },
    #[error("{mac} uses its own provisioning login: the shared one no longer opens its files")]
    SharedLoginRetired { mac: Mac },
    #[error("credentials required")]
    AuthRequired,
    #[error("wrong credentials")]
    BadCredentials,
    #[error("this file cannot be uploaded")]
    NotUploadable,
    #[error("upload of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("upload refused: {0}")]
    BadBody(String),
    #[error("the upload did not arrive in time")]
    BodyTimeout,
    #[error("server busy or out of resources: {0}")]
    Unavailable(String),
    #[error("server error: {0}")]
    Internal(String),
}

impl Refusal {
    /// The refusal for a failed file or database operation: a missing file is `NotFound`, a
    /// resource that ran out (descriptors, disk, memory) is `Unavailable` — a phone told 404
    /// boots without its files, one told 503 tries again — anything else `Internal`.
    pub fn from_io(e: &std::io::Error, what: &str) -> Refusal {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::NotFound | K::NotADirectory => Refusal::NotFound,
            _ if is_resource_error(e) => Refusal::Unavailable(format!("{what}: {e}")),
            _ => Refusal::Internal(format!("{what}: {e}")),
        }
    }
}

impl Refusal {
    /// The refusal for a failed inventory operation: a full disk, a locked or unopenable
    /// database, or no connection in time is `Unavailable`; anything else `Internal`.
    pub fn from_inventory(e: polyprov_store::InventoryError) -> Refusal {
        if e.is_resource() {
            Refusal::Unavailable(e.to_string())
        } else {
            Refusal::Internal(e.to_string())
        }
    }
}

impl Refusal {
    /// The HTTP status this refusal means: what the HTTP door answers, and the `status` label
    /// every door's request metrics carry.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::NotFound => 404,
            Refusal::BadPath(_) | Refusal::BadBody(_) => 400,
            Refusal::SerialMismatch { .. }
            | Refusal::CertificateMismatch { .. }
            | Refusal::WrongDeviceLogin { .. }
            | Refusal::SharedLoginRetired { .. }
            | Refusal::BadSerialTag(_) => 403,
            Refusal::AuthRequired | Refusal::BadCredentials => 401,
            Refusal::NotUploadable => 405,
            Refusal::TooLarge { .. } => 413,
            Refusal::BodyTimeout => 408,
            Refusal::Unavailable(_) => 503,
            Refusal::Internal(_) => 500,
        }
    }
}

/// What the upload store's failure is to the one who sent the upload.
impl From<polyprov_store::UploadError> for Refusal {
    fn from(e: polyprov_store::UploadError) -> Refusal {
        match e {
            polyprov_store::UploadError::TooLarge { size, limit, .. } => {
                Refusal::TooLarge { size, limit }
            }
            polyprov_store::UploadError::Io(e) => Refusal::from_io(&e, "the upload store"),
            polyprov_store::UploadError::Database(e) => Refusal::from_inventory(e),
        }
    }
}

/// Whether an I/O error means a resource ran out rather than a fault: no descriptors (EMFILE,
/// ENFILE), no space or quota, no memory, a would-block or interrupted call.
pub fn is_resource_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::OutOfMemory | K::WouldBlock | K::Interrupted
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 28 | 105))
}

/// What kind of file a request was for, for metrics and logs.
/// For a request that never reaches the core (a method a door does not take).
pub fn kind_label(path: &str) -> &'static str {
    RequestPath::parse(path).map_or("invalid", |p| label_of(&p.kind()))
}

/// The metrics label of a kind of file.
pub(super) fn label_of(kind: &FileKind) -> &'static str {
    match kind {
        FileKind::Master(_) => "master",
        FileKind::DeviceConfig(_) => "device_config",
        FileKind::DeviceFile(_, k) if k.is_log() => "log",
        FileKind::DeviceFile(_, _) => "device_file",
        FileKind::Shared => "shared",
    }
}

pub(super) fn refusal_reason(r: &Refusal) -> &'static str {
    match r {
        Refusal::NotFound => "not_found",
        Refusal::BadPath(_) => "bad_path",
        Refusal::BadSerialTag(_) => "bad_serial_tag",
        Refusal::SerialMismatch { .. } => "serial_mismatch",
        Refusal::CertificateMismatch { .. } => "certificate_mismatch",
        Refusal::WrongDeviceLogin { .. } => "wrong_device_login",
        Refusal::SharedLoginRetired { .. } => "shared_login_after_switch",
        Refusal::AuthRequired => "auth_required",
        Refusal::BadCredentials => "bad_credentials",
        Refusal::NotUploadable => "not_uploadable",
        Refusal::TooLarge { .. } => "too_large",
        Refusal::BadBody(_) => "bad_body",
        Refusal::BodyTimeout => "body_timeout",
        Refusal::Unavailable(_) => "unavailable",
        Refusal::Internal(_) => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A phone told 404 boots without the file; one told 503 tries again. Running out of
    /// descriptors, disk or memory must never look like a missing file.
    #[test]
    pub(super) fn resource_errors_are_503_and_only_missing_files_404() {
        let os = std::io::Error::from_raw_os_error;
        for (e, want) in [
            (std::io::Error::from(std::io::ErrorKind::NotFound), 404),
            (os(20), 404),  // ENOTDIR
            (os(24), 503),  // EMFILE
            (os(23), 503),  // ENFILE
            (os(28), 503),  // ENOSPC
            (os(12), 503),  // ENOMEM
            (os(122), 503), // EDQUOT
            (os(5), 500),   // EIO
            (os(13), 500),  // EACCES
        ] {
            assert_eq!(Refusal::from_io(&e, "x").status(), want, "{e}");
        }
    }
}
