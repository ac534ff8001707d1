//! How a phone talks to its provisioning server: HTTP, TFTP and FTP/FTPS ([`crate::ftp`])
//! implement one trait. Answers use HTTP status numbers (200, 404, …) for every
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

/// A lean HTTP/1.1 client with one keep-alive connection, as one phone holds: what the storm
/// runner uses, so that thousands of emulated phones cost little CPU. HTTP only; Basic
/// credentials sent up front; `Content-Length` and chunked bodies.
#[derive(Default)]
pub struct LeanHttp {
    conn: tokio::sync::Mutex<Option<tokio::io::BufReader<tokio::net::TcpStream>>>,
}

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (a firmware image).
const MAX_BODY: usize = 512 * 1024 * 1024;

impl LeanHttp {
    /// A client with no connection yet.
    pub fn new() -> LeanHttp {
        LeanHttp::default()
    }

    async fn exchange(
        stream: &mut tokio::io::BufReader<tokio::net::TcpStream>,
        head: &[u8],
        body: &[u8],
        is_head: bool,
    ) -> std::io::Result<(Reply, bool)> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        stream.get_mut().write_all(head).await?;
        if !body.is_empty() {
            stream.get_mut().write_all(body).await?;
        }
        let mut line = Vec::new();
        let mut status = 0u16;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        let mut total = 0;
        loop {
            line.clear();
            let n = stream.read_until(b'\n', &mut line).await?;
            if n == 0 {
                return Err(bad("connection closed before the response head"));
            }
            total += n;
            if total > MAX_HEAD {
                return Err(bad("response head too long"));
            }
            let text = std::str::from_utf8(&line)
                .map_err(|_| bad("response head is not text"))?
                .trim_end();
            if status == 0 {
                status = text
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("bad status line"))?;
                continue;
            }
            if text.is_empty() {
                break;
            }
            if let Some((k, v)) = text.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.parse().map_err(|_| bad("bad Content-Length"))?);
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    close = true;
                }
            }
        }
        let mut out = Vec::new();
        if is_head || status == 204 || status == 304 || (100..200).contains(&status) {
        } else if chunked {
            loop {
                line.clear();
                stream.read_until(b'\n', &mut line).await?;
                let size_text = std::str::from_utf8(&line)
                    .map_err(|_| bad("bad chunk size"))?
                    .trim();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if out.len() + size > MAX_BODY {
                    return Err(bad("body too large"));
                }
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        line.clear();
                        if stream.read_until(b'\n', &mut line).await? <= 2 {
                            break;
                        }
                    }
                    break;
                }
                let got = (&mut *stream)
                    .take(size as u64)
                    .read_to_end(&mut out)
                    .await?;
                if got != size {
                    return Err(bad("chunk cut short"));
                }
                let mut crlf = [0u8; 2];
                stream.read_exact(&mut crlf).await?;
            }
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(bad("body too large"));
            }
            // Read without zero-filling first: firmware images are large.
            out.reserve_exact(n);
            let got = (&mut *stream).take(n as u64).read_to_end(&mut out).await?;
            if got != n {
                return Err(bad("body cut short"));
            }
        } else {
            stream.read_to_end(&mut out).await?;
            close = true;
        }
        Ok((
            Reply {
                status,
                body: bytes::Bytes::from(out),
            },
            close,
        ))
    }

    async fn send(
        &self,
        method: &str,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
        body: &[u8],
    ) -> Result<Reply, TransportError> {
        use base64::Engine;
        if server.scheme != "http" {
            return Err(TransportError::Unsupported(server.scheme.clone()));
        }
        let port = server.port.unwrap_or(80);
        let dir = if server.dir.is_empty() {
            String::new()
        } else {
            format!("/{}", server.dir)
        };
        let path: String = format!("{dir}/{}", name.trim_start_matches('/'))
            .chars()
            .map(|c| {
                if c == ' ' {
                    "%20".to_string()
                } else {
                    c.to_string()
                }
            })
            .collect();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{port}\r\nUser-Agent: {user_agent}\r\n",
            server.host
        );
        if let Some((u, p)) = login {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            head.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        if method == "PUT" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut conn = self.conn.lock().await;
        // A kept connection may have been closed by the server: one retry on a fresh one.
        for attempt in 0..2 {
            let reused = conn.is_some();
            if conn.is_none() {
                let host = server.host.trim_start_matches('[').trim_end_matches(']');
                let stream = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(|e| TransportError::Unreachable(e.to_string()))?;
                let _ = stream.set_nodelay(true);
                *conn = Some(tokio::io::BufReader::new(stream));
            }
            let Some(stream) = conn.as_mut() else {
                continue;
            };
            match Self::exchange(stream, head.as_bytes(), body, method == "HEAD").await {
                Ok((reply, close)) => {
                    if close {
                        *conn = None;
                    }
                    return Ok(reply);
                }
                Err(e) => {
                    *conn = None;
                    if !(reused && attempt == 0) {
                        return Err(TransportError::Unreachable(e.to_string()));
                    }
                }
            }
        }
        Err(TransportError::Unreachable("connection lost".into()))
    }
}

impl Transport for LeanHttp {
    async fn get(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        self.send("GET", server, name, user_agent, login, &[]).await
    }

    async fn head(
        &self,
        server: &ServerUrl,
        name: &str,
        user_agent: &str,
        login: &Login,
    ) -> Result<Reply, TransportError> {
        self.send("HEAD", server, name, user_agent, login, &[])
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
        self.send("PUT", server, name, user_agent, login, &body)
            .await
    }
}

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

/// Picks the transport by the server's scheme: `http://`, `tftp://`, `ftp://` or `ftps://`.
#[derive(Default)]
pub struct AnyTransport {
    pub http: LeanHttp,
    pub tftp: TftpTransport,
    pub ftp: crate::ftp::FtpTransport,
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
