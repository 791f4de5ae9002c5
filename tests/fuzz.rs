//! Property-based fuzzing of the whole admission path: generated and mutated AdmissionReview
//! bodies go through the webhook router in process (no sockets, no cluster), and every answer
//! must be either 200 with an AdmissionReview whose response carries the request's uid, or a
//! 4xx with a JSON `{"error": <non-empty string>}`. Nothing may panic, answer 5xx or answer
//! with an empty body.
//!
//! `NSGUARD_FUZZ_CASES` sets the number of cases (2000 by default: the short run of `make
//! test`); `make fuzz CASES=N` runs N in release mode. Every run draws a new seed and prints
//! it; `NSGUARD_FUZZ_SEED` replays one.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nsguard::output::policy::{OVERRIDE_ANNOTATION, Policy};
use nsguard::output::records::Metrics;
use nsguard::webhook::admission::Admission;
use nsguard::webhook::server::{BODY_LIMIT, webhook_router};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::{Value, json};
use tower::ServiceExt;

const DEFAULT_CASES: u32 = 2000;

/// The AdmissionReview kube-apiserver sent for a namespace DELETE (see tests/router.rs).
static FIXTURE: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("fixtures/namespace-delete.json")).expect("fixture")
});

/// One HTTP request to `/validate`.
#[derive(Clone)]
struct Case {
    /// Which generator made it (for the tally and a failure report).
    class: &'static str,
    query: String,
    body: Vec<u8>,
}

impl fmt::Debug for Case {
    // A failing case can be megabytes: show its head and its size, not all of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEAD: usize = 2000;
        let head = String::from_utf8_lossy(&self.body[..self.body.len().min(HEAD)]);
        write!(
            f,
            "Case {{ class: {}, query: {:?}, body ({} bytes): {:?}{} }}",
            self.class,
            self.query,
            self.body.len(),
            head,
            if self.body.len() > HEAD { "..." } else { "" }
        )
    }
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// Strings that mean something to nsguard or to the parsers.
const SPECIAL: &[&str] = &[
    "",
    "team-a",
    "nsguard-system",
    "kube-system",
    "default",
    "DELETE",
    "namespaces",
    "Namespace",
    "AdmissionReview",
    "admission.k8s.io/v1",
    "v1",
    "\u{0}",
    "a\nb\r\tc",
    "\u{1b}[31mred",
    "\u{202e}evil",
    "\u{feff}bom",
    "\u{10ffff}",
    "💥🔥",
    "é\u{301}",
    "\\",
    "\"",
    "%s%n%x",
    "../../etc/passwd",
    "null",
    "true",
    "-1",
    "1e999",
];

/// Short strings: DNS-label-like, printable unicode, any scalar values (control characters
/// included), and the special ones.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
        2 => "\\PC{0,30}",
        2 => vec(any::<char>(), 0..30).prop_map(String::from_iter),
        2 => select(SPECIAL).prop_map(String::from),
    ]
    .boxed()
}

/// Strings up to past the body limit: one scalar value repeated.
fn huge_text() -> BoxedStrategy<String> {
    (
        any::<char>(),
        prop_oneof![
            Just(1_000usize),
            Just(65_536),
            Just(300_000),
            Just(BODY_LIMIT - 4096),
            Just(BODY_LIMIT + 1),
        ],
    )
        .prop_map(|(c, n)| c.to_string().repeat(n))
        .boxed()
}

/// A name: mostly short, sometimes huge.
fn name() -> BoxedStrategy<String> {
    prop_oneof![30 => text(), 1 => huge_text()].boxed()
}

/// Any JSON value, a few levels deep.
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        select(&[0.0, -0.0, 1e308, -1e308, 5e-324][..]).prop_map(|f: f64| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(text(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Lax: `Some` of `good` most of the time, else absent, `null`, or any JSON value.
/// Strict: always `Some` of `good`.
fn field(good: BoxedStrategy<Value>, lax: bool) -> BoxedStrategy<Option<Value>> {
    if !lax {
        return good.prop_map(Some).boxed();
    }
    prop_oneof![
        12 => good.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => any_json().prop_map(Some),
    ]
    .boxed()
}

/// One of `choices`; when lax, sometimes any string.
fn string_of(choices: &'static [&'static str], lax: bool) -> BoxedStrategy<Value> {
    let choice = select(choices).prop_map(Value::from);
    if !lax {
        return choice.boxed();
    }
    prop_oneof![6 => choice, 1 => text().prop_map(Value::from)].boxed()
}

fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

fn uid() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Value::from),
        1 => name().prop_map(Value::from),
    ]
    .boxed()
}

fn timestamp(lax: bool) -> BoxedStrategy<Value> {
    let valid =
        "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T[01][0-9]:[0-5][0-9]:[0-5][0-9]Z"
            .prop_map(Value::from);
    if !lax {
        return valid.boxed();
    }
    prop_oneof![
        4 => valid,
        1 => Just(json!("2026-02-30T25:61:61Z")),
        1 => text().prop_map(Value::from),
    ]
    .boxed()
}

/// `{group, version, kind}`, wrong kinds included.
fn gvk(lax: bool) -> BoxedStrategy<Value> {
    (
        field(string_of(&["", "apps"], lax), lax),
        field(string_of(&["v1", "v1beta1"], lax), lax),
        field(
            string_of(&["Namespace", "Pod", "AdmissionReview", ""], lax),
            lax,
        ),
    )
        .prop_map(|(g, v, k)| object(vec![("group", g), ("version", v), ("kind", k)]))
        .boxed()
}

/// `{group, version, resource}`: namespaces most of the time.
fn gvr(lax: bool) -> BoxedStrategy<Value> {
    (
        field(prop_oneof![8 => Just(json!("")), 1 => string_of(&["apps", "core"], lax)].boxed(), lax),
        field(string_of(&["v1"], lax), lax),
        field(
            prop_oneof![8 => Just(json!("namespaces")), 1 => string_of(&["pods", "namespace", "Namespaces"], lax)]
                .boxed(), lax
        ),
    )
        .prop_map(|(g, v, r)| object(vec![("group", g), ("version", v), ("resource", r)]))
        .boxed()
}

fn string_map(keys: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    btree_map(keys, name().prop_map(Value::from), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
        .boxed()
}

fn strings() -> BoxedStrategy<Value> {
    vec(text().prop_map(Value::from), 0..4)
        .prop_map(Value::Array)
        .boxed()
}

/// A Namespace as the API server would send it, with every field sometimes wrong.
fn namespace_object(lax: bool) -> BoxedStrategy<Value> {
    let annotation_key = prop_oneof![Just(OVERRIDE_ANNOTATION.to_string()), text()].boxed();
    let metadata = (
        (
            field(prop_oneof![3 => Just(json!("team-a")), 1 => Just(json!("nsguard-system")), 3 => name().prop_map(Value::from)].boxed(), lax),
            field(uid(), lax),
            field(string_of(&["1000"], lax), lax),
            field(timestamp(lax), lax),
            prop_oneof![3 => Just(None), 1 => field(timestamp(lax), lax)],
        ),
        (
            field(string_map(text()), lax),
            field(string_map(annotation_key), lax),
            field(strings(), lax),
        ),
    )
        .prop_map(|((name, uid, rv, created, deleted), (labels, annotations, finalizers))| {
            object(vec![
                ("name", name),
                ("uid", uid),
                ("resourceVersion", rv),
                ("creationTimestamp", created),
                ("deletionTimestamp", deleted),
                ("labels", labels),
                ("annotations", annotations),
                ("finalizers", finalizers),
            ])
        });
    let spec = vec(string_of(&["kubernetes"], lax), 0..3)
        .prop_map(|f| json!({ "finalizers": f }))
        .boxed();
    let status = string_of(&["Active", "Terminating"], lax)
        .prop_map(|p| json!({ "phase": p }))
        .boxed();
    (
        field(string_of(&["v1"], lax), lax),
        field(string_of(&["Namespace"], lax), lax),
        field(metadata.boxed(), lax),
        field(spec, lax),
        field(status, lax),
    )
        .prop_map(|(api, kind, metadata, spec, status)| {
            object(vec![
                ("apiVersion", api),
                ("kind", kind),
                ("metadata", metadata),
                ("spec", spec),
                ("status", status),
            ])
        })
        .boxed()
}

fn user_info(lax: bool) -> BoxedStrategy<Value> {
    (
        field(name().prop_map(Value::from).boxed(), lax),
        field(uid(), lax),
        field(
            vec(
                prop_oneof![
                    select(&["system:masters", "system:authenticated"][..]).prop_map(String::from),
                    text()
                ],
                0..4,
            )
            .prop_map(|g| json!(g))
            .boxed(),
            lax,
        ),
        field(
            btree_map(text(), strings(), 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect()))
                .boxed(),
            lax,
        ),
    )
        .prop_map(|(username, uid, groups, extra)| {
            object(vec![
                ("username", username),
                ("uid", uid),
                ("groups", groups),
                ("extra", extra),
            ])
        })
        .boxed()
}

fn delete_options(lax: bool) -> BoxedStrategy<Value> {
    (
        field(uid(), lax),
        field(string_of(&["Background", "Foreground", "Orphan"], lax), lax),
        field(any::<i64>().prop_map(Value::from).boxed(), lax),
    )
        .prop_map(|(uid, propagation, grace)| {
            object(vec![
                ("apiVersion", Some(json!("meta.k8s.io/v1"))),
                ("kind", Some(json!("DeleteOptions"))),
                ("preconditions", uid.map(|u| json!({ "uid": u }))),
                ("propagationPolicy", propagation),
                ("gracePeriodSeconds", grace),
            ])
        })
        .boxed()
}

/// The `request` of an AdmissionReview, generated from its schema.
fn request(lax: bool) -> BoxedStrategy<Value> {
    let operation = prop_oneof![
        8 => Just(json!("DELETE")),
        3 => select(&["CREATE", "UPDATE", "CONNECT"][..]).prop_map(Value::from),
        1 => select(&["delete", "Delete", "PATCH", "", "DELETE "][..]).prop_map(Value::from),
        if lax { 1 } else { 0 } => text().prop_map(Value::from),
    ]
    .boxed();
    let sub_resource = prop_oneof![
        6 => Just(None),
        1 => Just(Some(json!(""))),
        1 => select(&["finalize", "status"][..]).prop_map(|s| Some(json!(s))),
        if lax { 1 } else { 0 } => field(text().prop_map(Value::from).boxed(), lax),
    ];
    (
        (
            field(uid(), lax),
            field(gvk(lax), lax),
            field(gvr(lax), lax),
            sub_resource,
            field(operation, lax),
            field(name().prop_map(Value::from).boxed(), lax),
            field(name().prop_map(Value::from).boxed(), lax),
        ),
        (
            field(user_info(lax), lax),
            prop_oneof![4 => Just(Some(Value::Null)), 1 => Just(None), 1 => field(namespace_object(lax), lax)],
            field(namespace_object(lax), lax),
            field(any::<bool>().prop_map(Value::from).boxed(), lax),
            field(delete_options(lax), lax),
            prop_oneof![Just(None), field(gvk(lax), lax)],
            prop_oneof![Just(None), field(gvr(lax), lax)],
        ),
    )
        .prop_map(
            |(
                (uid, kind, resource, sub_resource, operation, name, namespace),
                (user_info, object_, old_object, dry_run, options, request_kind, request_resource),
            )| {
                object(vec![
                    ("uid", uid),
                    ("kind", kind),
                    ("resource", resource),
                    ("subResource", sub_resource),
                    ("operation", operation),
                    ("name", name),
                    ("namespace", namespace),
                    ("userInfo", user_info),
                    ("object", object_),
                    ("oldObject", old_object),
                    ("dryRun", dry_run),
                    ("options", options),
                    ("requestKind", request_kind),
                    ("requestResource", request_resource),
                ])
            },
        )
        .boxed()
}

/// (a) Whole AdmissionReviews generated from the schema: well-formed ones (every field
/// present and of its type, values anywhere in their type) and lax ones (any field absent,
/// `null`, of another type, or a wrong constant).
fn schema_review() -> BoxedStrategy<Value> {
    prop_oneof![well_formed_review(), lax_review()].boxed()
}

fn well_formed_review() -> BoxedStrategy<Value> {
    request(false)
        .prop_map(|request| json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}))
        .boxed()
}

fn lax_review() -> BoxedStrategy<Value> {
    let lax = true;
    let api_version = prop_oneof![
        10 => Just(Some(json!("admission.k8s.io/v1"))),
        1 => select(&["admission.k8s.io/v1beta1", "v1", "", "ADMISSION.K8S.IO/V1"][..]).prop_map(|s| Some(json!(s))),
        1 => field(any_json(), lax),
    ];
    let kind = prop_oneof![
        10 => Just(Some(json!("AdmissionReview"))),
        1 => select(&["AdmissionReviewList", "Pod", ""][..]).prop_map(|s| Some(json!(s))),
        1 => field(any_json(), lax),
    ];
    (api_version, kind, field(request(lax), lax))
        .prop_map(|(api, kind, request)| {
            object(vec![
                ("apiVersion", api),
                ("kind", kind),
                ("request", request),
            ])
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// (b) Mutations of the captured fixture
// ---------------------------------------------------------------------------------------

/// JSON Pointers of every node of `v` (the root excluded), in document order.
fn pointers(v: &Value) -> Vec<String> {
    fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
        let children: Vec<(String, &Value)> = match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, c)| (k.replace('~', "~0").replace('/', "~1"), c))
                .collect(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, c)| (i.to_string(), c))
                .collect(),
            _ => return,
        };
        for (seg, c) in children {
            let p = format!("{at}/{seg}");
            out.push(p.clone());
            walk(c, &p, out);
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// A structural edit of the fixture's value.
#[derive(Clone, Debug)]
enum Edit {
    /// Remove a node from its object or array.
    Delete(Index),
    /// Replace a node with a value of another JSON type.
    Retype(Index, Value),
    /// Set one field that nsguard reads to something else.
    Set(&'static str, Value),
}

/// Fields that steer the admission path.
const STEERING: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/request",
    "/request/uid",
    "/request/operation",
    "/request/subResource",
    "/request/resource",
    "/request/resource/group",
    "/request/resource/resource",
    "/request/kind/kind",
    "/request/name",
    "/request/dryRun",
    "/request/userInfo",
    "/request/userInfo/groups",
    "/request/oldObject",
    "/request/oldObject/apiVersion",
    "/request/oldObject/kind",
    "/request/oldObject/metadata",
    "/request/oldObject/metadata/name",
    "/request/oldObject/metadata/annotations",
    "/request/oldObject/metadata/deletionTimestamp",
    "/request/oldObject/spec/finalizers",
    "/request/options",
];

fn edit() -> BoxedStrategy<Edit> {
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::Delete),
        2 => (any::<Index>(), any_json()).prop_map(|(i, v)| Edit::Retype(i, v)),
        3 => (select(STEERING), prop_oneof![any_json(), name().prop_map(Value::from)])
            .prop_map(|(p, v)| Edit::Set(p, v)),
    ]
    .boxed()
}

fn apply(doc: &mut Value, e: &Edit) {
    match e {
        Edit::Delete(i) => {
            let ps = pointers(doc);
            if ps.is_empty() {
                return;
            }
            let p = ps[i.index(ps.len())].as_str();
            let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
            match doc.pointer_mut(parent) {
                Some(Value::Object(m)) => {
                    m.remove(&last.replace("~1", "/").replace("~0", "~"));
                }
                Some(Value::Array(a)) => {
                    if let Ok(n) = last.parse::<usize>()
                        && n < a.len()
                    {
                        a.remove(n);
                    }
                }
                _ => {}
            }
        }
        Edit::Retype(i, v) => {
            let ps = pointers(doc);
            if ps.is_empty() {
                return;
            }
            if let Some(node) = doc.pointer_mut(ps[i.index(ps.len())].as_str()) {
                *node = if !same_type(node, v) {
                    v.clone()
                } else if node.is_null() {
                    json!(true)
                } else {
                    Value::Null
                };
            }
        }
        Edit::Set(p, v) => {
            let (parent, last) = p.rsplit_once('/').unwrap_or(("", p));
            if let Some(Value::Object(m)) = doc.pointer_mut(parent) {
                m.insert(last.to_string(), v.clone());
            }
        }
    }
}

/// What happens to the text once the edited fixture is written out.
#[derive(Clone, Debug)]
enum Twist {
    None,
    /// A key of some object written twice, the copy before or after the original.
    Duplicate {
        node: Index,
        key: Index,
        value: Value,
        after: bool,
    },
    /// A node replaced by `depth` nested arrays.
    Nest {
        node: Index,
        depth: usize,
    },
    /// A node replaced by a huge string.
    Huge {
        node: Index,
        s: String,
    },
    /// Bytes that are not UTF-8, inside a string value or anywhere in the text.
    InvalidUtf8 {
        node: Index,
        at: Index,
        bytes: Vec<u8>,
        in_string: bool,
    },
    /// The text cut at some byte.
    Truncate(Index),
}

const INVALID_UTF8: &[&[u8]] = &[
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\x80",
    b"\xc3",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
];

fn twist() -> BoxedStrategy<Twist> {
    prop_oneof![
        4 => Just(Twist::None),
        2 => (any::<Index>(), any::<Index>(), any_json(), any::<bool>())
            .prop_map(|(node, key, value, after)| Twist::Duplicate { node, key, value, after }),
        1 => (any::<Index>(), prop_oneof![1usize..200, Just(10_000), Just(100_000)])
            .prop_map(|(node, depth)| Twist::Nest { node, depth }),
        1 => (any::<Index>(), huge_text()).prop_map(|(node, s)| Twist::Huge { node, s }),
        2 => (any::<Index>(), any::<Index>(), select(INVALID_UTF8), any::<bool>())
            .prop_map(|(node, at, bytes, in_string)| Twist::InvalidUtf8 { node, at, bytes: bytes.to_vec(), in_string }),
        2 => any::<Index>().prop_map(Twist::Truncate),
    ]
    .boxed()
}

/// A string no generator makes, to find a spot in the written text.
const MARK: &str = "nsguard-fuzz-mark-7f3a";

/// Writes `doc` with the node at `node` replaced by raw `splice` bytes.
fn splice_at(mut doc: Value, node: &Index, splice: &[u8]) -> Vec<u8> {
    let ps = pointers(&doc);
    if ps.is_empty() {
        return serde_json::to_vec(&doc).unwrap_or_default();
    }
    if let Some(n) = doc.pointer_mut(ps[node.index(ps.len())].as_str()) {
        *n = json!(MARK);
    }
    let text = serde_json::to_vec(&doc).unwrap_or_default();
    replace_once(&text, format!("\"{MARK}\"").as_bytes(), splice)
}

fn replace_once(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match hay.windows(needle.len()).position(|w| w == needle) {
        Some(i) => [&hay[..i], with, &hay[i + needle.len()..]].concat(),
        None => hay.to_vec(),
    }
}

fn write(doc: Value, t: &Twist) -> Vec<u8> {
    match t {
        Twist::None => serde_json::to_vec(&doc).unwrap_or_default(),
        Twist::Duplicate {
            node,
            key,
            value,
            after,
        } => {
            // serde_json's maps keep keys sorted: a marker key starting with `!` is written
            // first in its object, one starting with `~` last, so the copy lands before or
            // after the original.
            let mut doc = doc;
            let objects: Vec<String> = std::iter::once(String::new())
                .chain(pointers(&doc))
                .filter(|p| doc.pointer(p).is_some_and(Value::is_object))
                .collect();
            if objects.is_empty() {
                return serde_json::to_vec(&doc).unwrap_or_default();
            }
            let at = node.get(&objects).clone();
            let Some(Value::Object(m)) = doc.pointer_mut(&at) else {
                return serde_json::to_vec(&doc).unwrap_or_default();
            };
            if m.is_empty() {
                return serde_json::to_vec(&doc).unwrap_or_default();
            }
            let keys: Vec<String> = m.keys().cloned().collect();
            let dup = key.get(&keys).clone();
            let marker = format!("{}{MARK}", if *after { '~' } else { '!' });
            m.insert(marker.clone(), Value::Null);
            let text = serde_json::to_vec(&doc).unwrap_or_default();
            let entry = format!(
                "{}:{}",
                serde_json::to_string(&dup).unwrap_or_default(),
                serde_json::to_string(value).unwrap_or_default()
            );
            replace_once(
                &text,
                format!("\"{marker}\":null").as_bytes(),
                entry.as_bytes(),
            )
        }
        Twist::Nest { node, depth } => {
            let nested = format!("{}{}", "[".repeat(*depth), "]".repeat(*depth));
            splice_at(doc, node, nested.as_bytes())
        }
        Twist::Huge { node, s } => splice_at(doc, node, json!(s).to_string().as_bytes()),
        Twist::InvalidUtf8 {
            node,
            at,
            bytes,
            in_string,
        } => {
            if *in_string {
                let s = [b"\"team-".as_slice(), bytes, b"-a\""].concat();
                splice_at(doc, node, &s)
            } else {
                let mut text = serde_json::to_vec(&doc).unwrap_or_default();
                let i = at.index(text.len() + 1);
                text.splice(i..i, bytes.iter().copied());
                text
            }
        }
        Twist::Truncate(at) => {
            let mut text = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            text.truncate(at.index(text.len()));
            text
        }
    }
}

fn mutated_fixture() -> BoxedStrategy<Vec<u8>> {
    (vec(edit(), 0..4), twist())
        .prop_map(|(edits, t)| {
            let mut doc = FIXTURE.clone();
            for e in &edits {
                apply(&mut doc, e);
            }
            write(doc, &t)
        })
        .boxed()
}

/// Bytes with no structure, and JSON-ish token soup.
fn noise() -> BoxedStrategy<Vec<u8>> {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1e999",
        "18446744073709551616",
        "\"\\ud800\"",
        "\"\\u0000\"",
        "\"apiVersion\"",
        "\"admission.k8s.io/v1\"",
        "\"kind\"",
        "\"AdmissionReview\"",
        "\"request\"",
        "\"uid\"",
        "\"operation\"",
        "\"DELETE\"",
        " ",
        "\n",
        "\\",
        "/*",
        "\u{feff}",
    ];
    prop_oneof![
        vec(any::<u8>(), 0..2048),
        vec(select(TOKENS), 0..64).prop_map(|ts| ts.concat().into_bytes()),
    ]
    .boxed()
}

/// The query string: the API server's `timeout=10s`, or something else.
fn query() -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just("timeout=10s".to_string()),
        1 => Just(String::new()),
        2 => "timeout=[0-9.e+-]{0,12}(ms|s|m|h|)",
        1 => "[a-z=&]{0,20}",
    ]
    .boxed()
}

fn case() -> BoxedStrategy<Case> {
    let body = prop_oneof![
        5 => schema_review().prop_map(|v| ("schema", serde_json::to_vec(&v).unwrap_or_default())),
        5 => mutated_fixture().prop_map(|b| ("fixture", b)),
        1 => noise().prop_map(|b| ("noise", b)),
    ];
    (body, query())
        .prop_map(|((class, body), query)| Case { class, query, body })
        .boxed()
}

// ---------------------------------------------------------------------------------------
// The property
// ---------------------------------------------------------------------------------------

/// What the answer must be, given the request body nsguard was sent.
fn check(sent: &[u8], status: StatusCode, answer: &[u8]) -> Result<&'static str, String> {
    if answer.is_empty() {
        return Err(format!("{status} with an empty body"));
    }
    let doc: Value = serde_json::from_slice(answer)
        .map_err(|e| format!("{status} with a body that is not JSON ({e})"))?;
    if status == StatusCode::OK {
        // nsguard parses the body into a serde_json::Value first, so the request's uid is
        // what that parse sees (for duplicate keys, the last one).
        let sent: Value = serde_json::from_slice(sent)
            .map_err(|e| format!("200 for a body that is not JSON ({e}): {doc}"))?;
        if doc["apiVersion"] != "admission.k8s.io/v1" || doc["kind"] != "AdmissionReview" {
            return Err(format!("200 without an AdmissionReview: {doc}"));
        }
        let resp = &doc["response"];
        let Some(uid) = resp["uid"].as_str() else {
            return Err(format!("200 without a response uid: {doc}"));
        };
        if !resp["allowed"].is_boolean() {
            return Err(format!("200 without response.allowed: {doc}"));
        }
        if let Some(want) = sent["request"]["uid"].as_str()
            && uid != want
        {
            return Err(format!("response uid {uid:?}, request uid {want:?}"));
        }
        Ok(
            match (resp["allowed"].as_bool(), resp["warnings"].is_array()) {
                (Some(false), _) => "200 denied",
                (_, true) => "200 allowed with warnings (decided)",
                _ => "200 allowed",
            },
        )
    } else if status.is_client_error() {
        match doc.as_object() {
            Some(m)
                if m.len() == 1
                    && m.get("error")
                        .and_then(Value::as_str)
                        .is_some_and(|e| !e.is_empty()) =>
            {
                Ok(if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "413"
                } else {
                    "4xx"
                })
            }
            _ => Err(format!("{status} without {{\"error\": <message>}}: {doc}")),
        }
    } else {
        Err(format!("{status}: {doc}"))
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// A 32-byte ChaCha seed from a u64 (splitmix64).
fn seed_bytes(mut x: u64) -> Vec<u8> {
    (0..4)
        .flat_map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)).to_le_bytes()
        })
        .collect()
}

#[test]
fn the_admission_path_survives_generated_and_mutated_reviews() {
    let cases: u32 = std::env::var("NSGUARD_FUZZ_CASES")
        .ok()
        .map(|v| v.parse().expect("NSGUARD_FUZZ_CASES is a number"))
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("NSGUARD_FUZZ_SEED")
        .ok()
        .map(|v| v.parse().expect("NSGUARD_FUZZ_SEED is a number"))
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("fuzz: seed {seed} (NSGUARD_FUZZ_SEED={seed} replays this run)");

    // One runtime for every case: building one per case would dominate the run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let router = webhook_router(Arc::new(Admission {
        engine: None,
        policy: Policy::default().into(),
        check_timeout: Duration::from_secs(5),
        own_namespace: Some("nsguard-system".into()),
        metrics: Arc::new(Metrics::default()),
        events: None,
        slots: None,
        peer_limit: None,
    }));

    // Shrinking re-runs a failing case hundreds of times: print its first panic in full, and
    // only count the rest (panics of other test threads print as usual).
    let default_hook = Arc::new(std::panic::take_hook());
    let first = AtomicBool::new(true);
    let fuzz_thread = std::thread::current().id();
    std::panic::set_hook(Box::new({
        let default_hook = default_hook.clone();
        move |info| {
            if std::thread::current().id() != fuzz_thread || first.swap(false, Ordering::Relaxed) {
                default_hook(info);
            }
        }
    }));

    let ran = AtomicU64::new(0);
    let panics = AtomicU64::new(0);
    let tally: Mutex<BTreeMap<String, u64>> = Mutex::default();
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 120_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let started = Instant::now();
    let result = runner.run(&case(), |case| {
        ran.fetch_add(1, Ordering::Relaxed);
        let uri = if case.query.is_empty() {
            "/validate".to_string()
        } else {
            format!("/validate?{}", case.query)
        };
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(case.body.clone()))
            .map_err(|e| TestCaseError::fail(format!("test harness: request: {e}")))?;
        let answered = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let resp = router.clone().oneshot(req).await.expect("infallible");
                let status = resp.status();
                let bytes = resp.into_body().collect().await.map(|c| c.to_bytes());
                (status, bytes)
            })
        }));
        let (status, bytes) = match answered {
            Ok(a) => a,
            Err(p) => {
                panics.fetch_add(1, Ordering::Relaxed);
                return Err(TestCaseError::fail(format!(
                    "panic: {}",
                    panic_message(&*p)
                )));
            }
        };
        let bytes = bytes.map_err(|e| TestCaseError::fail(format!("{status}: body error: {e}")))?;
        let outcome = check(&case.body, status, &bytes).map_err(TestCaseError::fail)?;
        *tally
            .lock()
            .unwrap()
            .entry(format!("{:<8} {outcome}", case.class))
            .or_default() += 1;
        Ok(())
    });
    let took = started.elapsed();
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| default_hook(info)));
    let ran = ran.load(Ordering::Relaxed);
    let panics = panics.load(Ordering::Relaxed);
    match result {
        Ok(()) => {
            for (what, n) in tally.lock().unwrap().iter() {
                println!("fuzz:   {n:>9}  {what}");
            }
            println!(
                "fuzz: {:.1} s, {:.0} cases/s",
                took.as_secs_f64(),
                ran as f64 / took.as_secs_f64()
            );
            assert_eq!(ran, u64::from(cases), "every case ran once");
            println!("fuzz: {ran} cases, {panics} panics");
        }
        Err(TestError::Fail(why, case)) => {
            let path = std::env::temp_dir().join("nsguard-fuzz-failure.bin");
            let _ = std::fs::write(&path, &case.body);
            panic!(
                "fuzz: seed {seed}: {why}\nminimal case (body written to {}): {case:?}\n({ran} cases run, {panics} panics)",
                path.display()
            );
        }
        Err(TestError::Abort(why)) => panic!("fuzz: seed {seed}: aborted: {why}"),
    }
}

/// The property itself can fail: each of these answers breaks it.
#[test]
fn the_property_rejects_bad_answers() {
    let review = br#"{"request": {"uid": "u-1"}}"#;
    let ok = |uid: &str| {
        format!(
            r#"{{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {{"uid": "{uid}", "allowed": true}}}}"#
        )
    };
    assert!(check(review, StatusCode::OK, ok("u-1").as_bytes()).is_ok());
    assert!(check(review, StatusCode::BAD_REQUEST, br#"{"error": "no"}"#).is_ok());
    let (other_uid, no_uid) = (ok("u-2"), ok(""));
    let bad: &[(&[u8], StatusCode, &[u8])] = &[
        (review, StatusCode::OK, other_uid.as_bytes()),
        (review, StatusCode::OK, b""),
        (
            review,
            StatusCode::OK,
            br#"{"response": {"uid": "u-1", "allowed": true}}"#,
        ),
        (b"{not json", StatusCode::OK, no_uid.as_bytes()),
        (review, StatusCode::BAD_REQUEST, br#"{"error": ""}"#),
        (review, StatusCode::BAD_REQUEST, br#"{"message": "no"}"#),
        (review, StatusCode::BAD_REQUEST, b"no"),
        (
            review,
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error": "boom"}"#,
        ),
    ];
    for (sent, status, answer) in bad {
        assert!(
            check(sent, *status, answer).is_err(),
            "{status} {}",
            String::from_utf8_lossy(answer)
        );
    }
}
