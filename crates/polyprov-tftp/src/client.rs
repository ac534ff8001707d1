//! An async TFTP client: read and write requests with options, windows, rollover and bounded
//! retries. The emulated phone uses it for `tftp://` servers.
//!
//! ```no_run
//! # async fn f() -> Result<(), polyprov_tftp::client::ClientError> {
//! use polyprov_tftp::client::{Client, Settings};
//! let c = Client::new("192.0.2.10:69".parse().unwrap(), Settings::default());
//! let master = c.get("000000000000.cfg").await?;
//! # Ok(()) }
//! ```

use crate::packet::{ErrorCode, Options, Packet};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// What the client asks for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Requested blksize (512 = no option sent).
    pub blksize: u16,
    /// Requested windowsize (1 = no option sent).
    pub windowsize: u16,
    /// Wait for an answer before resending.
    pub timeout: Duration,
    pub retries: u32,
    /// Largest download accepted.
    pub max_size: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            blksize: 512,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            retries: 5,
            max_size: 1 << 30,
        }
    }
}

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("server error {0:?}: {1}")]
    Server(ErrorCode, String),
    #[error("no answer from the server")]
    Timeout,
    #[error("network: {0}")]
    Io(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct Client {
    server: SocketAddr,
    settings: Settings,
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Io(e.to_string())
}

impl Client {
    pub fn new(server: SocketAddr, settings: Settings) -> Client {
        Client { server, settings }
    }

    fn options(&self, tsize: Option<u64>) -> Options {
        let mut o = Options::new();
        if self.settings.blksize != 512 {
            o.push(("blksize".into(), self.settings.blksize.to_string()));
        }
        if self.settings.windowsize > 1 {
            o.push(("windowsize".into(), self.settings.windowsize.to_string()));
        }
        o.push(("tsize".into(), tsize.unwrap_or(0).to_string()));
        o
    }

    async fn socket(&self) -> Result<UdpSocket, ClientError> {
        let bind: SocketAddr = if self.server.is_ipv4() {
            "0.0.0.0:0".parse()
        } else {
            "[::]:0".parse()
        }
        .map_err(|_| ClientError::Protocol("bad bind address".into()))?;
        UdpSocket::bind(bind).await.map_err(io)
    }

    /// Waits for a packet from the server's transfer port (learned from its first answer).
    async fn recv(
        &self,
        sock: &UdpSocket,
        peer: &mut Option<SocketAddr>,
        buf: &mut [u8],
    ) -> Result<Option<Packet>, ClientError> {
        let deadline = tokio::time::Instant::now() + self.settings.timeout;
        loop {
            let r = tokio::time::timeout_at(deadline, sock.recv_from(buf)).await;
            let Ok(r) = r else { return Ok(None) };
            let (n, from) = r.map_err(io)?;
            if from.ip() != self.server.ip() || peer.is_some_and(|p| p != from) {
                // Someone else's packet (RFC 1350: answer with ERROR 5 and carry on).
                let _ = sock
                    .send_to(
                        &Packet::Error {
                            code: ErrorCode::UnknownTransferId,
                            message: "unknown transfer".into(),
                        }
                        .to_bytes(),
                        from,
                    )
                    .await;
                continue;
            }
            *peer = Some(from);
            return match Packet::parse(&buf[..n]) {
                Ok(Packet::Error { code, message }) => Err(ClientError::Server(code, message)),
                Ok(p) => Ok(Some(p)),
                Err(e) => Err(ClientError::Protocol(e.to_string())),
            };
        }
    }

    /// Downloads a file.
    pub async fn get(&self, filename: &str) -> Result<Bytes, ClientError> {
        let sock = self.socket().await?;
        let rrq = Packet::Rrq {
            filename: filename.into(),
            mode: "octet".into(),
            options: self.options(None),
        }
        .to_bytes();
        let mut buf = vec![0u8; 65536];
        let mut peer: Option<SocketAddr> = None;
        let mut blksize = 512usize;
        let mut window = 1u16;
        let mut data = Vec::new();
        let mut expected: u64 = 1;
        let mut since_ack = 0u16;
        let mut attempt = 0u32;
        sock.send_to(&rrq, self.server).await.map_err(io)?;
        let mut last_sent: Vec<u8> = rrq;
        loop {
            match self.recv(&sock, &mut peer, &mut buf).await? {
                Some(Packet::Oack { options }) if expected == 1 && data.is_empty() => {
                    for (k, v) in options {
                        match k.as_str() {
                            "blksize" => blksize = v.parse().unwrap_or(512),
                            "windowsize" => window = v.parse().unwrap_or(1),
                            "tsize" if v.parse::<u64>().unwrap_or(0) > self.settings.max_size => {
                                return Err(ClientError::Protocol(format!(
                                    "file of {v} bytes is over the limit"
                                )));
                            }
                            _ => {}
                        }
                    }
                    last_sent = Packet::Ack { block: 0 }.to_bytes();
                    self.send(&sock, peer, &last_sent).await?;
                }
                Some(Packet::Data { block, data: chunk }) => {
                    attempt = 0;
                    if block != expected as u16 {
                        last_sent = Packet::Ack {
                            block: (expected - 1) as u16,
                        }
                        .to_bytes();
                        self.send(&sock, peer, &last_sent).await?;
                        since_ack = 0;
                        continue;
                    }
                    if (data.len() + chunk.len()) as u64 > self.settings.max_size {
                        return Err(ClientError::Protocol("file over the size limit".into()));
                    }
                    data.extend_from_slice(&chunk);
                    since_ack += 1;
                    let fin = chunk.len() < blksize;
                    if fin || since_ack >= window {
                        last_sent = Packet::Ack { block }.to_bytes();
                        self.send(&sock, peer, &last_sent).await?;
                        since_ack = 0;
                    }
                    if fin {
                        return Ok(Bytes::from(data));
                    }
                    expected += 1;
                }
                Some(_) => {}
                None => {
                    attempt += 1;
                    if attempt > self.settings.retries {
                        return Err(ClientError::Timeout);
                    }
                    match peer {
                        Some(p) => sock.send_to(&last_sent, p).await.map_err(io)?,
                        None => sock.send_to(&last_sent, self.server).await.map_err(io)?,
                    };
                }
            }
        }
    }

    async fn send(
        &self,
        sock: &UdpSocket,
        peer: Option<SocketAddr>,
        bytes: &[u8],
    ) -> Result<(), ClientError> {
        sock.send_to(bytes, peer.unwrap_or(self.server))
            .await
            .map(|_| ())
            .map_err(io)
    }

    /// Uploads a file (lockstep, 512-byte blocks or the negotiated blksize).
    pub async fn put(&self, filename: &str, content: &[u8]) -> Result<(), ClientError> {
        let sock = self.socket().await?;
        let mut options = self.options(Some(content.len() as u64));
        options.retain(|(k, _)| k != "windowsize");
        let wrq = Packet::Wrq {
            filename: filename.into(),
            mode: "octet".into(),
            options,
        }
        .to_bytes();
        let mut buf = vec![0u8; 65536];
        let mut peer = None;
        let mut blksize = 512usize;
        sock.send_to(&wrq, self.server).await.map_err(io)?;
        let mut last_sent = wrq;
        let mut next: u64 = 0; // last block acknowledged
        let total_blocks = content.len() as u64 / 512 + 1; // recomputed after OACK
        let mut total = total_blocks;
        let mut attempt = 0;
        loop {
            let acked = match self.recv(&sock, &mut peer, &mut buf).await? {
                Some(Packet::Oack { options }) if next == 0 => {
                    for (k, v) in options {
                        if k == "blksize" {
                            blksize = v.parse().unwrap_or(512);
                        }
                    }
                    total = content.len() as u64 / blksize as u64 + 1;
                    Some(0)
                }
                Some(Packet::Ack { block }) => {
                    let abs = next.saturating_sub(0) + u64::from(block.wrapping_sub(next as u16));
                    (abs >= next && abs <= next + 1).then_some(abs)
                }
                Some(_) => None,
                None => {
                    attempt += 1;
                    if attempt > self.settings.retries {
                        return Err(ClientError::Timeout);
                    }
                    self.send(&sock, peer, &last_sent).await?;
                    continue;
                }
            };
            let Some(acked) = acked else { continue };
            attempt = 0;
            if acked >= total {
                return Ok(());
            }
            next = acked;
            let i = next + 1;
            let start = ((i - 1) * blksize as u64) as usize;
            let end = (start + blksize).min(content.len());
            let chunk = Bytes::copy_from_slice(content.get(start..end).unwrap_or_default());
            last_sent = Packet::Data {
                block: i as u16,
                data: chunk,
            }
            .to_bytes();
            self.send(&sock, peer, &last_sent).await?;
        }
    }
}
