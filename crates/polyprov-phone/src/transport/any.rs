//! The transport a phone uses for a server, by its URL's scheme.

use super::{
    Call, FtpTransport, LeanHttp, Method, Reply, TftpTransport, Transport, TransportError,
};

type Outcome = Result<Reply, TransportError>;

/// Picks the transport by the server's scheme: `http://`, `tftp://`, `ftp://` or `ftps://`.
#[derive(Default)]
pub struct AnyTransport {
    pub http: LeanHttp,
    pub tftp: TftpTransport,
    pub ftp: FtpTransport,
}

impl Transport for AnyTransport {
    async fn send(&self, call: Call<'_>, method: Method, body: Vec<u8>) -> Outcome {
        match call.server.scheme.as_str() {
            "tftp" => self.tftp.send(call, method, body).await,
            "ftp" | "ftps" => self.ftp.send(call, method, body).await,
            _ => self.http.send(call, method, body).await,
        }
    }
}
