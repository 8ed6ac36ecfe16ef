//! The one-time setup code: until the first admin exists, `POST /api/v1/setup` needs it, so that whoever reaches
//! a fresh hearth first on the network cannot take it over. hearth makes the code at start-up when there is no
//! user, keeps it in `<data_dir>/setup-code` (0600, readable by the service user and root only), logs it, and
//! deletes the file when the first admin is created. `hearth admin setup-code` prints it; on the Pi image a root
//! unit copies it to the boot partition (`hearth-setup-code.txt`).
//!
//! Unlike the rest of `auth/`, this module does file IO (the code file); the code itself is generated and
//! compared by the pure helpers.

use std::path::{Path, PathBuf};

use rand::Rng;

/// The code file in the data dir.
pub(crate) const FILE: &str = "setup-code";
/// No 0/O, 1/I/L: easy to read off a screen and type.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const GROUPS: usize = 3;
const GROUP_LEN: usize = 4;

pub(crate) fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// A fresh code, `XXXX-XXXX-XXXX` (12 symbols of 31: 59 bits).
pub(crate) fn generate() -> String {
    let mut rng = rand::rng();
    let groups: Vec<String> = (0..GROUPS)
        .map(|_| (0..GROUP_LEN).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect())
        .collect();
    groups.join("-")
}

/// The canonical form of a typed code: upper case, without spaces and dashes.
pub(crate) fn normalize(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

/// Whether `s` looks like a code this module wrote.
fn well_formed(s: &str) -> bool {
    let n = normalize(s);
    n.len() == GROUPS * GROUP_LEN && n.bytes().all(|b| ALPHABET.contains(&b))
}

/// The code in the data dir, if there is one.
pub(crate) fn read(data_dir: &Path) -> std::io::Result<Option<String>> {
    match std::fs::read_to_string(path(data_dir)) {
        Ok(s) if well_formed(s.trim()) => Ok(Some(s.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Keep the existing code (a restart must not invalidate what the owner already copied) or write a new one
/// (0600, temp file + rename). Returns the code.
pub(crate) fn ensure(data_dir: &Path) -> std::io::Result<String> {
    if let Some(code) = read(data_dir)? {
        return Ok(code);
    }
    let code = generate();
    crate::util::write_atomic(&path(data_dir), format!("{code}\n").as_bytes(), Some(0o600))?;
    Ok(code)
}

/// Delete the code (the first admin exists).
pub(crate) fn remove(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(data_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// At start-up: with no user yet, make sure there is a code and tell the owner where to find it (a WARN log line,
/// and stderr when that is a terminal); with users, remove a leftover code file.
pub(crate) async fn at_start(db: &crate::storage::Db, data_dir: &Path) {
    let users = db.call(|c| super::user_count(c)).await;
    let dir = data_dir.to_path_buf();
    let res = tokio::task::spawn_blocking(move || match users {
        Ok(0) => ensure(&dir).map(Some),
        Ok(_) => remove(&dir).map(|_| None),
        Err(e) => Err(std::io::Error::other(e.to_string())),
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
    match res {
        Ok(Some(code)) => {
            let file = path(data_dir);
            tracing::warn!(
                file = %file.display(),
                "no admin account yet; setup code: {code} — also in {}, or run `hearth admin setup-code`",
                file.display()
            );
            use std::io::IsTerminal;
            if std::io::stderr().is_terminal() {
                eprintln!("\n  hearth has no admin account yet. Setup code: {code}\n  (also in {})\n", file.display());
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "could not prepare the setup code; setup will be refused"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_groups_of_unambiguous_symbols() {
        let a = generate();
        assert_eq!(a.len(), 14, "{a}");
        assert_eq!(a.split('-').count(), 3);
        assert!(well_formed(&a));
        assert!(!a.contains(['0', 'O', '1', 'I', 'L']));
        assert_ne!(a, generate());
        assert_eq!(normalize(" abcd-efgh jkmn\n"), "ABCDEFGHJKMN");
        assert!(!well_formed("ABCD-EFGH-IJKL"), "I and L are not in the alphabet");
    }

    #[test]
    fn file_is_private_kept_across_restarts_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let code = ensure(dir.path()).unwrap();
        assert_eq!(ensure(dir.path()).unwrap(), code, "a restart keeps the code");
        assert_eq!(read(dir.path()).unwrap().as_deref(), Some(code.as_str()));
        let mode = std::fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        // a damaged file is replaced
        std::fs::write(path(dir.path()), "garbage").unwrap();
        assert_ne!(ensure(dir.path()).unwrap(), "garbage");
    }
}
