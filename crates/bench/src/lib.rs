//! What `make bench` and `make faults` share: reading the API server's and nsguard's metrics,
//! creating a world's objects many at a time, and describing the machine the figures were
//! measured on.

pub mod figures;

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

/// One type of nsguard's `/debug/index-digest`, and what a fresh LIST of it gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Compared {
    /// `resource.group`.
    pub resource: String,
    /// The index's state of the type.
    pub state: String,
    /// Objects and hash in the index.
    pub index: (u64, String),
    /// Objects and hash by a consistent LIST (no resourceVersion) of the type, now.
    pub list: (u64, String),
}

impl Compared {
    /// The index holds exactly what the LIST returned.
    pub fn equal(&self) -> bool {
        self.index == self.list
    }
}

/// Compares nsguard's index digest (the JSON of `/debug/index-digest`) with a fresh
/// metadata LIST of every type in it, hashed the same way (`nsguard::cluster::index::digest`).
pub async fn compare_index(client: &Client, digest_json: &str) -> Result<Vec<Compared>> {
    use kube::api::{ApiResource, DynamicObject, ListParams};
    let types: Vec<serde_json::Value> = serde_json::from_str(digest_json)?;
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        let text = |k: &str| t[k].as_str().unwrap_or_default().to_string();
        let api_version = text("api_version");
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        let ar = ApiResource {
            group,
            version,
            api_version: api_version.clone(),
            kind: String::new(),
            plural: text("plural"),
        };
        let api = kube::Api::<DynamicObject>::all_with(client.clone(), &ar);
        let mut entries: Vec<(String, String, Vec<String>)> = Vec::new();
        let mut lp = ListParams::default().limit(500);
        let listed = loop {
            match api.list_metadata(&lp).await {
                Ok(page) => {
                    entries.extend(page.items.into_iter().map(|o| {
                        (
                            o.metadata.namespace.unwrap_or_default(),
                            o.metadata.name.unwrap_or_default(),
                            o.metadata.finalizers.unwrap_or_default(),
                        )
                    }));
                    match page.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(c) => lp = lp.continue_token(&c),
                        None => break true,
                    }
                }
                // Gone since the digest was taken (a CRD deleted): nothing to compare.
                Err(kube::Error::Api(s)) if s.code == 404 => break false,
                Err(e) => return Err(e.into()),
            }
        };
        entries.sort();
        let hash = nsguard::cluster::index::digest(entries.iter().map(|(ns, name, f)| {
            (
                ns.as_str(),
                name.as_str(),
                f.iter().map(|s| s.as_str()).collect(),
            )
        }));
        out.push(Compared {
            resource: text("resource"),
            state: text("state"),
            index: (t["objects"].as_u64().unwrap_or(0), text("hash")),
            list: if listed {
                (entries.len() as u64, format!("{hash:016x}"))
            } else {
                (0, "gone".to_string())
            },
        });
    }
    Ok(out)
}
