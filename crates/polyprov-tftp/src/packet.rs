//! TFTP packets (RFC 1350) with options (RFC 2347): parse untrusted bytes, write them back.
//!
//! ```
//! use polyprov_tftp::packet::Packet;
//!
//! let rrq = Packet::parse(b"\0\x01sip.ld\0octet\0blksize\x001428\0").unwrap();
//! assert!(matches!(rrq, Packet::Rrq { ref filename, .. } if filename == "sip.ld"));
//! ```

use bytes::Bytes;

/// Longest filename accepted (bytes).
pub const MAX_FILENAME: usize = 512;
/// Most options accepted in one request.
pub const MAX_OPTIONS: usize = 16;

/// Options (RFC 2347) as name/value pairs in the order sent; names in lower case.
pub type Options = Vec<(String, String)>;

/// TFTP error codes (RFC 1350 §5, RFC 2347 code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

impl ErrorCode {
    fn from_u16(n: u16) -> ErrorCode {
        match n {
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionRefused,
            _ => ErrorCode::NotDefined,
        }
    }
}

/// A TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request: filename, mode (`octet`, `netascii`), options in the order sent.
    Rrq {
        filename: String,
        mode: String,
        options: Vec<(String, String)>,
    },
    /// Write request.
    Wrq {
        filename: String,
        mode: String,
        options: Vec<(String, String)>,
    },
    Data {
        block: u16,
        data: Bytes,
    },
    Ack {
        block: u16,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Option acknowledgement (RFC 2347).
    Oack {
        options: Vec<(String, String)>,
    },
}

/// Why bytes are not a TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet shorter than 4 bytes")]
    TooShort,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("string field is not NUL-terminated")]
    Unterminated,
    #[error("string field is not UTF-8")]
    NotUtf8,
    #[error("filename is empty or longer than {MAX_FILENAME} bytes")]
    BadFilename,
    #[error("unknown transfer mode {0:?}")]
    BadMode(String),
    #[error("option {0:?} has no value")]
    OptionWithoutValue(String),
    #[error("more than {MAX_OPTIONS} options")]
    TooManyOptions,
    #[error("data block larger than 65464 bytes")]
    DataTooLarge,
}

fn strings(mut rest: &[u8]) -> Result<Vec<String>, PacketError> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or(PacketError::Unterminated)?;
        out.push(
            std::str::from_utf8(&rest[..end])
                .map_err(|_| PacketError::NotUtf8)?
                .to_string(),
        );
        rest = &rest[end + 1..];
        if out.len() > 2 + 2 * MAX_OPTIONS {
            return Err(PacketError::TooManyOptions);
        }
    }
    Ok(out)
}

fn request(body: &[u8]) -> Result<(String, String, Options), PacketError> {
    let mut fields = strings(body)?.into_iter();
    let filename = fields.next().ok_or(PacketError::Unterminated)?;
    if filename.is_empty() || filename.len() > MAX_FILENAME {
        return Err(PacketError::BadFilename);
    }
    let mode = fields
        .next()
        .ok_or(PacketError::Unterminated)?
        .to_ascii_lowercase();
    if !["octet", "netascii", "mail"].contains(&mode.as_str()) {
        return Err(PacketError::BadMode(mode));
    }
    let mut options = Vec::new();
    while let Some(name) = fields.next() {
        let value = fields
            .next()
            .ok_or_else(|| PacketError::OptionWithoutValue(name.clone()))?;
        options.push((name.to_ascii_lowercase(), value));
    }
    if options.len() > MAX_OPTIONS {
        return Err(PacketError::TooManyOptions);
    }
    Ok((filename, mode, options))
}

impl Packet {
    /// Parses one datagram. Never panics; anything malformed is an error.
    pub fn parse(buf: &[u8]) -> Result<Packet, PacketError> {
        if buf.len() < 2 {
            return Err(PacketError::TooShort);
        }
        let opcode = u16::from_be_bytes([buf[0], buf[1]]);
        let body = &buf[2..];
        match opcode {
            1 | 2 => {
                let (filename, mode, options) = request(body)?;
                Ok(if opcode == 1 {
                    Packet::Rrq {
                        filename,
                        mode,
                        options,
                    }
                } else {
                    Packet::Wrq {
                        filename,
                        mode,
                        options,
                    }
                })
            }
            3 => {
                if body.len() < 2 {
                    return Err(PacketError::TooShort);
                }
                if body.len() - 2 > 65464 {
                    return Err(PacketError::DataTooLarge);
                }
                Ok(Packet::Data {
                    block: u16::from_be_bytes([body[0], body[1]]),
                    data: Bytes::copy_from_slice(&body[2..]),
                })
            }
            4 => {
                if body.len() < 2 {
                    return Err(PacketError::TooShort);
                }
                Ok(Packet::Ack {
                    block: u16::from_be_bytes([body[0], body[1]]),
                })
            }
            5 => {
                if body.len() < 2 {
                    return Err(PacketError::TooShort);
                }
                let code = ErrorCode::from_u16(u16::from_be_bytes([body[0], body[1]]));
                // Be lenient with the message: peers send it unterminated or in Latin-1.
                let msg = &body[2..];
                let msg = msg.split(|b| *b == 0).next().unwrap_or_default();
                Ok(Packet::Error {
                    code,
                    message: String::from_utf8_lossy(msg).into_owned(),
                })
            }
            6 => {
                let fields = strings(body)?;
                if fields.len() % 2 != 0 {
                    return Err(PacketError::OptionWithoutValue(
                        fields.last().cloned().unwrap_or_default(),
                    ));
                }
                let options = fields
                    .chunks(2)
                    .map(|c| (c[0].to_ascii_lowercase(), c[1].clone()))
                    .collect::<Vec<_>>();
                if options.len() > MAX_OPTIONS {
                    return Err(PacketError::TooManyOptions);
                }
                Ok(Packet::Oack { options })
            }
            other => Err(PacketError::Opcode(other)),
        }
    }

    /// Writes the packet.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        };
        match self {
            Packet::Rrq {
                filename,
                mode,
                options,
            }
            | Packet::Wrq {
                filename,
                mode,
                options,
            } => {
                out.extend_from_slice(
                    &(if matches!(self, Packet::Rrq { .. }) {
                        1u16
                    } else {
                        2
                    })
                    .to_be_bytes(),
                );
                put_str(out, filename);
                put_str(out, mode);
                for (k, v) in options {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
            Packet::Data { block, data } => {
                out.extend_from_slice(&3u16.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(data);
            }
            Packet::Ack { block } => {
                out.extend_from_slice(&4u16.to_be_bytes());
                out.extend_from_slice(&block.to_be_bytes());
            }
            Packet::Error { code, message } => {
                out.extend_from_slice(&5u16.to_be_bytes());
                out.extend_from_slice(&(*code as u16).to_be_bytes());
                put_str(out, message);
            }
            Packet::Oack { options } => {
                out.extend_from_slice(&6u16.to_be_bytes());
                for (k, v) in options {
                    put_str(out, k);
                    put_str(out, v);
                }
            }
        }
    }

    /// The packet as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_requests_with_options() {
        let p =
            Packet::parse(b"\0\x01sip.ld\0OCTET\0BLKSIZE\x001428\0windowsize\x0016\0tsize\x000\0")
                .unwrap();
        assert_eq!(
            p,
            Packet::Rrq {
                filename: "sip.ld".into(),
                mode: "octet".into(),
                options: vec![
                    ("blksize".into(), "1428".into()),
                    ("windowsize".into(), "16".into()),
                    ("tsize".into(), "0".into())
                ],
            }
        );
    }

    #[test]
    fn refuses_malformed_packets() {
        for bad in [
            &b""[..],
            b"\0",
            b"\0\x09xx",
            b"\0\x01file",
            b"\0\x01file\0",
            b"\0\x01\0octet\0",
            b"\0\x01f\0bogus\0",
            b"\0\x01f\0octet\0blksize\0",
            b"\0\x03\0",
            b"\0\x04\x01",
            b"\0\x01\xff\0octet\0",
        ] {
            assert!(Packet::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Packet::parse(b"\0\x05\0\x01gone"),
            Ok(Packet::Error {
                code: ErrorCode::FileNotFound,
                message: "gone".into()
            })
        );
    }

    fn any_packet() -> impl Strategy<Value = Packet> {
        let name = "[a-zA-Z0-9._/-]{1,40}";
        let opts = proptest::collection::vec(("[a-z]{1,10}", "[0-9]{1,6}"), 0..4);
        prop_oneof![
            (name, opts.clone()).prop_map(|(f, o)| Packet::Rrq {
                filename: f,
                mode: "octet".into(),
                options: o
            }),
            (name, opts.clone()).prop_map(|(f, o)| Packet::Wrq {
                filename: f,
                mode: "octet".into(),
                options: o
            }),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..600)).prop_map(|(b, d)| {
                Packet::Data {
                    block: b,
                    data: Bytes::from(d),
                }
            }),
            any::<u16>().prop_map(|b| Packet::Ack { block: b }),
            "[a-z ]{0,30}".prop_map(|m| Packet::Error {
                code: ErrorCode::AccessViolation,
                message: m
            }),
            opts.prop_map(|o| Packet::Oack { options: o }),
        ]
    }

    proptest! {
        #[test]
        fn packets_round_trip(p in any_packet()) {
            prop_assert_eq!(Packet::parse(&p.to_bytes()), Ok(p));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = Packet::parse(&b);
        }
    }
}
