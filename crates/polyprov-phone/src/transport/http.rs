//! HTTP: reqwest, or a lean keep-alive client for storms.

use super::{Call, Method, Reply, Transport, TransportError};
use crate::url::ServerUrl;
use std::sync::Arc;
use std::time::Duration;

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

    async fn request(
        &self,
        method: reqwest::Method,
        call: Call<'_>,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        let Call {
            server,
            name,
            user_agent,
            login,
        } = call;
        if server.scheme != "http" {
            return Err(TransportError::Unsupported(server.scheme.clone()));
        }
        let mut req = self
            .client
            .request(method.clone(), server.file_url(name))
            .header(reqwest::header::USER_AGENT, user_agent);
        if let Some((u, p)) = login {
            req = req.basic_auth(u, Some(p));
        }
        if method == reqwest::Method::PUT {
            req = req.body(body);
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
    async fn send(
        &self,
        call: Call<'_>,
        method: Method,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        let method = match method {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Put => reqwest::Method::PUT,
        };
        self.request(method, call, body).await
    }
}

/// A lean HTTP/1.1 client with one keep-alive connection, as one phone holds: what the storm
/// runner uses, so that thousands of emulated phones cost little CPU. HTTP, and HTTPS once
/// given what to trust ([`LeanHttp::with_tls`]); Basic credentials sent up front;
/// `Content-Length` and chunked bodies.
#[derive(Default)]
pub struct LeanHttp {
    conn: tokio::sync::Mutex<Option<tokio::io::BufReader<Stream>>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A connection, plain or TLS.
type Stream = tokio_util::either::Either<
    tokio::net::TcpStream,
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
>;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body accepted (a firmware image).
const MAX_BODY: usize = 512 * 1024 * 1024;

impl LeanHttp {
    /// A client with no connection yet.
    pub fn new() -> LeanHttp {
        LeanHttp::default()
    }

    /// What it trusts for `https://`, to give other phones the same.
    pub fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.tls.clone()
    }

    /// The same client speaking `https://` with `tls` (see [`super::tls::client_config`]).
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> LeanHttp {
        self.tls = Some(tls);
        self
    }

    async fn connect(&self, server: &ServerUrl, port: u16) -> Result<Stream, TransportError> {
        let unreachable = |e: std::io::Error| TransportError::Unreachable(e.to_string());
        let host = server.host.trim_start_matches('[').trim_end_matches(']');
        let tcp = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        if server.scheme != "https" {
            return Ok(tokio_util::either::Either::Left(tcp));
        }
        let tls = self.tls.clone().ok_or_else(|| {
            TransportError::Unsupported("https (the phone was given no CA to trust)".into())
        })?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| TransportError::Unreachable(format!("{host}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError::Unreachable(format!("TLS: {e}")))?;
        Ok(tokio_util::either::Either::Right(stream))
    }

    async fn exchange(
        stream: &mut tokio::io::BufReader<Stream>,
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

    async fn request(
        &self,
        method: &str,
        call: Call<'_>,
        body: &[u8],
    ) -> Result<Reply, TransportError> {
        let Call {
            server,
            name,
            user_agent,
            login,
        } = call;
        use base64::Engine;
        let port = match server.scheme.as_str() {
            "http" => server.port.unwrap_or(80),
            "https" => server.port.unwrap_or(443),
            other => return Err(TransportError::Unsupported(other.to_string())),
        };
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
                *conn = Some(tokio::io::BufReader::new(self.connect(server, port).await?));
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
    async fn send(
        &self,
        call: Call<'_>,
        method: Method,
        body: Vec<u8>,
    ) -> Result<Reply, TransportError> {
        self.request(method.as_str(), call, &body).await
    }
}
