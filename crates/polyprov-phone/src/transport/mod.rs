//! How a phone talks to its provisioning server: HTTP ([`http`]), TFTP ([`tftp`]) and FTP/FTPS
//! ([`ftp`]) implement one trait, and [`any`] picks one by the server's scheme. Answers use HTTP
//! status numbers (200, 404, …) for every protocol so the boot logic does not care which one
//! carried them.

pub mod any;
pub mod ftp;
pub mod http;
pub mod tftp;
pub mod tls;

pub use any::AnyTransport;
pub use ftp::FtpTransport;
pub use http::{HttpTransport, LeanHttp};
pub use tftp::TftpTransport;

use crate::url::ServerUrl;
use std::future::Future;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The body, shared with the HTTP client's buffer (no copy).
    pub body: bytes::Bytes,
}

impl Reply {
    /// Whether the file was there.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no answer came at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    #[error("the {0} protocol is not supported by this phone's transport")]
    Unsupported(String),
}

/// A user name and password.
pub type Login = Option<(String, String)>;

/// What a phone asks of its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Download a file.
    Get,
    /// Ask whether a file exists (TFTP, which has no such request, reads it).
    Head,
    /// Upload a file.
    Put,
}

impl Method {
    /// The HTTP name, also used in boot reports whatever the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
        }
    }
}

/// One request: to which server, for which file, as which phone.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub server: &'a ServerUrl,
    /// Relative to the server's directory.
    pub name: &'a str,
    pub user_agent: &'a str,
    pub login: &'a Login,
}

/// One way of moving files between phone and server.
pub trait Transport: Send + Sync {
    /// Sends one request; `body` is what a [`Method::Put`] uploads (empty otherwise).
    fn send(
        &self,
        call: Call<'_>,
        method: Method,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Reply, TransportError>> + Send;
}
