//! The TFTP door: read and write requests become [`Core::fetch`] and [`Core::upload`] calls,
//! with the same names, limits and inventory as HTTP. TFTP carries no credentials, so per-device
//! files need `[provisioning] auth = "none"` (a trusted network) to be reachable over it.

use crate::core::{Answer, Core, Credential, Door, Refusal, Request};
use crate::metrics::Metrics;
use bytes::Bytes;
use polyprov_tftp::packet::ErrorCode;
use polyprov_tftp::server::{Handler, Source};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the TFTP door needs.
pub struct TftpDoor {
    pub core: Arc<Core>,
    pub metrics: Arc<Metrics>,
}

fn path_of(filename: &str) -> String {
    // TFTP names come without a leading slash; HTTP paths with one.
    format!("/{}", filename.trim_start_matches('/'))
}

fn tftp_error(r: &Refusal) -> (ErrorCode, String) {
    match r {
        Refusal::NotFound => (ErrorCode::FileNotFound, "file not found".into()),
        Refusal::AuthRequired | Refusal::BadCredentials => (
            ErrorCode::AccessViolation,
            "per-device files need credentials, which TFTP cannot carry".into(),
        ),
        Refusal::TooLarge { limit, .. } => (
            ErrorCode::DiskFull,
            format!("upload over the {limit}-byte limit"),
        ),
        Refusal::NotUploadable => (
            ErrorCode::AccessViolation,
            "this file cannot be uploaded".into(),
        ),
        Refusal::Internal(_) => (ErrorCode::NotDefined, "server error".into()),
        Refusal::Unavailable(_) => (ErrorCode::NotDefined, "server busy, try again".into()),
        other => (ErrorCode::AccessViolation, other.to_string()),
    }
}

/// A TFTP request as the core takes it: TFTP carries no User-Agent and no credentials.
fn request(peer: SocketAddr, path: &str) -> Request<'_> {
    Request {
        door: Door::Tftp,
        path,
        user_agent: None,
        user_agent_memo: None,
        peer: peer.ip(),
        credential: Credential::Absent,
    }
}

impl Handler for TftpDoor {
    async fn read(&self, peer: SocketAddr, filename: &str) -> Result<Source, (ErrorCode, String)> {
        let path = path_of(filename);
        let req = request(peer, &path);
        match self.core.fetch(&req).await {
            Ok(a) => {
                self.metrics.sent("tftp", a.kind(), a.len());
                Ok(match a {
                    Answer::Generated(g) => Source::Bytes(g.body),
                    Answer::File(f) => Source::File {
                        path: f.path,
                        len: f.len,
                    },
                })
            }
            Err(r) => Err(tftp_error(&r)),
        }
    }

    async fn write(
        &self,
        peer: SocketAddr,
        filename: &str,
        data: Bytes,
    ) -> Result<(), (ErrorCode, String)> {
        let path = path_of(filename);
        let req = request(peer, &path);
        self.core
            .upload(&req, data)
            .await
            .map(|_| ())
            .map_err(|r| tftp_error(&r))
    }

    fn max_write(&self, peer: SocketAddr, filename: &str) -> Result<u64, (ErrorCode, String)> {
        let path = path_of(filename);
        let req = request(peer, &path);
        // Admitted here (and refused, counted and logged here when it cannot be), stored by
        // `write` once the data has arrived.
        self.core
            .begin_upload(&req, false)
            .map(|t| t.limit())
            .map_err(|r| tftp_error(&r))
    }
}
