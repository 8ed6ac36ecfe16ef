//! Small shared helpers: clock, random secrets, hashing of high-entropy secrets.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Seconds since the Unix epoch (wall clock).
/// This machine's host name (`/etc/hostname`, lower-cased; empty when unknown): the CA's default names and the
/// admin's `<hostname>.local` both come from here, so they always agree.
pub fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_ascii_lowercase()).unwrap_or_default()
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `n` random bytes from the OS-seeded CSPRNG, base64url without padding.
pub fn random_secret(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Hand the allocator's free pages back to the kernel. glibc keeps what a burst frees in its arenas (after a batch
/// of 32 embeddings ~70 MB of activations stay resident; model loading and index builds leave more), so the RSS of
/// an idle hearth would be its worst moment's. Cheap when there is little to return; called when the embedding
/// queue has been idle for a second and after store upkeep, never on a request path. Elsewhere a no-op (musl's
/// allocator unmaps large frees itself).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_heap() {
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
pub fn map_large_allocations() {
    // SAFETY: mallopt takes two integers and only changes glibc's allocation policy for future allocations.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn map_large_allocations() {}

/// SHA-256 hex of a high-entropy secret (session ids, API tokens). Passwords use argon2id instead.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Constant-time comparison of two secrets.
pub fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
