//! The per-thread header pool: copies of request heads for replays, their header maps
//! reused per thread, so a copy costs no allocation once a thread has served a few requests.

use std::cell::RefCell;

use http::{Extensions, HeaderMap, Method, Request, Uri, Version, request::Parts};

/// The most header maps a thread keeps.
const KEEP: usize = 16;

thread_local! {
    // Boxed: a copy takes its map box and all, and the future carrying it stays small.
    #[allow(clippy::vec_box, reason = "the boxes themselves are what a copy takes")]
    static POOL: RefCell<Vec<Box<HeaderMap>>> = const { RefCell::new(Vec::new()) };
}

/// A copy of a request head whose header map goes back to the pool when dropped. Kept
/// as its fields: a `Parts` is built only for a replay.
pub(crate) struct PooledHead {
    method: Method,
    uri: Uri,
    version: Version,
    // `None` for a head without headers: nothing to make, return or drop. Boxed, so the
    // copy a future carries stays small (the box comes from the pool, too).
    headers: Option<Box<HeaderMap>>,
    extensions: Extensions,
}

impl PooledHead {
    /// The head for the replay (its header map leaves the pool with it).
    pub(crate) fn into_parts(mut self) -> Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = std::mem::take(&mut self.method);
        parts.uri = std::mem::take(&mut self.uri);
        parts.version = self.version;
        parts.headers = self
            .headers
            .take()
            .map(|headers| *headers)
            .unwrap_or_default();
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
pub(crate) fn copy_head(request: &Parts) -> PooledHead {
    let headers = (!request.headers.is_empty()).then(|| {
        let mut headers = POOL
            .try_with(|pool| pool.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        for (name, value) in &request.headers {
            headers.append(name.clone(), value.clone());
        }
        headers
    });
    PooledHead {
        method: request.method.clone(),
        uri: request.uri.clone(),
        version: request.version,
        headers,
        extensions: request.extensions.clone(),
    }
}

/// Empties `headers` (dropping every value) and keeps its memory for the next copy.
fn give_back(mut headers: Box<HeaderMap>) {
    headers.clear();
    let _ = POOL.try_with(|pool| {
        if let Ok(mut pool) = pool.try_borrow_mut()
            && pool.len() < KEEP
        {
            pool.push(headers);
        }
    });
}

#[cfg(test)]
mod tests {
    use http::{Method, Request, Uri};

    use super::*;

    /// The copy rides in every request's future: its header map lives out of line (pooled),
    /// so the copy is little more than the method and the URI.
    #[test]
    fn a_head_copy_keeps_its_header_map_out_of_line() {
        let copy = size_of::<PooledHead>();
        let inline = size_of::<Method>() + size_of::<Uri>() + 32;
        assert!(
            copy <= inline,
            "a head copy of {copy} bytes, more than {inline}"
        );
    }

    #[test]
    fn a_head_copy_carries_the_headers_and_returns_its_map_to_the_pool() {
        let request = Request::post("https://api.veracity.com/a?b=c")
            .header("content-type", "application/json")
            .header("x-one", "1")
            .header("x-one", "2")
            .body(())
            .unwrap();
        let (head, ()) = request.into_parts();
        let parts = copy_head(&head).into_parts();
        assert_eq!(parts.method, Method::POST);
        assert_eq!(parts.uri, "https://api.veracity.com/a?b=c");
        assert_eq!(parts.headers, head.headers);
        drop(copy_head(&head));
        let pooled = POOL.with(|pool| pool.borrow().len());
        assert_eq!(pooled, 1, "the copy's map went back to the pool");
        let empty = copy_head(&Request::get("/").body(()).unwrap().into_parts().0);
        assert!(empty.headers.is_none(), "no map for a head without headers");
        assert!(empty.into_parts().headers.is_empty());
    }
}
