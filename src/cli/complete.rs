//! `nsguard __complete WORD...`: completions in the protocol kubectl uses for plugins
//! (kubectl 1.26 and later run `kubectl_complete-nsguard` with the words after
//! `kubectl nsguard`; the archives ship that script, which calls this). One candidate a
//! line, then `:DIRECTIVE` (cobra's: 0 the shell's default, 4 no file completion).

use clap::{Arg, ArgAction, Command};

/// The hidden first argument: `nsguard __complete WORD...` (not a clap subcommand, so that
/// the words, `--help` among them, are never taken as flags).
pub const COMMAND: &str = "__complete";

/// Let the shell complete file names.
pub const DIRECTIVE_DEFAULT: u32 = 0;
/// Nothing to add: no file names either.
pub const DIRECTIVE_NO_FILES: u32 = 4;

/// What to complete the last of `words` (the word being typed, maybe empty) with, after
/// the words before it, under `root`; and the directive for the shell.
pub fn candidates(root: &Command, words: &[String]) -> (Vec<String>, u32) {
    let (typed, before) = match words.split_last() {
        Some((last, before)) => (last.as_str(), before),
        None => ("", &[][..]),
    };
    let mut current = root;
    let mut globals: Vec<&Arg> = root.get_arguments().filter(|a| a.is_global_set()).collect();
    let mut pending_value: Option<&Arg> = None;
    for word in before {
        if pending_value.take().is_some() {
            continue;
        }
        if word.starts_with('-') {
            if !word.contains('=') {
                pending_value = flag(current, &globals, word).filter(|a| takes_value(a));
            }
            continue;
        }
        if let Some(sub) = current.find_subcommand(word) {
            current = sub;
            globals.extend(current.get_arguments().filter(|a| a.is_global_set()));
        }
    }
    if let Some(arg) = pending_value {
        return values(arg, typed);
    }
    if let Some((name, value)) = typed.split_once('=')
        && let Some(arg) = flag(current, &globals, name).filter(|a| takes_value(a))
    {
        let (found, directive) = values(arg, value);
        return (
            found.into_iter().map(|v| format!("{name}={v}")).collect(),
            directive,
        );
    }
    if typed.starts_with('-') {
        let mut found: Vec<String> = current
            .get_arguments()
            .chain(globals.iter().copied())
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .chain(["--help".to_string()])
            .filter(|f| f.starts_with(typed))
            .collect();
        found.sort();
        found.dedup();
        return (found, DIRECTIVE_NO_FILES);
    }
    let found: Vec<String> = current
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .filter(|s| s.starts_with(typed))
        .collect();
    (found, DIRECTIVE_NO_FILES)
}

/// The flag `word` (`--long` or `-s`) of `command` or a global one.
fn flag<'a>(command: &'a Command, globals: &[&'a Arg], word: &str) -> Option<&'a Arg> {
    let name = word.split_once('=').map_or(word, |(n, _)| n);
    let matches = |a: &&Arg| {
        if let Some(long) = name.strip_prefix("--") {
            a.get_long() == Some(long)
        } else if let Some(short) = name.strip_prefix('-') {
            let mut chars = short.chars();
            matches!((chars.next(), chars.next()), (Some(c), None) if a.get_short() == Some(c))
        } else {
            false
        }
    };
    command
        .get_arguments()
        .find(matches)
        .or_else(|| globals.iter().copied().find(matches))
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

/// The values of `arg` that start with `typed`: its possible values, else file names for a
/// path, else nothing.
fn values(arg: &Arg, typed: &str) -> (Vec<String>, u32) {
    let possible = arg.get_possible_values();
    if possible.is_empty() {
        let path = matches!(
            arg.get_value_hint(),
            clap::ValueHint::FilePath | clap::ValueHint::DirPath | clap::ValueHint::AnyPath
        );
        return (
            Vec::new(),
            if path {
                DIRECTIVE_DEFAULT
            } else {
                DIRECTIVE_NO_FILES
            },
        );
    }
    let found = possible
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .filter(|v| v.starts_with(typed))
        .collect();
    (found, DIRECTIVE_NO_FILES)
}

/// Writes the candidates and the directive, as kubectl reads them.
pub fn print(
    root: &Command,
    words: &[String],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let (found, directive) = candidates(root, words);
    for candidate in found {
        writeln!(out, "{candidate}")?;
    }
    writeln!(out, ":{directive}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(line: &[&str]) -> (Vec<String>, u32) {
        let words: Vec<String> = line.iter().map(|w| w.to_string()).collect();
        candidates(&crate::cli::Cli::definition(), &words)
    }

    #[test]
    fn subcommands_flags_and_values_complete() {
        let (subs, directive) = complete(&[""]);
        for sub in [
            "serve",
            "check",
            "audit",
            "diagnose",
            "delete",
            "config",
            "completion",
        ] {
            assert!(subs.contains(&sub.to_string()), "{sub}: {subs:?}");
        }
        assert!(!subs.iter().any(|s| s.starts_with("__")), "{subs:?}");
        assert_eq!(directive, DIRECTIVE_NO_FILES);
        assert_eq!(complete(&["di"]).0, ["diagnose"]);
        let (flags, _) = complete(&["check", "team-a", "--"]);
        for flag in [
            "--output",
            "--namespace",
            "--context",
            "--kubeconfig",
            "--log-format",
        ] {
            assert!(flags.contains(&flag.to_string()), "{flag}: {flags:?}");
        }
        assert!(!flags.contains(&"--initial-sync".to_string()), "{flags:?}");
        assert!(!flags.contains(&"--listen".to_string()), "{flags:?}");
        assert_eq!(complete(&["check", "-o", "j"]).0, ["json"], "a value of -o");
        assert_eq!(
            complete(&["audit", "--output=p"]).0,
            ["--output=policyreport"]
        );
        assert_eq!(complete(&["config", "s"]).0, ["show"]);
        // A file flag leaves file names to the shell.
        assert_eq!(
            complete(&["check", "--kubeconfig", ""]).1,
            DIRECTIVE_DEFAULT
        );
        // `-o` with its value given: back to the command's flags.
        assert!(complete(&["check", "-o", "json", "--ou"]).0 == ["--output"]);
    }

    #[test]
    fn the_protocol_ends_with_the_directive() {
        let mut out = Vec::new();
        print(
            &crate::cli::Cli::definition(),
            &["check".into(), "-o".into(), "ya".into()],
            &mut out,
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "yaml\n:4\n");
    }
}
