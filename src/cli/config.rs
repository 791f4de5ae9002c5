//! `nsguard config validate` and `nsguard config show`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::ClusterArgs;
use crate::config::{CONFIG_MAP_KEY, InitialSync, Layer};

/// `nsguard config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file (without FILE: --config, else the webhook's ConfigMap) and
    /// say what is wrong. Exit 0: valid; 4: not valid; 1: it could not be read.
    Validate {
        /// The file.
        file: Option<PathBuf>,
        /// Cluster access, and where the configuration is.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Print the configuration in effect for these flags, each value with where it comes
    /// from: default, file, configmap or flag. The output is itself a valid configuration.
    Show {
        /// `serve`'s --initial-sync, to see the configuration `serve` would run with.
        #[arg(long, env = "NSGUARD_INITIAL_SYNC", value_enum)]
        initial_sync: Option<InitialSync>,
        /// Cluster access, where the configuration is, and the flags that override it.
        #[command(flatten)]
        cluster: ClusterArgs,
    },
}

/// Runs `nsguard config ...`; returns the exit code.
pub async fn config(args: ConfigArgs) -> Result<i32> {
    match args.command {
        ConfigCommand::Validate { file, cluster } => {
            let (what, result) = match file.or_else(|| cluster.config.clone()) {
                Some(path) => (
                    path.display().to_string(),
                    Layer::read(&path).map(|_| ()).map_err(anyhow::Error::from),
                ),
                None => {
                    let (ns, name) = &cluster.config_map;
                    let what = format!("ConfigMap {ns}/{name}, key {CONFIG_MAP_KEY}");
                    let client = cluster.client().await?;
                    match crate::cluster::config_map::read(&client, ns, name, CONFIG_MAP_KEY)
                        .await?
                    {
                        Some(text) => (what, Layer::parse(&text).map(|_| ()).map_err(Into::into)),
                        None => anyhow::bail!("ConfigMap {ns}/{name} not found"),
                    }
                }
            };
            match result {
                Ok(()) => {
                    println!("{what}: valid");
                    Ok(0)
                }
                Err(error) => {
                    eprintln!("{what}: not valid: {}", super::error_chain(&error));
                    Ok(4)
                }
            }
        }
        ConfigCommand::Show {
            initial_sync,
            cluster,
        } => {
            let client = if cluster.config.is_some() {
                None
            } else {
                match cluster.client().await {
                    Ok(client) => Some(client),
                    Err(error) => {
                        eprintln!(
                            "nsguard: note: no cluster ({}): the ConfigMap is not read",
                            super::error_chain(&error)
                        );
                        None
                    }
                }
            };
            let flags = Layer {
                initial_sync,
                ..cluster.overrides()
            };
            let effective = cluster.configuration_with(client.as_ref(), flags).await?;
            print!("{}", effective.render());
            Ok(0)
        }
    }
}
