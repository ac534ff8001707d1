//! FTP and explicit FTPS (`AUTH TLS`), the phones' factory protocol: one control connection
//! per file, passive mode, binary type. Without credentials in the URL or the phone's settings
//! the phone logs in with its factory login (`PlcmSpIp`/`PlcmSpIp`, domain.md §1).

use super::{Call, Login, Method, Reply, Transport, TransportError};
use crate::url::ServerUrl;
use std::sync::Arc;
use std::time::Duration;
use suppaftp::tokio::{AsyncRustlsConnector, AsyncRustlsFtpStream};
use suppaftp::types::FileType;
use suppaftp::{FtpError, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one file's whole exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The phones' factory FTP login.
pub const FACTORY_LOGIN: (&str, &str) = ("PlcmSpIp", "PlcmSpIp");

/// FTP/FTPS transport.
#[derive(Clone)]
pub struct FtpTransport {
    /// Used when neither the URL nor the phone's settings carry a login.
    pub factory_login: (String, String),
    /// Trust anchors for `ftps://` (a phone's CA list). Without any, FTPS fails as it does on a
    /// phone that does not trust the server's certificate.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for FtpTransport {
    fn default() -> Self {
        FtpTransport {
            factory_login: (FACTORY_LOGIN.0.to_string(), FACTORY_LOGIN.1.to_string()),
            tls: None,
        }
    }
}

impl std::fmt::Debug for FtpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpTransport")
            .field("factory_login", &self.factory_login.0)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What went wrong, before any answer (`Err`) or as the server's answer (`Ok(Reply)`).
type Outcome = Result<Reply, TransportError>;

impl FtpTransport {
    /// Trusts the CA certificates in `pem` for `ftps://` (in addition to none: phones trust
    /// only their built-in list and what their configuration adds).
    pub fn trusting(mut self, pem: &[u8]) -> Result<FtpTransport, TransportError> {
        self.tls = Some(super::tls::client_config(pem, None)?);
        Ok(self)
    }

    /// A logged-in session in binary mode, or the server's refusal as a reply.
    async fn session(
        &self,
        server: &ServerUrl,
        login: &Login,
    ) -> Result<Result<AsyncRustlsFtpStream, Reply>, TransportError> {
        let host = server.host.trim_start_matches('[').trim_end_matches(']');
        let port = server.port.unwrap_or(21);
        let unreachable = |e: FtpError| TransportError::Unreachable(e.to_string());
        let mut ftp = AsyncRustlsFtpStream::connect((host, port))
            .await
            .map_err(unreachable)?;
        if server.scheme == "ftps" {
            let Some(tls) = &self.tls else {
                return Err(TransportError::Unsupported(
                    "ftps: this phone trusts no CA (give it one)".into(),
                ));
            };
            let connector =
                AsyncRustlsConnector::from(tokio_rustls::TlsConnector::from(tls.clone()));
            ftp = ftp
                .into_secure(connector, host)
                .await
                .map_err(unreachable)?;
        }
        let (user, password) = login.clone().unwrap_or_else(|| self.factory_login.clone());
        match ftp.login(user, password).await {
            Ok(()) => {}
            Err(e) => return answer(e, Op::Login).map(Err),
        }
        if let Err(e) = ftp.transfer_type(FileType::Binary).await {
            return answer(e, Op::Login).map(Err);
        }
        Ok(Ok(ftp))
    }

    async fn exchange(&self, server: &ServerUrl, login: &Login, op: Exchange<'_>) -> Outcome {
        let run = async {
            let mut ftp = match self.session(server, login).await? {
                Ok(ftp) => ftp,
                Err(refused) => return Ok(refused),
            };
            let path = server.file_path(op.name());
            let result = match op {
                Exchange::Get(_) => retrieve(&mut ftp, &path).await,
                Exchange::Size(_) => ftp.size(&path).await.map(|_| bytes::Bytes::new()),
                Exchange::Put(_, body) => store(&mut ftp, &path, body).await,
            };
            let _ = ftp.quit().await;
            match result {
                Ok(body) => Ok(Reply { status: 200, body }),
                Err(e) => answer(e, op.kind()),
            }
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| Err(TransportError::Unreachable("FTP exchange timed out".into())))
    }
}

async fn retrieve(ftp: &mut AsyncRustlsFtpStream, path: &str) -> Result<bytes::Bytes, FtpError> {
    let mut stream = ftp.retr_as_stream(path).await?;
    let mut body = Vec::new();
    stream
        .read_to_end(&mut body)
        .await
        .map_err(FtpError::ConnectionError)?;
    stream.finish().await?;
    Ok(body.into())
}

async fn store(
    ftp: &mut AsyncRustlsFtpStream,
    path: &str,
    body: &[u8],
) -> Result<bytes::Bytes, FtpError> {
    let mut stream = ftp.put_with_stream(path).await?;
    stream
        .write_all(body)
        .await
        .map_err(FtpError::ConnectionError)?;
    stream.finish().await?;
    Ok(bytes::Bytes::new())
}

enum Exchange<'a> {
    Get(&'a str),
    Size(&'a str),
    Put(&'a str, &'a [u8]),
}

impl Exchange<'_> {
    fn name(&self) -> &str {
        match self {
            Exchange::Get(n) | Exchange::Size(n) | Exchange::Put(n, _) => n,
        }
    }

    fn kind(&self) -> Op {
        match self {
            Exchange::Put(..) => Op::Store,
            _ => Op::Read,
        }
    }
}

#[derive(Clone, Copy)]
enum Op {
    Login,
    Read,
    Store,
}

/// FTP replies as the HTTP statuses the boot logic reads; no reply at all is an error.
fn answer(e: FtpError, op: Op) -> Outcome {
    let FtpError::UnexpectedResponse(response) = e else {
        return Err(TransportError::Unreachable(e.to_string()));
    };
    let status = match (response.status, op) {
        (Status::NotLoggedIn, _) | (_, Op::Login) => 401,
        (Status::FileUnavailable, Op::Read) => 404,
        (Status::FileUnavailable, _) => 403,
        (Status::ExceededStorage, _) => 413,
        (Status::BadFilename, _) => 400,
        (Status::ActionAborted, _) => 500,
        (Status::NotAvailable, _) => 503,
        _ => 400,
    };
    Ok(Reply {
        status,
        body: bytes::Bytes::from(response.body),
    })
}

impl Transport for FtpTransport {
    /// A HEAD is `SIZE`: whether the file is there, without reading it. FTP has no User-Agent.
    async fn send(&self, call: Call<'_>, method: Method, body: Vec<u8>) -> Outcome {
        let exchange = match method {
            Method::Get => Exchange::Get(call.name),
            Method::Head => Exchange::Size(call.name),
            Method::Put => Exchange::Put(call.name, &body),
        };
        self.exchange(call.server, call.login, exchange).await
    }
}
