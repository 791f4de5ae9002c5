//! What `make bench` and `make faults` share: reading the API server's and nsguard's metrics,
//! creating a world's objects many at a time, and describing the machine the figures were
//! measured on.

use anyhow::Result;
use futures::StreamExt;
use kube::Client;

/// Runs `create` for every item, `width` at a time; the first error, once all have run.
pub async fn create_all<I, F, Fut>(items: I, width: usize, create: F) -> Result<()>
where
    I: IntoIterator,
    F: FnMut(I::Item) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let results: Vec<Result<()>> = futures::stream::iter(items)
        .map(create)
        .buffer_unordered(width)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The text of `path` on the API server (`/metrics`).
pub async fn scrape(client: &Client, path: &str) -> Result<String> {
    let req = http::Request::get(path).body(Vec::new())?;
    Ok(client.request_text(req).await?)
}

/// Sum of every series of `metric` (optionally only those containing `filter`).
pub fn sum(text: &str, metric: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Cores, CPU model, memory and kernel, for the reports.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| format!("{:.0} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {mem} memory, Linux {}",
        kernel.trim()
    )
}
