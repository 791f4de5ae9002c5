//! Renderers: the admission denial message, warnings, and the CLI's tables, names and
//! Graphviz digraph.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use comfy_table::{CellAlignment, ContentArrangement, Table};

use crate::checks::report::{Finding, ObjectKind, Report, Verdict};
use crate::facts::Facts;
use crate::facts::controllers::Liveness;

/// Warnings longer than this are cut (the API recommends 120 characters).
pub const WARNING_MAX_CHARS: usize = 120;

/// Replaces control characters (the API server silently drops warnings containing them).
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// One warning per finding, `<severity> <check>: <summary>`.
pub fn finding_warnings(report: &Report) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| format!("{} {}: {}", f.severity.as_str(), f.check, f.summary))
        .collect()
}

/// The standing caveat of `--skip-resource`, when types were left out: nsguard never read
/// them, so what they hold is not known. Starts with `not checked: `, as it is shown.
pub fn not_checked_by_choice(report: &Report) -> Option<String> {
    skipped_caveat(&report.not_checked_by_choice)
}

/// The caveat for the types in `skipped` (left out with `--skip-resource`); `None` if none.
pub fn skipped_caveat(skipped: &[String]) -> Option<String> {
    (!skipped.is_empty()).then(|| {
        format!(
            "not checked: {} (skipped by configuration): one left with a finalizer could hang the deletion",
            skipped.join(", ")
        )
    })
}

/// Sanitized, cut to length, at most `max` of them and then one that says how many more.
pub fn bound_warnings(warnings: Vec<String>, max: usize, namespace: &str) -> Vec<String> {
    let total = warnings.len();
    let mut out: Vec<String> = warnings
        .into_iter()
        .take(max)
        .map(|w| truncate(&sanitize(&w), WARNING_MAX_CHARS))
        .collect();
    if total > max {
        out.push(truncate(
            &sanitize(&format!(
                "and {} more: run nsguard check {namespace}",
                total - max
            )),
            WARNING_MAX_CHARS,
        ));
    }
    out
}

/// The evidence that says something the summary did not: a line the summary already holds,
/// whole or after its `label: `, is left out.
fn new_evidence(f: &Finding) -> Vec<&str> {
    f.evidence
        .iter()
        .map(String::as_str)
        .filter(|e| {
            let said = |t: &str| !t.trim().is_empty() && f.summary.contains(t.trim());
            !said(e) && !e.split_once(": ").is_some_and(|(_, rest)| said(rest))
        })
        .collect()
}

fn finding_lines(f: &Finding) -> String {
    let mut s = format!("- [{}] {}", f.check, f.summary);
    let evidence = new_evidence(f);
    if !evidence.is_empty() {
        s.push_str(&format!("\n    evidence: {}", evidence.join("; ")));
    }
    s.push_str(&format!("\n    fix: {}", f.remedy.text));
    if let Some(cmd) = &f.remedy.command {
        s.push_str(&format!(": {cmd}"));
    }
    s
}

/// The denial: names each blocker, why, and its remedy.
pub fn denial_message(report: &Report) -> String {
    let blockers: Vec<String> = report.blocking().map(finding_lines).collect();
    format!(
        "namespace {} would hang in Terminating ({} blocker{}); nsguard denied the deletion:\n{}\nTo delete anyway, annotate the namespace {}=<reason>.",
        report.namespace,
        blockers.len(),
        if blockers.len() == 1 { "" } else { "s" },
        blockers.join("\n"),
        crate::checks::report::OVERRIDE_ANNOTATION,
    )
}

/// Columns as kubectl prints them: a header, no borders, three spaces between columns,
/// left-aligned, no trailing spaces; a cell may hold several lines.
pub fn grid(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied())
        .add_rows(rows);
    let last = header.len().saturating_sub(1);
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i == last { 0 } else { 3 }));
        column.set_cell_alignment(CellAlignment::Left);
    }
    let mut out = String::new();
    for line in table.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The headline word of a verdict, as the table's first line says it.
pub fn headline(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Clean => "OK",
        Verdict::Warnings => "WARNINGS",
        Verdict::WouldHang => "WOULD HANG",
    }
}

/// The report as a readable table (the CLI); `wide` adds each finding's objects and evidence.
/// The headline is [`Report::verdict`]'s, so it always agrees with the exit code.
pub fn table(report: &Report, wide: bool) -> String {
    let verdict = report.verdict();
    let mut out = format!("namespace {}: {}\n", report.namespace, headline(verdict));
    if verdict == Verdict::Clean {
        if report.not_checked_by_choice.is_empty() {
            out.push_str("  no findings: the deletion would complete\n");
        } else {
            out.push_str("  no findings in what was checked\n");
        }
    } else if report.findings.is_empty() {
        out.push_str("  no findings, but not everything was checked (below)\n");
    }
    if !report.findings.is_empty() {
        let mut header = vec!["SEVERITY", "CHECK", "FINDING"];
        if wide {
            header.push("OBJECTS");
        }
        let rows = report
            .findings
            .iter()
            .map(|f| {
                let mut finding = f.summary.clone();
                if wide {
                    for e in &f.evidence {
                        let _ = write!(finding, "\nevidence: {e}");
                    }
                }
                let _ = write!(finding, "\nfix: {}", f.remedy.text);
                if let Some(cmd) = &f.remedy.command {
                    let _ = write!(finding, "\n  {cmd}");
                }
                let mut row = vec![
                    f.severity.as_str().to_string(),
                    f.check.to_string(),
                    finding,
                ];
                if wide {
                    row.push(
                        f.objects
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                }
                row
            })
            .collect();
        out.push_str(&grid(&header, rows));
    }
    for h in &report.handled {
        let _ = writeln!(
            out,
            "handled: {} finalizer {} by {}",
            h.resource, h.finalizer, h.controller
        );
    }
    for n in &report.not_checked {
        let _ = writeln!(out, "not checked: {n}");
    }
    if let Some(caveat) = not_checked_by_choice(report) {
        let _ = writeln!(out, "{caveat}");
    }
    out
}

/// The objects of the blocking findings, as kubectl's `-o name` writes them (`KIND/NAME`,
/// the kind lower case, or `resource.group/NAME` for content), each once, in order.
pub fn blocking_object_names(report: &Report) -> Vec<String> {
    let mut seen = BTreeSet::new();
    report
        .blocking()
        .flat_map(|f| &f.objects)
        .map(|o| format!("{}/{}", o.kind.to_string().to_lowercase(), o.name))
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

/// A DOT string literal.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Wraps each line of `s` at about `width` characters, for a node label.
fn wrapped(s: &str, width: usize) -> String {
    let mut out = String::new();
    for (i, text) in s.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut line = 0;
        for word in text.split_whitespace() {
            if line > 0 && line + 1 + word.chars().count() > width {
                out.push('\n');
                line = 0;
            } else if line > 0 {
                out.push(' ');
                line += 1;
            }
            out.push_str(word);
            line += word.chars().count();
        }
    }
    out
}

/// Nodes and edges of a digraph, each once, in order of first use.
#[derive(Default)]
struct Graph {
    nodes: Vec<(String, String, &'static str)>,
    ids: BTreeSet<String>,
    edges: Vec<(String, String)>,
    pairs: BTreeSet<(String, String)>,
}

impl Graph {
    fn node(&mut self, id: &str, label: &str, style: &'static str) -> String {
        if self.ids.insert(id.to_string()) {
            self.nodes.push((id.to_string(), label.to_string(), style));
        }
        id.to_string()
    }

    fn edge(&mut self, from: &str, to: &str) {
        if self.pairs.insert((from.to_string(), to.to_string())) {
            self.edges.push((from.to_string(), to.to_string()));
        }
    }
}

const NAMESPACE_STYLE: &str = "shape=folder, style=filled, fillcolor=lightgrey";
const OBJECT_STYLE: &str = "shape=box";
const FINALIZER_STYLE: &str = "shape=hexagon";
const CONTROLLER_STYLE: &str = "shape=component";
const WHY_STYLE: &str = "shape=note, style=filled, fillcolor=mistyrose, color=red";
const LIVE_STYLE: &str = "shape=note, style=filled, fillcolor=honeydew";

/// Why a controller will not remove its finalizers (or will), as a chain's last node.
fn liveness(l: &Liveness) -> (String, &'static str) {
    let style = match l {
        Liveness::Live(_) => LIVE_STYLE,
        _ => WHY_STYLE,
    };
    (l.to_string(), style)
}

/// The blocking chain as a Graphviz digraph: the namespace, the objects of each blocking
/// finding, their finalizers, the controllers expected to remove them, and why each is not
/// live; for findings that are not about finalizers, the objects and why they block (the
/// finding and its evidence). `facts` supplies the finalizers and controllers; without them
/// every chain ends at the finding.
pub fn dot(namespace: &str, phase: &str, blocking: &[Finding], facts: Option<&Facts>) -> String {
    let mut g = Graph::default();
    let root = g.node(
        &format!("namespace/{namespace}"),
        &format!(
            "namespace {namespace}\n{phase}{}",
            if blocking.is_empty() {
                "\nnothing blocks its deletion"
            } else {
                ""
            }
        ),
        NAMESPACE_STYLE,
    );
    for (i, f) in blocking.iter().enumerate() {
        let finalizers = f.subject.finalized_type().is_some();
        let mut why = f.summary.clone();
        for e in f.evidence.iter().take(3) {
            why.push('\n');
            why.push_str(e);
        }
        let why_id = format!("finding/{i}");
        let mut chained = false;
        for o in &f.objects {
            let object = g.node(
                &format!("object/{o}"),
                &wrapped(&format!("{} {}", o.kind, o.name), 40),
                OBJECT_STYLE,
            );
            g.edge(&root, &object);
            let content = match (&o.kind, facts.filter(|_| finalizers)) {
                (ObjectKind::Content(gr), Some(facts)) => facts
                    .namespace
                    .content
                    .iter()
                    .find(|c| gr.is(&c.resource))
                    .and_then(|c| c.objects.iter().find(|x| x.name == o.name))
                    .map(|x| (facts, x, gr)),
                _ => None,
            };
            let Some((facts, object_facts, gr)) = content else {
                let w = g.node(
                    &why_id,
                    &wrapped(&format!("{}: {why}", f.check), 48),
                    WHY_STYLE,
                );
                g.edge(&object, &w);
                chained = true;
                continue;
            };
            for fin in object_facts
                .finalizers
                .iter()
                .filter(|x| !crate::facts::finalizers::is_built_in(x))
            {
                let fnode = g.node(
                    &format!("finalizer/{fin}"),
                    &format!("finalizer\n{fin}"),
                    FINALIZER_STYLE,
                );
                g.edge(&object, &fnode);
                chained = true;
                let rc = facts.namespace.controllers.get(&gr.to_string());
                // The type's controllers, less those declared for other finalizers only.
                let controllers: Vec<_> = rc
                    .map(|rc| rc.controllers.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter(|(e, _)| e.finalizers.as_ref().is_none_or(|fs| fs.contains(fin)))
                    .collect();
                if controllers.is_empty() {
                    let note = rc
                        .and_then(|rc| rc.notes.first().cloned())
                        .unwrap_or_else(|| "nsguard found no controller for it".into());
                    let w = g.node(
                        &format!("none/{gr}"),
                        &wrapped(&format!("no controller: {note}"), 48),
                        WHY_STYLE,
                    );
                    g.edge(&fnode, &w);
                }
                for (e, l) in controllers {
                    let c = g.node(
                        &format!("controller/{}", e.identity),
                        &wrapped(&format!("controller {}", e.identity), 40),
                        CONTROLLER_STYLE,
                    );
                    g.edge(&fnode, &c);
                    let (label, style) = liveness(l);
                    let w = g.node(
                        &format!("liveness/{}", e.identity),
                        &wrapped(&label, 48),
                        style,
                    );
                    g.edge(&c, &w);
                }
            }
        }
        if !chained {
            let w = g.node(
                &why_id,
                &wrapped(&format!("{}: {why}", f.check), 48),
                WHY_STYLE,
            );
            g.edge(&root, &w);
        }
    }
    let mut out = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        quoted(&format!("nsguard {namespace}"))
    );
    for (id, label, style) in &g.nodes {
        let _ = writeln!(out, "  {} [label={}, {style}];", quoted(id), quoted(label));
    }
    for (from, to) in &g.edges {
        let _ = writeln!(out, "  {} -> {};", quoted(from), quoted(to));
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_bounded_cut_and_clean() {
        let long = "x".repeat(300);
        let ws = vec![format!("a\nb\tc"), long, "3".into(), "4".into()];
        let out = bound_warnings(ws, 2, "team-a");
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], "a b c");
        assert_eq!(out[1].chars().count(), WARNING_MAX_CHARS);
        assert_eq!(out[2], "and 2 more: run nsguard check team-a");
        assert!(out.iter().all(|w| !w.chars().any(char::is_control)));
    }

    #[test]
    fn types_skipped_by_choice_are_a_caveat_in_the_table() {
        let mut report = Report {
            namespace: "team-a".into(),
            ..Default::default()
        };
        assert!(table(&report, false).contains("the deletion would complete"));
        assert_eq!(not_checked_by_choice(&report), None);
        report.not_checked_by_choice = vec!["secrets".into()];
        let t = table(&report, false);
        assert!(!t.contains("the deletion would complete"), "{t}");
        assert!(
            t.contains("not checked: secrets (skipped by configuration)"),
            "{t}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["notCheckedByChoice"], serde_json::json!(["secrets"]));
        let caveat = not_checked_by_choice(&report).unwrap();
        assert!(caveat.chars().count() <= WARNING_MAX_CHARS, "{caveat}");
    }

    use crate::checks::report::{CheckId, GroupResource, ObjectRef, Severity, Subject, remedy};
    use crate::facts::ServiceKey;
    use crate::facts::controllers::{Basis, Expected, Identity, ResourceControllers};

    fn gadgets() -> GroupResource {
        GroupResource::new("example.com", "gadgets")
    }

    /// A finding of `check`, about what that check's findings are about.
    fn finding(check: CheckId, severity: Severity) -> Finding {
        let subject = match check {
            CheckId::FinalizerController => Subject::Finalizer {
                resource: gadgets(),
                finalizer: "example.com/cleanup".into(),
            },
            CheckId::FinalizersPending => Subject::Finalizers {
                resource: gadgets(),
                finalizers: vec!["example.com/cleanup".into()],
            },
            _ => Subject::ApiService {
                name: "v1beta1.metrics.k8s.io".into(),
                service: ServiceKey {
                    namespace: "kube-system".into(),
                    name: "metrics-server".into(),
                },
            },
        };
        let mut f = Finding::new(
            check,
            subject,
            format!("{check} found"),
            remedy("do this", None),
        );
        f.severity = severity;
        f
    }

    /// The headline and the exit code come from one verdict: they cannot disagree, in
    /// particular when nothing was found but something was not checked.
    #[test]
    fn the_headline_is_the_verdicts() {
        let cases: Vec<(Report, Verdict, &str)> = vec![
            (Report::default(), Verdict::Clean, "OK"),
            (
                Report {
                    not_checked: vec!["list of widgets.example.com: timed out".into()],
                    ..Default::default()
                },
                Verdict::Warnings,
                "WARNINGS",
            ),
            (
                Report {
                    findings: vec![finding(CheckId::FinalizersPending, Severity::Advisory)],
                    ..Default::default()
                },
                Verdict::Warnings,
                "WARNINGS",
            ),
            (
                Report {
                    findings: vec![finding(CheckId::FinalizerController, Severity::Blocking)],
                    not_checked: vec!["x".into()],
                    ..Default::default()
                },
                Verdict::WouldHang,
                "WOULD HANG",
            ),
        ];
        for (mut report, verdict, word) in cases {
            report.namespace = "team-a".into();
            assert_eq!(report.verdict(), verdict);
            for wide in [false, true] {
                let t = table(&report, wide);
                let first = t.lines().next().unwrap();
                assert_eq!(first, format!("namespace team-a: {word}"), "{t}");
                assert!(
                    !t.contains("would complete") || verdict == Verdict::Clean,
                    "{t}"
                );
            }
        }
        let only_not_checked = Report {
            namespace: "team-a".into(),
            not_checked: vec!["list of widgets.example.com: timed out".into()],
            ..Default::default()
        };
        let t = table(&only_not_checked, false);
        assert!(
            t.contains("not checked: list of widgets.example.com"),
            "{t}"
        );
        assert_eq!(
            crate::cli::exit::of(only_not_checked.verdict()),
            crate::cli::exit::WARNINGS
        );
    }

    #[test]
    fn the_table_lines_up_and_wide_adds_objects_and_evidence() {
        let report = Report {
            namespace: "team-a".into(),
            findings: vec![
                finding(CheckId::FinalizerController, Severity::Blocking)
                    .object(ObjectRef::content(&gadgets(), "team-a", "g1"))
                    .evidence("finalizer example.com/cleanup"),
            ],
            ..Default::default()
        };
        let t = table(&report, false);
        let header = t.lines().nth(1).unwrap();
        assert!(header.starts_with("SEVERITY   CHECK"), "{t}");
        let row = t.lines().nth(2).unwrap();
        assert!(row.starts_with("blocking   finalizer-controller"), "{t}");
        assert_eq!(
            header.find("FINDING"),
            row.find("finalizer-controller found"),
            "{t}"
        );
        assert!(t.contains("fix: do this"), "{t}");
        assert!(!t.contains("evidence"), "{t}");
        assert!(t.lines().all(|l| l == l.trim_end()), "{t:?}");
        let w = table(&report, true);
        assert!(w.contains("OBJECTS"), "{w}");
        assert!(w.contains("gadgets.example.com team-a/g1"), "{w}");
        assert!(w.contains("evidence: finalizer example.com/cleanup"), "{w}");
        assert_eq!(
            blocking_object_names(&report),
            ["gadgets.example.com/g1".to_string()]
        );
        let mut listing = report.clone();
        listing.findings[0] = listing.findings[0]
            .clone()
            .object(ObjectRef::cluster(ObjectKind::ApiService, "v1.example.com"))
            .object(ObjectRef::content(&gadgets(), "team-a", "g1"));
        assert_eq!(
            blocking_object_names(&listing),
            ["gadgets.example.com/g1", "apiservice/v1.example.com"]
        );
    }

    /// A chain as `diagnose -o dot` draws it for a custom resource whose finalizer's
    /// controller is scaled to zero: namespace, object, finalizer,
    /// the controller expected, why it is not live; and a finding without finalizers.
    fn chain() -> String {
        let mut facts = crate::checks::fixtures::facts("team-a")
            .with_content(
                "example.com",
                "gadgets",
                &[(
                    "g1",
                    &["example.com/cleanup", "kubernetes.io/pvc-protection"],
                )],
            )
            .build();
        facts.namespace.controllers.insert(
            "gadgets.example.com".into(),
            ResourceControllers {
                controllers: vec![(
                    Expected {
                        identity: Identity::ServiceAccount {
                            namespace: "gadget-system".into(),
                            name: "gadget-operator".into(),
                        },
                        source: Basis::Rbac("ClusterRole gadget-operator".into()),
                        resource_names: None,
                        finalizers: None,
                        groups: BTreeSet::new(),
                    },
                    Liveness::NotLive {
                        reason: "Deployment gadget-system/gadget-operator has 0 replicas".into(),
                        fix: None,
                    },
                )],
                notes: vec![],
            },
        );
        let blocking =
            vec![
                finding(CheckId::FinalizerController, Severity::Blocking)
                    .object(ObjectRef::content(&gadgets(), "team-a", "g1")),
                finding(CheckId::ApiserviceUnavailable, Severity::Blocking)
                    .object(ObjectRef::cluster(
                        ObjectKind::ApiService,
                        "v1beta1.metrics.k8s.io",
                    ))
                    .evidence("Available=False \"quoted\" reason"),
            ];
        dot("team-a", "Terminating", &blocking, Some(&facts))
    }

    #[test]
    fn the_dot_chain_runs_from_namespace_to_why_the_controller_is_not_live() {
        let d = chain();
        assert!(d.starts_with("digraph \"nsguard team-a\" {\n"), "{d}");
        assert!(d.ends_with("}\n"), "{d}");
        for edge in [
            "\"namespace/team-a\" -> \"object/gadgets.example.com team-a/g1\";",
            "\"object/gadgets.example.com team-a/g1\" -> \"finalizer/example.com/cleanup\";",
            "\"finalizer/example.com/cleanup\" -> \"controller/ServiceAccount gadget-system/gadget-operator\";",
            "\"controller/ServiceAccount gadget-system/gadget-operator\" -> \"liveness/ServiceAccount gadget-system/gadget-operator\";",
            "\"namespace/team-a\" -> \"object/APIService v1beta1.metrics.k8s.io\";",
            "\"object/APIService v1beta1.metrics.k8s.io\" -> \"finding/1\";",
        ] {
            assert!(d.contains(edge), "{edge}\n{d}");
        }
        assert!(
            d.contains(
                "[label=\"not live: Deployment\\ngadget-system/gadget-operator has 0 replicas\""
            ),
            "{d}"
        );
        // Kubernetes' own finalizers are not part of the chain; quotes are escaped.
        assert!(!d.contains("pvc-protection"), "{d}");
        assert!(d.contains("\\\"quoted\\\""), "{d}");
        // Every edge joins declared nodes.
        let declared: BTreeSet<&str> = d
            .lines()
            .filter(|l| l.contains("[label="))
            .filter_map(|l| l.trim().split(" [label=").next())
            .collect();
        for l in d.lines().filter(|l| l.contains(" -> ")) {
            let (from, to) = l.trim().trim_end_matches(';').split_once(" -> ").unwrap();
            assert!(declared.contains(from) && declared.contains(to), "{l}");
        }
    }

    /// Graphviz itself reads it, when installed (`apt-get install graphviz`).
    #[test]
    fn graphviz_renders_the_dot_chain() {
        use std::io::Write;
        let Ok(mut child) = std::process::Command::new("dot")
            .arg("-Tsvg")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!(
                "note: Graphviz `dot` is not installed; the DOT output was only checked structurally"
            );
            return;
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(chain().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.trim().is_empty(), "dot warned: {stderr}");
        let svg = String::from_utf8_lossy(&out.stdout);
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains("example.com/cleanup"), "{svg}");
        let clean = dot("quiet", "Active", &[], None);
        assert!(clean.contains("nothing blocks its deletion"), "{clean}");
    }

    #[test]
    fn a_denial_says_each_fact_once() {
        use crate::checks::report::{CheckId, Finding, Subject, remedy};
        let f = Finding::new(
            CheckId::FinalizerController,
            Subject::Namespace,
            "gadgets.example.com finalizer example.com/cleanup (1 objects) has no live controller: Deployment op scaled to 0",
            remedy("restore the operator", None),
        )
        .evidence("Deployment op scaled to 0")
        .evidence("ServiceAccount ops/op (RBAC): Deployment op scaled to 0")
        .evidence("objects holding example.com/cleanup: g1")
        .evidence("one")
        .evidence("two");
        let text = finding_lines(&f);
        assert_eq!(text.matches("scaled to 0").count(), 1, "{text}");
        assert!(
            text.contains("evidence: objects holding example.com/cleanup: g1; one; two"),
            "{text}"
        );
    }
}
