//! Request bodies for replay tests: deterministic bytes in chunks, a boxed streaming body, a
//! hash to compare what the gateway saw, and the gateway requests the mock recorded.

use std::{
    collections::hash_map::DefaultHasher,
    convert::Infallible,
    hash::{Hash, Hasher},
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use veracity_auth_mock::{MockVeracity, RecordedRequest};

/// `len` bytes in chunks of `chunk`: the bytes, and the chunks as data frames.
pub fn chunked(len: usize, chunk: usize) -> (Bytes, Vec<Result<Frame<Bytes>, Infallible>>) {
    let bytes: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let chunks = bytes
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    (bytes, chunks)
}

/// `len` bytes in chunks of `chunk`, as a boxed streaming body (no size hint: sent chunked).
pub fn streaming(len: usize, chunk: usize) -> (Bytes, UnsyncBoxBody<Bytes, Infallible>) {
    let (bytes, chunks) = chunked(len, chunk);
    let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
    (bytes, body)
}

/// A hash of `bytes`, to compare bodies without printing them.
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// The gateway requests the mock recorded (token requests left out).
pub fn gateway_requests(mock: &MockVeracity) -> Vec<RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path.contains("/workspaces/"))
        .collect()
}
