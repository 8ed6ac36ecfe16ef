//! The certificates' part in a config change: `prepare` checks the DNS-01 key and, when the names or CA settings
//! change, builds the new certificate policy — loading or replacing the internal CA and issuing the default
//! certificate, the disk IO included —; `commit` swaps it in and cannot fail. Registered before the proxy's
//! applier, which reads [`CertsApplier::next_root_pem`] to trust backends under the root the change brings.

use std::sync::{Arc, Mutex};

use super::{Certs, NamePolicy, PreparedPolicy};
use crate::config::live::Applier;
use crate::config::{Config, ConfigError};
use crate::util::Locked;

pub(crate) struct CertsApplier {
    certs: Arc<Certs>,
    pending: Mutex<Option<PreparedPolicy>>,
}

/// What the certificate policy is made of.
fn policy_inputs(c: &Config) -> impl PartialEq + use<> {
    (
        c.tls.clone(),
        c.proxy.clone(),
        c.server.admin_hosts.clone(),
        c.server.https_listen.clone(),
        c.dns.local_domains.clone(),
        c.dns.records.clone(),
    )
}

/// The `[tls]` settings only a compiler can check (`hearth check-config`, start-up, every change).
pub(crate) fn check(c: &Config) -> Result<(), ConfigError> {
    let t = &c.tls;
    if t.acme_challenges.iter().any(|c| c == "dns-01") || !t.dns01_server.is_empty() {
        super::dns01::TsigKey::parse(&t.dns01_tsig_key).map_err(|e| ConfigError::invalid("tls.dns01_tsig_key", e))?;
    }
    Ok(())
}

impl CertsApplier {
    pub(crate) fn new(certs: Arc<Certs>) -> CertsApplier {
        CertsApplier { certs, pending: Mutex::default() }
    }

    /// The internal root the change being prepared brings (or the current one).
    pub(crate) fn next_root_pem(&self) -> Option<String> {
        match &*self.pending.locked() {
            Some(p) => p.root_pem(),
            None => self.certs.root_pem(),
        }
    }
}

impl Applier for CertsApplier {
    fn prepare(&self, old: &Config, new: &Config) -> Result<(), ConfigError> {
        check(new)?;
        let p = if policy_inputs(old) != policy_inputs(new) {
            let p = self
                .certs
                .prepare_policy(&new.data_dir(), NamePolicy::from_config(new))
                .map_err(|e| ConfigError::invalid("tls", format!("the certificates cannot be prepared: {e}")))?;
            Some(p)
        } else {
            None
        };
        *self.pending.locked() = p;
        Ok(())
    }

    fn abort(&self, _old: &Config, _new: &Config) {
        self.pending.locked().take();
    }

    fn commit(&self, _old: &Config, _new: &Config) {
        if let Some(p) = self.pending.locked().take() {
            self.certs.commit_policy(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::live::{LiveConfig, Overrides};

    /// The CA's disk IO happens in prepare: when it fails, the change is refused before the file is written and
    /// the running certificates stay (before, the old applier did it in commit, after the file was written, and
    /// only logged the failure).
    #[tokio::test]
    async fn a_ca_that_cannot_be_made_refuses_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let path = dir.path().join("hearth.toml");
        let text = format!("[server]\ndata_dir = \"{}\"\n\n[tls]\ninternal_ca = false\n", data.display());
        std::fs::write(&path, &text).unwrap();
        let source = crate::config::ConfigSource::new(path.clone());
        let cfg = source.load().unwrap();
        let certs = Arc::new(Certs::new(&data, NamePolicy::from_config(&cfg)).unwrap());
        let live = LiveConfig::new(source, Overrides::default(), cfg);
        live.add_applier(Arc::new(CertsApplier::new(certs.clone())));
        // where the CA's directory should go, a file: the CA cannot be created
        std::fs::write(data.join("ca"), "not a directory").unwrap();
        let e = live.patch(&serde_json::json!({"tls": {"internal_ca": true}})).await.unwrap_err();
        assert!(e.to_string().contains("certificates cannot be prepared"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "the file is untouched");
        assert!(!live.current().tls.internal_ca);
        assert!(certs.root_pem().is_none(), "still the self-signed default");
        // once the CA can be made, the same change goes through and the root is served
        std::fs::remove_file(data.join("ca")).unwrap();
        live.patch(&serde_json::json!({"tls": {"internal_ca": true}})).await.unwrap();
        assert!(certs.root_pem().is_some_and(|p| p.contains("BEGIN CERTIFICATE")));
    }
}
