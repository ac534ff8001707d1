//! How a phone talks to its provisioning server. HTTP today; TFTP and FTP implement the same
//! trait when their clients exist. Answers use HTTP status numbers (200, 404, …) for every
//! protocol so the boot logic does not care which one carried them.

use crate::url::ServerUrl;
use std::future::Future;
use std::time::Duration;

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

/// One way of moving files between phone and server.
pub trait Transport: Send + Sync {
    /// Downloads a file (`name` relative to the server's directory).
    fn get(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
    ) -> impl Future<Output = Result<Reply, TransportError>> + Send;
    /// Asks whether a file exists.
    fn head(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
    ) -> impl Future<Output = Result<Reply, TransportError>> + Send;
    /// Uploads a file.
    fn put(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Reply, TransportError>> + Send;
}

/// HTTP with Basic credentials sent up front (the phone's provisioning credentials).
#[derive(Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport with its own connection pool.
    pub fn new() -> Result<HttpTransport, TransportError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        Ok(HttpTransport { client })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, TransportError> {
        if server.scheme != "http" {
            return Err(TransportError::Unsupported(server.scheme.clone()));
        }
        let mut req = self
            .client
            .request(method, server.file_url(name))
            .header(reqwest::header::USER_AGENT, user_agent);
        if let Some((u, p)) = login {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        Ok(Reply { status, body })
    }
}

impl Transport for HttpTransport {
    async fn get(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        self.send(reqwest::Method::GET, server, name, user_agent, login, None)
            .await
    }

    async fn head(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        self.send(reqwest::Method::HEAD, server, name, user_agent, login, None)
            .await
    }

    async fn put(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        self.send(
            reqwest::Method::PUT,
            server,
            name,
            user_agent,
            login,
            Some(body),
        )
        .await
    }
}
