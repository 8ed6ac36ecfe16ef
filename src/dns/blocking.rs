//! Pausing blocking (the dashboard's and the navigation's switch, like AdGuard Home's "disable protection" and
//! Pi-hole's "disable blocking"): for some minutes or until resumed. While paused, the filter stage lets every
//! name through; local records, allow-client rules and rate limits still apply.
//!
//! The pause is an instant (Unix seconds, [`UNTIL_RESUMED`] for no end) kept in the `dns_state` table, so a pause
//! "until resumed" survives a restart and a timed one still ends on time.

use rusqlite::{Connection, OptionalExtension};

use crate::storage::StorageError;

/// A pause without an end.
pub(crate) const UNTIL_RESUMED: i64 = i64::MAX;

const KEY: &str = "blocking_paused_until";

/// Whether blocking is paused at `now` by a pause until `until` (0: none).
pub(crate) fn is_paused(until: i64, now: i64) -> bool {
    until != 0 && now < until
}

/// The stored pause (0: none).
pub(crate) fn load(c: &Connection) -> Result<i64, StorageError> {
    Ok(c.query_row("SELECT value FROM dns_state WHERE key = ?1", [KEY], |r| r.get(0)).optional()?.unwrap_or(0))
}

/// Store a pause until `until` (0: resumed).
pub(crate) fn save(c: &Connection, until: i64) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO dns_state (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        rusqlite::params![KEY, until],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_ends_at_its_instant_and_until_resumed_never_does() {
        assert!(!is_paused(0, 100));
        assert!(is_paused(160, 100));
        assert!(!is_paused(160, 160));
        assert!(is_paused(UNTIL_RESUMED, i64::MAX - 1));
    }

    #[test]
    fn the_pause_is_stored_and_replaced() {
        let db = crate::storage::Db::open_in_memory(&[("dns", super::super::querylog::MIGRATIONS)]).unwrap();
        db.blocking(|c| {
            assert_eq!(load(c).unwrap(), 0, "none before the first pause");
            save(c, 1234).unwrap();
            assert_eq!(load(c).unwrap(), 1234);
            save(c, UNTIL_RESUMED).unwrap();
            assert_eq!(load(c).unwrap(), UNTIL_RESUMED);
            save(c, 0).unwrap();
            assert_eq!(load(c).unwrap(), 0);
        });
    }
}
