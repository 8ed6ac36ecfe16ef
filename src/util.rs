//! Small shared helpers: clock, random secrets, hashing of high-entropy secrets.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// This machine's host name (`/etc/hostname`, lower-cased; empty when unknown): the CA's default names and the
/// admin's `<hostname>.local` both come from here, so they always agree.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_ascii_lowercase()).unwrap_or_default()
}

/// Seconds since the Unix epoch (wall clock).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `n` random bytes from the OS-seeded CSPRNG, base64url without padding.
pub(crate) fn random_secret(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    data_encoding::BASE64URL_NOPAD.encode(&buf)
}

/// Hand the allocator's free pages back to the kernel. glibc keeps what a burst frees in its arenas (after a batch
/// of 32 embeddings ~70 MB of activations stay resident; model loading and index builds leave more), so the RSS of
/// an idle hearth would be its worst moment's. Cheap when there is little to return; called when the embedding
/// queue has been idle for a second and after store upkeep, never on a request path. Elsewhere a no-op (musl's
/// allocator unmaps large frees itself).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_heap() {
    // SAFETY: malloc_trim takes no pointers; it walks glibc's own free lists under the allocator's locks and
    // madvises whole free pages away. Safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

/// Allocations of 4 MiB and more get pages of their own, returned to the kernel when freed. glibc otherwise raises
/// its mapping threshold to the largest block ever freed (up to 32 MiB), after which a batch's activations and
/// lance's read buffers come from the heap and stay there. Called once at start-up, before any thread; a no-op
/// off glibc. Smaller blocks — everything on the DNS path — are unaffected.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn map_large_allocations() {
    // SAFETY: mallopt takes two integers and only changes glibc's allocation policy for future allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_allocations() {}

/// SHA-256 hex of a high-entropy secret (session ids, API tokens). Passwords use argon2id instead.
pub(crate) fn sha256_hex(s: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(s.as_bytes()))
}

/// Constant-time comparison of two secrets.
pub(crate) fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lock a mutex or rwlock whatever happened to the last holder: every lock in hearth guards state that stays
/// consistent between statements (a panicking request must not wedge the subsystem behind it).
pub(crate) trait Locked<T: ?Sized> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for std::sync::Mutex<T> {
    fn locked(&self) -> std::sync::MutexGuard<'_, T> {
        self.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// [`Locked`] for a `RwLock`.
pub(crate) trait RwLocked<T: ?Sized> {
    fn read_locked(&self) -> std::sync::RwLockReadGuard<'_, T>;
    fn write_locked(&self) -> std::sync::RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLocked<T> for std::sync::RwLock<T> {
    fn read_locked(&self) -> std::sync::RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    fn write_locked(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Replace `path` with `data` atomically: a temporary file beside it (created exclusively, so a planted file or
/// symlink there is never followed), written, synced, renamed over `path`, and the directory synced. The new file
/// gets `mode` if given, else the old file's permissions, else 0600. A crash leaves the old file or the new one,
/// never half of either.
pub(crate) fn write_atomic(path: &std::path::Path, data: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mode = mode.or_else(|| std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)).unwrap_or(0o600);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // the umask may have narrowed the mode at creation
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Create `dir` (and its parents) with mode 0700 if missing, and force it back to 0700 if it is not. Returns the
/// mode it had when that was not 0700.
pub(crate) fn private_dir(dir: &std::path::Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode == 0o700 {
        return Ok(None);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(Some(mode))
}

/// An error and its sources, each said once.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_random_and_urlsafe() {
        let a = super::random_secret(32);
        let b = super::random_secret(32);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert!(super::ct_eq(&a, &a.clone()));
        assert!(!super::ct_eq(&a, &b));
    }
}
