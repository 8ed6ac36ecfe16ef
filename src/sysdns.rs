//! Port 53 and systemd-resolved. On Ubuntu, Fedora and some Debian installs, resolved's stub listener holds
//! 127.0.0.53:53, so a hearth listening on `:53` cannot start its DNS. This module detects the stub and — only when
//! the admin asks: the UI's button, or `hearth system resolved-stub disable` as root — turns it off with a
//! `resolved.conf.d` drop-in, reversibly.
//!
//! Pure core: [`drop_in_text`] and [`previous_link`] (what the drop-in records, so `restore` puts
//! `/etc/resolv.conf` back exactly as it was). IO shell: [`Host`], a root directory (`/` in production, a temporary
//! one in tests) whose files it reads and changes; probing the stub and restarting services are separate functions.
//!
//! The hearth service runs unprivileged, so the UI cannot change `/etc` itself: it writes a one-word request
//! ([`REQUEST_FILE`]) into the data dir, and the package's `hearth-resolved.path` unit starts the root-owned
//! `hearth-resolved.service`, which runs `hearth system apply-request` on it and leaves [`RESULT_FILE`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// hearth's drop-in, relative to the root.
pub const DROP_IN: &str = "etc/systemd/resolved.conf.d/hearth.conf";
const RESOLV_CONF: &str = "etc/resolv.conf";
const RESOLVED_RUNTIME: &str = "run/systemd/resolve";
/// The file the UI writes into the data dir: `disable-stub` or `restore`.
pub const REQUEST_FILE: &str = "resolved-request";
/// What the root helper did with the last request, in the data dir.
pub const RESULT_FILE: &str = "resolved-result";
const MARK: &str = "# hearth-previous-resolv-conf: ";

#[derive(thiserror::Error, Debug)]
pub enum SysDnsError {
    #[error("systemd-resolved is not running on this machine: there is no stub listener to turn off")]
    NotResolved,
    #[error("hearth has not changed systemd-resolved here: nothing to restore")]
    NotChanged,
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}")]
    Command(String),
    #[error("unknown request {0:?}: expected disable-stub or restore")]
    BadRequest(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SysDnsError + '_ {
    move |source| SysDnsError::Io { path: path.display().to_string(), source }
}

/// What the admin UI shows about port 53.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub struct StubState {
    /// systemd-resolved is running here.
    pub resolved: bool,
    /// Its stub listener answers on 127.0.0.53:53 (it then holds port 53 on every address for hearth's `:53`).
    pub stub_listening: bool,
    /// hearth's drop-in that turns the stub off is in place (undo with `restore`).
    pub changed_by_hearth: bool,
    /// `/etc/resolv.conf` sends this machine's own lookups to the stub.
    pub resolv_conf_uses_stub: bool,
}

/// The drop-in: no stub listener, resolved itself asks hearth; the first lines say why and how to undo it, and
/// where `/etc/resolv.conf` pointed before (`None`: it was not a symlink to resolved's stub file, left alone).
pub fn drop_in_text(previous_link: Option<&str>) -> String {
    let mut s = String::from(
        "# Written by hearth (the admin UI, or `hearth system resolved-stub disable`) with the admin's consent, so\n\
         # that hearth can serve DNS on port 53. Undo: `hearth system resolved-stub restore`, or delete this file,\n\
         # restore /etc/resolv.conf and restart systemd-resolved.\n",
    );
    if let Some(p) = previous_link {
        s.push_str(MARK);
        s.push_str(p);
        s.push('\n');
    }
    s.push_str("[Resolve]\nDNSStubListener=no\nDNS=127.0.0.1\n");
    s
}

/// The `/etc/resolv.conf` link target a drop-in recorded.
pub fn previous_link(drop_in: &str) -> Option<String> {
    drop_in.lines().find_map(|l| l.strip_prefix(MARK)).map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The machine's files, under `root`.
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The state, given whether the stub answers (see [`stub_listening`]).
    pub fn state(&self, stub_listening: bool) -> StubState {
        let link = std::fs::read_link(self.path(RESOLV_CONF)).ok();
        StubState {
            resolved: self.path(RESOLVED_RUNTIME).is_dir(),
            stub_listening,
            changed_by_hearth: self.path(DROP_IN).exists(),
            resolv_conf_uses_stub: link.is_some_and(|l| l.to_string_lossy().ends_with("stub-resolv.conf")),
        }
    }

    /// Turn the stub listener off: the drop-in, and `/etc/resolv.conf` from the stub file to resolved's full one
    /// (which lists 127.0.0.1, i.e. hearth). Restarting resolved is the caller's.
    pub fn disable_stub(&self) -> Result<(), SysDnsError> {
        if !self.path(RESOLVED_RUNTIME).is_dir() {
            return Err(SysDnsError::NotResolved);
        }
        let resolv = self.path(RESOLV_CONF);
        let drop_in = self.path(DROP_IN);
        // applying twice keeps the first record of where resolv.conf pointed
        let previous = match std::fs::read_to_string(&drop_in) {
            Ok(text) => previous_link(&text),
            Err(_) => std::fs::read_link(&resolv)
                .ok()
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.ends_with("stub-resolv.conf")),
        };
        let dir = drop_in.parent().expect("drop-in has a directory");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = drop_in.with_extension("hearth-tmp");
        std::fs::write(&tmp, drop_in_text(previous.as_deref())).map_err(io(&tmp))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &drop_in).map_err(io(&drop_in))?;
        if previous.is_some() {
            replace_symlink(&resolv, "../run/systemd/resolve/resolv.conf")?;
        }
        Ok(())
    }

    /// Undo [`Host::disable_stub`]: remove the drop-in and point `/etc/resolv.conf` where it pointed before.
    pub fn restore(&self) -> Result<(), SysDnsError> {
        let drop_in = self.path(DROP_IN);
        let text = match std::fs::read_to_string(&drop_in) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SysDnsError::NotChanged),
            Err(e) => return Err(io(&drop_in)(e)),
        };
        if let Some(target) = previous_link(&text) {
            replace_symlink(&self.path(RESOLV_CONF), &target)?;
        }
        std::fs::remove_file(&drop_in).map_err(io(&drop_in))
    }
}

fn replace_symlink(link: &Path, target: &str) -> Result<(), SysDnsError> {
    let tmp = link.with_extension("hearth-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, link).map_err(io(link))
}

/// Whether resolved's stub answers on 127.0.0.53:53 (a TCP connect, at most 300 ms).
pub fn stub_listening() -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 53], 53).into(), Duration::from_millis(300)).is_ok()
}

/// `systemctl try-restart` the units (a no-op for units that are not running).
pub fn restart(units: &[&str]) -> Result<(), SysDnsError> {
    let out = std::process::Command::new("systemctl")
        .arg("try-restart")
        .args(units)
        .output()
        .map_err(|e| SysDnsError::Command(format!("systemctl: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SysDnsError::Command(format!(
            "systemctl try-restart {}: {}",
            units.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A request from the UI, as written to [`REQUEST_FILE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    DisableStub,
    Restore,
}

impl Request {
    pub fn parse(s: &str) -> Result<Request, SysDnsError> {
        match s.trim() {
            "disable-stub" => Ok(Request::DisableStub),
            "restore" => Ok(Request::Restore),
            other => Err(SysDnsError::BadRequest(other.chars().take(40).collect())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Request::DisableStub => "disable-stub",
            Request::Restore => "restore",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ubuntu_like() -> (tempfile::TempDir, Host) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("run/systemd/resolve")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", d.path().join("etc/resolv.conf"))
            .unwrap();
        let h = Host::new(d.path());
        (d, h)
    }

    #[test]
    fn drop_in_records_and_returns_the_previous_link() {
        let t = drop_in_text(Some("../run/systemd/resolve/stub-resolv.conf"));
        assert!(t.contains("DNSStubListener=no"));
        assert_eq!(previous_link(&t).as_deref(), Some("../run/systemd/resolve/stub-resolv.conf"));
        assert_eq!(previous_link(&drop_in_text(None)), None);
    }

    #[test]
    fn disable_then_restore_puts_everything_back() {
        let (d, h) = ubuntu_like();
        let before = h.state(true);
        assert!(before.resolved && before.resolv_conf_uses_stub && !before.changed_by_hearth);
        h.disable_stub().unwrap();
        h.disable_stub().unwrap(); // twice keeps the original record
        let after = h.state(false);
        assert!(after.changed_by_hearth && !after.resolv_conf_uses_stub);
        assert_eq!(
            std::fs::read_link(d.path().join("etc/resolv.conf")).unwrap().to_str(),
            Some("../run/systemd/resolve/resolv.conf")
        );
        h.restore().unwrap();
        assert_eq!(h.state(true), before);
        assert!(!d.path().join(DROP_IN).exists());
        assert!(matches!(h.restore(), Err(SysDnsError::NotChanged)));
    }

    #[test]
    fn a_plain_resolv_conf_is_left_alone_and_no_resolved_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/resolv.conf"), "nameserver 192.168.1.1\n").unwrap();
        let h = Host::new(d.path());
        assert!(matches!(h.disable_stub(), Err(SysDnsError::NotResolved)));
        std::fs::create_dir_all(d.path().join("run/systemd/resolve")).unwrap();
        h.disable_stub().unwrap();
        h.restore().unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("etc/resolv.conf")).unwrap(), "nameserver 192.168.1.1\n");
    }

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(Request::parse("disable-stub\n").unwrap(), Request::DisableStub);
        assert_eq!(Request::parse("restore").unwrap(), Request::Restore);
        assert!(Request::parse("rm -rf /").is_err());
    }
}
