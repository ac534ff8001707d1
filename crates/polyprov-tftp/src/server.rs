//! An async TFTP server: each transfer runs on its own UDP port (its transfer id), with option
//! negotiation, windows (RFC 7440), bounded retries with backoff, block-number rollover, a cap on
//! concurrent transfers, and a memory budget: a window is at most `max_window_bytes` (the
//! windowsize granted shrinks to fit), and what all transfers hold together — read chunks,
//! windows, uploads being received — stays within `memory_budget`; a transfer that would pass it
//! is told the server is busy. Large buffers are reserved fallibly, so a failed allocation ends
//! one transfer, not the process.

use crate::packet::{ErrorCode, Options, Packet};
use bytes::Bytes;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

/// What a read request is answered with.
#[derive(Debug, Clone)]
pub enum Source {
    /// Bytes already in memory (a generated file).
    Bytes(Bytes),
    /// A file on disk, read a window at a time.
    File { path: PathBuf, len: u64 },
}

impl Source {
    fn len(&self) -> u64 {
        match self {
            Source::Bytes(b) => b.len() as u64,
            Source::File { len, .. } => *len,
        }
    }
}

/// A refusal: the TFTP error code and message sent to the client.
pub type Refusal = (ErrorCode, String);

/// What the server serves and where uploads go.
pub trait Handler: Send + Sync + 'static {
    /// Answers a read request.
    fn read(
        &self,
        peer: SocketAddr,
        filename: &str,
    ) -> impl Future<Output = Result<Source, Refusal>> + Send;
    /// Stores a complete upload (called once, after the last block arrived).
    fn write(
        &self,
        peer: SocketAddr,
        filename: &str,
        data: Bytes,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;
    /// The largest upload accepted for `filename` from `peer` (bigger ones are refused before
    /// any is stored), or why nothing can be uploaded there: checked before any data is read.
    fn max_write(&self, peer: SocketAddr, filename: &str) -> Result<u64, Refusal>;
}

/// Server limits.
#[derive(Debug, Clone)]
pub struct Config {
    /// Transfers running at once; more get an error at once.
    pub max_transfers: usize,
    /// Largest blksize granted (RFC 2348 allows 8–65464).
    pub max_blksize: u16,
    /// Largest windowsize granted (RFC 7440).
    pub max_windowsize: u16,
    /// Retransmission timeout when the client asks for none.
    pub timeout: Duration,
    /// Retransmissions before a transfer is abandoned (the wait doubles each time, up to 8 s).
    pub retries: u32,
    /// Most bytes in one window (blksize × windowsize): the windowsize granted is lowered to fit.
    pub max_window_bytes: usize,
    /// Most bytes all transfers hold at once; a transfer that would need more is refused
    /// ("server busy") or, for an upload that grows past it, ended with an error.
    pub memory_budget: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_transfers: 512,
            max_blksize: 65464,
            max_windowsize: 64,
            timeout: Duration::from_secs(1),
            retries: 5,
            max_window_bytes: 512 * 1024,
            memory_budget: 128 * 1024 * 1024,
        }
    }
}

/// What was agreed for one transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: u16,
    pub timeout: Duration,
}

/// Negotiates options: returns what applies and the OACK options (empty: no OACK).
pub fn negotiate(
    requested: &Options,
    config: &Config,
    tsize: Option<u64>,
) -> (Negotiated, Options) {
    let mut n = Negotiated {
        blksize: 512,
        windowsize: 1,
        timeout: config.timeout,
    };
    let mut ack = Options::new();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in requested {
        // An option sent twice is answered once, for its first value (names arrive lower-cased).
        if seen.contains(&name.as_str()) {
            continue;
        }
        seen.push(name);
        let v: Option<u64> = value.parse().ok();
        match (name.as_str(), v) {
            ("blksize", Some(b)) if b >= 8 => {
                let b = b.min(u64::from(config.max_blksize)).min(65464);
                n.blksize = b as usize;
                ack.push((name.clone(), b.to_string()));
            }
            ("windowsize", Some(w)) if w >= 1 => {
                let w = w.min(u64::from(config.max_windowsize)).min(65535);
                n.windowsize = w as u16;
                ack.push((name.clone(), w.to_string()));
            }
            ("timeout", Some(t)) if (1..=255).contains(&t) => {
                n.timeout = Duration::from_secs(t);
                ack.push((name.clone(), t.to_string()));
            }
            ("tsize", Some(t)) => ack.push((name.clone(), tsize.unwrap_or(t).to_string())),
            _ => {} // Unknown or malformed options are ignored (RFC 2347).
        }
    }
    // A window is at most `max_window_bytes`: a client asking for 64 blocks of 64 KB gets fewer.
    let fits = (config.max_window_bytes / n.blksize).clamp(1, usize::from(u16::MAX));
    if usize::from(n.windowsize) > fits {
        n.windowsize = fits as u16;
        if let Some(w) = ack.iter_mut().find(|(k, _)| k == "windowsize") {
            w.1 = fits.to_string();
        }
    }
    (n, ack)
}

/// The memory all transfers may hold, in KiB permits.
#[derive(Clone)]
struct Budget(Arc<Semaphore>);

/// Memory held by one transfer; given back when dropped.
struct Held {
    budget: Budget,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    bytes: usize,
}

impl Budget {
    fn new(bytes: usize) -> Budget {
        Budget(Arc::new(Semaphore::new(
            (bytes / 1024).min(Semaphore::MAX_PERMITS),
        )))
    }

    /// Holds `bytes` now, or `None` when the budget has no room.
    fn hold(&self, bytes: usize) -> Option<Held> {
        let mut held = Held {
            budget: self.clone(),
            permit: None,
            bytes: 0,
        };
        held.grow_to(bytes).then_some(held)
    }
}

impl Held {
    /// Raises what this transfer holds to `bytes`; false when the budget has no room.
    fn grow_to(&mut self, bytes: usize) -> bool {
        let have = self.bytes.div_ceil(1024);
        let want = bytes.div_ceil(1024);
        if want <= have {
            return true;
        }
        let Ok(extra) = u32::try_from(want - have) else {
            return false;
        };
        match self.budget.0.clone().try_acquire_many_owned(extra) {
            Ok(p) => {
                match &mut self.permit {
                    Some(held) => held.merge(p),
                    None => self.permit = Some(p),
                }
                self.bytes = want * 1024;
                true
            }
            Err(_) => false,
        }
    }
}

/// What a refused allocation or a full budget tells the client.
const BUSY_MEMORY: &str = "server busy: out of transfer memory, try again";

/// Runs the server on `socket` until `shutdown` completes.
pub async fn serve<H: Handler>(
    socket: UdpSocket,
    handler: Arc<H>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(config.max_transfers));
    let budget = Budget::new(config.memory_budget);
    let config = Arc::new(config);
    let local_ip = socket.local_addr().map(|a| a.ip()).ok();
    let mut buf = vec![0u8; 65536];
    tokio::pin!(shutdown);
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "tftp receive failed");
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let packet = match Packet::parse(&buf[..n]) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(target: "polyprov::security", event = "tftp_malformed", addr = %peer.ip(), reason = %e, "security event");
                send_error(&socket, peer, ErrorCode::IllegalOperation, &e.to_string()).await;
                continue;
            }
        };
        let (is_read, filename, options) = match packet {
            Packet::Rrq {
                filename, options, ..
            } => (true, filename, options),
            Packet::Wrq {
                filename, options, ..
            } => (false, filename, options),
            // Stray packets to the listening port belong to no transfer.
            _ => {
                send_error(
                    &socket,
                    peer,
                    ErrorCode::UnknownTransferId,
                    "no transfer on this port",
                )
                .await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            send_error(
                &socket,
                peer,
                ErrorCode::NotDefined,
                "server busy: too many transfers, try again",
            )
            .await;
            continue;
        };
        let (handler, config, budget) = (handler.clone(), config.clone(), budget.clone());
        let bind_ip = local_ip.unwrap_or_else(|| std::net::Ipv4Addr::UNSPECIFIED.into());
        tokio::spawn(async move {
            let _permit = permit;
            let sock = match UdpSocket::bind((bind_ip, 0)).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "tftp: no port for a transfer");
                    return;
                }
            };
            if sock.connect(peer).await.is_err() {
                return;
            }
            let result = if is_read {
                read_transfer(
                    &sock, &*handler, peer, &filename, &options, &config, &budget,
                )
                .await
                .map(|()| None)
            } else {
                let mut slot = Some(_permit);
                let limits = (&*config, &budget);
                write_transfer(
                    &sock, &*handler, peer, &filename, &options, limits, &mut slot,
                )
                .await
            };
            match result {
                // The upload is stored, its slot already free; the final ACK is kept ready.
                Ok(Some(linger)) => linger.run(&sock).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(%peer, file = %filename, reason = %e, "tftp transfer ended early")
                }
            }
        });
    }
}

async fn send_error(socket: &UdpSocket, peer: SocketAddr, code: ErrorCode, message: &str) {
    let _ = socket
        .send_to(
            &Packet::Error {
                code,
                message: message.to_string(),
            }
            .to_bytes(),
            peer,
        )
        .await;
}

async fn send(sock: &UdpSocket, p: &Packet) -> std::io::Result<()> {
    sock.send(&p.to_bytes()).await.map(|_| ())
}

/// Waits for the next packet from the peer (the socket is connected to it).
async fn recv(sock: &UdpSocket, wait: Duration, buf: &mut [u8]) -> Result<Option<Packet>, String> {
    match tokio::time::timeout(wait, sock.recv(buf)).await {
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(n)) => match Packet::parse(&buf[..n]) {
            Ok(Packet::Error { code, message }) => Err(format!("peer error {code:?}: {message}")),
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                let _ = send(
                    sock,
                    &Packet::Error {
                        code: ErrorCode::IllegalOperation,
                        message: e.to_string(),
                    },
                )
                .await;
                Err(e.to_string())
            }
        },
    }
}

fn backoff(base: Duration, attempt: u32) -> Duration {
    (base * 2u32.saturating_pow(attempt)).min(Duration::from_secs(8))
}

/// The absolute block index an ACK's 16-bit number stands for, given the window's first block.
fn resolve(window_start: u64, wire: u16) -> u64 {
    // The ACKed block is in [window_start - 1, window_start - 1 + 65535].
    let base = window_start.saturating_sub(1);
    let offset = u64::from(wire.wrapping_sub(base as u16));
    base + offset
}

/// Reads blocks from the source, a chunk at a time: two blocking file operations per 256 KiB
/// instead of per block, and memory per transfer bounded by the chunk.
struct Reader {
    source: Source,
    file: Option<tokio::fs::File>,
    chunk: Bytes,
    chunk_start: u64,
}

/// Bytes read from disk at once per transfer (at least one window).
const CHUNK: u64 = 256 * 1024;

/// Receive buffer of a read transfer, which only hears ACKs and ERRORs.
const ACK_BUF: usize = 2048;

impl Reader {
    /// The most this reader holds at once for a transfer of `blksize` × `window`.
    fn footprint(source: &Source, blksize: usize, window: u16) -> usize {
        match source {
            // Generated bytes are shared with the caller, not copied.
            Source::Bytes(_) => 0,
            Source::File { len, .. } => {
                CHUNK.max(blksize as u64 * u64::from(window)).min(*len) as usize
            }
        }
    }

    fn new(source: Source) -> Reader {
        Reader {
            source,
            file: None,
            chunk: Bytes::new(),
            chunk_start: 0,
        }
    }

    async fn block(&mut self, index: u64, blksize: usize, window: u16) -> std::io::Result<Bytes> {
        let start = (index - 1) * blksize as u64;
        let len = self.source.len();
        let end = (start + blksize as u64).min(len);
        if start >= len {
            return Ok(Bytes::new());
        }
        let path = match &self.source {
            Source::Bytes(b) => return Ok(b.slice(start as usize..end as usize)),
            Source::File { path, .. } => path.clone(),
        };
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if start < self.chunk_start || end > chunk_end {
            if self.file.is_none() {
                self.file = Some(tokio::fs::File::open(&path).await?);
            }
            let Some(f) = self.file.as_mut() else {
                return Ok(Bytes::new());
            };
            let want = CHUNK
                .max(blksize as u64 * u64::from(window))
                .min(len - start);
            f.seek(std::io::SeekFrom::Start(start)).await?;
            let mut buf = Vec::new();
            buf.try_reserve_exact(want as usize)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
            (&mut *f).take(want).read_to_end(&mut buf).await?;
            self.chunk = Bytes::from(buf);
            self.chunk_start = start;
        }
        let from = (start - self.chunk_start) as usize;
        let to = ((end - self.chunk_start) as usize).min(self.chunk.len());
        Ok(self.chunk.slice(from.min(to)..to))
    }
}

/// Sends a window of DATA packets, built in one reused buffer. On Linux a window of full-size
/// blocks goes out with UDP segmentation offload (one `sendmsg` per up to 64 blocks instead of one
/// `send` each); where the kernel refuses it, one `send` per block.
struct WindowSender {
    buf: Vec<u8>,
    /// Where each packet starts in `buf`.
    starts: Vec<usize>,
    segment: usize,
    gso: bool,
}

impl WindowSender {
    /// Bytes a window of `windowsize` blocks of `blksize` takes.
    fn footprint(blksize: usize, windowsize: u16) -> usize {
        (blksize + 4) * usize::from(windowsize)
    }

    /// `None` when the window's buffer cannot be allocated.
    fn new(blksize: usize, windowsize: u16) -> Option<WindowSender> {
        let segment = blksize + 4;
        let mut buf = Vec::new();
        buf.try_reserve_exact(Self::footprint(blksize, windowsize))
            .ok()?;
        Some(WindowSender {
            buf,
            starts: Vec::with_capacity(usize::from(windowsize)),
            segment,
            gso: cfg!(target_os = "linux") && windowsize > 1,
        })
    }

    fn push(&mut self, block: u16, data: &[u8]) {
        self.starts.push(self.buf.len());
        self.buf.extend_from_slice(&3u16.to_be_bytes());
        self.buf.extend_from_slice(&block.to_be_bytes());
        self.buf.extend_from_slice(data);
    }

    async fn flush(&mut self, sock: &UdpSocket) -> std::io::Result<()> {
        let result = self.send_all(sock).await;
        self.buf.clear();
        self.starts.clear();
        result
    }

    async fn send_all(&mut self, sock: &UdpSocket) -> std::io::Result<()> {
        // Every packet but the file's last is exactly one segment long.
        let per_send = (GSO_MAX_BYTES / self.segment).clamp(1, GSO_MAX_SEGMENTS);
        let mut first = 0;
        while first < self.starts.len() {
            let count = (self.starts.len() - first).min(per_send);
            let from = self.starts[first];
            let to = self
                .starts
                .get(first + count)
                .copied()
                .unwrap_or(self.buf.len());
            if count > 1 && self.gso {
                match send_segmented(sock, &self.buf[from..to], self.segment as u16).await {
                    Ok(()) => {
                        first += count;
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "UDP segmentation offload refused; sending block by block");
                        self.gso = false;
                    }
                }
            }
            for i in first..first + count {
                let end = self.starts.get(i + 1).copied().unwrap_or(self.buf.len());
                sock.send(&self.buf[self.starts[i]..end]).await?;
            }
            first += count;
        }
        Ok(())
    }
}

/// Most segments in one UDP GSO send (the kernel's UDP_MAX_SEGMENTS).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most bytes in one UDP GSO send (a UDP datagram's payload limit, with room for headers).
const GSO_MAX_BYTES: usize = 65_000;

#[cfg(target_os = "linux")]
async fn send_segmented(sock: &UdpSocket, bytes: &[u8], segment: u16) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmsg};
    use std::os::fd::AsRawFd;
    let fd = sock.as_raw_fd();
    sock.async_io(tokio::io::Interest::WRITABLE, || {
        let iov = [std::io::IoSlice::new(bytes)];
        let cmsg = [ControlMessage::UdpGsoSegments(&segment)];
        sendmsg::<SockaddrStorage>(fd, &iov, &cmsg, MsgFlags::empty(), None)
            .map_err(std::io::Error::from)
    })
    .await
    .map(|_| ())
}

#[cfg(not(target_os = "linux"))]
async fn send_segmented(_: &UdpSocket, _: &[u8], _: u16) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

async fn read_transfer<H: Handler>(
    sock: &UdpSocket,
    handler: &H,
    peer: SocketAddr,
    filename: &str,
    options: &Options,
    config: &Config,
    budget: &Budget,
) -> Result<(), String> {
    let source = match handler.read(peer, filename).await {
        Ok(s) => s,
        Err((code, message)) => {
            let _ = send(sock, &Packet::Error { code, message }).await;
            return Ok(());
        }
    };
    let len = source.len();
    let (n, oack) = negotiate(options, config, Some(len));
    let busy = || Packet::Error {
        code: ErrorCode::NotDefined,
        message: BUSY_MEMORY.into(),
    };
    let footprint = Reader::footprint(&source, n.blksize, n.windowsize)
        + WindowSender::footprint(n.blksize, n.windowsize)
        + ACK_BUF;
    let (Some(_held), Some(mut sender)) = (
        budget.hold(footprint),
        WindowSender::new(n.blksize, n.windowsize),
    ) else {
        let _ = send(sock, &busy()).await;
        return Err("memory budget or allocation refused".into());
    };
    // Only ACKs and ERRORs arrive on a read: a small buffer will do (a longer datagram is cut).
    let mut buf = vec![0u8; ACK_BUF];
    if !oack.is_empty() {
        // OACK, then the client's ACK 0.
        let mut attempt = 0;
        loop {
            send(
                sock,
                &Packet::Oack {
                    options: oack.clone(),
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            match recv(sock, backoff(n.timeout, attempt), &mut buf).await? {
                Some(Packet::Ack { block: 0 }) => break,
                Some(_) => continue,
                None if attempt < config.retries => attempt += 1,
                None => return Err("no ACK for the OACK".into()),
            }
        }
    }
    // The last block is the first shorter than blksize (possibly empty).
    let last = len / n.blksize as u64 + 1;
    let mut reader = Reader::new(source);
    let mut next = 1u64; // first block not yet acknowledged
    let mut attempt = 0u32;
    while next <= last {
        let window_end = (next + u64::from(n.windowsize) - 1).min(last);
        for i in next..=window_end {
            let data = match reader.block(i, n.blksize, n.windowsize).await {
                Ok(d) => d,
                Err(e) => {
                    let message = if e.kind() == std::io::ErrorKind::OutOfMemory {
                        BUSY_MEMORY.to_string()
                    } else {
                        "cannot read the file".to_string()
                    };
                    let code = ErrorCode::NotDefined;
                    let _ = send(sock, &Packet::Error { code, message }).await;
                    return Err(e.to_string());
                }
            };
            sender.push(i as u16, &data);
        }
        sender.flush(sock).await.map_err(|e| e.to_string())?;
        // Wait for an ACK that moves the window; duplicates and old ACKs are ignored.
        loop {
            match recv(sock, backoff(n.timeout, attempt), &mut buf).await? {
                Some(Packet::Ack { block }) => {
                    let acked = resolve(next, block);
                    if acked >= next && acked <= window_end {
                        next = acked + 1;
                        attempt = 0;
                        break;
                    }
                }
                Some(_) => {}
                None => {
                    attempt += 1;
                    if attempt > config.retries {
                        return Err(format!("no ACK after {} retries", config.retries));
                    }
                    break; // resend the window from `next`
                }
            }
        }
    }
    Ok(())
}

/// After an upload: the final ACK, answered once more if the client repeats its last block
/// because the ACK was lost. Runs without holding a transfer slot.
struct Linger {
    ack: Packet,
    wait: Duration,
}

impl Linger {
    async fn run(self, sock: &UdpSocket) {
        let mut buf = [0u8; 2048];
        if let Ok(Some(Packet::Data { .. })) = recv(sock, self.wait, &mut buf).await {
            let _ = send(sock, &self.ack).await;
        }
    }
}

/// Receives an upload; `Some(Linger)` when it was stored and the final ACK should be kept ready.
async fn write_transfer<H: Handler>(
    sock: &UdpSocket,
    handler: &H,
    peer: SocketAddr,
    filename: &str,
    options: &Options,
    (config, budget): (&Config, &Budget),
    slot: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Option<Linger>, String> {
    let max = match handler.max_write(peer, filename) {
        Ok(max) => max,
        Err((code, message)) => {
            let _ = send(sock, &Packet::Error { code, message }).await;
            return Ok(None);
        }
    };
    let declared: Option<u64> = options
        .iter()
        .find(|(k, _)| k == "tsize")
        .and_then(|(_, v)| v.parse().ok());
    if declared.is_some_and(|d| d > max) {
        let message = format!("upload over the {max}-byte limit");
        let _ = send(
            sock,
            &Packet::Error {
                code: ErrorCode::DiskFull,
                message,
            },
        )
        .await;
        return Ok(None);
    }
    let (n, oack) = negotiate(options, config, declared);
    let refuse = |message: &str| Packet::Error {
        code: ErrorCode::NotDefined,
        message: message.to_string(),
    };
    // The receive buffer now; the upload's bytes are held from the budget as they arrive.
    let Some(mut held) = budget.hold(n.blksize + 4) else {
        let _ = send(sock, &refuse(BUSY_MEMORY)).await;
        return Err("memory budget refused".into());
    };
    let mut data: Vec<u8> = Vec::new();
    // One byte more than a block: a datagram longer than the agreed blksize is seen as such.
    let mut buf = vec![0u8; n.blksize + 5];
    let mut last_ack = if oack.is_empty() {
        Packet::Ack { block: 0 }
    } else {
        Packet::Oack { options: oack }
    };
    send(sock, &last_ack).await.map_err(|e| e.to_string())?;
    let mut expected = 1u64;
    let mut since_ack = 0u16;
    let mut attempt = 0u32;
    loop {
        match recv(sock, backoff(n.timeout, attempt), &mut buf).await? {
            Some(Packet::Data { block, data: chunk }) => {
                attempt = 0;
                if block != expected as u16 {
                    // Out of order or a duplicate: acknowledge what we have (RFC 7440 §4).
                    last_ack = Packet::Ack {
                        block: (expected - 1) as u16,
                    };
                    send(sock, &last_ack).await.map_err(|e| e.to_string())?;
                    since_ack = 0;
                    continue;
                }
                if chunk.len() > n.blksize {
                    let message =
                        format!("block of {} bytes, blksize is {}", chunk.len(), n.blksize);
                    let code = ErrorCode::IllegalOperation;
                    let _ = send(sock, &Packet::Error { code, message }).await;
                    return Err("block larger than blksize".into());
                }
                if (data.len() + chunk.len()) as u64 > max {
                    let _ = send(
                        sock,
                        &Packet::Error {
                            code: ErrorCode::DiskFull,
                            message: format!("upload over the {max}-byte limit"),
                        },
                    )
                    .await;
                    return Err("upload too large".into());
                }
                if data.capacity() < data.len() + chunk.len() {
                    // Grow in steps of at least 64 KiB, within the budget, fallibly.
                    let target = (data.len() + chunk.len()).max(data.capacity() + 64 * 1024);
                    let target = target.min(max as usize);
                    if !held.grow_to(n.blksize + 4 + target)
                        || data.try_reserve_exact(target - data.len()).is_err()
                    {
                        let _ = send(sock, &refuse(BUSY_MEMORY)).await;
                        return Err("memory budget refused".into());
                    }
                }
                data.extend_from_slice(&chunk);
                let fin = chunk.len() < n.blksize;
                since_ack += 1;
                if fin {
                    // Store before the final ACK: a refusal becomes an ERROR instead.
                    match handler
                        .write(peer, filename, Bytes::from(std::mem::take(&mut data)))
                        .await
                    {
                        Ok(()) => {
                            // Free the slot before the client hears it is done: its next
                            // request must not find the server busy with this one.
                            drop(slot.take());
                            let ack = Packet::Ack { block };
                            send(sock, &ack).await.map_err(|e| e.to_string())?;
                            return Ok(Some(Linger {
                                ack,
                                wait: n.timeout,
                            }));
                        }
                        Err((code, message)) => {
                            let _ = send(sock, &Packet::Error { code, message }).await;
                        }
                    }
                    return Ok(None);
                }
                expected += 1;
                if since_ack >= n.windowsize {
                    last_ack = Packet::Ack { block };
                    send(sock, &last_ack).await.map_err(|e| e.to_string())?;
                    since_ack = 0;
                }
            }
            Some(_) => {}
            None => {
                attempt += 1;
                if attempt > config.retries {
                    return Err("upload stalled".into());
                }
                send(sock, &last_ack).await.map_err(|e| e.to_string())?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_resolve_across_the_rollover() {
        assert_eq!(resolve(1, 0), 0);
        assert_eq!(resolve(1, 1), 1);
        assert_eq!(resolve(65536, 65535), 65535);
        assert_eq!(resolve(65536, 0), 65536);
        assert_eq!(resolve(65540, 3), 65539);
        assert_eq!(resolve(70000, (70010u64 % 65536) as u16), 70010);
    }

    #[test]
    fn options_are_granted_within_limits() {
        let config = Config {
            max_blksize: 1468,
            max_windowsize: 16,
            ..Config::default()
        };
        let req: Options = vec![
            ("blksize".into(), "9000".into()),
            ("windowsize".into(), "64".into()),
            ("tsize".into(), "0".into()),
            ("timeout".into(), "0".into()),
            ("bogus".into(), "1".into()),
        ];
        let (n, ack) = negotiate(&req, &config, Some(1234));
        assert_eq!((n.blksize, n.windowsize), (1468, 16));
        assert_eq!(
            ack,
            vec![
                ("blksize".into(), "1468".into()),
                ("windowsize".into(), "16".into()),
                ("tsize".into(), "1234".into())
            ]
        );
        let (n, ack) = negotiate(&Options::new(), &config, None);
        assert_eq!((n.blksize, n.windowsize, ack.len()), (512, 1, 0));
    }

    /// The largest blocks and windows a client can ask for fit `max_window_bytes`; an option
    /// sent twice is answered once.
    #[test]
    fn windows_fit_the_window_byte_limit_and_options_are_answered_once() {
        let config = Config::default();
        let req: Options = vec![
            ("blksize".into(), "65464".into()),
            ("windowsize".into(), "65535".into()),
            ("blksize".into(), "512".into()),
            ("windowsize".into(), "1".into()),
        ];
        let (n, ack) = negotiate(&req, &config, None);
        assert_eq!((n.blksize, n.windowsize), (65464, 8));
        assert_eq!(
            ack,
            vec![
                ("blksize".into(), "65464".into()),
                ("windowsize".into(), "8".into()),
            ]
        );
        assert!(n.blksize * usize::from(n.windowsize) <= config.max_window_bytes);
    }
}
