//! Sending one `NOTIFY` to a phone and reading what came of it.
//!
//! Over UDP this is RFC 3261's non-INVITE client transaction (§17.1.2): the request is sent
//! again at T1, 2·T1, 4·T1 … (at most T2 apart, and every T2 once a provisional answer came)
//! until a final answer, or until timer F (64·T1) says the phone is not answering. Over TCP it
//! is sent once, and timer F still bounds the wait. A Digest challenge (401/407) is answered
//! once, with the line's credentials; a second challenge means they were refused.
//!
//! Answers that do not belong to this request (another branch or CSeq), that cannot be parsed,
//! or that come from another address than the phone's are ignored — they change nothing — and
//! listed in the [`Report`].

use crate::digest;
use crate::message::{Message, frame_len};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How the NOTIFY travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TCP with TLS (`NotifyRequest::tls` says what the phone's certificate must prove).
    Tls,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        })
    }
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Ok(Transport::Udp),
            "tcp" => Ok(Transport::Tcp),
            "tls" => Ok(Transport::Tls),
            other => Err(format!("unknown SIP transport {other:?} (udp, tcp or tls)")),
        }
    }
}

/// RFC 3261 timers. T1 is the round-trip estimate (500 ms by default); timer F is 64·T1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

impl Timers {
    /// Timer F: how long a transaction may take in all.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

/// The line's credentials, for a phone that challenges the NOTIFY.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <hidden> }}",
            self.user
        )
    }
}

/// What to send, and to whom.
#[derive(Debug, Clone)]
pub struct NotifyRequest {
    /// The phone's SIP address and port.
    pub target: SocketAddr,
    pub transport: Transport,
    /// The user part of the request URI (the line's user; phones accept any).
    pub user: String,
    /// The `Event` header, e.g. `check-sync` or `check-sync;reboot=true`.
    pub event: String,
    pub credentials: Option<Credentials>,
    pub timers: Timers,
    /// For [`Transport::Tls`]: the client configuration, whose verifier decides which phone
    /// certificates are taken (the server checks the phone's CA and MAC).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// How the phone answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the phone took the NOTIFY.
    Accepted { code: u16, reason: String },
    /// A final answer other than 2xx (481 no subscription, 489 bad event, 403 …).
    Rejected { code: u16, reason: String },
    /// Challenged, and no credentials to answer with, or the answer was refused, or the
    /// challenge could not be answered (another algorithm).
    Unauthorized { code: u16, detail: String },
    /// No final answer within timer F.
    TimedOut,
    /// The request could not be sent (connection refused, no route).
    Unreachable { detail: String },
}

impl Outcome {
    /// Whether the phone took the NOTIFY.
    pub fn accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}

/// Everything that happened to one NOTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// Datagrams or stream writes sent, retransmissions and the authenticated retry included.
    pub transmissions: u32,
    /// Whether the phone asked for Digest authentication.
    pub challenged: bool,
    /// Answers ignored, one line each (malformed, another address, another transaction).
    pub ignored: Vec<String>,
    pub elapsed: Duration,
}

/// At most this many ignored answers are listed (a flood is summarised by the count).
const MAX_IGNORED: usize = 16;

/// One transaction's identity and the request it sends.
struct Transaction {
    uri: String,
    local: SocketAddr,
    call_id: String,
    from_tag: String,
    branch: String,
    cseq: u32,
    authorization: Option<(&'static str, String)>,
}

impl Transaction {
    fn new(req: &NotifyRequest, local: SocketAddr) -> Transaction {
        let host = match req.target.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        Transaction {
            uri: format!("sip:{}@{host}:{}", req.user, req.target.port()),
            local,
            call_id: format!("{}@polyprov", hex::encode(rand::random::<[u8; 12]>())),
            from_tag: hex::encode(rand::random::<[u8; 6]>()),
            branch: new_branch(),
            cseq: 1,
            authorization: None,
        }
    }

    fn message(&self, req: &NotifyRequest) -> Vec<u8> {
        let transport = match req.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        };
        let local = self.local;
        let mut m = Message::request("NOTIFY", &self.uri)
            .with(
                "Via",
                format!("SIP/2.0/{transport} {local};branch={};rport", self.branch),
            )
            .with("Max-Forwards", "70")
            .with(
                "From",
                format!("<sip:polyprov@{local}>;tag={}", self.from_tag),
            )
            .with("To", format!("<{}>", self.uri))
            .with("Call-ID", self.call_id.clone())
            .with("CSeq", format!("{} NOTIFY", self.cseq))
            .with("Contact", format!("<sip:polyprov@{local}>"))
            .with("Event", req.event.clone())
            .with("Subscription-State", "terminated")
            .with(
                "User-Agent",
                concat!("polyprov/", env!("CARGO_PKG_VERSION")),
            );
        if let Some((name, value)) = &self.authorization {
            m = m.with(name, value.clone());
        }
        m.to_bytes()
    }

    /// Whether `m` answers the request as last sent.
    fn matches(&self, m: &Message) -> bool {
        m.code().is_some()
            && m.top_branch() == Some(self.branch.as_str())
            && m.cseq() == Some((self.cseq, "NOTIFY"))
    }
}

fn new_branch() -> String {
    // The magic cookie marks an RFC 3261 branch.
    format!("z9hG4bK{}", hex::encode(rand::random::<[u8; 10]>()))
}

/// What to do with a final answer.
enum Next {
    Done(Outcome),
    /// Send again with these credentials.
    Retry,
}

fn on_final(req: &NotifyRequest, tx: &mut Transaction, m: &Message, report: &mut Report) -> Next {
    let code = m.code().unwrap_or(0);
    let reason = match &m.start {
        crate::StartLine::Response { reason, .. } => reason.clone(),
        crate::StartLine::Request { .. } => String::new(),
    };
    match code {
        200..=299 => Next::Done(Outcome::Accepted { code, reason }),
        401 | 407 => {
            report.challenged = true;
            let Some(creds) = &req.credentials else {
                return Next::Done(Outcome::Unauthorized {
                    code,
                    detail: "the phone asks for authentication and no line credentials are known"
                        .into(),
                });
            };
            if tx.authorization.is_some() {
                return Next::Done(Outcome::Unauthorized {
                    code,
                    detail: "the phone refused the line's credentials".into(),
                });
            }
            let (challenge_header, answer_header) = if code == 401 {
                ("www-authenticate", "Authorization")
            } else {
                ("proxy-authenticate", "Proxy-Authorization")
            };
            let Some(challenge) = m.header(challenge_header) else {
                return Next::Done(Outcome::Unauthorized {
                    code,
                    detail: format!("{code} without a {challenge_header} header"),
                });
            };
            match digest::answer(challenge, &creds.user, &creds.password, "NOTIFY", &tx.uri) {
                Ok(value) => {
                    tx.authorization = Some((answer_header, value));
                    tx.cseq += 1;
                    tx.branch = new_branch();
                    Next::Retry
                }
                Err(e) => Next::Done(Outcome::Unauthorized {
                    code,
                    detail: e.to_string(),
                }),
            }
        }
        _ => Next::Done(Outcome::Rejected { code, reason }),
    }
}

fn ignore(report: &mut Report, line: String) {
    if report.ignored.len() < MAX_IGNORED {
        report.ignored.push(line);
    }
}

/// Sends the NOTIFY and waits for what comes of it (at most timer F, twice when challenged).
pub async fn send(req: &NotifyRequest) -> Report {
    let started = Instant::now();
    let mut report = Report {
        outcome: Outcome::TimedOut,
        transmissions: 0,
        challenged: false,
        ignored: Vec::new(),
        elapsed: Duration::ZERO,
    };
    report.outcome = match req.transport {
        Transport::Udp => over_udp(req, &mut report).await,
        Transport::Tcp | Transport::Tls => over_tcp(req, &mut report).await,
    };
    report.elapsed = started.elapsed();
    report
}

async fn over_udp(req: &NotifyRequest, report: &mut Report) -> Outcome {
    let unspecified: SocketAddr = match req.target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = match UdpSocket::bind(unspecified).await {
        Ok(s) => s,
        Err(e) => return unreachable(e),
    };
    // The address the phone should answer to: the one the kernel routes from toward it.
    let local = match local_address_toward(req.target, socket.local_addr().map(|a| a.port())) {
        Ok(a) => a,
        Err(e) => return unreachable(e),
    };
    let mut tx = Transaction::new(req, local);
    'request: loop {
        let bytes = tx.message(req);
        let deadline = tokio::time::Instant::now() + req.timers.timeout();
        let mut interval = req.timers.t1;
        let mut next_send = tokio::time::Instant::now();
        let mut buf = vec![0u8; crate::message::MAX_MESSAGE];
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Outcome::TimedOut;
            }
            if now >= next_send {
                if let Err(e) = socket.send_to(&bytes, req.target).await {
                    return unreachable(e);
                }
                report.transmissions += 1;
                next_send = now + interval;
                interval = (interval * 2).min(req.timers.t2);
            }
            let wait = next_send.min(deadline);
            let received = tokio::select! {
                r = socket.recv_from(&mut buf) => r,
                _ = tokio::time::sleep_until(wait) => continue,
            };
            let (n, from) = match received {
                Ok(r) => r,
                // ICMP errors reported on the socket: keep waiting, timer F decides.
                Err(_) => continue,
            };
            if from != req.target {
                ignore(
                    report,
                    format!("answer from {from}, not the phone ({})", req.target),
                );
                continue;
            }
            let m = match Message::parse(&buf[..n]) {
                Ok(m) => m,
                Err(e) => {
                    ignore(report, format!("malformed answer from {from}: {e}"));
                    continue;
                }
            };
            if !tx.matches(&m) {
                ignore(report, format!("answer for another request from {from}"));
                continue;
            }
            match m.code() {
                Some(100..=199) => {
                    // Proceeding: retransmit every T2 until the final answer.
                    interval = req.timers.t2;
                    next_send = tokio::time::Instant::now() + interval;
                }
                _ => match on_final(req, &mut tx, &m, report) {
                    Next::Done(outcome) => return outcome,
                    Next::Retry => continue 'request,
                },
            }
        }
    }
}

async fn over_tcp(req: &NotifyRequest, report: &mut Report) -> Outcome {
    let timeout = req.timers.timeout();
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(req.target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return unreachable(e),
        Err(_) => return Outcome::TimedOut,
    };
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => return unreachable(e),
    };
    if req.transport != Transport::Tls {
        return over_stream(stream, local, req, report).await;
    }
    let Some(config) = req.tls.clone() else {
        return Outcome::Unreachable {
            detail: "SIP over TLS without a TLS configuration".into(),
        };
    };
    let name = rustls::pki_types::ServerName::IpAddress(req.target.ip().into());
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, stream);
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(tls)) => over_stream(tls, local, req, report).await,
        Ok(Err(e)) => Outcome::Unreachable {
            detail: format!("TLS with {}: {e}", req.target),
        },
        Err(_) => Outcome::TimedOut,
    }
}

/// The transaction over a connected stream (TCP, or TLS over TCP): sent once, answers framed
/// by their Content-Length, timer F over each request.
async fn over_stream<S>(
    stream: S,
    local: SocketAddr,
    req: &NotifyRequest,
    report: &mut Report,
) -> Outcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let timeout = req.timers.timeout();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut tx = Transaction::new(req, local);
    let mut buf: Vec<u8> = Vec::new();
    'request: loop {
        if let Err(e) = wr.write_all(&tx.message(req)).await {
            return unreachable(e);
        }
        report.transmissions += 1;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Every whole answer already read.
            while let Some(n) = match frame_len(&buf) {
                Ok(n) => n,
                Err(e) => {
                    ignore(report, format!("malformed stream from the phone: {e}"));
                    return Outcome::Rejected {
                        code: 0,
                        reason: format!("malformed answer: {e}"),
                    };
                }
            } {
                let frame: Vec<u8> = buf.drain(..n).collect();
                let m = match Message::parse(&frame) {
                    Ok(m) => m,
                    Err(e) => {
                        ignore(report, format!("malformed answer: {e}"));
                        continue;
                    }
                };
                if !tx.matches(&m) {
                    ignore(report, "answer for another request".into());
                    continue;
                }
                if m.code().is_some_and(|c| c >= 200) {
                    match on_final(req, &mut tx, &m, report) {
                        Next::Done(outcome) => return outcome,
                        Next::Retry => continue 'request,
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            let n = match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
                Err(_) => return Outcome::TimedOut,
                Ok(Err(e)) => return unreachable(e),
                Ok(Ok(0)) => {
                    return Outcome::Unreachable {
                        detail: "the phone closed the connection without a final answer".into(),
                    };
                }
                Ok(Ok(n)) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn unreachable(e: std::io::Error) -> Outcome {
    Outcome::Unreachable {
        detail: e.to_string(),
    }
}

/// The local address the kernel would send from toward `target` (a UDP `connect` sends
/// nothing), with our socket's port.
fn local_address_toward(
    target: SocketAddr,
    port: std::io::Result<u16>,
) -> std::io::Result<SocketAddr> {
    let unspecified: SocketAddr = match target {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let probe = std::net::UdpSocket::bind(unspecified)?;
    probe.connect(target)?;
    Ok(SocketAddr::new(probe.local_addr()?.ip(), port?))
}
