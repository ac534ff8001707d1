//! Any file given to `polyprov restore`: never a panic, and nothing written outside the folder
//! it restores into — a damaged or hostile archive restores nothing at all.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("in.tgz");
    std::fs::write(&archive, data).unwrap();
    let target = dir.path().join("out").join("data");
    let r = polyprov_store::backup::restore(&archive, &target, None);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert!(left == ["in.tgz", "out"] || left == ["in.tgz"], "{left:?}");
    let out: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    match r {
        Ok(_) => assert!(target.is_dir()),
        Err(_) => assert!(out.is_empty(), "a refused archive left {out:?}"),
    }
});
