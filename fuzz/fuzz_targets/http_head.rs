//! Any bytes a client sends the phones' HTTP door: the request head is read or refused without a
//! panic, a complete head never claims more bytes than it was given, and whatever follows it,
//! read as a chunked body, never yields more than the limit.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use polyprov_server::http_wire::{parse_head, Chunked, Framing, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Some((head, used))) => {
            assert!(used <= data.len() && used <= MAX_HEAD);
            assert!(head.target.starts_with('/'));
            if head.framing == Framing::Chunked {
                let mut decoder = Chunked::new(1024);
                let mut rest = BytesMut::from(&data[used..]);
                if let Ok(Some(body)) = decoder.feed(&mut rest) {
                    assert!(body.len() <= 1024);
                }
            }
        }
        Ok(None) => assert!(data.len() <= MAX_HEAD),
        Err(e) => assert!((400..=505).contains(&e.status())),
    }
});
