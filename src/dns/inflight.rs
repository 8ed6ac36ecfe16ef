//! Identical questions in flight share one upstream query (pure core apart from tokio's oneshot channels): the
//! first query for a key leads — it asks upstream and hands the result to everyone who asked the same meanwhile —,
//! the others follow and wait. A leader that is dropped before it finishes (its client went away and the task was
//! cancelled) frees the key, and its followers see their channel closed and ask themselves.

use crate::util::Locked;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Seeded per process, like the cache's map: keys come from clients.
type Hasher = foldhash::fast::RandomState;

/// The keys in flight and who waits for each.
pub(crate) struct Inflight<K, V> {
    map: Mutex<HashMap<K, Vec<oneshot::Sender<V>>, Hasher>>,
}

impl<K, V> Default for Inflight<K, V> {
    fn default() -> Self {
        Inflight { map: Mutex::new(HashMap::default()) }
    }
}

/// What a query does about its key.
pub(crate) enum Role<'a, K: Eq + Hash, V> {
    /// Nobody asks this yet: ask, then [`Lead::finish`].
    Lead(Lead<'a, K, V>),
    /// Someone asks this already: wait for the answer (`Err`: the leader gave up, ask yourself).
    Follow(oneshot::Receiver<V>),
}

impl<K: Eq + Hash + Clone, V: Clone> Inflight<K, V> {
    /// Lead `key` if nobody does, else follow the query that does.
    pub(crate) fn join(&self, key: &K) -> Role<'_, K, V> {
        let mut map = self.map.locked();
        match map.get_mut(key) {
            Some(waiters) => {
                let (tx, rx) = oneshot::channel();
                waiters.push(tx);
                Role::Follow(rx)
            }
            None => {
                map.insert(key.clone(), vec![]);
                Role::Lead(Lead { owner: self, key: Some(key.clone()) })
            }
        }
    }

    #[cfg(test)]
    /// Keys in flight.
    pub(crate) fn len(&self) -> usize {
        self.map.locked().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The leader of a key; dropping it unfinished frees the key (its followers' channels close).
pub(crate) struct Lead<'a, K: Eq + Hash, V> {
    owner: &'a Inflight<K, V>,
    key: Option<K>,
}

impl<K: Eq + Hash, V: Clone> Lead<'_, K, V> {
    /// Hand `value` to every follower and free the key; returns how many followers there were.
    pub(crate) fn finish(mut self, value: V) -> usize {
        let waiters = self.take();
        let n = waiters.len();
        for w in waiters {
            let _ = w.send(value.clone()); // a follower that went away does not matter
        }
        n
    }

    fn take(&mut self) -> Vec<oneshot::Sender<V>> {
        match self.key.take() {
            Some(k) => self.owner.map.locked().remove(&k).unwrap_or_default(),
            None => vec![],
        }
    }
}

impl<K: Eq + Hash, V> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.owner.map.locked().remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_answer_and_the_key_is_freed() {
        let f: Inflight<String, u32> = Inflight::default();
        let Role::Lead(lead) = f.join(&"a".to_string()) else { panic!("the first query leads") };
        let mut followers = vec![];
        for _ in 0..49 {
            match f.join(&"a".to_string()) {
                Role::Follow(rx) => followers.push(rx),
                Role::Lead(_) => panic!("a second leader for the same key"),
            }
        }
        // another key has its own leader
        let Role::Lead(other) = f.join(&"b".to_string()) else { panic!("b leads") };
        assert_eq!(f.len(), 2);
        assert_eq!(lead.finish(7), 49);
        for rx in followers {
            assert_eq!(rx.await, Ok(7));
        }
        assert_eq!(f.len(), 1, "a is free again");
        assert!(matches!(f.join(&"a".to_string()), Role::Lead(_)), "the next query for a leads anew");
        drop(other);
        assert!(f.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_leader_releases_its_followers() {
        let f: Inflight<u8, u8> = Inflight::default();
        let lead = match f.join(&1) {
            Role::Lead(l) => l,
            Role::Follow(_) => panic!(),
        };
        let Role::Follow(rx) = f.join(&1) else { panic!() };
        drop(lead); // e.g. the task was cancelled when its TCP client went away
        assert!(rx.await.is_err(), "the follower is told, not left waiting");
        assert!(f.is_empty());
        assert!(matches!(f.join(&1), Role::Lead(_)));
    }
}
