//! Any old server's folder given to `polyprov import`: never a panic. The input is split into
//! files: `name\0content\0name\0content…`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyprov_model::import::{Folder, plan};

fuzz_target!(|data: &[u8]| {
    let mut folder = Folder::default();
    let mut parts = data.split(|b| *b == 0);
    while let (Some(name), Some(content)) = (parts.next(), parts.next()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name.is_empty() || folder.texts.len() > 16 {
            continue;
        }
        folder.texts.insert(name, content.to_vec());
    }
    let p = plan(&folder);
    for ph in &p.phones {
        assert!(ph.mac.len() == 12);
    }
});
