//! TFTP through polyprov-tftp's client.

use super::{Call, Method, Reply, Transport, TransportError};
use crate::url::ServerUrl;

/// TFTP, one transfer per file; no credentials (TFTP has none).
#[derive(Debug, Clone, Default)]
pub struct TftpTransport {
    /// Ask for this blksize (512 sends no option).
    pub blksize: u16,
}

impl TftpTransport {
    fn client(&self, server: &ServerUrl) -> Result<polyprov_tftp::client::Client, TransportError> {
        use std::net::ToSocketAddrs;
        let host = server.host.trim_start_matches('[').trim_end_matches(']');
        let addr = (host, server.port.unwrap_or(69))
            .to_socket_addrs()
            .map_err(|e| TransportError::Unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| TransportError::Unreachable(format!("{host}: no address")))?;
        let settings = polyprov_tftp::client::Settings {
            blksize: if self.blksize == 0 { 512 } else { self.blksize },
            ..Default::default()
        };
        Ok(polyprov_tftp::client::Client::new(addr, settings))
    }

    /// TFTP errors as the HTTP statuses the boot logic reads.
    fn reply(
        r: Result<bytes::Bytes, polyprov_tftp::client::ClientError>,
    ) -> Result<Reply, TransportError> {
        use polyprov_tftp::client::ClientError as E;
        use polyprov_tftp::packet::ErrorCode as C;
        match r {
            Ok(body) => Ok(Reply { status: 200, body }),
            Err(E::Server(C::FileNotFound, _)) => Ok(Reply {
                status: 404,
                body: bytes::Bytes::new(),
            }),
            Err(E::Server(C::AccessViolation, _)) => Ok(Reply {
                status: 403,
                body: bytes::Bytes::new(),
            }),
            Err(E::Server(C::DiskFull, _)) => Ok(Reply {
                status: 413,
                body: bytes::Bytes::new(),
            }),
            Err(E::Server(_, m)) => Ok(Reply {
                status: 400,
                body: bytes::Bytes::from(m),
            }),
            Err(e) => Err(TransportError::Unreachable(e.to_string())),
        }
    }
}

impl Transport for TftpTransport {
    /// No credentials and no User-Agent: TFTP carries neither. TFTP has no HEAD: the file is
    /// read and only its status kept.
    async fn send(
        &self,
        call: Call<'_>,
        method: Method,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        let client = self.client(call.server)?;
        let path = call.server.file_path(call.name);
        match method {
            Method::Get => Self::reply(client.get(&path).await),
            Method::Head => Self::reply(client.get(&path).await).map(|r| Reply {
                status: r.status,
                body: bytes::Bytes::new(),
            }),
            Method::Put => {
                Self::reply(client.put(&path, &body).await.map(|()| bytes::Bytes::new()))
            }
        }
    }
}
