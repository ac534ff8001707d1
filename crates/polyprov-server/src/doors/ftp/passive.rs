//! Passive data ports: one per session, listening before libunftp gets it, accepting only the
//! control connection's address, closed when the session ends or the port goes unused.

use async_trait::async_trait;
use std::net::IpAddr;
use std::sync::Arc;

/// Opens the passive data ports of one control connection: already listening when libunftp gets
/// them, and, with `peer`, accepting only that address (a socket filter drops every other SYN
/// before it is queued). A session holds at most one: a new `PASV` closes the port of the last
/// one, as does the end of the session, and a port is closed `timeout` after it was offered
/// whether or not it was used (a transfer already under way goes on: it has its own socket).
/// Passive ports are few; this is what keeps clients that ask for them and never connect from
/// holding them all.
#[derive(Debug)]
pub(super) struct PassivePorts {
    pub(super) peer: Option<IpAddr>,
    pub(super) held: HeldPort,
    pub(super) timeout: std::time::Duration,
}

/// A second handle on the listening socket a session was last offered, to close it.
#[derive(Debug, Clone, Default)]
pub(super) struct HeldPort(Arc<std::sync::Mutex<Option<Arc<socket2::Socket>>>>);

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

/// Closes a session's passive port when the session ends, however it ends.
pub(super) struct ReleaseOnDrop(pub(super) HeldPort);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
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
