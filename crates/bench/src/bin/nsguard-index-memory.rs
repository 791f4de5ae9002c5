//! `make bench` (its memory step): the live content index's heap per object, measured exactly.
//!
//! Builds nsguard's index in-process, through the same path a watch's list takes
//! (`Init`, one `InitApply` per object, `InitDone`), at each size of a synthetic world shaped
//! like the bench's scale world: objects spread over 2,000 namespaces and 300 types, names of
//! 20 characters, two labels each from 50 label sets, one object in ten with a finalizer (five
//! distinct names), one in a hundred deleting. A counting allocator (this thread's
//! allocations minus its frees) gives the heap the index holds. The same sizes again as
//! `make bench`'s scale world creates its objects (`bare_*`: seven-character names, nothing
//! else). The same objects in the index's former layout (one `BTreeMap<(String, String), ObjectFacts>` per type, built one
//! insert at a time) are measured beside it.
//!
//! No API server is involved: this is the index's own memory, not the process's (its watches,
//! buffers and allocator slack add to RSS; `make bench`'s scale table measures those).
//!
//! Usage: `nsguard-index-memory [SIZES]` (comma-separated, default 250000,500000,1000000).
//! Prints one JSON object per size, then a summary line.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::time::Instant;

use nsguard::cluster::index::{Change, Index};
use nsguard::facts::ObjectFacts;
use nsguard::facts::ResourceType;

struct Counting;

thread_local! {
    static NET: Cell<i64> = const { Cell::new(0) };
}

fn add(n: i64) {
    let _ = NET.try_with(|c| c.set(c.get() + n));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a thread-local
// counter (no allocation) is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as i64);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as i64));
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as i64 - layout.size() as i64);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn heap() -> i64 {
    NET.with(|c| c.get())
}

const NAMESPACES: usize = 2_000;
const TYPES: usize = 300;

fn resource(t: usize) -> ResourceType {
    ResourceType {
        group: format!("scale{t:03}.example.com"),
        version: "v1".into(),
        resource: "widgets".into(),
        kind: "Widget".into(),
        listable: true,
    }
}

/// Object `k` of the world: type `k % TYPES`, namespace `k / TYPES % NAMESPACES`. `rich`:
/// labels, finalizers, deletions and 20-character names; else as `make bench`'s scale world
/// creates them (`w000123`, nothing else).
fn object(k: usize, rich: bool) -> (usize, String, ObjectFacts) {
    let ns = format!("scale-{:04}", k / TYPES % NAMESPACES);
    if !rich {
        let o = ObjectFacts {
            name: format!("w{k:06}"),
            ..Default::default()
        };
        return (k % TYPES, ns, o);
    }
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            format!("app-{}", k % 50),
        ),
        ("app.kubernetes.io/part-of".to_string(), "bench".to_string()),
    ]);
    let finalizers = if k.is_multiple_of(10) {
        vec![format!("example.com/cleanup-{}", k / 10 % 5)]
    } else {
        Vec::new()
    };
    let deletion_timestamp = k
        .is_multiple_of(100)
        .then(|| "2026-11-22T12:00:00Z".parse().unwrap());
    (
        k % TYPES,
        ns,
        ObjectFacts {
            name: format!("widget-{k:013}"),
            finalizers,
            deletion_timestamp,
            labels,
            annotations: None,
        },
    )
}

struct Measured {
    bytes_per_object: f64,
    build_s: f64,
}

fn measure_index(n: usize, rich: bool) -> (Index, Measured) {
    let before = heap();
    let started = Instant::now();
    let index = Index::default();
    let now = "2026-11-22T12:00:00Z".parse().unwrap();
    let types: Vec<_> = (0..TYPES)
        .map(|t| index.get_or_add(&resource(t)).0)
        .collect();
    for t in &types {
        t.apply(Change::Init, now);
    }
    // Each type's objects arrive in (namespace, name) order, as a list returns them.
    let mut by_type: Vec<Vec<(String, ObjectFacts)>> = vec![Vec::new(); TYPES];
    for k in 0..n {
        let (t, ns, o) = object(k, rich);
        by_type[t].push((ns, o));
    }
    for (t, mut objects) in by_type.into_iter().enumerate() {
        objects.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
        for entry in objects {
            types[t].apply(Change::InitApply(entry), now);
        }
        types[t].apply(Change::InitDone, now);
    }
    drop(types);
    let build_s = started.elapsed().as_secs_f64();
    let bytes = heap() - before;
    assert_eq!(index.objects(), n);
    (
        index,
        Measured {
            bytes_per_object: bytes as f64 / n as f64,
            build_s,
        },
    )
}

/// The former layout, for comparison: one map per type of full `ObjectFacts`, keyed by
/// owned (namespace, name), built one insert at a time.
fn measure_former(n: usize, rich: bool) -> f64 {
    let before = heap();
    let mut maps: Vec<BTreeMap<(String, String), ObjectFacts>> =
        (0..TYPES).map(|_| BTreeMap::new()).collect();
    let mut by_type: Vec<Vec<(String, ObjectFacts)>> = vec![Vec::new(); TYPES];
    for k in 0..n {
        let (t, ns, o) = object(k, rich);
        by_type[t].push((ns, o));
    }
    for (t, mut objects) in by_type.into_iter().enumerate() {
        objects.sort_by(|a, b| (&a.0, &a.1.name).cmp(&(&b.0, &b.1.name)));
        for (ns, o) in objects {
            maps[t].insert((ns, o.name.clone()), o);
        }
    }
    let bytes = heap() - before;
    drop(maps);
    bytes as f64 / n as f64
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "250000,500000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut last = None;
    for &n in &sizes {
        let (index, m) = measure_index(n, true);
        drop(index);
        let former = measure_former(n, true);
        let (index, bare) = measure_index(n, false);
        drop(index);
        let bare_former = measure_former(n, false);
        println!(
            "{}",
            serde_json::json!({
                "objects": n,
                "namespaces": NAMESPACES,
                "types": TYPES,
                "bytes_per_object": (m.bytes_per_object * 10.0).round() / 10.0,
                "former_bytes_per_object": (former * 10.0).round() / 10.0,
                "bare_bytes_per_object": (bare.bytes_per_object * 10.0).round() / 10.0,
                "bare_former_bytes_per_object": (bare_former * 10.0).round() / 10.0,
                "build_s": (m.build_s * 1000.0).round() / 1000.0,
            })
        );
        last = Some((n, m.bytes_per_object));
    }
    if let Some((n, b)) = last {
        eprintln!("index memory: {b:.1} bytes per object at {n} objects");
    }
}
