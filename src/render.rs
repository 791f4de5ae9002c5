//! Renderers: the admission denial message, warnings, and the CLI's table and JSON.

use crate::checks::report::{Finding, Report};

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
            "not checked: {} (--skip-resource): one left with a finalizer could hang the deletion",
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

fn finding_lines(f: &Finding) -> String {
    let mut s = format!("- [{}] {}", f.check, f.summary);
    if !f.evidence.is_empty() {
        s.push_str(&format!("\n    evidence: {}", f.evidence.join("; ")));
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

/// The report as a readable table (the CLI).
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let verdict = if report.blocking().count() > 0 {
        "WOULD HANG"
    } else if report.findings.is_empty() {
        "OK"
    } else {
        "WARNINGS"
    };
    out.push_str(&format!("namespace {}: {verdict}\n", report.namespace));
    if report.findings.is_empty() && report.not_checked.is_empty() {
        if report.not_checked_by_choice.is_empty() {
            out.push_str("  no findings: the deletion would complete\n");
        } else {
            out.push_str("  no findings in what was checked\n");
        }
    }
    out.push_str(&format!(
        "{:<10} {:<30} {}\n",
        "SEVERITY", "CHECK", "FINDING"
    ));
    for f in &report.findings {
        out.push_str(&format!(
            "{:<10} {:<30} {}\n",
            f.severity.as_str(),
            f.check.as_str(),
            f.summary
        ));
        for e in &f.evidence {
            out.push_str(&format!("{:<41} evidence: {e}\n", ""));
        }
        out.push_str(&format!("{:<41} fix: {}\n", "", f.remedy.text));
        if let Some(cmd) = &f.remedy.command {
            out.push_str(&format!("{:<41}   {cmd}\n", ""));
        }
    }
    for h in &report.handled {
        out.push_str(&format!(
            "handled: {} finalizer {} by {}\n",
            h.resource, h.finalizer, h.controller
        ));
    }
    for n in &report.not_checked {
        out.push_str(&format!("not checked: {n}\n"));
    }
    if let Some(caveat) = not_checked_by_choice(report) {
        out.push_str(&format!("{caveat}\n"));
    }
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
        assert!(table(&report).contains("the deletion would complete"));
        assert_eq!(not_checked_by_choice(&report), None);
        report.not_checked_by_choice = vec!["secrets".into()];
        let t = table(&report);
        assert!(!t.contains("the deletion would complete"), "{t}");
        assert!(t.contains("not checked: secrets (--skip-resource)"), "{t}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["notCheckedByChoice"], serde_json::json!(["secrets"]));
        let caveat = not_checked_by_choice(&report).unwrap();
        assert!(caveat.chars().count() <= WARNING_MAX_CHARS, "{caveat}");
    }
}
