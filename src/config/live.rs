//! The running configuration as a transaction (Caddy's `changeConfig`): build → validate → prepare every
//! subsystem (e.g. bind new listeners) → persist → commit → publish. If any step before commit fails, nothing
//! changes and the old configuration keeps running.
//!
//! Invariants: changes are serialised by one lock; subscribers only ever see validated configs; the file on disk
//! is only written by [`LiveConfig::patch`] (a reload reads it, never writes it).

use crate::util::RwLocked;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Mutex, watch};

use super::{Config, ConfigError, ConfigSource, merge_patch, persist};

/// A subsystem's part in a config change.
pub(crate) trait Applier: Send + Sync {
    /// Check and reserve what `new` needs (without disturbing what runs now).
    fn prepare(&self, old: &Config, new: &Config) -> Result<(), ConfigError>;
    /// Undo `prepare` after another step failed.
    fn abort(&self, _old: &Config, _new: &Config) {}
    /// Make `new` effective. Must not fail: anything that can fail belongs in `prepare`.
    fn commit(&self, old: &Config, new: &Config);
}

/// Settings read from the command line that override the file without being written to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub data_dir: Option<PathBuf>,
}

impl Overrides {
    pub(crate) fn apply(&self, mut c: Config) -> Config {
        if let Some(d) = &self.data_dir {
            c.server.data_dir = d.clone();
        }
        c
    }
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ApplyReport {
    /// Keys whose new value takes effect only after a restart.
    pub restart_required: Vec<String>,
    /// Whether the change was written to the config file.
    pub persisted: bool,
}

/// Keys that subsystems read only at start-up.
type KeyReader = fn(&Config) -> String;
const RESTART_KEYS: &[(&str, KeyReader)] = &[
    ("server.data_dir", |c| c.server.data_dir.display().to_string()),
    ("log.format", |c| format!("{:?}", c.log.format)),
    ("storage.busy_timeout", |c| c.storage.busy_timeout.to_string()),
];

pub(crate) struct LiveConfig {
    source: ConfigSource,
    overrides: Overrides,
    tx: watch::Sender<Arc<Config>>,
    appliers: std::sync::RwLock<Vec<Arc<dyn Applier>>>,
    lock: Mutex<()>,
    /// What the running process started with (for restart-required keys).
    boot: Arc<Config>,
}

impl LiveConfig {
    pub(crate) fn new(source: ConfigSource, overrides: Overrides, initial: Config) -> Self {
        let initial = Arc::new(initial);
        let (tx, _) = watch::channel(initial.clone());
        LiveConfig { source, overrides, tx, appliers: Default::default(), lock: Mutex::new(()), boot: initial }
    }

    pub(crate) fn add_applier(&self, a: Arc<dyn Applier>) {
        self.appliers.write_locked().push(a);
    }

    pub(crate) fn current(&self) -> Arc<Config> {
        self.tx.borrow().clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.tx.subscribe()
    }

    pub(crate) fn source(&self) -> &ConfigSource {
        &self.source
    }

    /// Re-read the file (SIGHUP, `POST /api/v1/config/reload`).
    pub(crate) async fn reload(&self) -> Result<ApplyReport, ConfigError> {
        let _g = self.lock.lock().await;
        let new = self.overrides.apply(self.source.load()?);
        let r = self.apply(new, None);
        count(r.as_ref(), "reload");
        r
    }

    #[cfg(test)]
    /// Apply an RFC 7396 merge patch of the config's JSON form and persist it to the file, keeping comments.
    pub(crate) async fn patch(&self, patch: &serde_json::Value) -> Result<ApplyReport, ConfigError> {
        self.patch_if(patch, None).await
    }

    /// [`LiveConfig::patch`], refused with [`ConfigError::Stale`] when `if_match` is given and is not the running
    /// config's [`etag`] (another tab or admin changed it since the client read it).
    pub(crate) async fn patch_if(
        &self,
        patch: &serde_json::Value,
        if_match: Option<&str>,
    ) -> Result<ApplyReport, ConfigError> {
        let _g = self.lock.lock().await;
        let r =
            self.check_version(if_match).and_then(|_| self.edit_locked(|cfg| merge_into(cfg, patch))).map(|(_, r)| r);
        count(r.as_ref(), "patch");
        r
    }

    /// Change the config with `f` under the transaction lock: `f` sees the running config, so edits of the same
    /// array from two requests cannot overwrite each other (read-modify-write is atomic). Then validate → prepare
    /// → persist → commit as for [`LiveConfig::patch`]. An error from `f` changes nothing.
    pub(crate) async fn edit<T>(
        &self,
        f: impl FnOnce(&mut Config) -> Result<T, ConfigError>,
    ) -> Result<(T, ApplyReport), ConfigError> {
        let _g = self.lock.lock().await;
        let r = self.edit_locked(f);
        count(r.as_ref().map(|(_, rep)| rep), "edit");
        r
    }

    /// The version tag of the running config (HTTP `ETag`).
    pub(crate) fn etag(&self) -> String {
        etag(&self.current())
    }

    fn check_version(&self, if_match: Option<&str>) -> Result<(), ConfigError> {
        let Some(want) = if_match.map(str::trim).filter(|w| *w != "*") else { return Ok(()) };
        let current = self.etag();
        // a list of tags (RFC 9110 §13.1.1); weak tags compare by their opaque part
        let matches = want.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == current);
        if matches { Ok(()) } else { Err(ConfigError::Stale { current }) }
    }

    fn edit_locked<T>(
        &self,
        f: impl FnOnce(&mut Config) -> Result<T, ConfigError>,
    ) -> Result<(T, ApplyReport), ConfigError> {
        let old = self.current();
        let mut new = (*old).clone();
        let out = f(&mut new)?;
        // the file gets exactly the keys that changed, relative to what it says now (without CLI overrides)
        let text = self.source.read_text()?;
        let mut doc = super::parse_document(&text, &self.source.path.display().to_string())?;
        super::migrate::migrate(&mut doc)?;
        let on_disk = Config::from_document(&doc)?;
        let mut target = new.clone();
        if self.overrides.data_dir.is_some() && new.server.data_dir == old.server.data_dir {
            target.server.data_dir = on_disk.server.data_dir.clone();
        }
        persist::update_document(&mut doc, &on_disk, &target)?;
        let text = persist::render_checked(&doc, &target)?;
        self.apply(new, Some(text)).map(|r| (out, r))
    }

    fn apply(&self, new: Config, persist_text: Option<String>) -> Result<ApplyReport, ConfigError> {
        new.validate()?;
        let old = self.current();
        let appliers = self.appliers.read_locked().clone();
        let mut prepared: Vec<Arc<dyn Applier>> = Vec::new();
        for a in &appliers {
            if let Err(e) = a.prepare(&old, &new) {
                for p in prepared.iter().rev() {
                    p.abort(&old, &new);
                }
                a.abort(&old, &new);
                return Err(e);
            }
            prepared.push(a.clone());
        }
        let persisted = persist_text.is_some();
        if let Some(text) = persist_text
            && let Err(e) = persist::write_atomic(&self.source.path, &text)
        {
            for p in prepared.iter().rev() {
                p.abort(&old, &new);
            }
            return Err(e);
        }
        for a in &appliers {
            a.commit(&old, &new);
        }
        let restart_required =
            RESTART_KEYS.iter().filter(|(_, get)| get(&self.boot) != get(&new)).map(|(k, _)| k.to_string()).collect();
        self.tx.send_replace(Arc::new(new));
        Ok(ApplyReport { restart_required, persisted })
    }
}

/// A config's version tag: a hash of its JSON form, quoted as an HTTP entity tag.
pub(crate) fn etag(c: &Config) -> String {
    let json = serde_json::to_string(c).unwrap_or_default();
    format!("\"{}\"", &crate::util::sha256_hex(&json)[..20])
}

/// Apply an RFC 7396 merge patch of the JSON form to `cfg` (secrets sent back redacted keep their value).
fn merge_into(cfg: &mut Config, patch: &serde_json::Value) -> Result<(), ConfigError> {
    if !patch.is_object() {
        return Err(ConfigError::invalid("config", "a change must be a JSON object (RFC 7396 merge patch)"));
    }
    if let Some(v) = patch.get("schema_version")
        && v.as_i64() != Some(super::SCHEMA_VERSION)
    {
        return Err(ConfigError::invalid("schema_version", "cannot be changed through the API"));
    }
    let mut json = serde_json::to_value(&*cfg).map_err(|e| ConfigError::invalid("config", e.to_string()))?;
    merge_patch(&mut json, patch);
    super::unredact(&mut json, cfg);
    *cfg = Config::from_json(json)?;
    Ok(())
}

fn count(r: Result<&ApplyReport, &ConfigError>, how: &'static str) {
    let result = if r.is_ok() { "ok" } else { "rejected" };
    metrics::counter!("hearth_config_reloads_total", "source" => how, "result" => result).increment(1);
    match r {
        Ok(rep) => {
            tracing::info!(source = how, restart_required = ?rep.restart_required, "configuration applied")
        }
        Err(e) => {
            tracing::warn!(source = how, error = %e, "configuration rejected; the previous one keeps running")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Probe {
        fail_on_level: Option<&'static str>,
        commits: AtomicUsize,
        aborts: AtomicUsize,
    }

    impl Applier for Probe {
        fn prepare(&self, _old: &Config, new: &Config) -> Result<(), ConfigError> {
            if Some(new.log.level.as_str()) == self.fail_on_level {
                return Err(ConfigError::invalid("log.level", "probe refuses"));
            }
            Ok(())
        }
        fn abort(&self, _: &Config, _: &Config) {
            self.aborts.fetch_add(1, Ordering::SeqCst);
        }
        fn commit(&self, _: &Config, _: &Config) {
            self.commits.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn setup(text: Option<&str>) -> (tempfile::TempDir, LiveConfig, Arc<Probe>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.toml");
        if let Some(t) = text {
            std::fs::write(&path, t).unwrap();
        }
        let source = ConfigSource::new(path);
        let live = LiveConfig::new(source.clone(), Overrides::default(), source.load().unwrap());
        let probe = Arc::new(Probe { fail_on_level: Some("trace"), commits: 0.into(), aborts: 0.into() });
        live.add_applier(probe.clone());
        (dir, live, probe)
    }

    #[tokio::test]
    async fn patch_validates_swaps_and_persists_with_comments() {
        let (dir, live, probe) = setup(Some("# mine\n[log]\nlevel = \"info\" # keep\n"));
        let mut rx = live.subscribe();
        let rep = live.patch(&serde_json::json!({"log": {"level": "debug"}})).await.unwrap();
        assert!(rep.persisted && rep.restart_required.is_empty());
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().log.level, "debug");
        let text = std::fs::read_to_string(dir.path().join("hearth.toml")).unwrap();
        assert_eq!(text, "# mine\n[log]\nlevel = \"debug\" # keep\n");
        assert_eq!(probe.commits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn bad_patch_changes_nothing() {
        let (dir, live, probe) = setup(Some("[log]\nlevel = \"info\"\n"));
        let e = live.patch(&serde_json::json!({"server": {"http_listen": ["nope"]}})).await.unwrap_err();
        assert_eq!(e.key(), Some("server.http_listen[0]"));
        // an applier refusing also leaves everything as it was
        let e = live.patch(&serde_json::json!({"log": {"level": "trace"}})).await.unwrap_err();
        assert_eq!(e.key(), Some("log.level"));
        assert_eq!(probe.aborts.load(Ordering::SeqCst), 1);
        assert_eq!(probe.commits.load(Ordering::SeqCst), 0);
        assert_eq!(live.current().log.level, "info");
        assert_eq!(std::fs::read_to_string(dir.path().join("hearth.toml")).unwrap(), "[log]\nlevel = \"info\"\n");
        assert!(live.patch(&serde_json::json!(["not", "an", "object"])).await.is_err());
        assert!(live.patch(&serde_json::json!({"schema_version": 7})).await.is_err());
    }

    #[tokio::test]
    async fn first_change_creates_the_file_from_the_template() {
        let (dir, live, _) = setup(None);
        let rep = live.patch(&serde_json::json!({"server": {"data_dir": "/tmp/elsewhere"}})).await.unwrap();
        assert_eq!(rep.restart_required, ["server.data_dir"]);
        let text = std::fs::read_to_string(dir.path().join("hearth.toml")).unwrap();
        assert!(text.starts_with("# hearth.toml"), "the commented template");
        assert!(text.contains("data_dir = \"/tmp/elsewhere\""));
    }

    #[tokio::test]
    async fn reload_reads_the_file_and_keeps_old_on_error() {
        let (dir, live, _) = setup(Some("[log]\nlevel = \"info\"\n"));
        let path = dir.path().join("hearth.toml");
        std::fs::write(&path, "[log]\nlevel = \"warn\"\n").unwrap();
        let rep = live.reload().await.unwrap();
        assert!(!rep.persisted);
        assert_eq!(live.current().log.level, "warn");
        std::fs::write(&path, "[log]\nlevel = 5\n").unwrap();
        assert_eq!(live.reload().await.unwrap_err().key(), Some("log.level"));
        assert_eq!(live.current().log.level, "warn");
    }
}
