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
//!
//! That helper runs as root in a directory the service user owns, so [`Host::apply_request`] trusts nothing in it:
//! the directory is opened once without following a link, every file in it is reached through that handle (never
//! by a path that a link could redirect), the request must be a small regular file of the directory's owner, and
//! the result is a new file renamed into place (see [`DataDir`]).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// hearth's drop-in, relative to the root.
pub(crate) const DROP_IN: &str = "etc/systemd/resolved.conf.d/hearth.conf";
const RESOLV_CONF: &str = "etc/resolv.conf";
const RESOLVED_RUNTIME: &str = "run/systemd/resolve";
/// The file the UI writes into the data dir: `disable-stub` or `restore`.
pub(crate) const REQUEST_FILE: &str = "resolved-request";
/// What the root helper did with the last request, in the data dir.
pub(crate) const RESULT_FILE: &str = "resolved-result";
const MARK: &str = "# hearth-previous-resolv-conf: ";

#[derive(thiserror::Error, Debug)]
pub(crate) enum SysDnsError {
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
    #[error("{path}: {why}; refused")]
    Refused { path: String, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SysDnsError + '_ {
    move |source| SysDnsError::Io { path: path.display().to_string(), source }
}

/// What the admin UI shows about port 53.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
pub(crate) struct StubState {
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
pub(crate) fn drop_in_text(previous_link: Option<&str>) -> String {
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
pub(crate) fn previous_link(drop_in: &str) -> Option<String> {
    drop_in.lines().find_map(|l| l.strip_prefix(MARK)).map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The machine's files, under `root`.
pub(crate) struct Host {
    root: PathBuf,
}

impl Host {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The state, given whether the stub answers (see [`stub_listening`]).
    pub(crate) fn state(&self, stub_listening: bool) -> StubState {
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
    pub(crate) fn disable_stub(&self) -> Result<(), SysDnsError> {
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
        crate::util::write_atomic(&drop_in, drop_in_text(previous.as_deref()).as_bytes(), Some(0o644))
            .map_err(io(&drop_in))?;
        if previous.is_some() {
            replace_symlink(&resolv, "../run/systemd/resolve/resolv.conf")?;
        }
        Ok(())
    }

    /// Undo [`Host::disable_stub`]: remove the drop-in and point `/etc/resolv.conf` where it pointed before.
    pub(crate) fn restore(&self) -> Result<(), SysDnsError> {
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

    /// Carry out one request: [`Host::disable_stub`] or [`Host::restore`].
    pub(crate) fn apply(&self, req: Request) -> Result<(), SysDnsError> {
        match req {
            Request::DisableStub => self.disable_stub(),
            Request::Restore => self.restore(),
        }
    }

    /// `hearth system apply-request <data_dir>/resolved-request`, run as root by `hearth-resolved.service`: take
    /// the request out of the service user's data dir (see [`DataDir`]: no link is followed, only a small regular
    /// file of the directory's owner is read), carry it out, and leave `ok <request> <now>` or
    /// `error <now> <why>` in [`RESULT_FILE`] beside it, owned by the directory's owner. `Ok(None)`: there was no
    /// request. A refused or failed request is an error too, after its result is written; restarting
    /// systemd-resolved and hearth is the caller's, after `Ok(Some(_))` only.
    pub(crate) fn apply_request(&self, request_file: &Path, now: i64) -> Result<Option<Request>, SysDnsError> {
        let refused = |why: &str| SysDnsError::Refused { path: request_file.display().to_string(), why: why.into() };
        let name = request_file.file_name().and_then(|n| n.to_str()).ok_or_else(|| refused("not a file name"))?;
        let dir = match request_file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = DataDir::open(dir)?;
        let result = match dir.take_request(name) {
            Ok(None) => return Ok(None),
            Ok(Some(req)) => self.apply(req).map(|()| req),
            Err(e) => Err(e),
        };
        let line = match &result {
            Ok(req) => format!("ok {} {now}\n", req.as_str()),
            Err(e) => format!("error {now} {e}\n"),
        };
        dir.write_result(RESULT_FILE, &line)?;
        result.map(Some)
    }
}

/// The most a request file may hold (the longest request is 13 bytes with its newline).
const REQUEST_MAX: u64 = 64;

/// The service user's data dir as the root helper uses it. The directory is opened once with
/// `O_DIRECTORY|O_NOFOLLOW` (a data dir that is a symbolic link is refused) and its owner — the service user — is
/// read from that handle; every file in it is then reached as `/proc/self/fd/<dir>/<name>`, which resolves to the
/// opened directory itself whatever is renamed meanwhile, so it acts as `openat`/`renameat`/`unlinkat` on the
/// handle (the crate denies `unsafe`, and std has no `*at` calls). The directory's parent must not be writable by
/// the service user (it is `/var/lib`, root's).
///
/// - The request is opened with `O_NOFOLLOW|O_NONBLOCK` (a link is refused, a FIFO does not block) and must be a
///   regular file with one link, owned by the directory's owner, not world-writable, at most [`REQUEST_MAX`]
///   bytes; it is removed whatever it was (the entry itself: unlink never follows a link), so the path unit does
///   not fire again.
/// - The result is written to a new file (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0640, given to the directory's
///   owner) and renamed over [`RESULT_FILE`]: a rename replaces a link planted there instead of following it.
pub(crate) struct DataDir {
    dir: File,
    path: PathBuf,
    uid: u32,
    gid: u32,
}

impl DataDir {
    /// Open the directory without following a link; refuse a world-writable one.
    pub(crate) fn open(path: &Path) -> Result<DataDir, SysDnsError> {
        let refused = |why: String| SysDnsError::Refused { path: path.display().to_string(), why };
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENOTDIR) => refused("not a directory (a symbolic link?)".into()),
                _ => io(path)(e),
            })?;
        let meta = dir.metadata().map_err(io(path))?;
        if !meta.is_dir() {
            return Err(refused("not a directory".into()));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(refused(format!("world-writable directory (mode {:o})", meta.mode() & 0o7777)));
        }
        Ok(DataDir { dir, path: path.to_path_buf(), uid: meta.uid(), gid: meta.gid() })
    }

    /// `name` in the opened directory, reached through its handle.
    fn at(&self, name: &str) -> PathBuf {
        debug_assert!(!name.contains('/') && name != "." && name != "..");
        PathBuf::from(format!("/proc/self/fd/{}", self.dir.as_raw_fd())).join(name)
    }

    /// For messages.
    fn shown(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }

    /// Read and remove the request `name`; `Ok(None)` when there is none. See [`DataDir`] for what is refused.
    fn take_request(&self, name: &str) -> Result<Option<Request>, SysDnsError> {
        let at = self.at(name);
        let opened =
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY).open(&at);
        if matches!(&opened, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            return Ok(None);
        }
        // the file's state as opened, before the entry goes
        let opened = opened.and_then(|file| file.metadata().map(|meta| (file, meta)));
        // whatever the entry is, it goes (a directory stays: unlink refuses it, and the checks below refuse it)
        let _ = std::fs::remove_file(&at);
        let refused = |why: String| SysDnsError::Refused { path: self.shown(name), why };
        let (file, meta) = opened.map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => refused("a symbolic link".into()),
            _ => SysDnsError::Io { path: self.shown(name), source: e },
        })?;
        if !meta.file_type().is_file() {
            return Err(refused("not a regular file".into()));
        }
        if meta.uid() != self.uid {
            return Err(refused(format!(
                "owned by uid {}, not by the data dir's owner (uid {})",
                meta.uid(),
                self.uid
            )));
        }
        if meta.mode() & 0o002 != 0 {
            return Err(refused("world-writable".into()));
        }
        if meta.nlink() != 1 {
            return Err(refused(format!("{} hard links", meta.nlink())));
        }
        let mut text = Vec::with_capacity(REQUEST_MAX as usize + 1);
        file.take(REQUEST_MAX + 1)
            .read_to_end(&mut text)
            .map_err(|e| SysDnsError::Io { path: self.shown(name), source: e })?;
        if text.len() as u64 > REQUEST_MAX {
            return Err(refused(format!("longer than {REQUEST_MAX} bytes")));
        }
        Request::parse(&String::from_utf8_lossy(&text)).map(Some)
    }

    /// Replace `name` with a file holding `text`, owned by the directory's owner, mode 0640.
    fn write_result(&self, name: &str, text: &str) -> Result<(), SysDnsError> {
        let tmp_name = format!(".{name}.tmp");
        let tmp = self.at(&tmp_name);
        let err = |e| SysDnsError::Io { path: self.shown(&tmp_name), source: e };
        // a leftover (or planted) entry goes first: O_EXCL below refuses anything there, a link included
        let _ = std::fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&tmp)
            .map_err(err)?;
        if let Err(e) = self.fill(&mut file, text) {
            let _ = std::fs::remove_file(&tmp);
            return Err(err(e));
        }
        std::fs::rename(&tmp, self.at(name)).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            SysDnsError::Io { path: self.shown(name), source: e }
        })
    }

    /// Give a new file to the directory's owner and write it.
    fn fill(&self, file: &mut File, text: &str) -> std::io::Result<()> {
        let meta = file.metadata()?;
        if (meta.uid(), meta.gid()) != (self.uid, self.gid) {
            std::os::unix::fs::fchown(&*file, Some(self.uid), Some(self.gid))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

/// The service's side (unprivileged, in its own data dir): put `req` into [`REQUEST_FILE`] whole — a temporary
/// file renamed into place, mode 0600 — so the path unit never starts the helper on a half-written request.
pub(crate) fn write_request(data_dir: &Path, req: Request) -> Result<(), SysDnsError> {
    let dest = data_dir.join(REQUEST_FILE);
    crate::util::write_atomic(&dest, format!("{}\n", req.as_str()).as_bytes(), Some(0o600)).map_err(io(&dest))
}

fn replace_symlink(link: &Path, target: &str) -> Result<(), SysDnsError> {
    let tmp = link.with_extension("hearth-tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, link).map_err(io(link))
}

/// Whether resolved's stub answers on 127.0.0.53:53 (a TCP connect, at most 300 ms).
pub(crate) fn stub_listening() -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 53], 53).into(), Duration::from_millis(300)).is_ok()
}

/// `systemctl try-restart` the units (a no-op for units that are not running).
pub(crate) fn restart(units: &[&str]) -> Result<(), SysDnsError> {
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
pub(crate) enum Request {
    DisableStub,
    Restore,
}

impl Request {
    pub(crate) fn parse(s: &str) -> Result<Request, SysDnsError> {
        match s.trim() {
            "disable-stub" => Ok(Request::DisableStub),
            "restore" => Ok(Request::Restore),
            other => Err(SysDnsError::BadRequest(other.chars().take(40).collect())),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
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

    /// A machine (`root/`, resolved running with its stub) and a data dir beside it, in one temp dir.
    fn machine_and_data_dir() -> (tempfile::TempDir, Host, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("run/systemd/resolve")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("../run/systemd/resolve/stub-resolv.conf", root.join("etc/resolv.conf")).unwrap();
        let data = d.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        (d, Host::new(root), data)
    }

    /// Every path under `dir` except those under `except`, with its kind and content or link target.
    fn snapshot(dir: &Path, except: &Path) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(p) = todo.pop() {
            for e in std::fs::read_dir(&p).unwrap() {
                let path = e.unwrap().path();
                if path.starts_with(except) {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let what = if meta.file_type().is_symlink() {
                    format!("link {}", std::fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    todo.push(path.clone());
                    "dir".into()
                } else {
                    format!("file {:o} {}", meta.mode(), std::fs::read_to_string(&path).unwrap_or_default())
                };
                out.push((path, what));
            }
        }
        out.sort();
        out
    }

    fn result_of(data: &Path) -> String {
        let p = data.join(RESULT_FILE);
        assert!(std::fs::symlink_metadata(&p).unwrap().file_type().is_file(), "the result is a plain file");
        std::fs::read_to_string(p).unwrap()
    }

    fn write(p: &Path, text: &str) {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }

    #[test]
    fn a_request_is_applied_and_answered_in_the_data_dir() {
        let (d, h, data) = machine_and_data_dir();
        assert_eq!(h.apply_request(&data.join(REQUEST_FILE), 7).unwrap(), None, "no request, nothing to do");
        assert!(!data.join(RESULT_FILE).exists());
        write_request(&data, Request::DisableStub).unwrap();
        assert_eq!(h.apply_request(&data.join(REQUEST_FILE), 7).unwrap(), Some(Request::DisableStub));
        assert_eq!(result_of(&data), "ok disable-stub 7\n");
        assert!(d.path().join("root").join(DROP_IN).exists());
        // the request is gone, no temporary file is left, and the result is the data dir owner's
        let names: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [RESULT_FILE]);
        let (dir, result) = (std::fs::metadata(&data).unwrap(), std::fs::metadata(data.join(RESULT_FILE)).unwrap());
        assert_eq!((result.uid(), result.gid(), result.mode() & 0o777 & !0o640), (dir.uid(), dir.gid(), 0));
        // a second request replaces the result
        write_request(&data, Request::Restore).unwrap();
        h.apply_request(&data.join(REQUEST_FILE), 8).unwrap();
        assert_eq!(result_of(&data), "ok restore 8\n");
        assert!(!d.path().join("root").join(DROP_IN).exists());
    }

    #[test]
    fn a_request_that_is_a_symlink_is_refused_and_nothing_outside_changes() {
        let (d, h, data) = machine_and_data_dir();
        // were the link followed, this file outside the data dir would turn the stub off
        let outside = d.path().join("outside-request");
        write(&outside, "disable-stub\n");
        std::os::unix::fs::symlink(&outside, data.join(REQUEST_FILE)).unwrap();
        let before = snapshot(d.path(), &data);
        let err = h.apply_request(&data.join(REQUEST_FILE), 7).unwrap_err();
        assert!(matches!(err, SysDnsError::Refused { .. }), "{err}");
        assert!(result_of(&data).starts_with("error 7 "), "{}", result_of(&data));
        assert!(result_of(&data).contains("symbolic link"), "{}", result_of(&data));
        assert_eq!(snapshot(d.path(), &data), before, "nothing outside the data dir changed");
        assert!(std::fs::symlink_metadata(data.join(REQUEST_FILE)).is_err(), "the planted link is removed");
        assert!(!d.path().join("root").join(DROP_IN).exists());
    }

    #[test]
    fn a_result_symlink_is_replaced_not_followed() {
        let (d, h, data) = machine_and_data_dir();
        let outside = d.path().join("precious");
        write(&outside, "do not touch\n");
        std::os::unix::fs::symlink(&outside, data.join(RESULT_FILE)).unwrap();
        // the temporary name too
        std::os::unix::fs::symlink(&outside, data.join(format!(".{RESULT_FILE}.tmp"))).unwrap();
        write_request(&data, Request::DisableStub).unwrap();
        let before: Vec<_> =
            snapshot(d.path(), &data).into_iter().filter(|(p, _)| !p.starts_with(d.path().join("root"))).collect();
        assert_eq!(h.apply_request(&data.join(REQUEST_FILE), 7).unwrap(), Some(Request::DisableStub));
        assert_eq!(result_of(&data), "ok disable-stub 7\n");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "do not touch\n");
        let after: Vec<_> =
            snapshot(d.path(), &data).into_iter().filter(|(p, _)| !p.starts_with(d.path().join("root"))).collect();
        assert_eq!(after, before, "outside the data dir only the machine's resolved files changed");
        assert!(std::fs::symlink_metadata(data.join(format!(".{RESULT_FILE}.tmp"))).is_err());
    }

    #[test]
    fn a_data_dir_that_is_a_symlink_is_refused() {
        let (d, h, data) = machine_and_data_dir();
        write_request(&data, Request::DisableStub).unwrap();
        let link = d.path().join("link-to-data");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        let before = snapshot(d.path(), Path::new("/nonexistent"));
        let err = h.apply_request(&link.join(REQUEST_FILE), 7).unwrap_err();
        assert!(matches!(err, SysDnsError::Refused { .. }), "{err}");
        assert_eq!(snapshot(d.path(), Path::new("/nonexistent")), before, "nothing changed anywhere");
        // a world-writable data dir is refused as well
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        assert!(matches!(h.apply_request(&data.join(REQUEST_FILE), 7), Err(SysDnsError::Refused { .. })));
        assert!(data.join(REQUEST_FILE).exists() && !d.path().join("root").join(DROP_IN).exists());
    }

    #[test]
    fn requests_that_are_not_the_owners_small_regular_files_are_refused() {
        let (d, h, data) = machine_and_data_dir();
        let req = data.join(REQUEST_FILE);
        let refused = |why: &str| {
            let err = h.apply_request(&req, 7).unwrap_err();
            assert!(matches!(err, SysDnsError::Refused { .. }), "{why}: {err}");
            assert!(result_of(&data).starts_with("error 7 "), "{why}");
            assert!(std::fs::symlink_metadata(&req).is_err(), "{why}: the request is removed");
            assert!(!d.path().join("root").join(DROP_IN).exists(), "{why}: nothing applied");
        };
        write(&req, "disable-stub\n");
        std::fs::set_permissions(&req, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        refused("world-writable");
        write(&req, &format!("disable-stub{}\n", " ".repeat(60)));
        refused("longer than 64 bytes");
        write(&req, "disable-stub\n");
        std::fs::hard_link(&req, d.path().join("second-link")).unwrap();
        refused("hard link");
        if std::process::Command::new("mkfifo").arg(&req).status().is_ok_and(|s| s.success()) {
            refused("a FIFO (does not block)");
        }
        write(&req, "rm -rf /\n");
        assert!(matches!(h.apply_request(&req, 7), Err(SysDnsError::BadRequest(_))));
        assert!(result_of(&data).starts_with("error 7 unknown request"));
    }

    #[test]
    fn a_request_owned_by_another_user_is_refused() {
        let (d, h, data) = machine_and_data_dir();
        let req = data.join(REQUEST_FILE);
        write(&req, "disable-stub\n");
        match std::os::unix::fs::chown(&req, Some(12345), None) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!("skipped: changing a file's owner needs root");
                return;
            }
            Err(e) => panic!("{e}"),
        }
        let err = h.apply_request(&req, 7).unwrap_err();
        assert!(err.to_string().contains("owned by uid 12345"), "{err}");
        assert!(!d.path().join("root").join(DROP_IN).exists());
        // a data dir of uid 12345 (the service user): its request is accepted and the result is given to it
        std::os::unix::fs::chown(&data, Some(12345), Some(12345)).unwrap();
        write(&req, "disable-stub\n");
        std::os::unix::fs::chown(&req, Some(12345), Some(12345)).unwrap();
        assert_eq!(h.apply_request(&req, 8).unwrap(), Some(Request::DisableStub));
        let result = std::fs::metadata(data.join(RESULT_FILE)).unwrap();
        assert_eq!((result.uid(), result.gid()), (12345, 12345));
        assert_eq!(result_of(&data), "ok disable-stub 8\n");
    }

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(Request::parse("disable-stub\n").unwrap(), Request::DisableStub);
        assert_eq!(Request::parse("restore").unwrap(), Request::Restore);
        assert!(Request::parse("rm -rf /").is_err());
    }
}
