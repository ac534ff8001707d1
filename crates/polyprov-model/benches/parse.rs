//! Parse throughput over the real files in `tests/corpus` (343 KB of masters and configs).
//! `cargo bench -p polyprov-model --bench parse`; divan prints bytes/s per benchmark.

#![allow(clippy::unwrap_used)] // Benchmarks: a panic is the failure report.

use divan::counter::BytesCount;
use polyprov_model::config_file::ConfigFile;
use polyprov_model::lint::{LintInput, lint};
use std::path::PathBuf;

fn main() {
    divan::main();
}

fn corpus() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "cfg") {
                let name = p.strip_prefix(&root).unwrap().display().to_string();
                out.push((name, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out
}

/// Every corpus file parsed once per iteration.
#[divan::bench]
fn parse_corpus(bencher: divan::Bencher) {
    let files = corpus();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    bencher.counter(BytesCount::new(bytes)).bench(|| {
        for (name, text) in &files {
            divan::black_box(ConfigFile::parse(name, text).unwrap());
        }
    });
}

/// The largest file (site.cfg, 118 KB) alone.
#[divan::bench]
fn parse_largest(bencher: divan::Bencher) {
    let (name, text) = corpus().into_iter().max_by_key(|(_, t)| t.len()).unwrap();
    bencher
        .counter(BytesCount::new(text.len()))
        .bench(|| divan::black_box(ConfigFile::parse(&name, &text).unwrap()));
}

/// The whole linter over the corpus as one boot root.
#[divan::bench]
fn lint_corpus(bencher: divan::Bencher) {
    let files = corpus();
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let input = LintInput {
        existing: files.iter().map(|(n, _)| n.clone()).collect(),
        files,
        ..Default::default()
    };
    bencher
        .counter(BytesCount::new(bytes))
        .bench(|| divan::black_box(lint(&input)));
}

/// Layouts that once made the linter quadratic: 4 MB of attributes on one line, and 200,000
/// nested elements. Compare their bytes/s with `lint_corpus`: the same order means linear.
#[divan::bench(args = ["one-line", "nested"])]
fn lint_pathological(bencher: divan::Bencher, layout: &str) {
    let text = match layout {
        "one-line" => {
            let attrs: Vec<String> = (0..200_000).map(|i| format!("p.a{i}=\"v{i}\"")).collect();
            format!("<polycomConfig><x {}/></polycomConfig>", attrs.join(" "))
        }
        _ => {
            let n = 200_000;
            let open: String = (0..n)
                .map(|i| format!("<e{} q.b{i}=\"1\">", i % 7))
                .collect();
            let close: String = (0..n).map(|i| format!("</e{}>", (n - 1 - i) % 7)).collect();
            format!("<polycomConfig>{open}{close}</polycomConfig>")
        }
    };
    let input = LintInput {
        files: vec![("big.cfg".into(), text.clone())],
        ..Default::default()
    };
    bencher
        .counter(BytesCount::new(text.len()))
        .bench(|| divan::black_box(lint(&input)));
}
