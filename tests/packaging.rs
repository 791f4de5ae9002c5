//! The krew plugin manifest template is a well-formed krew `Plugin` whose every platform
//! installs the `nsguard` binary (which, run as `kubectl-nsguard`, speaks as `kubectl nsguard`),
//! and a fresh clone stays clean after `nsguard certs`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_krew_manifest_is_a_plugin_for_every_platform() {
    let path = localcluster::workspace_root().join("deploy/krew/nsguard.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(
        doc["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    assert_eq!(doc["kind"], "Plugin");
    assert_eq!(doc["metadata"]["name"], "nsguard");
    assert!(doc["spec"]["shortDescription"].as_str().unwrap().len() <= 128);
    let platforms = doc["spec"]["platforms"].as_array().unwrap();
    assert!(!platforms.is_empty());
    for p in platforms {
        assert_eq!(p["bin"], "nsguard", "{p}");
        assert!(p["uri"].as_str().unwrap().starts_with("https://"), "{p}");
        assert!(p["selector"]["matchLabels"]["os"].is_string(), "{p}");
        let files = p["files"].as_array().unwrap();
        assert!(files.iter().any(|f| f["from"] == "nsguard"), "{p}");
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
