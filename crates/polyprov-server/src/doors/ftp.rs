//! The FTP/FTPS door (libunftp underneath): `RETR`, `SIZE`, `MDTM`, `STOR`, `APPE`, `LIST` and
//! `CWD` become [`Core`] calls, with the same names, limits and inventory as HTTP and TFTP. There
//! is no FTP file tree: directories are the boot root's, files are what the core answers, uploads
//! land in the core's per-device store.
//!
//! Logins: the provisioning credentials (the same as over HTTP) reach per-device files. The
//! phones' factory login `PlcmSpIp`/`PlcmSpIp` (configurable, can be turned off) proves nothing,
//! so it reaches shared files only — unless `[provisioning] auth = "none"`. Any other login is
//! refused and logged as a security event. FTPS is explicit (`AUTH TLS`) with a configured
//! certificate; `require_tls` refuses everything in clear text.
//!
//! Plain FTP marks the end of an upload by closing the data connection, so an upload cut short
//! by a clean close looks complete; a reset connection, a TLS stream without `close_notify`, an
//! over-limit or malformed file stores nothing. Nothing is ever stored half-written.

use crate::auth::ProvisioningCredentials;
use crate::core::{Answer, Core, Credential, Door, Refusal, Request};
use crate::metrics::Metrics;
use crate::settings::FtpSettings;
use async_trait::async_trait;
use bytes::Bytes;
use libunftp::options::FtpsRequired;
use libunftp::{Server, ServerBuilder};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};
use unftp_core::storage::{self, ErrorKind, FEATURE_RESTART, Fileinfo, Metadata, StorageBackend};

const GREETING: &str = "polyprov provisioning server";

/// Bytes read from a file at a time when sending it.
const READ_CHUNK: usize = 256 * 1024;

/// A logged-in FTP session: who it is and what its login proves.
#[derive(Debug, Clone)]
pub struct FtpUser {
    login: String,
    credential: Credential,
    peer: IpAddr,
}

impl fmt::Display for FtpUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.login)
    }
}

impl UserDetail for FtpUser {}

/// Which logins the door accepts, and what each proves.
pub struct Logins {
    core: Arc<Core>,
    /// The provisioning credentials (absent when `[provisioning] auth = "none"`).
    provisioning: Option<ProvisioningCredentials>,
    /// The factory user and password, when accepted.
    factory: Option<(String, String)>,
}

impl fmt::Debug for Logins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logins")
            .field("provisioning", &self.provisioning.is_some())
            .field("factory", &self.factory.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl Logins {
    /// The logins `settings` allow, next to the provisioning credentials.
    pub fn new(
        core: Arc<Core>,
        provisioning: Option<ProvisioningCredentials>,
        settings: &FtpSettings,
    ) -> Logins {
        let factory = settings.factory_login.then(|| {
            (
                settings.factory_user.clone(),
                settings.factory_password.clone(),
            )
        });
        Logins {
            core,
            provisioning,
            factory,
        }
    }
}

/// Separates the parts of a principal's name: libunftp hands the provider only that name.
const SEP: char = '\u{1f}';

#[async_trait]
impl Authenticator for Logins {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let password = creds.password.as_deref().unwrap_or("");
        let credential = if self
            .provisioning
            .as_ref()
            .is_some_and(|p| p.verify(username, password))
        {
            Credential::Valid
        } else if self
            .factory
            .as_ref()
            .is_some_and(|(u, p)| u == username && p == password)
        {
            Credential::Absent
        } else {
            let user: String = username.chars().take(64).collect();
            self.core.security_event(
                "bad_credentials",
                creds.source_ip,
                "ftp_login",
                &user,
                &"wrong FTP user or password",
            );
            return Err(AuthenticationError::BadPassword);
        };
        let tag = if credential == Credential::Valid {
            "device"
        } else {
            "factory"
        };
        Ok(Principal {
            username: format!("{tag}{SEP}{}{SEP}{username}", creds.source_ip),
        })
    }
}

#[async_trait]
impl UserDetailProvider for Logins {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        let mut parts = principal.username.splitn(3, SEP);
        let (Some(tag), Some(peer), Some(login)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(UserDetailError::Generic("malformed principal".into()));
        };
        let peer = peer
            .parse()
            .map_err(|_| UserDetailError::Generic("malformed principal".into()))?;
        let credential = match tag {
            "device" => Credential::Valid,
            _ => Credential::Absent,
        };
        Ok(FtpUser {
            login: login.to_string(),
            credential,
            peer,
        })
    }
}

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

/// Loads the FTPS certificate chain and key (PEM) into a TLS configuration, once at start-up.
/// Session resumption is on: FTPS clients resume the control connection's session on each data
/// connection, and some refuse a server that does not.
pub fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the FTPS certificate {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the FTPS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the FTPS certificate and key do not match")?;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// Everything a control connection needs, shared by all of them.
pub struct FtpService {
    pub door: FtpDoor,
    pub logins: Arc<Logins>,
    pub settings: FtpSettings,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Opens the passive data ports of one control connection: already listening when libunftp gets
/// them, and, with `peer`, accepting only that address (a socket filter drops every other SYN
/// before it is queued). A session holds at most one: a new `PASV` closes the port of the last
/// one, as does the end of the session, and a port is closed `timeout` after it was offered
/// whether or not it was used (a transfer already under way goes on: it has its own socket).
/// Passive ports are few; this is what keeps clients that ask for them and never connect from
/// holding them all.
#[derive(Debug)]
struct PassivePorts {
    peer: Option<IpAddr>,
    held: HeldPort,
    timeout: std::time::Duration,
}

/// A second handle on the listening socket a session was last offered, to close it.
#[derive(Debug, Clone, Default)]
struct HeldPort(Arc<std::sync::Mutex<Option<Arc<socket2::Socket>>>>);

impl HeldPort {
    /// Holds `socket` in place of the last one, which is closed.
    fn replace(&self, socket: Arc<socket2::Socket>) {
        let previous = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(socket);
        if let Some(p) = previous {
            close_listener(&p);
        }
    }

    /// Closes the port held, if any.
    fn release(&self) {
        if let Some(p) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            close_listener(&p);
        }
    }
}

/// Stops a passive listening socket: libunftp's pending `accept` fails and lets it go, and the
/// port is free again. An accepted data connection is a socket of its own and is not touched.
fn close_listener(socket: &socket2::Socket) {
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

#[async_trait]
impl libunftp::options::Binder for PassivePorts {
    async fn bind(
        &mut self,
        local: IpAddr,
        ports: std::ops::RangeInclusive<u16>,
    ) -> std::io::Result<tokio::net::TcpSocket> {
        // A new PASV abandons the last one (RFC 959): its port is free before another is taken.
        self.held.release();
        let (socket, handle) = passive_socket(local, ports, self.peer)?;
        let handle = Arc::new(handle);
        self.held.replace(handle.clone());
        let timeout = self.timeout;
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            close_listener(&handle);
        });
        Ok(socket)
    }
}

/// A listening socket on a random free port of `ports`. Listening here, not after, is what makes
/// the port ours: with `SO_REUSEADDR` (needed to reuse ports whose last connections are in
/// TIME_WAIT) two sockets can bind one port and only the first `listen` succeeds — libunftp's own
/// binding lost such races under a storm and closed the phone's control connection.
fn passive_socket(
    local: IpAddr,
    ports: std::ops::RangeInclusive<u16>,
    peer: Option<IpAddr>,
) -> std::io::Result<(tokio::net::TcpSocket, socket2::Socket)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut last = std::io::Error::from(std::io::ErrorKind::AddrInUse);
    // From a random port on, each port of the range in turn (at most 256 tries): a free port is
    // found whenever there is one, not just probably.
    let (first, len) = (u32::from(*ports.start()), ports.clone().count() as u32);
    let start = rand::random_range(0..len.max(1));
    for i in 0..len.min(256) {
        let port = (first + (start + i) % len) as u16;
        let addr = std::net::SocketAddr::new(local, port);
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(peer) = peer {
            socket.attach_filter(&source_filter(peer))?;
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = peer;
        match socket.bind(&addr.into()).and_then(|()| socket.listen(1024)) {
            Ok(()) => {
                let handle = socket.try_clone()?;
                return Ok((
                    tokio::net::TcpSocket::from_std_stream(socket.into()),
                    handle,
                ));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A classic BPF program that keeps packets from `peer` only. Loads are relative to the network
/// header (`SKF_NET_OFF`), as TCP hands the filter a packet past its IP header.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn source_filter(peer: IpAddr) -> Vec<socket2::SockFilter> {
    use socket2::SockFilter;
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const NET: u32 = 0xfff0_0000; // SKF_NET_OFF (-0x100000)
    // IPv4 peers (also IPv4-mapped ones on a dual-stack socket) arrive in IPv4 packets.
    let (offset, words): (u32, Vec<u32>) = match peer {
        IpAddr::V4(v4) => (12, vec![u32::from(v4)]),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => (12, vec![u32::from(v4)]),
            None => (
                8,
                v6.octets()
                    .chunks(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
        },
    };
    let n = words.len();
    let mut program = Vec::with_capacity(2 * n + 2);
    for (i, word) in words.into_iter().enumerate() {
        program.push(SockFilter::new(LD_W_ABS, 0, 0, NET + offset + 4 * i as u32));
        // Equal: go on to the next word (or to "keep"); not equal: jump to "drop".
        let to_drop = (2 * (n - i - 1) + 1) as u8;
        program.push(SockFilter::new(JEQ_K, 0, to_drop, word));
    }
    program.push(SockFilter::new(RET_K, 0, 0, u32::MAX)); // keep the whole packet
    program.push(SockFilter::new(RET_K, 0, 0, 0)); // drop
    program
}

impl FtpService {
    fn server(
        &self,
        peer: IpAddr,
        held: HeldPort,
    ) -> Result<Server<FtpDoor, FtpUser>, libunftp::ServerError> {
        let storage = self.door.clone();
        let [first, last] = self.settings.passive_ports;
        let mut builder = ServerBuilder::with_user_detail_provider(
            Box::new(move || storage.clone()),
            self.logins.clone(),
        )
        .authenticator(self.logins.clone())
        .greeting(GREETING)
        .passive_ports(first..=last)
        .idle_session_timeout(self.settings.idle_timeout_secs);
        if let Some(ip) = self.settings.passive_host {
            builder = builder.passive_host(ip);
        }
        builder = builder.binder(PassivePorts {
            peer: self.settings.data_from_control_address.then_some(peer),
            held,
            timeout: std::time::Duration::from_secs(self.settings.passive_timeout_secs.max(1)),
        });
        if let Some(tls) = &self.tls {
            builder = builder.ftps_manual::<PathBuf>(tls.clone());
            if self.settings.require_tls {
                builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
            }
        }
        builder.build()
    }
}

/// Serves FTP control connections from `listener` until `stop`, which also closes the sessions
/// still open; more than `max_sessions` at once are told `421` and closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: FtpService,
    stop: CancellationToken,
) {
    let service = Arc::new(service);
    let sessions = Arc::new(tokio::sync::Semaphore::new(
        service.settings.max_sessions.max(1),
    ));
    let per_address = PerAddress::new(service.settings.max_sessions_per_address.max(1));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "FTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracing::warn!(addr = %peer.ip(), "FTP session refused: too many at once");
            let _ = stream.try_write(b"421 Too many connections, try again later.\r\n");
            continue;
        };
        let Some(address_slot) = per_address.take(peer.ip()) else {
            tracing::warn!(addr = %peer.ip(), "FTP session refused: too many from this address");
            let _ = stream
                .try_write(b"421 Too many connections from your address, try again later.\r\n");
            continue;
        };
        let _ = stream.set_nodelay(true);
        // A second handle on the control connection, to close it at shutdown: libunftp gives a
        // connection served this way no shutdown signal of its own.
        let (stream, handle) = match stream.into_std().and_then(|s| {
            let handle = s.try_clone()?;
            Ok((tokio::net::TcpStream::from_std(s)?, handle))
        }) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "FTP session could not start");
                continue;
            }
        };
        let service = service.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            let held = HeldPort::default();
            // The session's passive port closes with the session.
            let _release = ReleaseOnDrop(held.clone());
            let server = match service.server(peer.ip(), held) {
                Ok(server) => server,
                Err(e) => {
                    tracing::error!(error = %e, "FTP session could not start");
                    return;
                }
            };
            tokio::select! {
                r = server.service(stream) => {
                    if let Err(e) = r {
                        tracing::debug!(addr = %peer.ip(), error = %e, "FTP session ended with an error");
                    }
                }
                _ = stop.cancelled() => {
                    let _ = handle.shutdown(std::net::Shutdown::Both);
                }
            }
        });
    }
}

/// Closes a session's passive port when the session ends, however it ends.
struct ReleaseOnDrop(HeldPort);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Control connections per client address: one host cannot take every session (and with them
/// the passive ports, one per session).
#[derive(Clone)]
struct PerAddress {
    limit: usize,
    counts: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
}

/// One session's place in its address's count; given back when dropped.
struct AddressSlot {
    counts: Arc<std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>>,
    addr: IpAddr,
}

impl PerAddress {
    fn new(limit: usize) -> PerAddress {
        PerAddress {
            limit,
            counts: Default::default(),
        }
    }

    fn take(&self, addr: IpAddr) -> Option<AddressSlot> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(addr).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            counts: self.counts.clone(),
            addr,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sessions drawing the same passive port: the second must get another one (or an
    /// error), never a socket whose `listen` fails later and takes the phone's session down.
    #[tokio::test]
    async fn a_passive_port_is_never_handed_out_twice() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ip = IpAddr::from([127, 0, 0, 1]);
        let (first, _) = passive_socket(ip, port..=port, None).unwrap();
        assert!(passive_socket(ip, port..=port, None).is_err());
        // libunftp calls listen again on what the binder returns: that must work.
        let listener = first.listen(1024).unwrap();
        assert_eq!(listener.local_addr().unwrap().port(), port);
        let (filtered, _) = passive_socket(ip, 1024..=65535, Some(ip)).unwrap();
        assert!(filtered.listen(1024).is_ok());
    }
}
