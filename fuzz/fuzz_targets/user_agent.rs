//! Any User-Agent header: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyprov_model::UserAgent;

fuzz_target!(|data: &[u8]| {
    let ua = String::from_utf8_lossy(data);
    if let Ok(Some(u)) = UserAgent::parse(&ua) {
        assert!(!u.model.is_empty() && !u.version.is_empty());
    }
});
