//! The configuration: everything that decides a verdict, as one YAML document. The webhook
//! reads it from a file (mounted from a ConfigMap) and reloads it when it changes; the CLI
//! reads a file or the webhook's ConfigMap; flags override either. The format is documented
//! in `docs/configuration.md`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use clap::ValueEnum;
use serde::Deserialize;
use thiserror::Error;

use crate::checks::report::{CheckId, Severity};
use crate::checks::{Setting, Settings};
use crate::facts::controllers::{Declarations, Identity};
use crate::output::policy::Mode;

/// The key holding the configuration in the ConfigMap.
pub const CONFIG_MAP_KEY: &str = "config.yaml";
/// The webhook's ConfigMap, as the chart and the manifests install it.
pub const DEFAULT_CONFIG_MAP: &str = "nsguard-system/nsguard-config";

/// A configuration that cannot be used, naming what is wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not YAML, an unknown key, or a value of the wrong type (the parser's message names the
    /// key and the line).
    #[error("{0}")]
    Syntax(String),
    /// Keys whose values are not valid, as `key: why`.
    #[error("{}", join_invalid(.0))]
    Invalid(Vec<(String, String)>),
}

fn join_invalid(bad: &[(String, String)]) -> String {
    bad.iter()
        .map(|(key, why)| format!("{key}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The document as written: every key optional. Values are read as text and checked in
/// [`Layer::parse`], so an error names the key and says what would be valid.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    mode: Option<String>,
    bypass_groups: Option<Vec<String>>,
    checks: Option<BTreeMap<String, String>>,
    finalizer_stuck_after: Option<String>,
    apiservice_grace: Option<String>,
    backend_grace: Option<String>,
    finalizer_controllers: Option<BTreeMap<String, Vec<String>>>,
    skip_resources: Option<Vec<String>>,
    initial_sync: Option<String>,
}

/// What one source (a file, a ConfigMap, the flags) sets; `None` or empty: not set there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layer {
    /// `enforce`, `warn` or `audit` (the webhook only).
    pub mode: Option<Mode>,
    /// Groups whose members may delete despite blockers, with a warning (the webhook only).
    pub bypass_groups: Option<Vec<String>>,
    /// Per-check settings, merged check by check over the defaults.
    pub checks: BTreeMap<CheckId, Setting>,
    /// How long an object may be deleting with finalizers before it counts as stuck.
    pub finalizer_stuck_after: Option<Duration>,
    /// How long an APIService that was Available may be unavailable before it blocks.
    pub apiservice_grace: Option<Duration>,
    /// How long a webhook's Service may have no ready endpoints before it blocks.
    pub backend_grace: Option<Duration>,
    /// Declared finalizer controllers, merged key by key.
    pub finalizer_controllers: BTreeMap<String, Vec<Identity>>,
    /// Types never listed nor watched; replaces the list of a lower source.
    pub skip_resources: Option<BTreeSet<String>>,
    /// How the content index lists each type at start and after a 410.
    pub initial_sync: Option<InitialSync>,
}

/// How the content index lists a type at start (and again after its watch expired): a
/// consistent streaming list where the API server offers one, or a paginated LIST.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum)]
pub enum InitialSync {
    /// A streaming list first; a type whose server refuses it (or never ends it) is listed,
    /// from then on.
    #[default]
    Auto,
    /// Paginated LISTs only, as before streaming lists existed.
    List,
    /// Streaming lists only: a type whose server refuses them is failing (listed at each
    /// review) and the streaming list is tried again with backoff.
    Stream,
}

impl InitialSync {
    /// As written in the configuration and the flag.
    pub fn as_str(self) -> &'static str {
        match self {
            InitialSync::Auto => "auto",
            InitialSync::List => "list",
            InitialSync::Stream => "stream",
        }
    }
}

impl Layer {
    /// Parses a configuration document. An empty document (or only comments) sets nothing.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let only_comments = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---");
        let doc: Document = if only_comments {
            Document::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?
        };
        let mut bad: Vec<(String, String)> = Vec::new();
        let mut layer = Layer::default();
        if let Some(mode) = doc.mode {
            match Mode::from_str(mode.trim(), false) {
                Ok(m) => layer.mode = Some(m),
                Err(_) => bad.push((
                    "mode".into(),
                    format!("{mode:?}: expected enforce, warn or audit"),
                )),
            }
        }
        if let Some(groups) = doc.bypass_groups {
            if let Some(empty) = groups.iter().position(|g| g.trim().is_empty()) {
                bad.push((format!("bypass_groups[{empty}]"), "empty group name".into()));
            }
            layer.bypass_groups = Some(groups.into_iter().map(|g| g.trim().into()).collect());
        }
        for (id, setting) in doc.checks.unwrap_or_default() {
            let key = format!("checks.{id}");
            match (id.parse::<CheckId>(), parse_setting(&setting)) {
                (Ok(id), Ok(s)) => {
                    layer.checks.insert(id, s);
                }
                (Err(e), _) => bad.push((key, e)),
                (_, Err(e)) => bad.push((key, e)),
            }
        }
        for (key, text, slot) in [
            (
                "finalizer_stuck_after",
                doc.finalizer_stuck_after,
                &mut layer.finalizer_stuck_after,
            ),
            (
                "apiservice_grace",
                doc.apiservice_grace,
                &mut layer.apiservice_grace,
            ),
            ("backend_grace", doc.backend_grace, &mut layer.backend_grace),
        ] {
            if let Some(text) = text {
                match parse_duration(&text) {
                    Ok(d) => *slot = Some(d),
                    Err(e) => bad.push((key.into(), e)),
                }
            }
        }
        for (key, ids) in doc.finalizer_controllers.unwrap_or_default() {
            let at = format!("finalizer_controllers.{key}");
            if key.trim().is_empty() {
                bad.push((
                    at,
                    "empty key: expected RESOURCE.GROUP or a finalizer".into(),
                ));
                continue;
            }
            if ids.is_empty() {
                bad.push((at, "no identity: expected NAMESPACE/SERVICEACCOUNT".into()));
                continue;
            }
            let mut parsed = Vec::new();
            for id in &ids {
                match Identity::parse(id) {
                    Some(i) => parsed.push(i),
                    None => bad.push((
                        at.clone(),
                        format!("{id:?} is not NAMESPACE/SERVICEACCOUNT or a system: user"),
                    )),
                }
            }
            layer
                .finalizer_controllers
                .insert(key.trim().to_string(), parsed);
        }
        if let Some(resources) = doc.skip_resources {
            let mut set = BTreeSet::new();
            for (i, r) in resources.iter().enumerate() {
                match parse_skip_resource(r) {
                    Ok(r) => {
                        set.insert(r);
                    }
                    Err(e) => bad.push((format!("skip_resources[{i}]"), e)),
                }
            }
            layer.skip_resources = Some(set);
        }
        if let Some(text) = doc.initial_sync {
            match InitialSync::from_str(text.trim(), false) {
                Ok(m) => layer.initial_sync = Some(m),
                Err(_) => bad.push((
                    "initial_sync".into(),
                    format!("{text:?}: expected auto, list or stream"),
                )),
            }
        }
        if bad.is_empty() {
            Ok(layer)
        } else {
            Err(ConfigError::Invalid(bad))
        }
    }

    /// Reads and parses a file; also returns its bytes (to notice a change).
    pub fn read(path: &Path) -> Result<(Self, Vec<u8>), ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| ConfigError::Syntax(format!("{}: not UTF-8", path.display())))?;
        Ok((Self::parse(&text)?, bytes))
    }

    /// What the flags set, as `--flag value` for the note that they override the file.
    pub fn as_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(m) = self.mode {
            out.push(format!("--mode {}", m.as_str()));
        }
        for g in self.bypass_groups.iter().flatten() {
            out.push(format!("--bypass-group {g}"));
        }
        for (id, s) in &self.checks {
            out.push(format!("--check {id}={}", setting_str(*s)));
        }
        for (flag, d) in [
            ("--finalizer-stuck-after", self.finalizer_stuck_after),
            ("--apiservice-grace", self.apiservice_grace),
            ("--backend-grace", self.backend_grace),
        ] {
            if let Some(d) = d {
                out.push(format!("{flag} {}", format_duration(d)));
            }
        }
        for (key, ids) in &self.finalizer_controllers {
            out.push(format!(
                "--finalizer-controller {key}={}",
                ids.iter().map(identity_str).collect::<Vec<_>>().join(",")
            ));
        }
        for r in self.skip_resources.iter().flatten() {
            out.push(format!("--skip-resource {r}"));
        }
        if let Some(m) = self.initial_sync {
            out.push(format!("--initial-sync {}", m.as_str()));
        }
        out
    }
}

/// Where a value in effect comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// nsguard's default.
    Default,
    /// A configuration file (`--config`).
    File(PathBuf),
    /// The webhook's ConfigMap, read from the cluster (`NAMESPACE/NAME`).
    ConfigMap(String),
    /// A flag (or its `NSGUARD_*` variable).
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::ConfigMap(name) => write!(f, "configmap {name}"),
            Origin::Flag => f.write_str("flag"),
        }
    }
}

/// The configuration in effect.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The webhook's mode.
    pub mode: Mode,
    /// Break-glass groups.
    pub bypass_groups: Vec<String>,
    /// Per-check settings different from the check's default.
    pub checks: BTreeMap<CheckId, Setting>,
    /// See [`Settings::finalizer_stuck_after`].
    pub finalizer_stuck_after: Duration,
    /// See [`Settings::apiservice_grace`].
    pub apiservice_grace: Duration,
    /// See [`Settings::backend_grace`].
    pub backend_grace: Duration,
    /// Declared finalizer controllers.
    pub finalizer_controllers: BTreeMap<String, Vec<Identity>>,
    /// Types never listed nor watched (read once at start by the webhook).
    pub skip_resources: BTreeSet<String>,
    /// How the content index lists each type (read once at start by the webhook).
    pub initial_sync: InitialSync,
}

impl Default for Config {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            mode: Mode::Enforce,
            bypass_groups: Vec::new(),
            checks: BTreeMap::new(),
            finalizer_stuck_after: s.finalizer_stuck_after,
            apiservice_grace: s.apiservice_grace,
            backend_grace: s.backend_grace,
            finalizer_controllers: BTreeMap::new(),
            skip_resources: BTreeSet::new(),
            initial_sync: InitialSync::default(),
        }
    }
}

impl Config {
    /// The checks' settings.
    pub fn settings(&self) -> Settings {
        Settings {
            overrides: self.checks.clone(),
            finalizer_stuck_after: self.finalizer_stuck_after,
            finalizer_controllers: Declarations(self.finalizer_controllers.clone()),
            apiservice_grace: self.apiservice_grace,
            backend_grace: self.backend_grace,
        }
    }
}

/// The configuration in effect and where each value comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    /// The values.
    pub config: Config,
    origins: BTreeMap<String, Origin>,
}

impl Effective {
    /// Defaults, then `base` (a file or a ConfigMap), then `flags`.
    pub fn resolve(base: Option<(&Layer, Origin)>, flags: &Layer) -> Self {
        let mut out = Effective {
            config: Config::default(),
            origins: BTreeMap::new(),
        };
        if let Some((layer, origin)) = base {
            out.apply(layer, &origin);
        }
        out.apply(flags, &Origin::Flag);
        out
    }

    fn apply(&mut self, layer: &Layer, origin: &Origin) {
        let c = &mut self.config;
        let mut set = |key: String| {
            self.origins.insert(key, origin.clone());
        };
        if let Some(m) = layer.mode {
            c.mode = m;
            set("mode".into());
        }
        if let Some(g) = &layer.bypass_groups {
            c.bypass_groups = g.clone();
            set("bypass_groups".into());
        }
        for (id, s) in &layer.checks {
            c.checks.insert(*id, *s);
            set(format!("checks.{id}"));
        }
        if let Some(d) = layer.finalizer_stuck_after {
            c.finalizer_stuck_after = d;
            set("finalizer_stuck_after".into());
        }
        if let Some(d) = layer.apiservice_grace {
            c.apiservice_grace = d;
            set("apiservice_grace".into());
        }
        if let Some(d) = layer.backend_grace {
            c.backend_grace = d;
            set("backend_grace".into());
        }
        for (key, ids) in &layer.finalizer_controllers {
            c.finalizer_controllers.insert(key.clone(), ids.clone());
            set(format!("finalizer_controllers.{key}"));
        }
        if let Some(r) = &layer.skip_resources {
            c.skip_resources = r.clone();
            set("skip_resources".into());
        }
        if let Some(m) = layer.initial_sync {
            c.initial_sync = m;
            set("initial_sync".into());
        }
    }

    /// Where the value at `key` (`mode`, `checks.list-failure`, ...) comes from.
    pub fn origin(&self, key: &str) -> &Origin {
        self.origins.get(key).unwrap_or(&Origin::Default)
    }

    /// The configuration as a document that [`Layer::parse`] reads back, every check listed,
    /// each value followed by a comment saying where it comes from.
    pub fn render(&self) -> String {
        let c = &self.config;
        let mut out =
            String::from("# The configuration in effect; after each value, where it comes from.\n");
        let mut line = |text: String, key: &str| {
            out.push_str(&format!("{text}  # {}\n", self.origin(key)));
        };
        line(format!("mode: {}", c.mode.as_str()), "mode");
        line(
            format!("bypass_groups: {}", yaml_list(&c.bypass_groups)),
            "bypass_groups",
        );
        out.push_str("checks:\n");
        for id in CheckId::all() {
            let setting = c
                .checks
                .get(&id)
                .copied()
                .unwrap_or(match id.default_severity() {
                    Severity::Blocking => Setting::Block,
                    Severity::Advisory => Setting::Warn,
                });
            let key = format!("checks.{id}");
            out.push_str(&format!(
                "  {id}: {}  # {}\n",
                setting_str(setting),
                self.origin(&key)
            ));
        }
        for (key, d) in [
            ("finalizer_stuck_after", c.finalizer_stuck_after),
            ("apiservice_grace", c.apiservice_grace),
            ("backend_grace", c.backend_grace),
        ] {
            out.push_str(&format!(
                "{key}: {}  # {}\n",
                format_duration(d),
                self.origin(key)
            ));
        }
        if c.finalizer_controllers.is_empty() {
            out.push_str("finalizer_controllers: {}  # default\n");
        } else {
            out.push_str("finalizer_controllers:\n");
            for (key, ids) in &c.finalizer_controllers {
                let ids: Vec<String> = ids.iter().map(identity_str).collect();
                out.push_str(&format!(
                    "  {key}: {}  # {}\n",
                    yaml_list(&ids),
                    self.origin(&format!("finalizer_controllers.{key}"))
                ));
            }
        }
        let skip: Vec<String> = c.skip_resources.iter().cloned().collect();
        out.push_str(&format!(
            "skip_resources: {}  # {}\n",
            yaml_list(&skip),
            self.origin("skip_resources")
        ));
        out.push_str(&format!(
            "initial_sync: {}  # {}\n",
            c.initial_sync.as_str(),
            self.origin("initial_sync")
        ));
        out
    }
}

/// A value read by many and replaced whole when the configuration is reloaded.
#[derive(Debug)]
pub struct Live<T>(Arc<ArcSwap<T>>);

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> From<T> for Live<T> {
    fn from(value: T) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(value)))
    }
}

impl<T> Live<T> {
    /// The value in force.
    pub fn load(&self) -> arc_swap::Guard<Arc<T>> {
        self.0.load()
    }

    /// Puts `value` in force.
    pub fn store(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}

/// What one look at a watched file found.
#[derive(Debug)]
pub enum Reload {
    /// Same content as last time (or the same error as last time).
    Unchanged,
    /// New content, valid: the configuration to put in force.
    Applied(Box<Effective>),
    /// New content that cannot be used: the configuration in force stays.
    Rejected(ConfigError),
}

/// Watches a configuration file by content (a ConfigMap mount swaps a symlink: the path stays,
/// the content changes) and resolves it again with the same flags when it changes.
#[derive(Debug)]
pub struct Watcher {
    path: PathBuf,
    flags: Layer,
    seen: Option<Vec<u8>>,
    last_error: Option<String>,
}

impl Watcher {
    /// Reads `path` once: the configuration to start with, and a watcher for its changes.
    pub fn start(path: &Path, flags: Layer) -> Result<(Effective, Self), ConfigError> {
        let (layer, bytes) = Layer::read(path)?;
        let effective = Effective::resolve(Some((&layer, Origin::File(path.into()))), &flags);
        Ok((
            effective,
            Self {
                path: path.into(),
                flags,
                seen: Some(bytes),
                last_error: None,
            },
        ))
    }

    /// Looks at the file again.
    pub fn poll(&mut self) -> Reload {
        let result = std::fs::read(&self.path)
            .map_err(|source| ConfigError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|bytes| {
                if self.seen.as_ref() == Some(&bytes) {
                    return Ok(None);
                }
                self.seen = Some(bytes.clone());
                let text = String::from_utf8(bytes).map_err(|_| {
                    ConfigError::Syntax(format!("{}: not UTF-8", self.path.display()))
                })?;
                Layer::parse(&text).map(Some)
            });
        match result {
            Ok(None) => Reload::Unchanged,
            Ok(Some(layer)) => {
                self.last_error = None;
                Reload::Applied(Box::new(Effective::resolve(
                    Some((&layer, Origin::File(self.path.clone()))),
                    &self.flags,
                )))
            }
            Err(e) => {
                let text = e.to_string();
                if self.last_error.as_deref() == Some(text.as_str()) {
                    return Reload::Unchanged;
                }
                self.last_error = Some(text);
                Reload::Rejected(e)
            }
        }
    }
}

/// `1m30s`, `500ms`, `2h`: humantime's format, as the flags take it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e} (e.g. 30s, 1m30s, 5m)"))
}

fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// `secrets`, `widgets.example.com`: lower case, as `kubectl api-resources` names them.
pub fn parse_skip_resource(s: &str) -> Result<String, String> {
    let s = s.trim();
    let valid = !s.is_empty()
        && !s.starts_with('.')
        && !s.ends_with('.')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?}: expected a resource as RESOURCE or RESOURCE.GROUP, e.g. secrets"
        ))
    }
}

fn parse_setting(s: &str) -> Result<Setting, String> {
    Setting::from_str(s.trim(), true).map_err(|_| format!("{s:?}: expected block, warn or off"))
}

fn setting_str(s: Setting) -> &'static str {
    match s {
        Setting::Block => "block",
        Setting::Warn => "warn",
        Setting::Off => "off",
    }
}

fn identity_str(i: &Identity) -> String {
    match i {
        Identity::ServiceAccount { namespace, name } => format!("{namespace}/{name}"),
        Identity::ServiceAccounts { namespace } => format!("system:serviceaccounts:{namespace}"),
        Identity::ControlPlane { name } => name.clone(),
    }
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.contains(':') || s.contains('#') {
                format!("{s:?}")
            } else {
                s.clone()
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = "\
# nsguard configuration
mode: warn
bypass_groups: [platform-admins]
checks:
  finalizer-controller: warn
  pods-unterminable: off
finalizer_stuck_after: 1m30s
apiservice_grace: 45s
backend_grace: 2m
finalizer_controllers:
  widgets.example.com: [gadget-system/gadget-controller]
  example.com/cleanup: [\"system:kube-controller-manager\"]
skip_resources: [secrets]
initial_sync: list
";

    #[test]
    fn every_key_parses() {
        let layer = Layer::parse(FULL).unwrap();
        assert_eq!(layer.mode, Some(Mode::Warn));
        assert_eq!(
            layer.bypass_groups,
            Some(vec!["platform-admins".to_string()])
        );
        assert_eq!(
            layer.checks,
            BTreeMap::from([
                (CheckId::FinalizerController, Setting::Warn),
                (CheckId::PodsUnterminable, Setting::Off)
            ])
        );
        assert_eq!(layer.finalizer_stuck_after, Some(Duration::from_secs(90)));
        assert_eq!(layer.apiservice_grace, Some(Duration::from_secs(45)));
        assert_eq!(layer.backend_grace, Some(Duration::from_secs(120)));
        assert_eq!(
            layer.finalizer_controllers["widgets.example.com"],
            vec![Identity::service_account(
                "gadget-system",
                "gadget-controller"
            )]
        );
        assert_eq!(
            layer.finalizer_controllers["example.com/cleanup"],
            vec![Identity::ControlPlane {
                name: "system:kube-controller-manager".into()
            }]
        );
        assert_eq!(
            layer.skip_resources,
            Some(BTreeSet::from(["secrets".to_string()]))
        );
        assert_eq!(layer.initial_sync, Some(InitialSync::List));
    }

    #[test]
    fn an_empty_document_sets_nothing() {
        for text in ["", "\n", "# only a comment\n", "---\n", "{}\n"] {
            assert_eq!(Layer::parse(text).unwrap(), Layer::default(), "{text:?}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = Layer::parse("mode: warn\nbackend_grase: 30s\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax(_)), "{e:?}");
        assert!(e.to_string().contains("backend_grase"), "{e}");
    }

    #[test]
    fn bad_values_are_all_reported_with_their_keys() {
        let e = Layer::parse(
            "mode: deny\nchecks:\n  nope: warn\n  list-failure: maybe\nbackend_grace: 30\nfinalizer_stuck_after: soon\nfinalizer_controllers:\n  widgets.example.com: [Not An Identity]\nskip_resources: [Secrets]\ninitial_sync: watchlist\n",
        )
        .unwrap_err();
        let ConfigError::Invalid(bad) = &e else {
            panic!("{e:?}");
        };
        let keys: Vec<&str> = bad.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "mode",
                "checks.list-failure",
                "checks.nope",
                "finalizer_stuck_after",
                "backend_grace",
                "finalizer_controllers.widgets.example.com",
                "skip_resources[0]",
                "initial_sync"
            ]
        );
        let text = e.to_string();
        assert!(text.contains("enforce, warn or audit"), "{text}");
        assert!(text.contains("unknown check"), "{text}");
        assert!(text.contains("block, warn or off"), "{text}");
        assert!(text.contains("auto, list or stream"), "{text}");
    }

    #[test]
    fn a_wrong_type_is_refused() {
        let e = Layer::parse("checks: [list-failure]\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax(_)), "{e:?}");
    }

    #[test]
    fn flags_override_the_file_and_the_file_the_defaults() {
        let file = Layer::parse(FULL).unwrap();
        let flags = Layer {
            checks: BTreeMap::from([(CheckId::FinalizerController, Setting::Off)]),
            backend_grace: Some(Duration::from_secs(5)),
            initial_sync: Some(InitialSync::Stream),
            ..Layer::default()
        };
        let origin = Origin::ConfigMap(DEFAULT_CONFIG_MAP.into());
        let e = Effective::resolve(Some((&file, origin.clone())), &flags);
        let c = &e.config;
        assert_eq!(c.mode, Mode::Warn);
        assert_eq!(e.origin("mode"), &origin);
        assert_eq!(c.checks[&CheckId::FinalizerController], Setting::Off);
        assert_eq!(e.origin("checks.finalizer-controller"), &Origin::Flag);
        assert_eq!(c.checks[&CheckId::PodsUnterminable], Setting::Off);
        assert_eq!(e.origin("checks.pods-unterminable"), &origin);
        assert_eq!(c.backend_grace, Duration::from_secs(5));
        assert_eq!(e.origin("backend_grace"), &Origin::Flag);
        assert_eq!(c.apiservice_grace, Duration::from_secs(45));
        assert_eq!(e.origin("list-failure"), &Origin::Default);
        let settings = c.settings();
        assert_eq!(settings.backend_grace, Duration::from_secs(5));
        assert_eq!(settings.finalizer_controllers.0.len(), 2);
        assert_eq!(
            flags.as_flags(),
            [
                "--check finalizer-controller=off",
                "--backend-grace 5s",
                "--initial-sync stream"
            ]
        );
        assert_eq!(c.initial_sync, InitialSync::Stream);
        assert_eq!(e.origin("initial_sync"), &Origin::Flag);

        let defaults = Effective::resolve(None, &Layer::default());
        assert_eq!(defaults.config, Config::default());
        assert_eq!(defaults.origin("mode"), &Origin::Default);
    }

    #[test]
    fn the_rendered_configuration_reads_back_the_same() {
        let file = Layer::parse(FULL).unwrap();
        let e = Effective::resolve(
            Some((&file, Origin::File("/etc/c.yaml".into()))),
            &Layer::default(),
        );
        let text = e.render();
        assert!(text.contains("mode: warn  # file /etc/c.yaml"), "{text}");
        assert!(text.contains("list-failure: block  # default"), "{text}");
        assert!(
            text.contains("initial_sync: list  # file /etc/c.yaml"),
            "{text}"
        );
        let again = Effective::resolve(
            Some((&Layer::parse(&text).unwrap(), Origin::Flag)),
            &Layer::default(),
        );
        // Every check is listed in the rendering, at its default where not set.
        let mut expected = e.config.clone();
        for id in CheckId::all() {
            expected
                .checks
                .entry(id)
                .or_insert(match id.default_severity() {
                    Severity::Blocking => Setting::Block,
                    Severity::Advisory => Setting::Warn,
                });
        }
        assert_eq!(again.config, expected);
        let defaults = Effective::resolve(None, &Layer::default()).render();
        assert!(Layer::parse(&defaults).is_ok(), "{defaults}");
    }

    #[test]
    fn a_bad_edit_keeps_the_configuration_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "checks:\n  finalizer-controller: warn\n").unwrap();
        let (first, mut watcher) = Watcher::start(&path, Layer::default()).unwrap();
        assert_eq!(
            first.config.checks[&CheckId::FinalizerController],
            Setting::Warn
        );
        assert!(matches!(watcher.poll(), Reload::Unchanged));

        std::fs::write(&path, "checks:\n  finalizer-controller: sometimes\n").unwrap();
        let Reload::Rejected(e) = watcher.poll() else {
            panic!("a bad edit was not rejected");
        };
        assert!(e.to_string().contains("checks.finalizer-controller"), "{e}");
        // Reported once, not at every look.
        assert!(matches!(watcher.poll(), Reload::Unchanged));

        std::fs::write(&path, "checks:\n  finalizer-controller: off\n").unwrap();
        let Reload::Applied(next) = watcher.poll() else {
            panic!("a good edit was not applied");
        };
        assert_eq!(
            next.config.checks[&CheckId::FinalizerController],
            Setting::Off
        );
    }

    #[test]
    fn a_symlink_swap_is_seen() {
        // What the kubelet does to a ConfigMap volume: the file is a symlink into a directory
        // that is replaced by renaming another symlink over it.
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("..v1");
        let v2 = dir.path().join("..v2");
        std::fs::create_dir(&v1).unwrap();
        std::fs::create_dir(&v2).unwrap();
        std::fs::write(v1.join("config.yaml"), "mode: warn\n").unwrap();
        std::fs::write(v2.join("config.yaml"), "mode: audit\n").unwrap();
        let data = dir.path().join("..data");
        std::os::unix::fs::symlink(&v1, &data).unwrap();
        let path = dir.path().join("config.yaml");
        std::os::unix::fs::symlink(data.join("config.yaml"), &path).unwrap();
        let flags = Layer {
            bypass_groups: Some(vec!["ops".into()]),
            ..Layer::default()
        };
        let (first, mut watcher) = Watcher::start(&path, flags).unwrap();
        assert_eq!(first.config.mode, Mode::Warn);
        let tmp = dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&v2, &tmp).unwrap();
        std::fs::rename(&tmp, &data).unwrap();
        let Reload::Applied(next) = watcher.poll() else {
            panic!("the swap was not seen");
        };
        assert_eq!(next.config.mode, Mode::Audit);
        // The flags still override the reloaded file.
        assert_eq!(next.config.bypass_groups, ["ops"]);
        assert_eq!(next.origin("bypass_groups"), &Origin::Flag);
    }

    #[test]
    fn durations_take_humantime() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("10").is_err());
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
