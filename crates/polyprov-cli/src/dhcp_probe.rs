//! `--dhcp-probe`: ask the DHCP servers on a network what they hand a phone (options 66, 67,
//! 150, 160, 43, …), the way a booting phone would: a DHCPDISCOVER broadcast on one interface.
//! Nothing is leased (no DHCPREQUEST follows). Replies are untrusted: decoding is guarded, a
//! malformed reply is reported and skipped, never a crash.

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// One server's offer.
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    /// Who answered.
    pub server: String,
    /// The address offered.
    pub address: String,
    /// Provisioning-related options, by number, as text (hex for binary values).
    pub options: BTreeMap<u8, String>,
}

/// What the probe saw.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub interface: String,
    pub offers: Vec<Offer>,
    /// Replies that could not be decoded.
    pub malformed: usize,
}

const PROVISIONING_OPTIONS: [u8; 7] = [43, 60, 66, 67, 150, 160, 161];

fn interface_mac(iface: &str) -> Result<[u8; 6], String> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| format!("interface {iface}: {e}"))?;
    let mac: polyprov_model::Mac = text
        .trim()
        .parse()
        .map_err(|e| format!("interface {iface}: {e}"))?;
    Ok(mac.bytes())
}

fn text_of(data: &[u8]) -> String {
    let trimmed = data.strip_suffix(&[0]).unwrap_or(data);
    match std::str::from_utf8(trimmed) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.to_string(),
        _ => data.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Decodes a reply without trusting it: dhcproto asserts on some malformed input, so decoding
/// runs behind `catch_unwind`.
fn decode(buf: &[u8]) -> Option<Message> {
    let owned = buf.to_vec();
    std::panic::catch_unwind(move || Message::decode(&mut Decoder::new(&owned)).ok())
        .ok()
        .flatten()
}

fn options_of(m: &Message) -> BTreeMap<u8, String> {
    let mut out = BTreeMap::new();
    for (code, opt) in m.opts().iter() {
        let n: u8 = (*code).into();
        if !PROVISIONING_OPTIONS.contains(&n) {
            continue;
        }
        let value = match opt {
            DhcpOption::TFTPServerName(v)
            | DhcpOption::BootfileName(v)
            | DhcpOption::ClassIdentifier(v)
            | DhcpOption::VendorExtensions(v) => text_of(v),
            DhcpOption::TFTPServerAddress(a) => a.to_string(),
            DhcpOption::Unknown(u) => text_of(u.data()),
            other => format!("{other:?}"),
        };
        out.insert(n, value);
    }
    out
}

/// Broadcasts a DHCPDISCOVER on `iface` and collects offers for `wait`. Needs root (port 68,
/// binding to a device).
/// The vendor class a Poly phone sends (option 60): Polycom's enterprise number, the length of
/// the sub-options, then sub-options (1 company, 2 part, 3 part number, 4 application, 5
/// BootROM) ended by 0xff — the layout and the values of the vendor guide's sample decode (a
/// SoundPoint IP 601), so a DHCP server that matches phones by their first bytes answers the
/// probe as it answers a phone. (The guide's sample gives lengths one short of the sub-options
/// it lists; the lengths here count what is sent, the end code included.)
pub fn poly_vendor_class() -> Vec<u8> {
    let subs: [(u8, &str); 5] = [
        (1, "Polycom"),
        (2, "SoundPointIP-SPIP_601"),
        (3, "2345-11605-001,2"),
        (4, "SIP/Tip.XXXX/08-Jun-07 10:44"),
        (5, "BR/3.1.0.XXXX/28-Apr-05 13:30"),
    ];
    let mut data = Vec::new();
    for (code, text) in subs {
        data.push(code);
        data.push(text.len() as u8);
        data.extend_from_slice(text.as_bytes());
    }
    data.push(0xff);
    let mut out = crate::dhcp_snippet::POLY_VENDOR_PREFIX.to_vec();
    out.push(data.len() as u8);
    out.extend(data);
    out
}

/// Sends one DHCPDISCOVER on `iface` (with a Poly phone's vendor class when `as_phone`) and
/// collects the offers for `wait`.
pub fn probe(iface: &str, wait: Duration, as_phone: bool) -> Result<ProbeResult, String> {
    let mac = interface_mac(iface)?;
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| e.to_string())?;
    socket.set_reuse_address(true).map_err(|e| e.to_string())?;
    socket.set_broadcast(true).map_err(|e| e.to_string())?;
    socket
        .bind_device(Some(iface.as_bytes()))
        .map_err(|e| format!("binding to {iface} (root needed): {e}"))?;
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
        .map_err(|e| format!("binding port 68 (root needed; is a DHCP client running?): {e}"))?;
    let socket: UdpSocket = socket.into();

    let xid: u32 = rand_xid();
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac,
    );
    msg.set_opcode(Opcode::BootRequest)
        .set_flags(Flags::default().set_broadcast());
    msg.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    if as_phone {
        msg.opts_mut()
            .insert(DhcpOption::ClassIdentifier(poly_vendor_class()));
    }
    msg.opts_mut().insert(DhcpOption::ParameterRequestList(
        [1u8, 3, 6, 15, 43, 60, 66, 67, 150, 160]
            .into_iter()
            .map(OptionCode::from)
            .collect(),
    ));
    let mut buf = Vec::new();
    msg.encode(&mut Encoder::new(&mut buf))
        .map_err(|e| e.to_string())?;
    socket
        .send_to(&buf, SocketAddrV4::new(Ipv4Addr::BROADCAST, 67))
        .map_err(|e| format!("sending DHCPDISCOVER on {iface}: {e}"))?;

    let mut result = ProbeResult {
        interface: iface.to_string(),
        offers: Vec::new(),
        malformed: 0,
    };
    let deadline = Instant::now() + wait;
    let mut rx = [0u8; 1500];
    while let Some(left) = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
    {
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let (n, from) = match socket.recv_from(&mut rx) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(e) => return Err(e.to_string()),
        };
        let Some(reply) = decode(&rx[..n]) else {
            result.malformed += 1;
            continue;
        };
        if reply.xid() != xid || reply.opcode() != Opcode::BootReply {
            continue;
        }
        result.offers.push(Offer {
            server: from.ip().to_string(),
            address: reply.yiaddr().to_string(),
            options: options_of(&reply),
        });
    }
    Ok(result)
}

fn rand_xid() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.subsec_nanos() ^ std::process::id().rotate_left(16)) | 1
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_vendor_class_has_the_vendor_guides_layout() {
        // "00 00 36 3d", the length of what follows, sub-options "01 07 Polycom" …, "ff".
        let v = super::poly_vendor_class();
        assert_eq!(&v[..4], &[0x00, 0x00, 0x36, 0x3d]);
        assert_eq!(v[4] as usize, v.len() - 5);
        let mut at = 5;
        let mut codes = Vec::new();
        while v[at] != 0xff {
            codes.push(v[at]);
            at += 2 + v[at + 1] as usize;
        }
        assert_eq!((codes, at + 1), (vec![1, 2, 3, 4, 5], v.len()));
        assert_eq!(
            &v[5..14],
            &[0x01, 0x07, b'P', b'o', b'l', b'y', b'c', b'o', b'm']
        );
        assert_eq!(v.last(), Some(&0xff));
    }

    use super::*;

    #[test]
    fn malformed_replies_are_rejected_not_fatal() {
        for junk in [&b""[..], &[0u8; 3], &[2u8; 300], &[0xffu8; 600]] {
            let _ = decode(junk);
        }
        // A valid offer round-trips.
        let mut m = Message::new_with_id(
            7,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(10, 0, 0, 5),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &[0, 4, 0xf2, 1, 2, 3],
        );
        m.set_opcode(Opcode::BootReply);
        m.opts_mut()
            .insert(DhcpOption::MessageType(MessageType::Offer));
        m.opts_mut()
            .insert(DhcpOption::TFTPServerName(b"10.0.0.1".to_vec()));
        m.opts_mut()
            .insert(DhcpOption::Unknown(dhcproto::v4::UnknownOption::new(
                OptionCode::from(160),
                b"http://p/".to_vec(),
            )));
        let mut buf = Vec::new();
        m.encode(&mut Encoder::new(&mut buf)).unwrap();
        let d = decode(&buf).unwrap();
        let o = options_of(&d);
        assert_eq!(
            (o[&66].as_str(), o[&160].as_str()),
            ("10.0.0.1", "http://p/")
        );
        // Every truncation of a valid packet is handled.
        for i in 0..buf.len() {
            let _ = decode(&buf[..i]);
        }
    }
}
