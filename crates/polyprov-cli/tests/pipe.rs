//! Every command ends quietly when its reader has gone (`polyprov guide --list | head -1`): exit
//! code 141, as a Unix tool killed by SIGPIPE, and no panic on standard error.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_polyprov");

/// Runs the command with standard output a pipe whose reader is already closed, so the very
/// first write fails with EPIPE whatever the output's size.
fn run_into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(BIN)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn commands_end_quietly_on_a_closed_pipe() {
    let corpus = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus");
    let root = format!("{corpus}/ed-peso__PolySoftwareupdate");
    let commands: Vec<Vec<&str>> = vec![
        vec!["guide", "--list"],
        vec!["guide", "--list", "--json"],
        vec!["guide", "VVX 410", "--mac", "0004f2aa814c"],
        vec!["keys", "0004f2aa814c"],
        vec!["config", "check", corpus],
        vec!["config", "check", corpus, "--json"],
        vec![
            "config",
            "explain",
            "--root",
            &root,
            "--mac",
            "0004f2aa814c",
            "--model",
            "VVX_410",
            "device.set",
        ],
    ];
    for args in commands {
        let (code, stderr) = run_into_closed_pipe(&args);
        assert_eq!(code, Some(141), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
