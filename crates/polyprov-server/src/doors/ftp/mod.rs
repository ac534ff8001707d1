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
//!
//! One concern a file: `logins.rs` (who may log in and what a login proves), `storage.rs` (every
//! file operation as a core call), `passive.rs` (passive data ports: one per session, filtered
//! to the control connection's address, closed when unused), `tls.rs` (the FTPS certificate).
//! This file runs the listener: sessions in total and per address, shutdown.

mod logins;
mod passive;
mod storage;
mod tls;

pub use logins::{FtpUser, Logins};
pub use storage::FtpDoor;
pub use tls::tls_config;

use crate::settings::FtpSettings;
use libunftp::options::FtpsRequired;
use libunftp::{Server, ServerBuilder};
use passive::{HeldPort, PassivePorts, ReleaseOnDrop};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const GREETING: &str = "polyprov provisioning server";

/// Everything a control connection needs, shared by all of them.
pub struct FtpService {
    pub door: FtpDoor,
    pub logins: Arc<Logins>,
    pub settings: FtpSettings,
    pub tls: Option<Arc<rustls::ServerConfig>>,
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
