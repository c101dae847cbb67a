//! Which tokio runtime the current thread offers to run a task or a timer on.
//!
//! tokio tells whether a runtime has a time driver only by panicking on the first timer, so
//! [`RuntimeProbe`] finds out once per runtime (a caught panic) and remembers the answer
//! until the thread is seen on another runtime.
//! [`timer`] makes a one-off timer where the thread's runtime can run one, and none elsewhere.

use std::{panic::catch_unwind, pin::Pin, time::Duration};

use tokio::{
    runtime::{Handle, Id},
    time::Sleep,
};

/// What the current thread offers to run a task or a timer on.
pub(crate) enum Runtime {
    /// A runtime with a time driver.
    Usable(Handle),
    /// No runtime at all.
    None,
    /// A runtime built without the time driver: a timer on it would panic.
    NoTimeDriver,
}

impl Runtime {
    /// The id of a usable runtime.
    pub(crate) fn id(&self) -> Option<Id> {
        match self {
            Runtime::Usable(handle) => Some(handle.id()),
            Runtime::None | Runtime::NoTimeDriver => None,
        }
    }
}

/// The last runtime looked at, and whether it has a time driver: finding out costs a caught
/// panic, so once per runtime switch.
#[derive(Debug, Default)]
pub(crate) struct RuntimeProbe {
    last: Option<(Id, bool)>,
}

impl RuntimeProbe {
    /// What the current thread offers.
    pub(crate) fn current(&mut self) -> Runtime {
        let Ok(handle) = Handle::try_current() else {
            return Runtime::None;
        };
        let id = handle.id();
        let timers = match self.last {
            Some((seen, timers)) if seen == id => timers,
            _ => {
                let timers = catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok();
                self.last = Some((id, timers));
                timers
            }
        };
        if timers {
            Runtime::Usable(handle)
        } else {
            Runtime::NoTimeDriver
        }
    }
}

/// A timer firing after `after`, if this thread has a runtime with a time driver.
pub(crate) fn timer(after: Duration) -> Option<Pin<Box<Sleep>>> {
    Handle::try_current().ok()?;
    // `sleep` panics on a runtime built without the time driver.
    catch_unwind(|| Box::pin(tokio::time::sleep(after))).ok()
}
