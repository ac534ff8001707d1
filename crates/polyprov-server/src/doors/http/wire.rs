//! HTTP/1.x as the phones' door speaks it, without a framework: a request head read once into
//! the few fields the door uses, the chunked body decoding, and a response head written into
//! one buffer. A storm is thousands of short requests on new connections; a general router,
//! header maps and per-request allocations were most of the door's own CPU.
//!
//! Pure functions on bytes: no I/O here (the connection loop is in `conn.rs`), so every rule
//! is property-tested and fuzzed (`fuzz/fuzz_targets/http_head.rs`).

use bytes::{Buf, BytesMut};

/// Longest request head accepted (request line and headers); past it the answer is 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header lines in one request.
const MAX_HEADERS: usize = 64;

/// The request methods the door tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    /// Anything else (answered 405), kept for the log.
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Other(m) => m,
        }
    }
}

/// How the request's body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// What the door uses of a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The request target as sent in origin form (`/path?query`); an absolute-form target
    /// (`http://host/path`) is reduced to its path and query.
    pub target: String,
    /// HTTP/1.0 (keep-alive only when asked for).
    pub http10: bool,
    pub user_agent: Option<String>,
    pub authorization: Authorization,
    pub if_none_match: Option<String>,
    pub range: Option<String>,
    pub framing: Framing,
    /// The client asked to close after this request (or is HTTP/1.0 and did not ask to keep).
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// The request's `Authorization` header, as bytes. More than one is itself a finding: which
/// would count is a guess an attacker could steer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    Absent,
    One(Vec<u8>),
    Several,
}

impl Head {
    /// A stand-in for a request that could not be read: answered, then the connection closes.
    pub fn closing() -> Head {
        Head {
            method: Method::Other(String::new()),
            target: "/".to_string(),
            http10: false,
            user_agent: None,
            authorization: Authorization::Absent,
            if_none_match: None,
            range: None,
            framing: Framing::Empty,
            close: true,
            expect_continue: false,
        }
    }

    /// The target's path, without the query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }
}

/// Why a request head was refused (each with the status the door answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the request head is larger than {MAX_HEAD} bytes or has too many header lines")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("unsupported transfer coding")]
    UnsupportedCoding,
    #[error("unsupported HTTP version")]
    Version,
}

impl HeadError {
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
            HeadError::UnsupportedCoding => 501,
            HeadError::Version => 505,
        }
    }
}

/// Reads a request head from the start of `buf`: `Ok(None)` while it is incomplete, the head
/// and its length in bytes once it is whole, an error when it can never be a valid request.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => return Err(HeadError::Malformed("bad request line or header")),
    };
    if used > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = match req.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        other => Method::Other(other.to_string()),
    };
    let target = origin_form(req.path.unwrap_or_default())?;
    let http10 = req.version == Some(0);
    let mut head = Head {
        method,
        target,
        http10,
        user_agent: None,
        authorization: Authorization::Absent,
        if_none_match: None,
        range: None,
        framing: Framing::Empty,
        close: http10,
        expect_continue: false,
    };
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut codings = false;
    for h in req.headers.iter() {
        let value = h.value;
        let name = h.name;
        if name.eq_ignore_ascii_case("authorization") {
            head.authorization = match head.authorization {
                Authorization::Absent => Authorization::One(value.to_vec()),
                _ => Authorization::Several,
            };
        } else if name.eq_ignore_ascii_case("user-agent") {
            // Checked as UTF-8 first: the lossy conversion walks every byte even when
            // nothing needs replacing.
            head.user_agent
                .get_or_insert_with(|| match std::str::from_utf8(value) {
                    Ok(v) => v.to_owned(),
                    Err(_) => String::from_utf8_lossy(value).into_owned(),
                });
        } else if name.eq_ignore_ascii_case("content-length") {
            // Repeated lengths must agree (RFC 9112 §6.3); a list of equal values is one.
            for part in value.split(|b| *b == b',') {
                let n = decimal(trim(part)).ok_or(HeadError::Malformed("bad Content-Length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Malformed("conflicting Content-Length"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value.split(|b| *b == b',').map(trim) {
                if coding.is_empty() {
                    continue;
                }
                // `chunked` must be the last coding, and nothing but it is decoded here.
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    codings = true;
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|b| *b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    head.close = false;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if trim(value).eq_ignore_ascii_case(b"100-continue") {
                head.expect_continue = true;
            } else {
                return Err(HeadError::Malformed("unsupported Expect"));
            }
        } else if name.eq_ignore_ascii_case("if-none-match") {
            head.if_none_match = std::str::from_utf8(value).ok().map(str::to_string);
        } else if name.eq_ignore_ascii_case("range") {
            head.range = std::str::from_utf8(value).ok().map(str::to_string);
        }
    }
    if codings {
        return Err(HeadError::UnsupportedCoding);
    }
    head.framing = match (chunked, length) {
        // Both: a request smuggling attempt or a broken client; never guess which one counts.
        (true, Some(_)) => {
            return Err(HeadError::Malformed(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        (true, None) if http10 => return Err(HeadError::Malformed("chunked in HTTP/1.0")),
        (true, None) => Framing::Chunked,
        (false, Some(0) | None) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(Some((head, used)))
}

/// The request target in origin form: `/path?query` as sent, or the path and query of an
/// absolute-form target. Anything else (`*`, an authority) is not a file request.
fn origin_form(target: &str) -> Result<String, HeadError> {
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        target
            .get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &target[scheme.len()..])
    });
    match rest {
        Some(rest) => Ok(rest.find(['/', '?']).map_or_else(
            || "/".to_string(),
            |i| match &rest[i..] {
                q if q.starts_with('?') => format!("/{q}"),
                p => p.to_string(),
            },
        )),
        None => Err(HeadError::Malformed("the request target is not a path")),
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// A non-negative decimal of at most 19 digits (no sign, no spaces inside).
fn decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Why a chunked body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunked body: {0}")]
    Malformed(&'static str),
    #[error("the body is larger than the limit")]
    TooLarge,
}

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// Decodes a chunked body (RFC 9112 §7.1) as its bytes arrive, keeping at most `limit` bytes.
#[derive(Debug)]
pub struct Chunked {
    state: ChunkState,
    limit: u64,
    body: BytesMut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk: this many bytes still to come.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one.
    Trailer,
    Done,
}

impl Chunked {
    pub fn new(limit: u64) -> Chunked {
        Chunked {
            state: ChunkState::Size,
            limit,
            body: BytesMut::new(),
        }
    }

    /// Consumes what it can of `input` (advancing it); returns the body once the last chunk and
    /// the trailer are read, `Ok(None)` while more is needed.
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, ChunkError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(input)? else {
                        return Ok(None);
                    };
                    let size = line[..]
                        .split(|b| *b == b';')
                        .next()
                        .map(trim)
                        .unwrap_or_default();
                    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit)
                    {
                        return Err(ChunkError::Malformed("bad chunk size"));
                    }
                    let n = std::str::from_utf8(size)
                        .ok()
                        .and_then(|s| u64::from_str_radix(s, 16).ok())
                        .ok_or(ChunkError::Malformed("bad chunk size"))?;
                    if (self.body.len() as u64).saturating_add(n) > self.limit {
                        return Err(ChunkError::TooLarge);
                    }
                    self.state = if n == 0 {
                        ChunkState::Trailer
                    } else {
                        ChunkState::Data(n)
                    };
                }
                ChunkState::Data(left) => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    self.body.extend_from_slice(&input[..take]);
                    input.advance(take);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    let Some(line) = take_line(input)? else {
                        return Ok(None);
                    };
                    if !line.is_empty() {
                        return Err(ChunkError::Malformed("chunk data longer than its size"));
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(line) = take_line(input)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Some(std::mem::take(&mut self.body))),
            }
        }
    }
}

/// One CRLF-terminated line from the front of `input` (without its CRLF), or `None` while it is
/// incomplete. A bare LF ends a line too (RFC 9112 §2.2 allows a recipient to accept it).
fn take_line(input: &mut BytesMut) -> Result<Option<BytesMut>, ChunkError> {
    match input.iter().position(|b| *b == b'\n') {
        Some(i) if i > MAX_CHUNK_LINE => Err(ChunkError::Malformed("chunk line too long")),
        Some(i) => {
            let mut line = input.split_to(i + 1);
            line.truncate(i);
            if line.last() == Some(&b'\r') {
                line.truncate(i - 1);
            }
            Ok(Some(line))
        }
        None if input.len() > MAX_CHUNK_LINE => Err(ChunkError::Malformed("chunk line too long")),
        None => Ok(None),
    }
}

/// The reason phrase sent with a status (phones log it; nothing depends on it).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Writes a response head: status line, `Date`, the given headers, `Content-Length` (on every
/// response with content: the door never sends a body of unknown length) and the connection's
/// fate when it is not HTTP/1.1's default.
pub fn write_head<'a>(
    out: &mut Vec<u8>,
    status: u16,
    date: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    content_length: Option<u64>,
    keep_alive: KeepAlive,
) {
    // Byte pushes, not `write!`: every reply of a storm comes here.
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(number.format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(date.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        // Values come from the core (entity tags, types, challenges): never a line break.
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            continue;
        }
        for part in [name, ": ", value, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    if let Some(n) = content_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(number.format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match keep_alive {
        KeepAlive::Close => out.extend_from_slice(b"connection: close\r\n"),
        KeepAlive::Http10 => out.extend_from_slice(b"connection: keep-alive\r\n"),
        KeepAlive::Http11 => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// What the response says about the connection after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// HTTP/1.1, kept open (the default, nothing to say).
    Http11,
    /// HTTP/1.0 that asked to keep the connection: say it is kept.
    Http10,
    Close,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn a_phone_get_is_read() {
        let raw = "GET /0004f2000001.cfg HTTP/1.1\r\nHost: x\r\nUser-Agent: FileTransport PolycomVVX-VVX_411-UA/6.4.3.5018 Type/Application\r\nAuthorization: Basic YTpi\r\nRange: bytes=0-9\r\nIf-None-Match: \"abc\"\r\n\r\nGET /next";
        let (h, n) = parse_head(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(&raw[n..], "GET /next");
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(), "/0004f2000001.cfg");
        assert!(h.user_agent.unwrap().starts_with("FileTransport"));
        assert_eq!(h.authorization, Authorization::One(b"Basic YTpi".to_vec()));
        assert_eq!(h.range.as_deref(), Some("bytes=0-9"));
        assert_eq!(h.if_none_match.as_deref(), Some("\"abc\""));
        assert_eq!(h.framing, Framing::Empty);
        assert!(!h.close && !h.http10);
    }

    #[test]
    fn incomplete_heads_wait_and_huge_ones_are_refused() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let many: String = (0..100).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(
            parse_head(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn connection_rules_follow_the_version() {
        assert!(head("GET / HTTP/1.0\r\n\r\n").close);
        assert!(!head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").close);
        assert!(head("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").close);
        assert_eq!(
            parse_head(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Version)
        );
    }

    #[test]
    fn body_framing_is_strict() {
        assert_eq!(
            head("PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\n").framing,
            Framing::Length(5)
        );
        assert_eq!(
            head("PUT /a HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").framing,
            Framing::Length(5)
        );
        assert_eq!(
            head("PUT /a HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        for bad in [
            "PUT /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "PUT /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "PUT /a HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "PUT /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "PUT /a HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET * HTTP/1.1\r\n\r\n",
            "GET example.com:80 HTTP/1.1\r\n\r\n",
            "PUT /a HTTP/1.1\r\nExpect: 200-ok\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(bad.as_bytes()).map(|_| ()).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
        for unsupported in [
            "PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                parse_head(unsupported.as_bytes()),
                Err(HeadError::UnsupportedCoding),
                "{unsupported}"
            );
        }
    }

    #[test]
    fn absolute_targets_become_paths() {
        assert_eq!(
            head("GET http://prov.example.com:8080/a/b.cfg?x=1 HTTP/1.1\r\n\r\n").target,
            "/a/b.cfg?x=1"
        );
        assert_eq!(head("GET HTTP://h HTTP/1.1\r\n\r\n").target, "/");
        assert_eq!(head("GET http://h?q HTTP/1.1\r\n\r\n").target, "/?q");
        assert_eq!(head("GET /a?b HTTP/1.1\r\n\r\n").path(), "/a");
    }

    fn decode(raw: &[u8], limit: u64) -> Result<Option<Vec<u8>>, ChunkError> {
        let mut c = Chunked::new(limit);
        let mut input = BytesMut::from(raw);
        c.feed(&mut input).map(|b| b.map(|b| b.to_vec()))
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            decode(
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
                100
            ),
            Ok(Some(b"hello world".to_vec()))
        );
        assert_eq!(decode(b"5\r\nhel", 100), Ok(None));
        assert_eq!(
            decode(b"zz\r\nhello\r\n0\r\n\r\n", 100),
            Err(ChunkError::Malformed("bad chunk size"))
        );
        assert_eq!(decode(b"65\r\n", 100), Err(ChunkError::TooLarge));
        assert_eq!(
            decode(b"2\r\nabc\r\n0\r\n\r\n", 100),
            Err(ChunkError::Malformed("chunk data longer than its size"))
        );
    }

    proptest! {
        /// The head is the text a formatter would write: status line, date, the headers
        /// without line breaks in their values, the length, the connection's fate.
        #[test]
        fn a_head_is_written_as_formatted(
            status in prop::sample::select(vec![200u16, 204, 206, 304, 401, 404, 503, 599]),
            headers in proptest::collection::vec(("[a-z-]{1,12}", "[ -~\r\n]{0,30}"), 0..5),
            length in proptest::option::of(any::<u64>()),
            keep in prop::sample::select(vec![KeepAlive::Http11, KeepAlive::Http10, KeepAlive::Close]),
        ) {
            let date = "Tue, 01 Dec 2026 11:00:00 GMT";
            let mut out = Vec::new();
            write_head(&mut out, status, date, headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), length, keep);
            let mut want = format!("HTTP/1.1 {status} {}\r\ndate: {date}\r\n", reason(status));
            for (n, v) in &headers {
                if !v.contains(['\r', '\n']) {
                    want += &format!("{n}: {v}\r\n");
                }
            }
            if let Some(n) = length {
                want += &format!("content-length: {n}\r\n");
            }
            want += match keep {
                KeepAlive::Close => "connection: close\r\n",
                KeepAlive::Http10 => "connection: keep-alive\r\n",
                KeepAlive::Http11 => "",
            };
            want += "\r\n";
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }

        /// Any bytes: no panic, and a complete head never claims more than it was given.
        #[test]
        fn any_bytes_are_read_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(Some((_, n))) = parse_head(&raw) {
                prop_assert!(n <= raw.len());
            }
        }

        /// A body split into random chunks and fed in random pieces decodes to itself.
        #[test]
        fn chunked_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(1usize..300, 1..20),
            piece in 1usize..64,
        ) {
            let mut wire = Vec::new();
            let mut rest = &body[..];
            for c in cuts.iter().cycle() {
                if rest.is_empty() { break; }
                let n = (*c).min(rest.len());
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let mut c = Chunked::new(body.len() as u64);
            let mut input = BytesMut::new();
            let mut out = None;
            for p in wire.chunks(piece) {
                prop_assert!(out.is_none());
                input.extend_from_slice(p);
                out = c.feed(&mut input).unwrap();
            }
            prop_assert_eq!(out.map(|b| b.to_vec()), Some(body.clone()));
            if !body.is_empty() {
                let mut small = Chunked::new(body.len() as u64 - 1);
                let mut all = BytesMut::from(&wire[..]);
                prop_assert_eq!(small.feed(&mut all), Err(ChunkError::TooLarge));
            }
        }

        /// Any bytes as a chunked body: no panic, and never more than the limit kept.
        #[test]
        fn any_chunked_bytes_stay_in_bounds(raw in proptest::collection::vec(any::<u8>(), 0..600), limit in 0u64..300) {
            let mut c = Chunked::new(limit);
            let mut input = BytesMut::from(&raw[..]);
            if let Ok(Some(body)) = c.feed(&mut input) {
                prop_assert!(body.len() as u64 <= limit);
            }
        }
    }
}
