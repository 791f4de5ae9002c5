//! The `nsguard` binary: parse flags, set up logging, run.

use clap::Parser;
use nsguard::cli::{self, Cli, Command};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NSGUARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("nsguard: a TLS crypto provider was already installed");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cli::serve(args).await.map(|()| 0),
        Command::Check(args) => cli::check(args).await,
        Command::Certs(args) => cli::certs(args).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("nsguard: {error:#}");
            std::process::exit(3);
        }
    }
}
