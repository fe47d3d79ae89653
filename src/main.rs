//! The `tether` command: parse the CLI, load the config, hand over to `server::run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use tether::config::Config;
use tether::live::Live;
use tether::server::{run, ProcessMode};

// Pingora allocates and frees many small buffers per request; glibc's malloc/free were ~4 µs of
// the ~14 µs of user time per request here. mimalloc's thread-local free lists make that cheaper
// (measured in bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An edge HTTP load balancer with Cloudflare-style session affinity.
#[derive(Debug, Parser)]
#[command(name = "tether", version)]
struct Cli {
    /// The YAML configuration file.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration, print `configuration OK` or every error, and exit.
    #[arg(short, long)]
    test: bool,
    /// Take the listening sockets over from a running tether (graceful upgrade).
    #[arg(short, long)]
    upgrade: bool,
    /// Detach and run in the background.
    #[arg(short, long)]
    daemon: bool,
}

fn main() -> ExitCode {
    tether::ops::log_sink::init();
    let cli = Cli::parse();
    let base = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot read the current directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = base.join(&cli.config);

    if cli.test {
        return match Config::load(&path) {
            Ok(valid) => {
                for warning in &valid.warnings {
                    println!("warning: {warning}");
                }
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(errs) => {
                eprintln!("{errs}");
                ExitCode::FAILURE
            }
        };
    }

    let live = match Live::load(&path) {
        Ok(live) => Arc::new(live),
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
    if live.snapshot().config.cookie_secret.is_none() {
        log::warn!("no cookie_secret configured: using a random key, so cookies will not survive a restart");
    }
    match run(
        live,
        ProcessMode {
            upgrade: cli.upgrade,
            daemon: cli.daemon,
        },
        &base,
    ) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}
