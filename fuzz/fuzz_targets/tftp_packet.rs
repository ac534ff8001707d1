//! Any datagram: never a panic; what parses writes back to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyprov_tftp::Packet;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        assert_eq!(Packet::parse(&p.to_bytes()).as_ref(), Ok(&p));
    }
});
