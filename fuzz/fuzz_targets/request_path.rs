//! Any path a phone (or an attacker) sends: never a panic, and an accepted path never leaves
//! the root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyprov_model::path::strip_part_number;
use polyprov_model::RequestPath;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(p) = RequestPath::parse(raw) {
        for seg in p.segments() {
            assert!(!seg.is_empty() && seg != "." && seg != "..");
            assert!(!seg.contains('/') && !seg.contains('\\') && !seg.contains(':'));
            assert!(!seg.chars().any(char::is_control));
        }
        let _ = p.kind();
        let _ = strip_part_number(p.file_name());
    }
});
