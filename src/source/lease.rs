//! Who may spend a refresh token: the lease an exchange holds on it, seen by every runtime,
//! and the deadline past which a waiting fetch takes over an exchange whose token never left.
//!
//! A tokio mutex guard held by the exchange's task would be released only when that task
//! runs; on a runtime that stopped running it (blocked, or idle after a `block_on` returned)
//! it would block every other runtime for good. A lease is plain shared state instead: a
//! stage (`PENDING`, `SENT`, `REVOKED`) changed by compare-and-swap, a deadline, and a
//! [`Notify`] for the fetches waiting on it, which time their wait on their own runtime. The
//! request body asks the lease (`PENDING -> SENT`) when the HTTP client takes it, and a
//! waiting fetch past the deadline asks it too (`PENDING -> REVOKED`): one of them wins, so
//! the token leaves in one request at most. Nothing here does I/O.

use std::{
    pin::pin,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use crate::{Error, http_client::Gate, token::Secret};

/// How long past an exchange's deadline a fetch lets an exchange that sent its refresh token
/// end by itself (its own timeout fires at the deadline, on its own runtime) before deeming
/// that runtime stalled.
const STALL_GRACE: Duration = Duration::from_secs(1);

/// Holds a store's lock against other processes until dropped.
pub(crate) type StoreGuard = Box<dyn Send + Sync>;

// === impl Custody ===

/// The refresh token a source, its clones and its `for_scope` siblings share, and the lease
/// of the exchange spending it.
pub(super) struct Custody {
    held: Mutex<Held>,
    /// Woken whenever the lease ends or changes hands.
    changed: Notify,
}

struct Held {
    refresh_token: Secret,
    lease: Option<Arc<Lease>>,
    /// The refresh token left in a request that got no answer: the provider may have spent
    /// it, so it is never sent again (a newer one in the store, or a sign-in, replaces it).
    spent: bool,
}

impl Custody {
    pub(super) fn new(refresh_token: Secret) -> Arc<Self> {
        Arc::new(Custody {
            held: Mutex::new(Held {
                refresh_token,
                lease: None,
                spent: false,
            }),
            changed: Notify::new(),
        })
    }

    /// The current refresh token.
    pub(super) fn refresh_token(&self) -> Secret {
        lock(&self.held).refresh_token.clone()
    }

    /// Whether `lease` still holds the custody.
    pub(super) fn is_holder(&self, lease: &Arc<Lease>) -> bool {
        lock(&self.held).holds(lease)
    }

    /// Makes `refresh_token` the current one if `lease` still holds the custody.
    pub(super) fn replace(&self, lease: &Arc<Lease>, refresh_token: Secret) -> bool {
        let mut held = lock(&self.held);
        let holder = held.holds(lease);
        if holder {
            held.refresh_token = refresh_token;
        }
        holder
    }

    /// A lease on the refresh token, released when the returned value drops: at once if no
    /// exchange holds it, else when that exchange ends or, past its deadline (timed on this
    /// fetch's runtime), by taking it over. `stored` reads the sign-in's store, if any.
    pub(super) async fn lease(
        self: &Arc<Self>,
        timeout: Duration,
        stored: impl Fn() -> Option<String>,
    ) -> Result<Release, Error> {
        loop {
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let running = {
                let mut held = lock(&self.held);
                match &held.lease {
                    Some(running) => Arc::clone(running),
                    None => {
                        if held.spent {
                            held.use_stored(stored())?;
                        }
                        let lease = Lease::new(timeout);
                        held.lease = Some(Arc::clone(&lease));
                        return Ok(self.release_on_drop(lease));
                    }
                }
            };
            if tokio::time::timeout_at(running.wait_until(), changed)
                .await
                .is_err()
                && let Some(lease) = self.take_over(&running, timeout, &stored)?
            {
                return Ok(self.release_on_drop(lease));
            }
        }
    }

    /// Past the deadline of `running`: a new lease in its place if its token never left, or
    /// if it stalled after sending and the store holds another token; an error if it stalled
    /// after sending otherwise; `None` to wait on (it changed hands, or may still end).
    fn take_over(
        &self,
        running: &Arc<Lease>,
        timeout: Duration,
        stored: impl Fn() -> Option<String>,
    ) -> Result<Option<Arc<Lease>>, Error> {
        let stalled = Instant::now() >= running.stalled_at();
        let stored = match running.stage() {
            SENT if stalled => stored(),
            _ => None,
        };
        let mut held = lock(&self.held);
        if !held.holds(running) {
            return Ok(None);
        }
        if running.swap(PENDING, REVOKED) {
            tracing::warn!(
                target: "veracity_auth::refresh_token",
                "a refresh exchange outlived its deadline before sending the refresh token \
                 (its runtime stopped running it); a waiting fetch takes over"
            );
        } else if !stalled {
            return Ok(None);
        } else {
            // Sent, and unanswered past its deadline: the same rule as an exchange that ended
            // so on a live runtime.
            held.spent = true;
            held.use_stored(stored)?;
        }
        let lease = Lease::new(timeout);
        // The store's lock guards this process's turn: it passes on with the lease.
        *lock(&lease.store_lock) = lock(&running.store_lock).take();
        held.lease = Some(Arc::clone(&lease));
        drop(held);
        self.changed.notify_waiters();
        Ok(Some(lease))
    }

    fn release_on_drop(self: &Arc<Self>, lease: Arc<Lease>) -> Release {
        Release {
            custody: Arc::clone(self),
            lease,
        }
    }

    /// Ends `lease`: drops its store lock and, if it still holds the custody, frees it. An
    /// exchange that ends with its token sent and unanswered (timed out, or its connection
    /// lost) leaves the token spent.
    fn release(&self, lease: &Arc<Lease>) {
        drop(lock(&lease.store_lock).take());
        let mut held = lock(&self.held);
        if held.holds(lease) {
            held.spent = lease.stage() == SENT;
            if held.spent {
                tracing::warn!(
                    target: "veracity_auth::refresh_token",
                    "a refresh exchange sent the refresh token and got no answer; \
                     it is not sent twice"
                );
            }
            held.lease = None;
            drop(held);
            self.changed.notify_waiters();
        }
    }
}

impl Held {
    fn holds(&self, lease: &Arc<Lease>) -> bool {
        self.lease.as_ref().is_some_and(|h| Arc::ptr_eq(h, lease))
    }

    /// A spent refresh token is replaced by a newer one in the store, or the fetch fails.
    fn use_stored(&mut self, stored: Option<String>) -> Result<(), Error> {
        let Some(newer) = stored.filter(|t| t != self.refresh_token.expose()) else {
            return Err(Error::RefreshStalled);
        };
        tracing::warn!(
            target: "veracity_auth::refresh_token",
            "the refresh token may be spent; using the newer refresh token in the store"
        );
        self.refresh_token = Secret::new(newer);
        self.spent = false;
        Ok(())
    }
}

/// A lease, released however its exchange ends: answered, timed out, panicked, or dropped
/// with its runtime.
pub(super) struct Release {
    custody: Arc<Custody>,
    lease: Arc<Lease>,
}

impl Release {
    pub(super) fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        self.custody.release(&self.lease);
    }
}

// === impl Lease ===

/// One exchange's hold on the refresh token, seen by every fetch. Until its deadline it is
/// the exchange's alone; past it, any fetch may take over a lease whose token has not left
/// (`PENDING`), never one whose token may have (`SENT`).
pub(super) struct Lease {
    stage: AtomicU8,
    deadline: Instant,
    /// The store's lock against other processes, held from read to write: taken by the
    /// exchange, inherited by a fetch that takes the lease over.
    store_lock: Mutex<Option<StoreGuard>>,
}

/// The refresh token has not left in a request (or the request that took it was answered).
const PENDING: u8 = 0;
/// A request took the refresh token: it may have reached the provider.
const SENT: u8 = 1;
/// Taken over past the deadline: this lease's exchange can never send the token.
const REVOKED: u8 = 2;

impl Lease {
    fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Lease {
            stage: AtomicU8::new(PENDING),
            deadline: after(timeout),
            store_lock: Mutex::new(None),
        })
    }

    /// When the exchange must have ended.
    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Asked by the request body when the HTTP client takes it: the token may leave only
    /// while the lease is still this exchange's.
    pub(super) fn gate(self: &Arc<Self>) -> Gate {
        let lease = Arc::clone(self);
        Box::new(move || lease.swap(PENDING, SENT))
    }

    /// Whether another fetch took the lease over: the token never left with this exchange.
    pub(super) fn is_revoked(&self) -> bool {
        self.stage() == REVOKED
    }

    /// The request that took the token was answered: the token did not vanish unanswered,
    /// and another may leave in the next request of this exchange.
    pub(super) fn answered(&self) -> bool {
        self.swap(SENT, PENDING)
    }

    /// Whether the lease holds the store's lock (taken, or inherited).
    pub(super) fn has_store_lock(&self) -> bool {
        lock(&self.store_lock).is_some()
    }

    /// Keeps the store's lock until the lease ends.
    pub(super) fn keep_store_lock(&self, guard: StoreGuard) {
        *lock(&self.store_lock) = Some(guard);
    }

    fn stage(&self) -> u8 {
        self.stage.load(Ordering::Acquire)
    }

    fn swap(&self, from: u8, to: u8) -> bool {
        self.stage
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// When a fetch waiting on this lease stops waiting.
    fn wait_until(&self) -> Instant {
        match self.stage() {
            PENDING => self.deadline,
            _ => self.stalled_at(),
        }
    }

    /// When an exchange that sent its token counts as stalled.
    fn stalled_at(&self) -> Instant {
        self.deadline
            .checked_add(STALL_GRACE)
            .unwrap_or(self.deadline)
    }
}

/// `timeout` from now, saturating about a century ahead.
pub(super) fn after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body::Body;
    use http_body_util::BodyExt;

    use super::*;
    use crate::http_client::TokenRequestBody;

    #[tokio::test]
    async fn a_taken_over_lease_never_hands_out_its_form_and_a_sent_one_is_never_taken_over() {
        let form = || Bytes::from_static(b"refresh_token=rt");
        let taken_over = Lease::new(Duration::from_secs(60));
        assert!(taken_over.swap(PENDING, REVOKED));
        let mut body = TokenRequestBody::new(form(), Some(taken_over.gate()));
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());

        let held = Lease::new(Duration::from_secs(60));
        let mut body = TokenRequestBody::new(form(), Some(held.gate()));
        assert_eq!(body.size_hint().exact(), Some(16));
        assert!(!body.is_end_stream());
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), form());
        assert!(body.is_end_stream());
        assert_eq!(held.stage(), SENT);
        assert!(!held.swap(PENDING, REVOKED), "its token may have left");
        assert_eq!(format!("{body:?}"), "TokenRequestBody { len: 0, .. }");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_fetch_takes_over_at_the_deadline_only_an_exchange_whose_token_never_left() {
        let custody = Custody::new(Secret::new("rt"));
        let minute = Duration::from_secs(60);
        let stalled = custody.lease(minute, || None).await.unwrap();
        let start = Instant::now();
        let taken = custody.lease(minute, || None).await.unwrap();
        assert_eq!(start.elapsed(), minute);
        assert!(stalled.lease().is_revoked());
        assert!(
            !(stalled.lease().gate())(),
            "the stalled exchange cannot send"
        );
        // A late end of the stalled exchange frees nothing.
        drop(stalled);
        assert!(custody.is_holder(taken.lease()));

        // This one sends: past its deadline (and the grace), no fetch sends the token again.
        assert!((taken.lease().gate())());
        let err = custody.lease(minute, || None).await.err().unwrap();
        assert!(matches!(err, Error::RefreshStalled), "{err}");
        assert_eq!(start.elapsed(), 2 * minute + STALL_GRACE);
        // Unless the store holds another token.
        let newer = custody
            .lease(minute, || Some("rt-newer".into()))
            .await
            .unwrap();
        assert_eq!(custody.refresh_token().expose(), "rt-newer");
        assert!(custody.is_holder(newer.lease()));
        assert!(!custody.replace(taken.lease(), Secret::new("rotated-late")));
        drop(newer);
        // A lease that ends frees the custody at once.
        let next = custody.lease(minute, || None).await.unwrap();
        assert_eq!(start.elapsed(), 2 * minute + STALL_GRACE);
        drop(next);
    }
}
