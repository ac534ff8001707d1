//! The phone's end of a `NOTIFY`: what the emulated phone answers, and when it acts.
//!
//! A phone takes `Event: check-sync` (any parameters, e.g. `;reboot=true`) and answers 200;
//! another event gets 489 Bad Event, another method 501. When its settings ask it to validate
//! NOTIFY requests with Digest (`voIpProt.SIP.requestValidation.N.request="NOTIFY"`,
//! `.method="digest"`), it first answers 401 with a challenge in
//! `voIpProt.SIP.requestValidation.digest.realm` and accepts only an answer made with its line's
//! credentials. A retransmitted request gets the same answer again and is acted on once.

use crate::digest;
use crate::message::{Message, StartLine};
use std::collections::VecDeque;
use std::net::SocketAddr;

/// How the phone checks a NOTIFY.
#[derive(Clone, PartialEq, Eq)]
pub enum Validation {
    /// Accepts any NOTIFY (the phones' default).
    None,
    /// Digest with the line's credentials, in `realm`.
    Digest {
        realm: String,
        user: String,
        password: String,
    },
}

impl std::fmt::Debug for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Validation::None => f.write_str("None"),
            Validation::Digest { realm, user, .. } => {
                write!(f, "Digest {{ realm: {realm:?}, user: {user:?} }}")
            }
        }
    }
}

/// A NOTIFY the phone accepted and should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notified {
    /// The `Event` header as sent (`check-sync`, `check-sync;reboot=true`).
    pub event: String,
    pub from: SocketAddr,
    /// Whether it passed a Digest check.
    pub authenticated: bool,
}

impl Notified {
    /// Whether the sender asked for a reboot (`;reboot=true`).
    pub fn asks_reboot(&self) -> bool {
        self.event
            .split(';')
            .skip(1)
            .any(|p| p.trim().eq_ignore_ascii_case("reboot=true"))
    }
}

/// Transactions remembered for retransmissions, and nonces for challenges.
const REMEMBERED: usize = 256;

/// Answers NOTIFY requests as a phone.
#[derive(Default)]
pub struct Answerer {
    /// (branch, answer) of recent requests, to repeat the answer to a retransmission.
    answered: VecDeque<(String, Vec<u8>)>,
    /// Nonces handed out, newest last.
    nonces: VecDeque<String>,
}

impl Answerer {
    pub fn new() -> Answerer {
        Answerer::default()
    }

    /// The answer to one datagram (none for what is not a request, or cannot be parsed), and
    /// the NOTIFY to act on if this one was accepted for the first time.
    pub fn answer(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        validation: &Validation,
    ) -> (Option<Vec<u8>>, Option<Notified>) {
        let Ok(m) = Message::parse(datagram) else {
            return (None, None);
        };
        let StartLine::Request { method, uri } = &m.start else {
            return (None, None);
        };
        if method == "ACK" {
            return (None, None);
        }
        let Some(branch) = m.top_branch().map(str::to_string) else {
            return (Some(reply(&m, 400, "Bad Request").to_bytes()), None);
        };
        if let Some((_, previous)) = self.answered.iter().find(|(b, _)| *b == branch) {
            return (Some(previous.clone()), None);
        }
        let (answer, notified) = self.decide(&m, method, uri, from, validation);
        let bytes = answer.to_bytes();
        if self.answered.len() == REMEMBERED {
            self.answered.pop_front();
        }
        self.answered.push_back((branch, bytes.clone()));
        (Some(bytes), notified)
    }

    fn decide(
        &mut self,
        m: &Message,
        method: &str,
        uri: &str,
        from: SocketAddr,
        validation: &Validation,
    ) -> (Message, Option<Notified>) {
        if ["from", "to", "call-id", "cseq"]
            .iter()
            .any(|h| m.header(h).is_none())
        {
            return (reply(m, 400, "Bad Request"), None);
        }
        if method != "NOTIFY" {
            return (reply(m, 501, "Not Implemented"), None);
        }
        let event = m.header("event").unwrap_or_default().to_string();
        let package = event.split(';').next().unwrap_or_default().trim();
        if !package.eq_ignore_ascii_case("check-sync") {
            return (
                reply(m, 489, "Bad Event").with("Allow-Events", "check-sync"),
                None,
            );
        }
        let authenticated = match validation {
            Validation::None => false,
            Validation::Digest {
                realm,
                user,
                password,
            } => {
                let ok = m
                    .header("authorization")
                    .and_then(digest::parse)
                    .is_some_and(|p| {
                        let get = |k: &str| p.get(k).map(String::as_str).unwrap_or_default();
                        get("username") == user
                            && get("realm") == realm
                            && same_target(get("uri"), uri)
                            && self.nonces.iter().any(|n| n == get("nonce"))
                            && digest::verify(&p, &digest::ha1(user, realm, password), method)
                    });
                if !ok {
                    let nonce = hex::encode(rand::random::<[u8; 12]>());
                    if self.nonces.len() == REMEMBERED {
                        self.nonces.pop_front();
                    }
                    self.nonces.push_back(nonce.clone());
                    let challenge = format!(
                        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\""
                    );
                    return (
                        reply(m, 401, "Unauthorized").with("WWW-Authenticate", challenge),
                        None,
                    );
                }
                true
            }
        };
        (
            reply(m, 200, "OK"),
            Some(Notified {
                event,
                from,
                authenticated,
            }),
        )
    }
}

/// How the phone's listeners learn its current validation (it changes when the phone is
/// provisioned again) and report what they accepted.
#[derive(Clone)]
pub struct Listener {
    pub validation: std::sync::Arc<dyn Fn() -> Validation + Send + Sync>,
    pub accepted: tokio::sync::mpsc::Sender<Notified>,
    answerer: std::sync::Arc<std::sync::Mutex<Answerer>>,
}

impl Listener {
    pub fn new(
        validation: impl Fn() -> Validation + Send + Sync + 'static,
        accepted: tokio::sync::mpsc::Sender<Notified>,
    ) -> Listener {
        Listener {
            validation: std::sync::Arc::new(validation),
            accepted,
            answerer: Default::default(),
        }
    }

    fn answer(&self, bytes: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let validation = (self.validation)();
        let (reply, notified) = self
            .answerer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answer(bytes, from, &validation);
        if let Some(n) = notified {
            // A phone busy acting on the last one drops this one, as a full queue would.
            let _ = self.accepted.try_send(n);
        }
        reply
    }

    /// Answers datagrams on `socket` (to the address each came from) until dropped.
    pub async fn serve_udp(self, socket: tokio::net::UdpSocket) {
        let mut buf = vec![0u8; crate::message::MAX_MESSAGE];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            if let Some(reply) = self.answer(&buf[..n], from) {
                let _ = socket.send_to(&reply, from).await;
            }
        }
    }

    /// Answers requests on each connection to `listener` until dropped. A connection that
    /// sends something that is not SIP is closed.
    pub async fn serve_tcp(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(self.clone().serve_stream(stream, from));
        }
    }

    /// [`Listener::serve_tcp`] with TLS (the phone's certificate in `tls`).
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        tls: std::sync::Arc<rustls::ServerConfig>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                continue;
            };
            let (this, acceptor) = (self.clone(), acceptor.clone());
            tokio::spawn(async move {
                let handshake = acceptor.accept(stream);
                if let Ok(Ok(tls)) =
                    tokio::time::timeout(std::time::Duration::from_secs(10), handshake).await
                {
                    this.serve_stream(tls, from).await;
                }
            });
        }
    }

    /// One connection: every whole request answered in turn, until it closes, idles for a
    /// minute, or sends what cannot be SIP.
    async fn serve_stream<S>(self, mut stream: S, from: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok(Some(n)) = crate::message::frame_len(&buf) {
                let frame: Vec<u8> = buf.drain(..n).collect();
                if let Some(reply) = self.answer(&frame, from)
                    && stream.write_all(&reply).await.is_err()
                {
                    return;
                }
            }
            if crate::message::frame_len(&buf).is_err() {
                return;
            }
            match tokio::time::timeout(std::time::Duration::from_secs(60), stream.read(&mut chunk))
                .await
            {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
    }
}

/// Whether a Digest answer's `uri` names the request's target: the request URI itself, or the
/// same without its user part (SIPp, and other clients, send `sip:host:port`). The response
/// hash covers the `uri` sent, so this only decides which forms are taken as "this request".
fn same_target(digest_uri: &str, request_uri: &str) -> bool {
    let host = |u: &str| {
        let rest = u
            .strip_prefix("sips:")
            .or_else(|| u.strip_prefix("sip:"))
            .unwrap_or(u);
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        rest.split(';')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    digest_uri == request_uri || (!digest_uri.is_empty() && host(digest_uri) == host(request_uri))
}

fn reply(m: &Message, code: u16, reason: &str) -> Message {
    Message::response_to(m, code, reason, "polyprovsim")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(branch: &str, event: &str, auth: Option<&str>) -> Vec<u8> {
        let mut m = Message::request("NOTIFY", "sip:1001@127.0.0.1:5060")
            .with("Via", format!("SIP/2.0/UDP 127.0.0.1:5070;branch={branch}"))
            .with("From", "<sip:polyprov@127.0.0.1>;tag=a")
            .with("To", "<sip:1001@127.0.0.1>")
            .with("Call-ID", "c1")
            .with("CSeq", "1 NOTIFY")
            .with("Event", event);
        if let Some(a) = auth {
            m = m.with("Authorization", a);
        }
        m.to_bytes()
    }

    fn from() -> SocketAddr {
        "127.0.0.1:5070".parse().unwrap()
    }

    fn code(bytes: &[u8]) -> u16 {
        Message::parse(bytes).unwrap().code().unwrap()
    }

    #[test]
    fn check_sync_is_accepted_once_per_transaction() {
        let mut a = Answerer::new();
        let (r, n) = a.answer(
            &notify("z9hG4bK1", "check-sync;reboot=true", None),
            from(),
            &Validation::None,
        );
        assert_eq!(code(&r.unwrap()), 200);
        assert!(n.unwrap().asks_reboot());
        let (r, n) = a.answer(
            &notify("z9hG4bK1", "check-sync", None),
            from(),
            &Validation::None,
        );
        assert_eq!(
            (code(&r.unwrap()), n),
            (200, None),
            "a retransmission is not acted on"
        );
    }

    #[test]
    fn other_events_methods_and_garbage_are_refused() {
        let mut a = Answerer::new();
        let (r, n) = a.answer(
            &notify("z9hG4bK2", "message-summary", None),
            from(),
            &Validation::None,
        );
        assert_eq!((code(&r.unwrap()), n), (489, None));
        let invite = Message::request("INVITE", "sip:x@h")
            .with("Via", "SIP/2.0/UDP h;branch=z9hG4bK3")
            .with("From", "<sip:a@h>;tag=1")
            .with("To", "<sip:x@h>")
            .with("Call-ID", "c")
            .with("CSeq", "1 INVITE")
            .to_bytes();
        assert_eq!(
            code(&a.answer(&invite, from(), &Validation::None).0.unwrap()),
            501
        );
        assert_eq!(
            a.answer(b"garbage", from(), &Validation::None),
            (None, None)
        );
    }

    #[test]
    fn digest_validation_challenges_then_accepts_the_line_credentials_only() {
        let v = Validation::Digest {
            realm: "PolycomSPIP".into(),
            user: "1001".into(),
            password: "secret".into(),
        };
        let mut a = Answerer::new();
        let (r, n) = a.answer(&notify("z9hG4bK4", "check-sync", None), from(), &v);
        let challenge = Message::parse(&r.unwrap()).unwrap();
        assert_eq!((challenge.code(), n), (Some(401), None));
        let www = challenge.header("www-authenticate").unwrap().to_string();
        let uri = "sip:1001@127.0.0.1:5060";
        let wrong = digest::answer(&www, "1001", "guess", "NOTIFY", uri).unwrap();
        let (r, n) = a.answer(&notify("z9hG4bK5", "check-sync", Some(&wrong)), from(), &v);
        assert_eq!((code(&r.unwrap()), n), (401, None));
        let right = digest::answer(&www, "1001", "secret", "NOTIFY", uri).unwrap();
        let (r, n) = a.answer(&notify("z9hG4bK6", "check-sync", Some(&right)), from(), &v);
        assert_eq!(code(&r.unwrap()), 200);
        assert!(n.unwrap().authenticated);
    }

    #[test]
    fn a_digest_uri_without_the_user_part_names_the_same_target() {
        assert!(same_target("sip:127.0.0.1:5060", "sip:1001@127.0.0.1:5060"));
        assert!(same_target(
            "sip:1001@127.0.0.1:5060",
            "sip:1001@127.0.0.1:5060"
        ));
        assert!(!same_target(
            "sip:127.0.0.1:5061",
            "sip:1001@127.0.0.1:5060"
        ));
        assert!(!same_target("", "sip:1001@127.0.0.1:5060"));
    }

    proptest::proptest! {
        #[test]
        fn answering_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut a = Answerer::new();
            let _ = a.answer(&bytes, from(), &Validation::None);
        }
    }
}
