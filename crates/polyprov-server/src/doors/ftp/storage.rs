//! The storage side of the FTP door: `RETR`, `SIZE`, `MDTM`, `STOR`, `APPE`, `LIST` and `CWD`
//! as core calls. There is no FTP file tree: directories are the boot root's, files are what the
//! core answers, uploads go through the core's upload ticket.

use super::FtpUser;
use crate::core::{Answer, Core, Door, Refusal, Request};
use crate::metrics::Metrics;
use async_trait::async_trait;
use bytes::Bytes;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use unftp_core::storage::{self, ErrorKind, FEATURE_RESTART, Fileinfo, Metadata, StorageBackend};

/// Bytes read from a file at a time when sending it.
const READ_CHUNK: usize = 256 * 1024;

/// The storage side: every file operation goes to the core.
#[derive(Clone)]
pub struct FtpDoor {
    pub core: Arc<Core>,
    pub metrics: Arc<Metrics>,
}

impl fmt::Debug for FtpDoor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FtpDoor")
    }
}

/// Size, time and type of what a path names.
#[derive(Debug, Clone)]
pub struct Meta {
    len: u64,
    modified: SystemTime,
    is_dir: bool,
}

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_dir(&self) -> bool {
        self.is_dir
    }
    fn is_file(&self) -> bool {
        !self.is_dir
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> storage::Result<SystemTime> {
        Ok(self.modified)
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
    fn permissions(&self) -> storage::Permissions {
        storage::Permissions(if self.is_dir { 0o555 } else { 0o444 })
    }
}

/// The FTP reply a refusal becomes (libunftp fixes the texts per code).
fn storage_error(r: &Refusal) -> storage::Error {
    let kind = match r {
        Refusal::NotFound => ErrorKind::PermanentFileNotAvailable,
        Refusal::BadPath(_) | Refusal::NotUploadable => ErrorKind::FileNameNotAllowedError,
        Refusal::TooLarge { .. } => ErrorKind::ExceededStorageAllocationError,
        Refusal::Internal(_) | Refusal::BodyTimeout => ErrorKind::LocalError,
        Refusal::Unavailable(_) => ErrorKind::TransientFileNotAvailable,
        Refusal::AuthRequired
        | Refusal::BadCredentials
        | Refusal::SerialMismatch { .. }
        | Refusal::CertificateMismatch { .. }
        | Refusal::WrongDeviceLogin { .. }
        | Refusal::SharedLoginRetired { .. }
        | Refusal::BadSerialTag(_)
        | Refusal::BadBody(_) => ErrorKind::PermissionDenied,
    };
    storage::Error::new(kind, r.to_string())
}

/// The path as the core takes it: `/`-rooted text.
fn path_text(path: &Path) -> storage::Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| storage::Error::from(ErrorKind::FileNameNotAllowedError))?;
    Ok(format!("/{}", text.trim_start_matches('/')))
}

fn request<'a>(user: &FtpUser, path: &'a str) -> Request<'a> {
    Request {
        door: Door::Ftp,
        path,
        user_agent: None,
        user_agent_memo: None,
        peer: user.peer,
        credential: user.credential,
    }
}

impl FtpDoor {
    /// Fetches through the core (which counts the request).
    async fn fetch(&self, user: &FtpUser, path: &str) -> storage::Result<Answer> {
        self.core
            .fetch(&request(user, path))
            .await
            .map_err(|r| storage_error(&r))
    }
}

/// A reader over an answer, from byte `start`.
async fn open(
    answer: Answer,
    start: u64,
) -> storage::Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
    match answer {
        Answer::Generated(g) => {
            let start = (start as usize).min(g.body.len());
            Ok(Box::new(std::io::Cursor::new(g.body.slice(start..))))
        }
        Answer::File(f) => {
            let mut file = tokio::fs::File::open(&f.path).await?;
            if start > 0 {
                file.seek(std::io::SeekFrom::Start(start)).await?;
            }
            Ok(Box::new(file.take(f.len.saturating_sub(start))))
        }
    }
}

#[async_trait]
impl StorageBackend<FtpUser> for FtpDoor {
    type Metadata = Meta;

    fn supported_features(&self) -> u32 {
        // REST: an interrupted firmware download continues where it stopped.
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> storage::Result<Meta> {
        let path = path_text(path.as_ref())?;
        if self.core.is_shared_dir(&path).await {
            return Ok(Meta {
                len: 0,
                modified: SystemTime::UNIX_EPOCH,
                is_dir: true,
            });
        }
        let answer = self.fetch(user, &path).await?;
        let modified = match &answer {
            Answer::File(f) => tokio::fs::metadata(&f.path).await?.modified()?,
            // Generated now, from the inventory as it is now.
            Answer::Generated(_) => SystemTime::now(),
        };
        Ok(Meta {
            len: answer.len(),
            modified,
            is_dir: false,
        })
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &FtpUser,
        path: P,
    ) -> storage::Result<Vec<Fileinfo<PathBuf, Meta>>> {
        let path = path_text(path.as_ref())?;
        let entries = self
            .core
            .shared_listing(&path)
            .await
            .map_err(|_| storage::Error::from(ErrorKind::PermanentDirectoryNotAvailable))?;
        Ok(entries
            .into_iter()
            .map(|e| Fileinfo {
                path: PathBuf::from(e.name),
                metadata: Meta {
                    len: e.len,
                    modified: e.modified,
                    is_dir: e.is_dir,
                },
            })
            .collect())
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> storage::Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let path = path_text(path.as_ref())?;
        let answer = self.fetch(user, &path).await?;
        let (kind, sent) = (answer.kind(), answer.len().saturating_sub(start_pos));
        let reader = open(answer, start_pos).await?;
        self.metrics.sent("ftp", kind, sent);
        Ok(reader)
    }

    /// `RETR`: files go out in large chunks, one blocking read each (libunftp's default copies
    /// 8 KiB at a time, a blocking-pool round trip and a socket write per 8 KiB).
    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> storage::Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + fmt::Debug,
    {
        let path = path_text(path.as_ref())?;
        let answer = self.fetch(user, &path).await?;
        let kind = answer.kind();
        let reader = open(answer, start_pos).await?;
        let sent = tokio::io::copy_buf(
            &mut tokio::io::BufReader::with_capacity(READ_CHUNK, reader),
            output,
        )
        .await?;
        self.metrics.sent("ftp", kind, sent);
        Ok(sent)
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> storage::Result<u64> {
        let path = path_text(path.as_ref())?;
        let req = request(user, &path);
        // The core counts and logs every refusal; the door only translates it.
        let refused = |r: Refusal| storage_error(&r);
        let ticket = self
            .core
            .begin_upload(&req, start_pos > 0)
            .map_err(refused)?;
        let mut body = Vec::new();
        // A read error (reset connection, TLS cut without close_notify) stores nothing; one byte
        // past the limit is enough for the core to refuse the upload as too large.
        if let Err(e) = input.take(ticket.limit() + 1).read_to_end(&mut body).await {
            let why = Refusal::BadBody(format!("the upload broke off: {e}"));
            self.core.abandon_upload(&req, ticket, why);
            return Err(e.into());
        }
        let size = body.len() as u64;
        self.core
            .finish_upload(&req, ticket, Bytes::from(body))
            .await
            .map_err(refused)?;
        Ok(size)
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _: &FtpUser,
        _: P,
    ) -> storage::Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _: &FtpUser,
        _: P,
    ) -> storage::Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _: &FtpUser,
        _: P,
        _: P,
    ) -> storage::Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _: &FtpUser,
        _: P,
    ) -> storage::Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _: &FtpUser,
        path: P,
    ) -> storage::Result<()> {
        let path = path_text(path.as_ref())?;
        if self.core.is_shared_dir(&path).await {
            Ok(())
        } else {
            Err(ErrorKind::PermanentDirectoryNotAvailable.into())
        }
    }
}
