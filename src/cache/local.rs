//! Per-thread copies of the current token's header values.
//!
//! Cloning a `HeaderValue` increments the reference count of its buffer. With one buffer
//! shared by every thread, that count is one cache line written by every request on every
//! core, and it caps scaling. So each thread keeps its own copy of the current token's
//! `Authorization` value (and of the API key), made once per token on its first request,
//! and clones that: the count it touches stays in its own core's cache.
//!
//! Copies are keyed by a token id unique for the life of the process, so a copy can never be
//! mistaken for another cache's token. A thread keeps at most [`SLOTS`] copies (one per
//! layer it serves, typically one), replaced round-robin.

use std::cell::RefCell;

use http::HeaderValue;
use tokio::time::Instant;

/// How many tokens (of different layers) a thread keeps copies for.
const SLOTS: usize = 4;

/// One thread's copy of a token's headers.
pub(crate) struct LocalToken {
    pub(crate) id: u64,
    pub(crate) generation: u64,
    /// Until this moment the copy is used without a look at the cache: the token's refresh
    /// point (so the first request past it checks the refresh is under way), then the end
    /// of its use.
    pub(crate) check_at: Instant,
    pub(crate) bearer: HeaderValue,
    pub(crate) api_key: Option<HeaderValue>,
}

struct Copies {
    slots: [Option<LocalToken>; SLOTS],
    next: usize,
}

thread_local! {
    static COPIES: RefCell<Copies> = const {
        RefCell::new(Copies { slots: [const { None }; SLOTS], next: 0 })
    };
}

/// Runs `f` on this thread's copy of token `id`, if there is one.
#[inline]
pub(crate) fn use_copy<R>(id: u64, f: impl FnOnce(&LocalToken) -> R) -> Option<R> {
    COPIES
        .try_with(|copies| {
            let copies = copies.try_borrow().ok()?;
            copies.slots.iter().flatten().find(|c| c.id == id).map(f)
        })
        .ok()
        .flatten()
}

/// Keeps `copy` for this thread, replacing an older copy of the same token, else a free
/// slot, else the oldest copy.
pub(crate) fn store_copy(copy: LocalToken) {
    let _ = COPIES.try_with(|copies| {
        if let Ok(mut copies) = copies.try_borrow_mut() {
            let same = |c: &Option<LocalToken>| c.as_ref().is_some_and(|c| c.id == copy.id);
            let slot = match copies.slots.iter().position(same) {
                Some(same) => same,
                None => match copies.slots.iter().position(Option::is_none) {
                    Some(free) => free,
                    None => {
                        let oldest = copies.next;
                        copies.next = (oldest + 1) % SLOTS;
                        oldest
                    }
                },
            };
            copies.slots[slot] = Some(copy);
        }
    });
}

/// A copy of `value` with a buffer of its own, still marked sensitive. The buffer is made
/// shared at once (`BytesMut::split` turns it into a reference-counted one, and `freeze`
/// keeps that): a clone is then a plain reference-count increment, where a `Vec`-backed
/// `Bytes` would first ask its vtable whether it was promoted yet, on every clone and drop.
pub(crate) fn own_copy(value: &HeaderValue) -> HeaderValue {
    let shared = bytes::BytesMut::from(value.as_bytes()).split().freeze();
    crate::headers::sensitive_header(shared).unwrap_or_else(|| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_has_a_buffer_of_its_own_and_stays_sensitive() {
        let value = crate::headers::sensitive_header(bytes::Bytes::from("Bearer token")).unwrap();
        let copy = own_copy(&value);
        assert_eq!(copy, value);
        assert!(copy.is_sensitive());
        assert_ne!(copy.as_bytes().as_ptr(), value.as_bytes().as_ptr());
        let clone = copy.clone();
        assert_eq!(
            clone.as_bytes().as_ptr(),
            copy.as_bytes().as_ptr(),
            "a clone shares it"
        );
    }
}
