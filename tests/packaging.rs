//! The krew plugin manifest template is a well-formed krew `Plugin` whose every platform
//! installs the `nsguard` binary (which, run as `kubectl-nsguard`, speaks as `kubectl nsguard`).

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
