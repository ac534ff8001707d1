//! SIP messages (RFC 3261 §7): a start line, headers, a body. Parsing accepts what phones send
//! (CRLF or bare LF, compact header names, any header case, folded lines) and refuses the rest
//! with a [`ParseError`]: past [`MAX_MESSAGE`] bytes or [`MAX_HEADERS`] headers, a start line
//! that is neither a request nor a response, a header without a colon, a body shorter than its
//! `Content-Length`.

use std::fmt::Write as _;

/// Largest message accepted (a UDP datagram cannot be larger).
pub const MAX_MESSAGE: usize = 65_535;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 128;

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("not UTF-8 in the start line or headers")]
    NotText,
    #[error("no blank line after the headers")]
    Unterminated,
    #[error("start line is neither a SIP request nor a response: {0:?}")]
    StartLine(String),
    #[error("header line without a colon: {0:?}")]
    Header(String),
    #[error("Content-Length {0:?} is not a number")]
    ContentLength(String),
    #[error("body has {got} bytes, Content-Length says {want}")]
    ShortBody { got: usize, want: usize },
}

/// A request's method and URI, or a response's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, uri: String },
    Response { code: u16, reason: String },
}

/// One SIP message. Header names keep the case they were written in; lookups ignore case and
/// know the compact forms (`v` Via, `i` Call-ID, `o` Event, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Compact form ↔ full name (RFC 3261 §7.3.3, RFC 6665 for `o`).
const COMPACT: [(&str, &str); 10] = [
    ("v", "via"),
    ("f", "from"),
    ("t", "to"),
    ("i", "call-id"),
    ("m", "contact"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("o", "event"),
    ("k", "supported"),
    ("s", "subject"),
];

fn same_header(a: &str, b: &str) -> bool {
    let full = |n: &str| {
        COMPACT
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(n))
            .map_or_else(|| n.to_ascii_lowercase(), |(_, f)| f.to_string())
    };
    a.eq_ignore_ascii_case(b) || full(a) == full(b)
}

impl Message {
    /// A request with no headers yet.
    pub fn request(method: &str, uri: &str) -> Message {
        Message {
            start: StartLine::Request {
                method: method.to_string(),
                uri: uri.to_string(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A response to `request`: its Via, From, To (with `to_tag` added when it has none),
    /// Call-ID and CSeq copied, as RFC 3261 §8.2.6.2 asks.
    pub fn response_to(request: &Message, code: u16, reason: &str, to_tag: &str) -> Message {
        let mut headers = Vec::new();
        for (name, value) in &request.headers {
            if same_header(name, "via")
                || same_header(name, "from")
                || same_header(name, "call-id")
                || same_header(name, "cseq")
            {
                headers.push((name.clone(), value.clone()));
            } else if same_header(name, "to") {
                let value = if value.contains(";tag=") {
                    value.clone()
                } else {
                    format!("{value};tag={to_tag}")
                };
                headers.push((name.clone(), value));
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_string(),
            },
            headers,
            body: Vec::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Message {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// The request's method, or for a response the method its CSeq names.
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => self.cseq().map(|(_, m)| m),
        }
    }

    /// The response's status code.
    pub fn code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// `CSeq: <number> <method>`.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self
            .header("cseq")?
            .trim()
            .split_once(char::is_whitespace)?;
        Some((n.parse().ok()?, m.trim()))
    }

    /// The `branch` parameter of the topmost Via.
    pub fn top_branch(&self) -> Option<&str> {
        let via = self.header("via")?;
        let first = via.split(',').next()?;
        first.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("branch").then_some(v.trim())
        })
    }

    /// The message as bytes, with a `Content-Length` that matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        match &self.start {
            StartLine::Request { method, uri } => {
                let _ = write!(s, "{method} {uri} SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                let _ = write!(s, "SIP/2.0 {code} {reason}\r\n");
            }
        }
        for (n, v) in &self.headers {
            if !same_header(n, "content-length") {
                let _ = write!(s, "{n}: {v}\r\n");
            }
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses one whole message (a UDP datagram, or a frame [`frame_len`] cut from a stream).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        if bytes.len() > MAX_MESSAGE {
            return Err(ParseError::TooLarge(bytes.len()));
        }
        let (head_len, body_start) = head_end(bytes).ok_or(ParseError::Unterminated)?;
        let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| ParseError::NotText)?;
        let head = head.trim_start_matches(['\r', '\n']);
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().unwrap_or_default();
        let start = parse_start(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // A folded line continues the previous header (RFC 3261 §7.3.1).
                match headers.last_mut() {
                    Some((_, v)) => {
                        v.push(' ');
                        v.push_str(line.trim());
                        continue;
                    }
                    None => return Err(ParseError::Header(line.to_string())),
                }
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| ParseError::Header(truncate(line)))?;
            let name = name.trim();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::Header(truncate(line)));
            }
            if headers.len() == MAX_HEADERS {
                return Err(ParseError::TooManyHeaders);
            }
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let rest = &bytes[body_start..];
        let body = match headers
            .iter()
            .find(|(n, _)| same_header(n, "content-length"))
        {
            Some((_, v)) => {
                let want: usize = v
                    .parse()
                    .map_err(|_| ParseError::ContentLength(truncate(v)))?;
                if rest.len() < want {
                    return Err(ParseError::ShortBody {
                        got: rest.len(),
                        want,
                    });
                }
                rest[..want].to_vec()
            }
            None => rest.to_vec(),
        };
        Ok(Message {
            start,
            headers,
            body,
        })
    }
}

/// How many bytes of `buf` (from a TCP stream) make the first whole message, once they are
/// there: `Ok(None)` while more are needed. Keep-alive blank lines before a message count in it.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some((head_len, body_start)) = head_end(buf) else {
        return if buf.len() > MAX_MESSAGE {
            Err(ParseError::TooLarge(buf.len()))
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::NotText)?;
    let head = head.trim_start_matches(['\r', '\n']);
    let mut want = 0usize;
    for line in head.split('\n').skip(1) {
        if let Some((n, v)) = line.split_once(':')
            && same_header(n.trim(), "content-length")
        {
            want = v
                .trim()
                .parse()
                .map_err(|_| ParseError::ContentLength(truncate(v)))?;
        }
    }
    let total = body_start + want;
    if total > MAX_MESSAGE {
        return Err(ParseError::TooLarge(total));
    }
    Ok((buf.len() >= total).then_some(total))
}

/// The end of the headers: (length of the head, where the body starts), after skipping the
/// blank lines a keep-alive may leave before a message.
fn head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(bytes.len());
    (start..bytes.len()).find_map(|i| {
        let rest = &bytes[i..];
        [&b"\r\n\r\n"[..], b"\n\n", b"\n\r\n"]
            .into_iter()
            .find(|end| rest.starts_with(end))
            .map(|end| (i, i + end.len()))
    })
}

fn parse_start(line: &str) -> Result<StartLine, ParseError> {
    let bad = || ParseError::StartLine(truncate(line));
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| bad())?;
        if !(100..=699).contains(&code) {
            return Err(bad());
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.trim().to_string(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) || uri.is_empty() {
        return Err(bad());
    }
    Ok(StartLine::Request {
        method: method.to_string(),
        uri: uri.to_string(),
    })
}

/// RFC 3261 `token` characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// At most 80 characters of `s`, for error messages and logs.
fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFY: &str = "NOTIFY sip:1001@10.0.0.5:5060 SIP/2.0\r\n\
        v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport\r\n\
        From: <sip:polyprov@10.0.0.1>;tag=1\r\n\
        To: <sip:1001@10.0.0.5>\r\n\
        i: x@10.0.0.1\r\n\
        CSeq: 7 NOTIFY\r\n\
        Event: check-sync\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_a_notify_with_compact_headers() {
        let m = Message::parse(NOTIFY.as_bytes()).unwrap();
        assert_eq!(m.method(), Some("NOTIFY"));
        assert_eq!(m.header("Call-ID"), Some("x@10.0.0.1"));
        assert_eq!(m.header("o"), Some("check-sync"));
        assert_eq!(m.top_branch(), Some("z9hG4bKabc"));
        assert_eq!(m.cseq(), Some((7, "NOTIFY")));
        let back = Message::parse(&m.to_bytes()).unwrap();
        assert_eq!(back.headers.len(), m.headers.len());
    }

    #[test]
    fn a_response_copies_the_dialog_headers_and_adds_a_to_tag() {
        let req = Message::parse(NOTIFY.as_bytes()).unwrap();
        let resp = Message::parse(&Message::response_to(&req, 200, "OK", "t9").to_bytes()).unwrap();
        assert_eq!(resp.code(), Some(200));
        assert_eq!(resp.method(), Some("NOTIFY"));
        assert_eq!(resp.top_branch(), Some("z9hG4bKabc"));
        assert_eq!(resp.header("to"), Some("<sip:1001@10.0.0.5>;tag=t9"));
    }

    #[test]
    fn bare_line_feeds_and_folded_lines_are_read() {
        let m = Message::parse(
            b"SIP/2.0 401 Unauthorized\nVia: SIP/2.0/UDP h;branch=b\nWWW-Authenticate: Digest realm=\"r\",\n nonce=\"n\"\nContent-Length: 0\n\n",
        )
        .unwrap();
        assert_eq!(m.code(), Some(401));
        assert_eq!(
            m.header("www-authenticate"),
            Some("Digest realm=\"r\", nonce=\"n\"")
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "unterminated"),
            (b"HELLO\r\n\r\n", "start"),
            (b"SIP/2.0 99 Low\r\n\r\n", "start"),
            (b"NOTIFY sip:x SIP/3.0\r\n\r\n", "start"),
            (b"NOTIFY sip:x SIP/2.0\r\nNoColon\r\n\r\n", "header"),
            (
                b"NOTIFY sip:x SIP/2.0\r\nContent-Length: x\r\n\r\n",
                "length",
            ),
            (
                b"NOTIFY sip:x SIP/2.0\r\nContent-Length: 9\r\n\r\nab",
                "short",
            ),
            (b"NOTIFY sip:x SIP/2.0\r\nBad Name: 1\r\n\r\n", "header"),
        ];
        for (bytes, what) in cases {
            assert!(Message::parse(bytes).is_err(), "{what}: {bytes:?}");
        }
        let many = format!(
            "NOTIFY sip:x SIP/2.0\r\n{}\r\n",
            "X: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert_eq!(
            Message::parse(many.as_bytes()),
            Err(ParseError::TooManyHeaders)
        );
    }

    #[test]
    fn frames_are_cut_from_a_stream() {
        let one = Message::request("NOTIFY", "sip:a")
            .with("CSeq", "1 NOTIFY")
            .to_bytes();
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&one[..10]);
        let n = frame_len(&stream).unwrap().unwrap();
        assert_eq!(n, 4 + one.len());
        assert_eq!(
            Message::parse(&stream[..n]).unwrap().cseq(),
            Some((1, "NOTIFY"))
        );
        assert_eq!(frame_len(&stream[n..]).unwrap(), None);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = Message::parse(&bytes);
            let _ = frame_len(&bytes);
        }

        #[test]
        fn what_is_written_parses_back(user in "[a-z0-9]{1,12}", event in "[a-z-]{1,20}", body in ".{0,40}") {
            let mut m = Message::request("NOTIFY", &format!("sip:{user}@127.0.0.1"))
                .with("Event", event.clone())
                .with("CSeq", "3 NOTIFY");
            m.body = body.clone().into_bytes();
            let back = Message::parse(&m.to_bytes()).unwrap();
            proptest::prop_assert_eq!(back.header("event"), Some(event.as_str()));
            proptest::prop_assert_eq!(back.body, body.into_bytes());
        }
    }
}
