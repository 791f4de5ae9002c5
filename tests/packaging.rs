//! Release packaging: `deploy/release/dist.sh` packs a release archive (binary, LICENSE,
//! README, completions) with its SHA256SUMS, `deploy/krew/generate.sh` makes the krew plugin
//! manifest from those checksums for every platform, and the manifest's sha256 is the
//! archive's; the workflows pass actionlint; the chart's README values table is generated
//! from values.yaml and current; a fresh clone stays clean after `nsguard certs`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha256_of(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

/// Checks a krew manifest's shape: a `Plugin` named nsguard whose every platform installs the
/// `nsguard` binary (run as `kubectl-nsguard`, it speaks as `kubectl nsguard`) and LICENSE.
fn check_krew_manifest(doc: &Value, version: &str) -> Vec<Value> {
    assert_eq!(
        doc["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(doc["kind"], "Plugin");
    assert_eq!(doc["metadata"]["name"], "nsguard");
    assert_eq!(doc["spec"]["version"], format!("v{version}"));
    assert!(doc["spec"]["shortDescription"].as_str().unwrap().len() <= 128);
    assert!(
        !doc["spec"]["description"]
            .as_str()
            .unwrap()
            .contains("musl")
    );
    let platforms = doc["spec"]["platforms"].as_array().unwrap().clone();
    assert!(!platforms.is_empty());
    for p in &platforms {
        let (os, arch) = (
            p["selector"]["matchLabels"]["os"].as_str().unwrap(),
            p["selector"]["matchLabels"]["arch"].as_str().unwrap(),
        );
        // Windows has no symlinks for krew to name the plugin: the binary carries the name.
        let (bin, complete) = if os == "windows" {
            ("kubectl-nsguard.exe", "kubectl_complete-nsguard.cmd")
        } else {
            ("nsguard", "kubectl_complete-nsguard")
        };
        assert_eq!(p["bin"], bin, "{p}");
        assert_eq!(
            p["uri"],
            format!(
                "https://github.com/nsguard/nsguard/releases/download/v{version}/nsguard-v{version}-{os}-{arch}.tar.gz"
            )
        );
        let files: Vec<&str> = p["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["from"].as_str().unwrap())
            .collect();
        assert_eq!(files, [bin, complete, "LICENSE"], "{p}");
    }
    platforms
}

fn generate_krew(version: &str, sums: &Path, all: bool) -> std::process::Output {
    let script = localcluster::workspace_root().join("deploy/krew/generate.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(version).arg(sums);
    if all {
        cmd.arg("--all");
    }
    cmd.output().unwrap()
}

/// The release archive of this platform, packed from the nsguard built for the tests: it
/// holds what the README promises, SHA256SUMS verifies it, and the krew manifest generated
/// from SHA256SUMS names it with its sha256.
#[test]
fn the_release_archive_and_the_krew_manifest_agree() {
    let root = localcluster::workspace_root();
    let version = env!("CARGO_PKG_VERSION");
    let out = tempfile::tempdir().unwrap();
    let (target, os, arch) = match std::env::consts::ARCH {
        "aarch64" => ("aarch64-unknown-linux-gnu", "linux", "arm64"),
        _ => ("x86_64-unknown-linux-gnu", "linux", "amd64"),
    };
    let printed = run(Command::new("bash")
        .arg(root.join("deploy/release/dist.sh"))
        .arg(target)
        .arg(env!("CARGO_BIN_EXE_nsguard"))
        .arg(out.path()));
    let name = format!("nsguard-v{version}-{os}-{arch}.tar.gz");
    let archive = out.path().join(&name);
    assert_eq!(printed.trim(), archive.display().to_string());

    let listing = run(Command::new("tar").arg("-tzvf").arg(&archive));
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    for wanted in [
        "nsguard",
        "kubectl_complete-nsguard",
        "LICENSE",
        "README.md",
        "completions/nsguard.bash",
        "completions/_nsguard",
        "completions/nsguard.fish",
    ] {
        assert!(names.contains(&wanted), "{wanted} not in {names:?}");
    }
    assert!(
        listing.lines().all(|l| l.contains(" 0/0 ")),
        "owned by root, whoever packed it: {listing}"
    );
    let unpacked = tempfile::tempdir().unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(unpacked.path()));
    let license = std::fs::read_to_string(unpacked.path().join("LICENSE")).unwrap();
    assert!(license.contains("Apache License") && license.contains("Version 2.0"));
    let said = run(Command::new(unpacked.path().join("nsguard")).arg("--version"));
    assert_eq!(said.trim(), format!("nsguard {version}"));
    let bash = std::fs::read_to_string(unpacked.path().join("completions/nsguard.bash")).unwrap();
    assert!(bash.contains("nsguard"), "{bash}");
    // kubectl's plugin completion: the script runs `kubectl-nsguard __complete` from the PATH.
    let plugin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        unpacked.path().join("nsguard"),
        plugin_dir.path().join("kubectl-nsguard"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        plugin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let completed = run(
        Command::new(unpacked.path().join("kubectl_complete-nsguard"))
            .args(["check", "--out"])
            .env("PATH", &path),
    );
    assert_eq!(completed, "--output\n:4\n");
    let completed = run(
        Command::new(unpacked.path().join("kubectl_complete-nsguard"))
            .arg("")
            .env("PATH", &path),
    );
    assert!(
        completed.lines().any(|l| l == "diagnose") && completed.ends_with(":4\n"),
        "{completed}"
    );

    let sums_path = out.path().join("SHA256SUMS");
    let sums = std::fs::read_to_string(&sums_path).unwrap();
    let sha = sha256_of(&archive);
    assert_eq!(sums, format!("{sha}  {name}\n"));
    run(Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(out.path()));

    // Packed again: the same bytes (a reproducible archive).
    run(Command::new("bash")
        .arg(root.join("deploy/release/dist.sh"))
        .arg(target)
        .arg(env!("CARGO_BIN_EXE_nsguard"))
        .arg(out.path()));
    assert_eq!(sha256_of(&archive), sha, "packing twice gave two archives");

    let generated = generate_krew(version, &sums_path, false);
    assert!(generated.status.success(), "{generated:?}");
    let doc: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&generated.stdout)).unwrap();
    let platforms = check_krew_manifest(&doc, version);
    assert_eq!(platforms.len(), 1, "{platforms:?}");
    assert_eq!(
        platforms[0]["sha256"], sha,
        "the manifest's sha256 is not the archive's"
    );
    assert_eq!(platforms[0]["selector"]["matchLabels"]["os"], os);
    assert_eq!(platforms[0]["selector"]["matchLabels"]["arch"], arch);
    // The release workflow requires every platform.
    assert!(!generate_krew(version, &sums_path, true).status.success());
}

/// With the archives of every platform (as the release workflow downloads them), the manifest
/// has one platform each, linux and darwin, amd64 and arm64, and windows amd64, each with its
/// own sha256; without the windows archive, `--all` refuses.
#[test]
fn the_krew_manifest_covers_every_platform_of_a_release() {
    let dir = tempfile::tempdir().unwrap();
    let platforms = [
        "linux-amd64",
        "linux-arm64",
        "darwin-amd64",
        "darwin-arm64",
        "windows-amd64",
    ];
    let sums: String = platforms
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{}  nsguard-v1.2.3-{p}.tar.gz\n",
                format!("{i:x}").repeat(64)
            )
        })
        .collect::<String>()
        + &format!("{}  nsguard-1.0.0.tgz\n", "f".repeat(64));
    let path = dir.path().join("SHA256SUMS");
    std::fs::write(&path, sums).unwrap();
    let generated = generate_krew("v1.2.3", &path, true);
    assert!(generated.status.success(), "{generated:?}");
    let doc: Value = serde_saphyr::from_str(&String::from_utf8_lossy(&generated.stdout)).unwrap();
    let got = check_krew_manifest(&doc, "1.2.3");
    assert_eq!(got.len(), 5);
    for (i, (p, want)) in got.iter().zip(platforms).enumerate() {
        let labels = &p["selector"]["matchLabels"];
        assert_eq!(
            format!(
                "{}-{}",
                labels["os"].as_str().unwrap(),
                labels["arch"].as_str().unwrap()
            ),
            want
        );
        assert_eq!(p["sha256"], format!("{i:x}").repeat(64));
    }
    let without_windows: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("windows"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, without_windows).unwrap();
    assert!(!generate_krew("v1.2.3", &path, true).status.success());
}

/// The CI and release workflows pass actionlint (built from its Go module by
/// `tests/actionlint/build.sh`, cached by version outside the repo), and the release builds
/// what the krew manifest and the README promise: static Linux binaries, macOS, Windows,
/// keyless signatures of the image, the chart and the checksums, an SBOM.
#[test]
fn the_workflows_pass_actionlint() {
    let root = localcluster::workspace_root();
    let printed = run(Command::new("bash").arg(root.join("tests/actionlint/build.sh")));
    let actionlint = printed.lines().last().unwrap().trim().to_string();
    let workflows = root.join(".github/workflows");
    for name in ["ci.yml", "release.yml"] {
        assert!(
            workflows.join(name).is_file(),
            "no .github/workflows/{name}"
        );
    }
    run(Command::new(&actionlint)
        .arg("-no-color")
        .current_dir(&root));
    let release = std::fs::read_to_string(workflows.join("release.yml")).unwrap();
    for wanted in [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "x86_64-apple-darwin",
        "aarch64-apple-darwin",
        "x86_64-pc-windows-msvc",
        "deploy/release/static.sh",
        "deploy/release/check-static.sh",
        "cosign sign --yes",
        "cosign sign-blob",
        "id-token: write",
        "spdx-json",
        "deploy/release/dist.sh",
        "deploy/krew/generate.sh",
        "--all",
        "docker/build-push-action",
        "linux/amd64,linux/arm64",
        "sbom: true",
        "provenance:",
        "helm push",
        "oci://",
    ] {
        assert!(release.contains(wanted), "release.yml has no {wanted}");
    }
}

/// Runs git in `dir` with no user or system configuration (a global excludes file could hide
/// the very files this test looks for) and returns its stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {} in {}: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh clone of the committed tree (not the working tree: uncommitted changes are not in
/// it) has `certs/README.md`, and `nsguard certs` run in it, with its defaults and as the
/// README runs it, writes its keys into `certs/` without `git status` showing anything.
#[test]
fn nsguard_certs_leaves_a_fresh_clone_clean() {
    let source = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    git(
        tmp.path(),
        &[
            "-c",
            &format!("safe.directory={source}"),
            "clone",
            "--quiet",
            source,
            "clone",
        ],
    );
    let clone = tmp.path().join("clone");
    assert_eq!(git(&clone, &["ls-files", "certs"]), "certs/README.md\n");
    assert!(clone.join("certs/README.md").is_file());
    assert_eq!(git(&clone, &["status", "--porcelain"]), "", "before");

    for args in [
        &[][..],
        &["--out-dir", "certs", "--dns", "nsguard.nsguard-system.svc"],
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsguard"));
        cmd.arg("certs").args(args).current_dir(&clone);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("NSGUARD_") {
                cmd.env_remove(name);
            }
        }
        let out = cmd.output().expect("running nsguard certs");
        assert!(out.status.success(), "nsguard certs {args:?}: {out:?}");
        for file in ["ca.crt", "ca.key", "tls.crt", "tls.key"] {
            let path = clone.join("certs").join(file);
            assert!(path.is_file(), "nsguard certs {args:?} wrote no {file}");
        }
        assert_eq!(
            git(&clone, &["status", "--porcelain", "--untracked-files=all"]),
            "",
            "nsguard certs {args:?} left files git would commit"
        );
    }
}

/// One row of the chart README's values table.
struct ValueRow {
    key: String,
    default: String,
    description: String,
}

/// The keys of values.yaml with their defaults and descriptions: a `# -- ` comment starts a
/// key's description and the comment lines under it continue it (helm-docs' convention). A
/// mapping with a description is one row; one without is a section whose keys are rows.
fn value_rows(yaml: &str) -> Vec<ValueRow> {
    let values: Value = serde_saphyr::from_str(yaml).expect("values.yaml is YAML");
    let mut rows = Vec::new();
    let mut description: Option<String> = None;
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            description = None;
            continue;
        }
        if let Some(limit) = skip_deeper_than {
            if indent > limit || trimmed.starts_with("- ") && indent == limit {
                continue;
            }
            skip_deeper_than = None;
        }
        if let Some(text) = trimmed.strip_prefix("# -- ") {
            description = Some(text.trim().to_string());
            continue;
        }
        if let Some(text) = trimmed.strip_prefix('#') {
            if let Some(d) = description.as_mut() {
                d.push(' ');
                d.push_str(text.trim());
            }
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            continue;
        };
        if key.starts_with('-') || key.contains(' ') {
            continue;
        }
        while stack.last().is_some_and(|(i, _)| *i >= indent) {
            stack.pop();
        }
        let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).chain([key]).collect();
        let mut value = &values;
        for k in &path {
            value = &value[*k];
        }
        let section = rest.trim().is_empty() && value.as_object().is_some_and(|m| !m.is_empty());
        match description.take() {
            None if section => stack.push((indent, key.to_string())),
            description => {
                rows.push(ValueRow {
                    key: path.join("."),
                    default: serde_json::to_string(value).unwrap(),
                    description: description.unwrap_or_default(),
                });
                skip_deeper_than = Some(indent);
            }
        }
    }
    rows
}

fn values_table(rows: &[ValueRow]) -> String {
    let mut out = String::from("| Key | Default | Description |\n|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            r.key,
            r.default.replace('|', "\\|"),
            r.description.replace('|', "\\|")
        ));
    }
    out
}

/// charts/nsguard/README.md's values table is generated from values.yaml's comments and is
/// current; `make chart-readme` (NSGUARD_BLESS=1) rewrites it. Every key has a description,
/// and every key of the schema is in values.yaml (so in the table), but `global`.
#[test]
fn the_chart_readme_is_current() {
    let chart = localcluster::workspace_root().join("charts/nsguard");
    let yaml = std::fs::read_to_string(chart.join("values.yaml")).unwrap();
    let rows = value_rows(&yaml);
    for r in &rows {
        assert!(
            !r.description.is_empty(),
            "{}: no `# -- ` description in values.yaml",
            r.key
        );
    }
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("values.schema.json")).unwrap())
            .unwrap();
    for key in schema["properties"].as_object().unwrap().keys() {
        if key != "global" {
            assert!(
                rows.iter()
                    .any(|r| r.key == *key || r.key.starts_with(&format!("{key}."))),
                "{key} is in the schema but not in values.yaml"
            );
        }
    }
    for knob in [
        "extraArgs",
        "extraEnv",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "priorityClassName",
        "imagePullSecrets",
        "podAnnotations",
        "podLabels",
        "serviceAccount.create",
        "serviceAccount.name",
        "serviceAccount.annotations",
        "serviceMonitor.labels",
        "prometheusRule.labels",
        "grafanaDashboard.labels",
    ] {
        assert!(rows.iter().any(|r| r.key == knob), "no row for {knob}");
    }
    let (start, end) = ("<!-- values:start -->\n", "<!-- values:end -->");
    let path = chart.join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = readme.split_once(start).expect("the values:start marker");
    let (current, tail) = rest.split_once(end).expect("the values:end marker");
    let table = values_table(&rows);
    if std::env::var_os("NSGUARD_BLESS").is_some() {
        std::fs::write(&path, format!("{head}{start}{table}{end}{tail}")).unwrap();
    } else {
        assert!(
            current == table,
            "charts/nsguard/README.md is not current: run `make chart-readme`"
        );
    }
}

#[test]
fn the_values_table_reads_comments_sections_and_blocks() {
    let rows = value_rows(
        "# -- A.\n# More.\na: 1\n\n# plain\nb:\n  # -- B c.\n  c: [x]\n  # -- B d.\n  d:\n    e: 1\n  # -- List.\n  f:\n  - g: 1\n    h: 2\n  # -- After.\n  i: \"\"\n",
    );
    let got: Vec<(String, String, String)> = rows
        .into_iter()
        .map(|r| (r.key, r.default, r.description))
        .collect();
    let want = [
        ("a", "1", "A. More."),
        ("b.c", "[\"x\"]", "B c."),
        ("b.d", "{\"e\":1}", "B d."),
        ("b.f", "[{\"g\":1,\"h\":2}]", "List."),
        ("b.i", "\"\"", "After."),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(got, want);
}

/// The README's install-from-artifacts block names what the release publishes, at this
/// version: the chart where the release workflow pushes it, the kustomize base at the tag,
/// the krew manifest and an archive of the release with its SHA256SUMS, verified; and it is
/// valid shell.
#[test]
fn the_readme_installs_from_the_release_artifacts() {
    let root = localcluster::workspace_root();
    let version = env!("CARGO_PKG_VERSION");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split_once("<!-- artifact-install -->\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block.to_string())
        .expect("the install-from-artifacts block in the README");
    let release = std::fs::read_to_string(root.join(".github/workflows/release.yml")).unwrap();
    // The workflow pushes to ghcr.io/<owner>/charts; the owner is the krew manifest's.
    assert!(release.contains(r#"helm push target/dist/nsguard-*.tgz "oci://$CHARTS""#));
    assert!(release.contains("CHARTS: ghcr.io/${{ github.repository_owner }}/charts"));
    let download = format!("https://github.com/nsguard/nsguard/releases/download/v{version}");
    for wanted in [
        "helm install nsguard oci://ghcr.io/nsguard/charts/nsguard ".to_string(),
        format!(
            "kubectl apply -k \"github.com/nsguard/nsguard//manifests/overlays/enforce?ref=v{version}\""
        ),
        format!("kubectl krew install --manifest-url={download}/nsguard.krew.yaml"),
        format!("{download}/nsguard-v{version}-linux-amd64.tar.gz"),
        format!("{download}/SHA256SUMS"),
        "sha256sum -c --ignore-missing SHA256SUMS".to_string(),
    ] {
        assert!(
            block.contains(&wanted),
            "the README's block has no {wanted}:\n{block}"
        );
    }
    // The krew manifest points at the same place (NSGUARD_RELEASE_URL unset).
    let krew = std::fs::read_to_string(root.join("deploy/krew/generate.sh")).unwrap();
    assert!(krew.contains("https://github.com/nsguard/nsguard/releases/download"));
    // The overlay it names exists.
    assert!(
        root.join("manifests/overlays/enforce/kustomization.yaml")
            .is_file()
    );
    run(Command::new("bash").args(["-n", "-c", &block]));
}
