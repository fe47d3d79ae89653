//! The `tether` command: parse the CLI, load the config, hand over to `server::run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use tether::config::Config;
use tether::instance::Instance;
use tether::server::{run, ProcessMode};

// Pingora allocates and frees many small buffers per request; glibc's malloc/free were ~4 µs of
// the ~14 µs of user time per request here. mimalloc's thread-local free lists make that cheaper
// (measured in bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An edge HTTP load balancer with Cloudflare-style session affinity.
#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The YAML configuration file.
    #[arg(short, long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a tether configuration made from another load balancer's configuration.
    #[command(subcommand)]
    Import(Import),
}

#[derive(Debug, Subcommand)]
enum Import {
    /// Read Cloudflare Load Balancing API exports (load balancers, pools, monitors: JSON, as the
    /// API returns it) and print the equivalent tether YAML on stdout.
    Cloudflare {
        /// JSON files, in any order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Origins without a port get 443 instead of 80, and their pools origin TLS.
        #[arg(long)]
        origin_tls: bool,
    },
}

fn main() -> ExitCode {
    tether::telemetry::log_sink::init();
    let cli = Cli::parse();
    if let Some(Command::Import(Import::Cloudflare { files, origin_tls })) = &cli.command {
        return import_cloudflare(files, *origin_tls);
    }
    let Some(config) = &cli.config else {
        eprintln!("tether: --config FILE is required");
        return ExitCode::FAILURE;
    };
    let base = match std::env::current_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot read the current directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = base.join(config);

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

    let live = match Instance::load(&path) {
        Ok(live) => Arc::new(live),
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::FAILURE;
        }
    };
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

/// `tether import cloudflare`: YAML on stdout, what was not imported on stderr, exit 1 on errors.
/// stderr lines quote the export's text, escaped: a terminal must not obey it.
fn import_cloudflare(files: &[PathBuf], origin_tls: bool) -> ExitCode {
    use tether::config::printable::escape;
    let opts = tether::import::Options { origin_tls };
    match tether::import::cloudflare(files, opts) {
        Ok(out) => {
            for note in &out.not_imported {
                eprintln!("tether import: not imported: {}", escape(note));
            }
            print!("{}", out.yaml);
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs {
                eprintln!("tether import: {}", escape(&e.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}
