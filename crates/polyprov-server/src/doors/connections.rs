//! HTTP connections for the phone door and the admin API: our own accept loop, so that every
//! connection has a deadline and the server a cap (axum's `serve` has neither). The admin API
//! is served by hyper and axum; the phones' door by its own HTTP/1 code (`http/conn.rs`).
//!
//! - A request's header must arrive within `header_timeout`, and a kept-alive connection waits
//!   no longer than that for its next request (hyper's header-read timer runs while idle too).
//! - A response that makes no progress for `send_timeout` (the client stopped reading) ends
//!   the connection ([`StallGuard`]). Upload bodies have their own deadline in the door.
//! - Connections in progress go before new ones: the loop accepts one connection, then waits
//!   its turn behind every task already ready, and so does the new connection's first step
//!   ([`wait_turn`]). In a boot storm this keeps the cores on phones already in the middle of
//!   their boot, as nginx's one accept per turn of its event loop does (`bench/storm.sh 10000
//!   1000`, phones taken at once: ~910 with neither, 150–250 with both, nginx ~220; at 100 at
//!   once 7–11 phones wait in the accept queue, nginx 6–10).
//! - Past `served_at_once` connections at work, the loop takes no new phone until a turn is
//!   free ([`Turns`]): the phones already booting finish first.
//! - At most `max_connections` at once, and never more than the open-file limit leaves room
//!   for: past that a new connection is answered `503` and closed, and counted. An `accept`
//!   that fails for want of descriptors backs off instead of spinning.

use crate::doors::turns::{TurnIo, TurnWatch, Turns};
use crate::doors::watched::{Call, Watch, Watched};
use crate::metrics::Metrics;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Descriptors kept free for everything that is not an HTTP connection (database, log, TFTP
/// and FTP sockets, files being served or stored).
const RESERVED_DESCRIPTORS: u64 = 96;

/// Longest a graceful shutdown waits for running requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What bounds one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    /// Connections served at once, past which new ones wait in the kernel's accept queue
    /// ([`Turns`]); `None`: every connection accepted is served at once (the admin API).
    pub served_at_once: Option<usize>,
    /// How long a connection waiting on the network keeps its turn.
    pub keep_turn: Duration,
}

impl ConnectionLimits {
    /// The cap actually used: `max_connections`, lowered to what the process's open-file limit
    /// leaves room for (each connection may hold a second descriptor for the file it sends).
    pub fn effective_max(&self) -> usize {
        let by_descriptors = open_file_limit()
            .map(|n| (n.saturating_sub(RESERVED_DESCRIPTORS) / 2).max(1))
            .unwrap_or(u64::MAX);
        self.max_connections
            .min(usize::try_from(by_descriptors).unwrap_or(usize::MAX))
            .max(1)
    }
}

#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// TLS on a listener: the running configuration, how long a handshake may take, and where a
/// refused handshake is reported (a security event when it was about the client's certificate).
#[derive(Clone)]
pub struct TlsDoor {
    pub tls: Arc<crate::tls::ServerTls>,
    pub handshake_timeout: Duration,
    pub core: Arc<crate::core::Core>,
}

/// What answers a listener's requests.
#[derive(Clone)]
pub enum Handler {
    /// An axum router, served by hyper (the admin API and console).
    Router(axum::Router),
    /// The phones' door.
    Phones(Arc<crate::doors::http::PhoneDoor>),
}

/// Serves `handler` on `listener` until `stop`, then lets running requests finish (at most
/// [`SHUTDOWN_GRACE`]). `door` labels the connection metrics. With `tls`, each connection's
/// handshake runs inside its own task (a slow one holds its slot, never the accept loop), and a
/// verified client certificate reaches the handlers as a [`crate::tls::PeerCertificate`].
pub async fn serve(
    listener: TcpListener,
    handler: Handler,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    door: &'static str,
    tls: Option<TlsDoor>,
    stop: CancellationToken,
) {
    let max = limits.effective_max();
    if max < limits.max_connections {
        tracing::warn!(
            door,
            max_connections = limits.max_connections,
            allowed = max,
            "the open-file limit allows fewer connections than configured (raise `ulimit -n` or LimitNOFILE=)"
        );
    }
    let slots = Arc::new(Semaphore::new(max));
    let turns = limits
        .served_at_once
        .map(|n| Turns::new(n, limits.keep_turn, metrics.turn_waits(door)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let mut accept_errors = 0u64;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: the connection stays in the backlog; try again
                    // shortly instead of spinning on the same error.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        tracing::warn!(door, error = %e, count = accept_errors, "cannot accept a connection");
                    }
                    metrics.connection_refused(door, "accept_error");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    }
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connection_refused(door, "over_capacity");
            tokio::spawn(answer_busy(tcp));
            continue;
        };
        // The phone just taken waits here for a turn, and the next ones in the kernel's accept
        // queue (no turn is held while the loop waits for a phone: a connection giving back a
        // turn and wanting it again would wait for the next phone to arrive).
        let turn = match &turns {
            Some(turns) => tokio::select! {
                _ = stop.cancelled() => break,
                turn = turns.next() => Some(turn),
            },
            None => None,
        };
        let _ = tcp.set_nodelay(true);
        let tcp = TurnIo::new(tcp, TurnWatch::new(turn.clone()));
        metrics.connection_opened(door);
        let connection = Connection {
            handler: handler.clone(),
            http: http.clone(),
            watcher: graceful.watcher(),
            limits,
            stop: stop.clone(),
            peer,
            door,
        };
        let metrics = metrics.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // The new phone's first request queues behind the requests already waiting: tokio
            // runs a task just spawned before everything else ready (its "LIFO slot"), which
            // would let every new connection jump the queue.
            wait_turn().await;
            // The task's future is as large as its largest state, and tokio moves it several
            // times per connection (into the task, and the task's stage is rewritten whole when
            // it ends): every door's connection is boxed, copied once. A phone's connection
            // future is ~9 KB; unboxed, those copies were most of the server's memcpy in a storm
            // (callgrind).
            match tls {
                None => Box::pin(connection.serve(tcp, None, turn)).await,
                Some(tls) => match Box::pin(handshake(&tls, tcp, peer, door)).await {
                    Some((stream, cert)) => Box::pin(connection.serve(stream, cert, turn)).await,
                    None => metrics.connection_refused(door, "tls_handshake"),
                },
            }
            metrics.connection_closed(door);
            drop(slot);
        });
        // Work in progress first: one new connection per turn of the scheduler, as nginx takes
        // one per turn of its event loop. Past what the cores can serve, phones then wait in
        // the kernel's accept queue (free, before their first request) instead of every phone
        // admitted sharing the cores and waiting on each of its requests.
        wait_turn().await;
    }
    drop(listener);
    // Every connection gives its slot back when it ends: all slots free is all connections done
    // (hyper's watcher covers only the connections hyper serves).
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = async {
        graceful.shutdown().await;
        let _ = slots.acquire_many(all).await;
    };
    tokio::select! {
        _ = drained => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(door, "requests still running after the shutdown grace period");
        }
    }
}

/// Lets every task ready on this worker run first: the running task wakes itself and returns,
/// and tokio puts a task woken while it runs at the back of the worker's queue. (tokio's
/// `yield_now` parks the task instead until the worker next polls for I/O, up to 61 tasks
/// later: in a storm of 100 phones at once that held a new phone's first request ~two such
/// intervals, its p99 2–3× nginx's, 0.8–1.3× with this.) Where a self-woken task goes is
/// tokio's behaviour, not its promise: the tests below fail if it changes.
async fn wait_turn() {
    let mut woken = false;
    std::future::poll_fn(|cx| {
        if woken {
            return std::task::Poll::Ready(());
        }
        woken = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// What one accepted connection is served with.
struct Connection {
    handler: Handler,
    http: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    limits: ConnectionLimits,
    stop: CancellationToken,
    peer: std::net::SocketAddr,
    door: &'static str,
}

impl Connection {
    async fn serve<IO>(
        self,
        io: IO,
        cert: Option<crate::tls::PeerCertificate>,
        turn: Option<Arc<crate::doors::turns::Turn>>,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            handler,
            http,
            watcher,
            limits,
            stop,
            peer,
            door,
        } = self;
        let io = StallGuard::new(io, Stall::new(limits.send_timeout));
        let router = match handler {
            Handler::Router(router) => router,
            Handler::Phones(phones) => {
                drop(watcher);
                let header_timeout = limits.header_timeout;
                crate::doors::http::conn::serve(
                    &phones,
                    io,
                    peer,
                    cert,
                    header_timeout,
                    turn.as_deref(),
                    &stop,
                )
                .await;
                return;
            }
        };
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                if let Some(c) = &cert {
                    req.extensions_mut().insert(c.clone());
                }
                let mut router = router.clone();
                tower_service::Service::call(&mut router, req)
            });
        let io = TokioIo::new(io);
        if let Err(e) = Box::pin(watcher.watch(http.serve_connection(io, service))).await {
            tracing::debug!(door, addr = %peer, error = %e, "connection ended with an error");
        }
    }
}

/// The TLS handshake, bounded in time. A refusal about the client's certificate (none when one
/// is required, one that does not verify) is a security event; other failures (a scanner, a
/// client without a common protocol version or suite) are logged for the admin.
async fn handshake(
    tls: &TlsDoor,
    tcp: TurnIo<TcpStream>,
    peer: std::net::SocketAddr,
    door: &'static str,
) -> Option<(
    tokio_rustls::server::TlsStream<TurnIo<TcpStream>>,
    Option<crate::tls::PeerCertificate>,
)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.tls.config());
    let stream = match tokio::time::timeout(tls.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let rustls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            match rustls_error {
                Some(
                    r @ (rustls::Error::NoCertificatesPresented
                    | rustls::Error::InvalidCertificate(_)),
                ) => tls
                    .core
                    .security_event("bad_client_certificate", peer.ip(), "tls", "-", r),
                _ => tracing::info!(door, addr = %peer.ip(), error = %e, "TLS handshake failed"),
            }
            return None;
        }
        Err(_) => {
            tracing::debug!(door, addr = %peer.ip(), "TLS handshake timed out");
            return None;
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| crate::tls::PeerCertificate(crate::tls::identity_of(der)));
    Some((stream, cert))
}

/// `503` to a connection over the cap (bounded in time). The request is read and dropped
/// after the answer, until the client closes (a lingering close, as nginx does): closing with
/// unread bytes would send a reset that can destroy the answer before the client reads it.
async fn answer_busy(mut tcp: TcpStream) {
    use tokio::io::AsyncReadExt;
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\nContent-Length: 29\r\nConnection: close\r\n\r\ntoo many connections, retry\r\n";
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(BUSY).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    })
    .await;
}

/// A connection whose writes fail with `TimedOut` once they have been stuck for `timeout`: a
/// client that stops reading cannot hold a connection and its file forever.
pub type StallGuard<T> = Watched<T, Stall>;

/// The clock of a [`StallGuard`].
pub struct Stall {
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
}

impl Stall {
    pub fn new(timeout: Duration) -> Stall {
        Stall {
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
        }
    }

    /// After a write that could not proceed: starts the clock once, and says whether it ran out.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.armed {
            self.armed = true;
            let at = tokio::time::Instant::now() + self.timeout;
            self.deadline.as_mut().reset(at);
        }
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

impl Watch for Stall {
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        call: Call,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending if call == Call::Write && self.stalled(cx) => Poll::Ready(Err(
                io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"),
            )),
            Poll::Ready(_) if call == Call::Write => {
                self.armed = false;
                polled
            }
            polled => polled,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The accept loop on `listener`, serving `router` with generous limits; cancel the token
    /// to stop it.
    fn start(
        listener: TcpListener,
        router: axum::Router,
        metrics: Arc<Metrics>,
    ) -> (tokio::task::JoinHandle<()>, CancellationToken) {
        let stop = CancellationToken::new();
        let limits = ConnectionLimits {
            header_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            max_connections: 1000,
            served_at_once: None,
            keep_turn: Duration::from_millis(200),
        };
        let server = tokio::spawn(serve(
            listener,
            Handler::Router(router),
            limits,
            metrics,
            "http",
            None,
            stop.clone(),
        ));
        (server, stop)
    }

    /// Phones already in the backlog are taken one per turn of the scheduler, never all at once
    /// ahead of the work in progress. On one thread, this test and the accept loop each wait
    /// their turn behind everything else ready, so between two turns of this test the loop
    /// accepts at most one (without its `wait_turn`: all 40 in its first turn).
    #[tokio::test(flavor = "current_thread")]
    async fn new_connections_take_their_turn_behind_running_work() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        const PHONES: i64 = 40;
        // Connected by the kernel, waiting in the accept queue.
        let clients: Vec<_> = (0..PHONES)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let metrics = Arc::new(Metrics::default());
        let (server, stop) = start(listener, axum::Router::new(), metrics.clone());
        // A task of its own, so that its turns are in the same queue as the server's (the
        // test's body is polled apart from the queue).
        let counter = tokio::spawn(async move {
            let mut taken_per_turn = Vec::new();
            let mut open = 0;
            // Bounded: the loop needs PHONES turns; give it ten times that.
            for _ in 0..PHONES * 10 {
                wait_turn().await;
                let now = metrics.connections_open("http");
                taken_per_turn.push(now - open);
                open = now;
                if open == PHONES {
                    break;
                }
            }
            (open, taken_per_turn)
        });
        let (open, taken_per_turn) = counter.await.unwrap();
        assert_eq!(
            open, PHONES,
            "not every phone was accepted: {taken_per_turn:?}"
        );
        assert!(
            taken_per_turn.iter().all(|&n| n <= 1),
            "accepted several at once: {taken_per_turn:?}"
        );
        drop(clients);
        stop.cancel();
        server.await.unwrap();
    }

    /// A new connection's first request waits behind the requests already waiting, as it would
    /// in nginx: tokio runs a just-spawned task ahead of every ready one unless it yields first.
    /// The one worker is held while phone A (already served once) sends its next request and
    /// phone B connects and sends its first; once freed, A must be answered first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_new_connection_does_not_jump_the_queue() {
        use std::io::{BufRead, BufReader, Write};
        use std::sync::Mutex;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Vec::<String>::new()));
        let router = {
            let served = served.clone();
            axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let served = served.clone();
                async move {
                    served.lock().unwrap().push(uri.path().to_string());
                    "ok"
                }
            })
        };
        let (server, stop) = start(listener, router, Arc::new(Metrics::default()));
        // This test's body runs outside the runtime's worker: blocking calls here are fine.
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: polyprov\r\n\r\n");
        let answered = |stream: &std::net::TcpStream| {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        };
        let mut a = std::net::TcpStream::connect(addr).unwrap();
        a.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        a.write_all(get("/a-first").as_bytes()).unwrap();
        answered(&a);

        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (free_tx, free_rx) = std::sync::mpsc::channel::<()>();
        let hold = tokio::spawn(async move {
            held_tx.send(()).unwrap();
            let _ = free_rx.recv_timeout(Duration::from_secs(30)); // blocks the one worker
        });
        held_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        a.write_all(get("/a-next").as_bytes()).unwrap();
        let mut b = std::net::TcpStream::connect(addr).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        b.write_all(get("/b-first").as_bytes()).unwrap();
        free_tx.send(()).unwrap();
        hold.await.unwrap();
        answered(&b);
        // A's second answer is left unread: the order the requests were served in is the test.
        assert_eq!(
            *served.lock().unwrap(),
            ["/a-first", "/a-next", "/b-first"],
            "the new connection was served before the one already waiting"
        );
        drop((a, b));
        stop.cancel();
        server.await.unwrap();
    }
}
