//! `polyprov assets DIR` (hidden): man pages and shell completions made from the same clap
//! definitions the binary parses with, so they cannot drift from `--help`. Packaging calls it.

use crate::args::Cli;
use crate::client::{CliError, Exit};
use clap::CommandFactory;
use std::path::Path;

/// Writes `man/polyprov.1`, one `man/polyprov-<command>.1` per command and subcommand, and
/// `completions/polyprov.bash`, `_polyprov` (zsh), `polyprov.fish`.
pub fn write(dir: &Path) -> Result<(), CliError> {
    let fail = |what: &Path, e: std::io::Error| {
        CliError::new(Exit::Failed, format!("{}: {e}", what.display()))
    };
    let man = dir.join("man");
    std::fs::create_dir_all(&man).map_err(|e| fail(&man, e))?;
    let cmd = Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).map_err(|e| fail(&man, e))?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions).map_err(|e| fail(&completions, e))?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        let mut c = cmd.clone();
        clap_complete::generate_to(shell, &mut c, "polyprov", &completions)
            .map_err(|e| fail(&completions, e))?;
    }
    Ok(())
}
