//! Any uploaded XML body and any staging master: never a panic; a rewritten master differs from
//! the original only by the inserted file name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyprov_model::config::check_well_formed;
use polyprov_model::master::prepend_config_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = check_well_formed(text);
    if let Ok(out) = prepend_config_file(text, "d.cfg") {
        assert!(out.len() >= text.len());
    }
});
