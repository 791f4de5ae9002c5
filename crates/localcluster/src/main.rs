//! `localcluster`: the local control plane until Ctrl-C; `localcluster demo NSGUARD_BIN`:
//! the same with nsguard registered and the demo of `make run`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use localcluster::demo::Demo;
use localcluster::{LocalCluster, workspace_root};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = workspace_root().join(".run");
    if args.first().map(String::as_str) == Some("demo") {
        let nsguard = args
            .get(1)
            .map(PathBuf::from)
            .context("usage: localcluster demo PATH_TO_NSGUARD")?;
        let nsguard = std::fs::canonicalize(&nsguard)
            .with_context(|| format!("{} (build it first)", nsguard.display()))?;
        let dir = run.join("demo");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let demo = Demo::start(&dir, &nsguard).await?;
        println!("\n{}", demo.instructions(&nsguard));
        stop_signal().await?;
        println!("Stopping nsguard and the control plane.");
        drop(demo);
        return Ok(());
    }
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| run.join("localcluster"));
    let cluster = LocalCluster::start(&dir).await?;
    println!("Local control plane running at {}", cluster.server());
    println!("  export KUBECONFIG={}", cluster.kubeconfig().display());
    println!("  export PATH={}:$PATH", cluster.bin_path().display());
    println!("Logs in {}. Ctrl-C stops it.", cluster.dir().display());
    stop_signal().await?;
    println!("Stopping.");
    Ok(())
}

/// Ctrl-C, or SIGTERM/SIGHUP (a closed terminal, `kill`): everything started is stopped.
async fn stop_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    Ok(())
}
