//! Each thread's last few keys: a call on a key this thread used lately finds its slot
//! here, with no lock and no reference count to raise.
//!
//! A slot is taken out of the cache for the length of a call and put back after it, so the
//! `Arc` moves instead of being cloned, and a call made inside the call (on the same key)
//! simply misses and looks the key up. An entry can outlive its key's eviction: the gate
//! then refuses it ([`Gate::enter`](super::gate::Gate::enter) is false), the entry is
//! dropped and the key looked up again. What a thread's cache can keep alive after
//! eviction is bounded by [`WAYS`] slots per thread, whatever the number of keys.

use std::cell::RefCell;

use super::Slot;
use crate::sync::Arc;

/// Entries per thread.
pub(super) const WAYS: usize = 4;

struct Entry {
    /// The registry's id (never an address: a dropped registry's address can be reused).
    registry: u64,
    slot: Arc<Slot>,
}

struct Ways {
    entries: [Option<Entry>; WAYS],
    /// The entry the next insertion into a full cache replaces.
    next: usize,
}

thread_local! {
    static CACHE: RefCell<Ways> = const {
        RefCell::new(Ways { entries: [const { None }; WAYS], next: 0 })
    };
}

/// Takes this thread's cached slot of `key` in `registry` out of the cache, if there.
#[inline]
pub(super) fn take(registry: u64, key: &str) -> Option<Arc<Slot>> {
    CACHE
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            cache
                .entries
                .iter_mut()
                .find(|e| {
                    e.as_ref()
                        .is_some_and(|e| e.registry == registry && same(&e.slot.key, key))
                })
                .and_then(Option::take)
                .map(|e| e.slot)
        })
        .ok()
        .flatten()
}

/// Puts `slot` of `registry` into this thread's cache (back where it was taken from, as a
/// rule), unless it is there already.
#[inline]
pub(super) fn put(registry: u64, slot: Arc<Slot>) {
    // Whatever the cache lets go of is dropped after its borrow ends: a slot's drop runs
    // no code of ours, but a borrow held over a drop is a hazard for no gain.
    let _replaced = CACHE
        .try_with(|cache| {
            let mut cache = cache.try_borrow_mut().ok()?;
            let mut free = None;
            for (i, e) in cache.entries.iter().enumerate() {
                match e {
                    // Put back by a call made inside a call on the same key.
                    Some(e) if Arc::ptr_eq(&e.slot, &slot) => return None,
                    None if free.is_none() => free = Some(i),
                    _ => {}
                }
            }
            let i = free.unwrap_or_else(|| {
                let i = cache.next;
                cache.next = (i + 1) % WAYS;
                i
            });
            cache.entries[i].replace(Entry { registry, slot })
        })
        .ok()
        .flatten();
}

/// `a == b`, without a call into `memcmp` for keys of up to 16 bytes (tenant ids, API
/// keys): a third of a cache hit's cost when it was a call.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let n = a.len();
    if (8..=16).contains(&n) {
        // The first and the last 8 bytes (overlapping when shorter than 16) cover all.
        let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().unwrap());
        return word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8);
    }
    a == b
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn same_agrees_with_equality_at_every_length() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..=base.len() {
            let a = &base[..n];
            assert!(same(a, a));
            for i in 0..n {
                // One byte changed at each position in turn.
                let mut b = a.as_bytes().to_vec();
                b[i] = b'#';
                let b = String::from_utf8(b).unwrap();
                assert!(!same(a, &b), "{a:?} vs {b:?}");
            }
            if n > 0 {
                assert!(!same(a, &base[..n - 1]), "lengths {n} and {}", n - 1);
            }
        }
    }
}
