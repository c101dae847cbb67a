//! The per-thread header pool: copies of request heads for replays, their header maps
//! reused per thread, so a copy costs no allocation once a thread has served a few requests.

use std::cell::RefCell;

use http::{Extensions, HeaderMap, Method, Request, Uri, Version, request::Parts};

/// The most header maps a thread keeps.
const KEEP: usize = 16;

thread_local! {
    static POOL: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// A copy of a request head whose header map goes back to the pool when dropped. Kept
/// as its fields: a `Parts` is built only for a replay.
pub(crate) struct PooledHead {
    method: Method,
    uri: Uri,
    version: Version,
    // `None` for a head without headers: nothing to make, return or drop.
    headers: Option<HeaderMap>,
    extensions: Extensions,
}

impl PooledHead {
    /// The head for the replay (its header map leaves the pool with it).
    pub(crate) fn into_parts(mut self) -> Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = std::mem::take(&mut self.method);
        parts.uri = std::mem::take(&mut self.uri);
        parts.version = self.version;
        parts.headers = self.headers.take().unwrap_or_default();
        parts.extensions = std::mem::take(&mut self.extensions);
        parts
    }
}

impl Drop for PooledHead {
    #[inline]
    fn drop(&mut self) {
        if let Some(headers) = self.headers.take() {
            give_back(headers);
        }
    }
}

/// A copy of `request`'s head whose header map is a pooled one refilled (none is needed for
/// a head without headers: credentials are inserted by the replay).
#[inline]
pub(crate) fn copy_head<B>(request: &Request<B>) -> PooledHead {
    let headers = (!request.headers().is_empty()).then(|| {
        let mut headers = POOL
            .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        for (name, value) in request.headers() {
            headers.append(name.clone(), value.clone());
        }
        headers
    });
    PooledHead {
        method: request.method().clone(),
        uri: request.uri().clone(),
        version: request.version(),
        headers,
        extensions: request.extensions().clone(),
    }
}

/// Empties `headers` (dropping every value) and keeps its memory for the next copy.
fn give_back(mut headers: HeaderMap) {
    headers.clear();
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut()
            && pool.len() < KEEP
        {
            pool.push(headers);
        }
    });
}
