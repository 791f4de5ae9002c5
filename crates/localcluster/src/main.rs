//! `localcluster`: starts the local control plane and keeps it running until Ctrl-C.

use std::path::PathBuf;

use anyhow::Result;
use localcluster::{LocalCluster, workspace_root};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".run/localcluster"));
    let cluster = LocalCluster::start(&dir).await?;
    println!("Local control plane running at {}", cluster.server());
    println!("  export KUBECONFIG={}", cluster.kubeconfig().display());
    println!("  export PATH={}:$PATH", cluster.bin_path().display());
    println!("Logs in {}. Ctrl-C stops it.", cluster.dir().display());
    tokio::signal::ctrl_c().await?;
    println!("Stopping.");
    Ok(())
}
