//! One phone connection: read a head, answer it, keep the connection for the next one — one
//! buffer per connection, no framework in between (see `wire.rs` for why).
//!
//! Deadlines: the next request's head must be whole within the header timeout of the moment
//! the door started waiting for it (idle time counts, as a dripped header does); an upload's
//! body within the body timeout; a response that makes no progress is cut off by the
//! connection's `StallGuard`. On shutdown an idle connection closes at once, a busy one after
//! its answer.

use super::wire::{self, Framing, Head, HeadError, KeepAlive};
use super::{PhoneDoor, Reply, ReplyBody};
use crate::doors::turns::{REQUESTS_PER_TURN, Turn};
use crate::tls::PeerCertificate;
use bytes::{Buf, Bytes, BytesMut};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bytes asked of the socket per read while a head or body is incomplete.
const READ_CHUNK: usize = 8 * 1024;
/// After an answer that leaves a request body unread: how long, and how much, the door keeps
/// reading (and dropping) before it closes — closing with unread bytes sends a reset that can
/// destroy the answer before the client reads it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Serves one phone connection until the client closes, a deadline passes, an error needs a
/// close, or `stop` (between requests).
pub(crate) async fn serve<IO>(
    door: &PhoneDoor,
    io: IO,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
    header_timeout: Duration,
    turn: Option<&Turn>,
    stop: &CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = Conn {
        io,
        buf: BytesMut::with_capacity(READ_CHUNK),
        body_pending: false,
        shared_login: None,
    };
    let user_agent_memo = crate::core::UserAgentMemo::default();
    let mut answered_in_turn = 0u32;
    loop {
        let head = match conn.read_head(header_timeout, stop).await {
            Next::Head(h) => h,
            Next::Closed => return,
            Next::Refused(e) => {
                tracing::info!(door = door.door.as_str(), addr = %peer.ip(), error = %e, "refused a malformed HTTP request");
                door.metrics
                    .request(door.door.as_str(), "malformed", e.status());
                let reply = Reply::text(e.status(), format!("{e}\n"));
                let _ = conn.write_reply(reply, &Head::closing(), true).await;
                conn.linger().await;
                return;
            }
        };
        // A connection that waited long enough to give its turn away queues for one again
        // before it is answered (`turns.rs`).
        // So does one answered `REQUESTS_PER_TURN` times in this turn.
        if let Some(turn) = turn {
            if answered_in_turn >= REQUESTS_PER_TURN {
                turn.give_up();
            }
            if !turn.held() {
                answered_in_turn = 0;
                turn.take().await;
            }
            answered_in_turn += 1;
        }
        let reply = super::answer(
            door,
            &mut conn,
            &head,
            peer,
            cert.as_ref(),
            &user_agent_memo,
        )
        .await;
        let close = head.close || conn.body_pending || stop.is_cancelled();
        if conn.write_reply(reply, &head, close).await.is_err() {
            return;
        }
        if close {
            if conn.body_pending {
                conn.linger().await;
            } else {
                let _ = conn.io.shutdown().await;
            }
            return;
        }
    }
}

enum Next {
    Head(Head),
    Closed,
    Refused(HeadError),
}

/// Why an upload body could not be read.
pub(super) enum BodyError {
    TooLarge,
    Malformed(String),
    TimedOut,
}

/// A connection's socket and what has been read from it and not used yet.
pub(super) struct Conn<IO> {
    io: IO,
    buf: BytesMut,
    /// The current request's body has not been read (a refusal before reading it): the
    /// connection cannot carry another request.
    body_pending: bool,
    /// The `Authorization` value last proven against the shared provisioning credentials on
    /// this connection (Basic, with a user name no device's login can have): a phone sends the
    /// same one with every request, and the same value proves the same again without decoding
    /// and hashing it.
    pub(super) shared_login: Option<Vec<u8>>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    async fn fill(&mut self, deadline: Instant) -> Result<(), BodyError> {
        self.buf.reserve(READ_CHUNK);
        match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
            Err(_) => Err(BodyError::TimedOut),
            Ok(Ok(0)) => Err(BodyError::Malformed("the connection closed".into())),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BodyError::Malformed(e.to_string())),
        }
    }

    async fn read_head(&mut self, timeout: Duration, stop: &CancellationToken) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.buf.is_empty() {
                match wire::parse_head(&self.buf) {
                    Ok(Some((head, used))) => {
                        self.buf.advance(used);
                        self.body_pending = head.framing != Framing::Empty;
                        return Next::Head(head);
                    }
                    Ok(None) => {}
                    Err(e) => return Next::Refused(e),
                }
            }
            let idle = self.buf.is_empty();
            let read = tokio::select! {
                _ = stop.cancelled(), if idle => return Next::Closed,
                read = self.fill(deadline) => read,
            };
            if read.is_err() {
                return Next::Closed;
            }
        }
    }

    /// `100 Continue`, for a client that waits for it before sending its body.
    pub(super) async fn send_continue(&mut self) {
        let _ = self.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        let _ = self.io.flush().await;
    }

    /// The whole body of the current request, at most `max` bytes, within `timeout`.
    pub(super) async fn read_body(
        &mut self,
        framing: Framing,
        max: u64,
        timeout: Duration,
    ) -> Result<Bytes, BodyError> {
        let deadline = Instant::now() + timeout;
        let body = match framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) if n > max => return Err(BodyError::TooLarge),
            Framing::Length(n) => {
                let n = usize::try_from(n).map_err(|_| BodyError::TooLarge)?;
                // No room reserved for the declared length up front: memory follows the bytes
                // that actually arrive, not what a client claims it will send.
                while self.buf.len() < n {
                    self.fill(deadline).await?;
                }
                self.buf.split_to(n).freeze()
            }
            Framing::Chunked => {
                let mut decoder = wire::Chunked::new(max);
                loop {
                    match decoder.feed(&mut self.buf) {
                        Ok(Some(body)) => break body.freeze(),
                        Ok(None) => self.fill(deadline).await?,
                        Err(wire::ChunkError::TooLarge) => return Err(BodyError::TooLarge),
                        Err(e) => return Err(BodyError::Malformed(e.to_string())),
                    }
                }
            }
        };
        self.body_pending = false;
        Ok(body)
    }

    async fn write_reply(&mut self, reply: Reply, head: &Head, close: bool) -> std::io::Result<()> {
        let keep = if close {
            KeepAlive::Close
        } else if head.http10 {
            KeepAlive::Http10
        } else {
            KeepAlive::Http11
        };
        let length = match reply.status {
            // No length on a 204 or 304 (RFC 9110 §8.6): there is no content to measure.
            204 | 304 => None,
            _ => Some(reply.length),
        };
        let mut out = Vec::with_capacity(512);
        let headers = reply.headers.iter().map(|(n, v)| (*n, v.as_ref()));
        date_now(|date| wire::write_head(&mut out, reply.status, date, headers, length, keep));
        // A HEAD answer has the length a GET would get and no body — refusals included: a body
        // there would be read as the start of the next response.
        let body = if head.method == wire::Method::Head {
            ReplyBody::Empty
        } else {
            reply.body
        };
        match body {
            ReplyBody::Empty => self.io.write_all(&out).await?,
            // Head and body in one `writev`: two writes on a no-delay socket are two segments
            // and two wake-ups of the client.
            ReplyBody::Bytes(b) => write_all_vectored(&mut self.io, &out, &b).await?,
            ReplyBody::File(file, count) => {
                self.io.write_all(&out).await?;
                let mut reader = tokio::io::BufReader::with_capacity(64 * 1024, file.take(count));
                let sent = tokio::io::copy_buf(&mut reader, &mut self.io).await?;
                if sent < count {
                    // The file shrank under us: the client was promised more bytes than it got,
                    // and only a close tells it so.
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was sent",
                    ));
                }
            }
        }
        self.io.flush().await
    }

    /// Ends a connection whose request body was not read: stop sending, read and drop what the
    /// client still sends (bounded in time and bytes), then close.
    async fn linger(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            self.io.shutdown().await?;
            let mut drained = 0;
            let mut sink = [0u8; 8 * 1024];
            while drained < LINGER_BYTES {
                match self.io.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
    }
}

/// Writes `head` then `body`, as few system calls as the socket takes.
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    io: &mut W,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    let (mut head, mut body) = (head, body);
    while !head.is_empty() {
        let slices = [std::io::IoSlice::new(head), std::io::IoSlice::new(body)];
        let n = io.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_head = n.min(head.len());
        head = &head[from_head..];
        body = &body[n - from_head..];
    }
    io.write_all(body).await
}

/// The `Date` header's value, formatted once a second per thread.
fn date_now<R>(f: impl FnOnce(&str) -> R) -> R {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs || d.1.is_empty() {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        f(&d.1)
    })
}
