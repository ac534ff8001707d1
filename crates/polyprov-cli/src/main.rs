//! `polyprov`: run the provisioning server, and manage its inventory through the admin API.
//!
//! Exit codes: see [`client::Exit`] (0 success, 141 a closed output pipe). The commands live one
//! area a file (`*_cmd.rs`); their arguments in `args.rs`.

mod action_cmd;
mod args;
mod assets;
mod backup_cmd;
mod client;
mod config_cmd;
mod dhcp_probe;
mod dhcp_snippet;
mod doctor_cmd;
mod guide_cmd;
mod import_cmd;
mod inventory_cmd;
mod migrate_cmd;
mod out;
mod serve_cmd;
mod sim_cmd;
mod table;
mod tls_cmd;

use args::*;
use clap::Parser;
use client::{CliError, Exit};
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a boot storm allocates and frees small buffers per
/// request on two threads, and glibc's allocator was a quarter of the server's user time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking file work (see `main`).
const BLOCKING_THREADS: usize = 16;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // File work (uploads, quarantine) is disk-bound: a few threads keep the disk busy, and
        // each thread more keeps an allocator heap of its own (a storm of 2,000 new phones
        // grew the server by 40 MB with tokio's default of 512).
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An empty message: the command already said what failed.
            if !e.message.is_empty() {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.code as u8)
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve_cmd::serve(args).await,
        Command::Device(cmd) => inventory_cmd::device(cmd).await,
        Command::Profile(cmd) => inventory_cmd::profile(cmd).await,
        Command::Site(cmd) => inventory_cmd::site(cmd).await,
        Command::Config(ConfigCommand::Check { paths, json }) => config_cmd::check(&paths, json),
        Command::Config(ConfigCommand::Explain {
            root,
            mac,
            model,
            overrides,
            params,
            json,
        }) => config_cmd::explain(&root, &mac, &model, &overrides, &params, json),
        Command::Guide(g) if g.list => guide_cmd::list(g.catalog.as_deref(), g.json),
        Command::Guide(g) => guide_cmd::guide(
            g.model.as_deref().unwrap_or_default(),
            g.firmware.as_deref(),
            g.mac.as_deref(),
            g.cycle.into(),
            g.letter_case.into(),
            g.catalog.as_deref(),
            g.json,
        ),
        Command::Keys(k) => guide_cmd::keys(&k.mac, k.cycle.into(), k.letter_case.into(), k.json),
        Command::Sim(cmd) => sim_cmd::run(cmd).await,
        Command::Tls(cmd) => tls_cmd::run(cmd).await,
        Command::Doctor {
            mac,
            dhcp_probe,
            api,
        } => doctor_cmd::doctor(&mac, dhcp_probe.as_deref(), &api).await,
        Command::Dhcp(args::DhcpCommand::Probe(a)) | Command::DhcpProbe(a) => {
            let r = dhcp_probe::probe(
                &a.iface,
                std::time::Duration::from_secs(a.timeout),
                !a.no_vendor_class,
            )
            .map_err(|e| CliError::new(Exit::Failed, e))?;
            if a.json {
                return client::print_json(
                    &serde_json::to_value(&r)
                        .map_err(|e| CliError::new(Exit::Failed, e.to_string()))?,
                );
            }
            doctor_cmd::print_probe(&r);
            Ok(())
        }
        Command::Dhcp(args::DhcpCommand::Snippet(a)) => dhcp_snippet::run(&a),
        Command::Assets { dir } => assets::write(&dir),
        Command::Import(a) => import_cmd::run(&a).await,
        Command::Backup {
            file,
            data,
            config,
            json,
        } => backup_cmd::backup(&file, &data, config.as_deref(), json).await,
        Command::Migrate { from, to, json } => migrate_cmd::migrate(&from, &to, json).await,
        Command::Restore {
            file,
            data,
            config_to,
            json,
        } => backup_cmd::restore(&file, &data, config_to.as_deref(), json).await,
    }
}
