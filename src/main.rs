//! The `nsguard` binary: parse flags, set up logging, run.

use nsguard::cli::{self, Cli, Command};

/// Parses the command line; installed as `kubectl-nsguard`, help and errors say
/// `kubectl nsguard`.
fn parse() -> Cli {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let plugin = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("kubectl-"));
    let name = if plugin { "kubectl nsguard" } else { "nsguard" };
    Cli::parse_as(name, std::env::args_os()).unwrap_or_else(|e| e.exit())
}

#[tokio::main]
async fn main() {
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("nsguard: a TLS crypto provider was already installed");
    }
    // kubectl's plugin completion (`kubectl_complete-nsguard`), before clap: every word after
    // it is the command line being typed, flags such as --help included.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == cli::complete::COMMAND) {
        let words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        let code = match cli::complete::print(&Cli::definition(), &words, &mut std::io::stdout()) {
            Ok(()) => 0,
            Err(_) => cli::exit::ERROR,
        };
        std::process::exit(code);
    }
    let cli = parse();
    cli::log::init(cli.log_format);
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
            eprintln!("nsguard: {}", cli::error_chain(&error));
            std::process::exit(cli::exit::ERROR);
        }
    }
}
