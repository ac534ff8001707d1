//! Any configuration or master file: never a panic; what parses can be edited and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polyprov_model::config_file::ConfigFile;
use polyprov_model::master::Master;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(mut f) = ConfigFile::parse("fuzz.cfg", text) {
        assert_eq!(f.text(), text);
        if let Some(p) = f.params().first().cloned() {
            f.set(&p.name, "x&<\"").expect("an edited file parses again");
            assert_eq!(f.get(&p.name).map(|p| p.value.as_str()), Some("x&<\""));
        }
        let _ = f.set("fuzz.added", "1");
    }
    if let Ok(m) = Master::parse("m.cfg", text) {
        let _ = m.resolve(Some("VVX500"), "0004f2aa814c".parse().expect("valid MAC"));
    }
});
