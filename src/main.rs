//! The `nsguard` binary: parse flags, set up logging, run.

use clap::{CommandFactory, FromArgMatches};
use nsguard::cli::{self, Cli, Command};

/// Parses the command line; installed as `kubectl-nsguard`, help and errors say
/// `kubectl nsguard`.
fn parse() -> Cli {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let plugin = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("kubectl-"));
    let mut command = Cli::command();
    if plugin {
        command = command.bin_name("kubectl nsguard");
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NSGUARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("nsguard: a TLS crypto provider was already installed");
    }
    let cli = parse();
    let result = match cli.command {
        Command::Serve(args) => nsguard::webhook::serve::serve(*args).await.map(|()| 0),
        Command::Check(args) => cli::check(args).await,
        Command::Audit(args) => cli::audit(args).await,
        Command::Diagnose(args) => cli::diagnose(args).await,
        Command::Delete(args) => cli::delete(args).await,
        Command::Config(args) => cli::config(args).await,
        Command::Certs(args) => cli::certs(args).map(|()| 0),
        Command::Rbac(args) => cli::rbac(args).await,
        Command::Completion(args) => {
            cli::completion(args.shell, "nsguard", &mut std::io::stdout());
            Ok(0)
        }
    };
    // 0 clean, 3 warnings, 4 would hang (from the command); 1 nsguard could not run; clap
    // exits 2 itself on a usage error (`cli::exit`).
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("nsguard: {error:#}");
            std::process::exit(cli::exit::ERROR);
        }
    }
}
