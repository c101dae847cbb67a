//! Runtimes for the tests that make, idle and drop runtimes of their own.

use tokio::runtime::{Builder, Runtime};

/// A current-thread runtime with time and I/O.
pub fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().unwrap()
}

/// A runtime of one worker thread that no runtime under test drives: for the mock.
pub fn server() -> Runtime {
    Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}
