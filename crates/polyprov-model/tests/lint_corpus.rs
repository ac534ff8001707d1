//! The linter's findings on the real files in `tests/corpus`, one boot root per source
//! repository, against a reviewed snapshot. `UPDATE_SNAPSHOTS=1 cargo test` rewrites it; review
//! the diff before committing.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use polyprov_model::lint::{LintInput, lint};
use std::path::{Path, PathBuf};

fn walk(root: &Path, dir: &Path, input: &mut LintInput) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if p.is_dir() {
            walk(root, &p, input);
            continue;
        }
        input.existing.insert(name.clone());
        if name.ends_with(".cfg") {
            input
                .files
                .push((name, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn corpus_findings_match_the_reviewed_snapshot() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut roots: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e} (tests/corpus of the repository)", corpus.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    roots.sort();
    let mut report = String::new();
    for root in roots {
        let mut input = LintInput::default();
        walk(&root, &root, &mut input);
        let repo = root.file_name().unwrap().to_string_lossy();
        for f in lint(&input) {
            report.push_str(&format!("{repo}/{f}\n"));
        }
    }
    let snapshot =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/corpus-lint.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot, &report).unwrap();
    }
    let want = std::fs::read_to_string(&snapshot).unwrap_or_default();
    assert_eq!(
        report, want,
        "findings changed; review and rerun with UPDATE_SNAPSHOTS=1"
    );
}

/// Every corpus file is the published file: its sha256 is the one `SOURCES.md` lists, so an
/// edit or a line-ending conversion (git's autocrlf) fails here, not in a puzzling snapshot diff.
#[test]
fn corpus_files_match_their_recorded_sha256() {
    use sha2::{Digest, Sha256};
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let sources = std::fs::read_to_string(corpus.join("SOURCES.md")).unwrap();
    let mut checked = 0;
    for line in sources.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | repo | path | commit | size | sha256 | note |
        if cells.len() < 7 || cells[5].len() != 64 {
            continue;
        }
        let file = corpus.join(cells[1].replace('/', "__")).join(cells[2]);
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(bytes.len().to_string(), cells[4], "{}", file.display());
        assert_eq!(
            hex::encode(Sha256::digest(&bytes)),
            cells[5],
            "{}",
            file.display()
        );
        checked += 1;
    }
    assert_eq!(checked, 19);
}

/// The parameter dictionary (`src/known_params.txt`) is exactly the names in the vendor's
/// template files in the corpus, numbered segments as `x`. `UPDATE_SNAPSHOTS=1` regenerates it.
#[test]
fn the_parameter_dictionary_is_the_vendor_templates() {
    use polyprov_model::config_file::ConfigFile;
    use polyprov_model::dictionary::normalise;
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut files = Vec::new();
    for dir in ["openspork__pp/Config", "openspork__pp/configs"] {
        for e in std::fs::read_dir(corpus.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "cfg") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut names = std::collections::BTreeSet::new();
    let mut header = String::from(
        "# Parameter names from the vendor template files in tests/corpus (see SOURCES.md):\n",
    );
    for p in &files {
        let rel = p
            .strip_prefix(&corpus)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        header.push_str(&format!("#   {rel}\n"));
        let text = std::fs::read_to_string(p).unwrap();
        let f = ConfigFile::parse(&rel, &text).unwrap();
        for param in f.params() {
            names.insert(normalise(&param.name));
        }
    }
    header.push_str("# Numbered segments are written x. Regenerate: UPDATE_SNAPSHOTS=1 cargo test -p polyprov-model --test lint_corpus\n");
    let mut want = header;
    for n in names {
        want.push_str(&n);
        want.push('\n');
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/known_params.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap();
    assert!(
        have == want,
        "src/known_params.txt is stale: rerun with UPDATE_SNAPSHOTS=1"
    );
}
