//! TFTP through polyprov-tftp's client.

use super::{Login, Reply, Transport, TransportError};
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
    async fn get(
        &self,
        server: &ServerUrl,
        name: &str,
        _ua: &str,
        _login: &Login,
    ) -> Result<Reply, TransportError> {
        Self::reply(self.client(server)?.get(&server.file_path(name)).await)
    }

    /// TFTP has no HEAD: the file is read and its size reported.
    async fn head(
        &self,
        server: &ServerUrl,
        name: &str,
        ua: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        self.get(server, name, ua, login).await.map(|r| Reply {
            status: r.status,
            body: bytes::Bytes::new(),
        })
    }

    async fn put(
        &self,
        server: &ServerUrl,
        name: &str,
        _ua: &str,
        _login: &Login,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        Self::reply(
            self.client(server)?
                .put(&server.file_path(name), &body)
                .await
                .map(|()| bytes::Bytes::new()),
        )
    }
}
