//! The transport a phone uses for a server, by its URL's scheme.

use super::{FtpTransport, LeanHttp, Login, Reply, TftpTransport, Transport, TransportError};
use crate::url::ServerUrl;

/// Picks the transport by the server's scheme: `http://`, `tftp://`, `ftp://` or `ftps://`.
#[derive(Default)]
pub struct AnyTransport {
    pub http: LeanHttp,
    pub tftp: TftpTransport,
    pub ftp: FtpTransport,
}

impl Transport for AnyTransport {
    async fn get(
        &self,
        server: &ServerUrl,
        name: &str,
        ua: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        match server.scheme.as_str() {
            "tftp" => self.tftp.get(server, name, ua, login).await,
            "ftp" | "ftps" => self.ftp.get(server, name, ua, login).await,
            _ => self.http.get(server, name, ua, login).await,
        }
    }

    async fn head(
        &self,
        server: &ServerUrl,
        name: &str,
        ua: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        match server.scheme.as_str() {
            "tftp" => self.tftp.head(server, name, ua, login).await,
            "ftp" | "ftps" => self.ftp.head(server, name, ua, login).await,
            _ => self.http.head(server, name, ua, login).await,
        }
    }

    async fn put(
        &self,
        server: &ServerUrl,
        name: &str,
        ua: &str,
        login: &Login,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        match server.scheme.as_str() {
            "tftp" => self.tftp.put(server, name, ua, login, body).await,
            "ftp" | "ftps" => self.ftp.put(server, name, ua, login, body).await,
            _ => self.http.put(server, name, ua, login, body).await,
        }
    }
}
