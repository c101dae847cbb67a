//! The response body type the mock serves.
//!
//! Besides whole buffers, a [`MockBody`] can stream a large JSON-looking body
//! without holding it in memory ([`MockBody::padding`]), or send part of a
//! body and then fail so that hyper aborts the connection
//! ([`MockBody::abort_after`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Size of the chunks a padding body is streamed in.
const CHUNK: usize = 64 * 1024;
static FILLER: [u8; CHUNK] = [b'x'; CHUNK];
const PAD_PREFIX: &[u8] = b"{\"padding\":\"";
const PAD_SUFFIX: &[u8] = b"\"}";

/// How long an aborting body waits after its partial data, so that hyper
/// flushes that data to the socket before the connection is torn down.
const ABORT_GRACE: Duration = Duration::from_millis(50);

/// A response body served by the mock.
pub(crate) struct MockBody {
    kind: Kind,
}

enum Kind {
    /// A buffer sent in one frame. `exact` is false when the response carries
    /// its own `Content-Length` header (which hyper then trusts).
    Full { data: Option<Bytes>, exact: bool },
    /// `{"padding":"xxx…"}` of exactly `total` bytes, streamed.
    Padding { sent: usize, total: usize },
    /// `total` bytes of the [`pattern_byte`] sequence, streamed.
    Pattern { sent: usize, total: usize },
    /// Sends `partial`, waits a little, then fails.
    Abort {
        partial: Option<Bytes>,
        grace: Option<Pin<Box<Sleep>>>,
    },
}

impl MockBody {
    /// A body of exactly these bytes.
    pub(crate) fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        MockBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
                exact: true,
            },
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        Self::full(Bytes::new())
    }

    /// These bytes with no length hint, for responses whose headers set their
    /// own (possibly wrong) `Content-Length`.
    pub(crate) fn without_length(data: Bytes) -> Self {
        MockBody {
            kind: Kind::Full {
                data: Some(data),
                exact: false,
            },
        }
    }

    /// A JSON-looking body of exactly `total` bytes, streamed in chunks.
    pub(crate) fn padding(total: usize) -> Self {
        MockBody {
            kind: Kind::Padding { sent: 0, total },
        }
    }

    /// The first `total` bytes of the [`pattern_byte`] sequence, streamed in chunks.
    pub(crate) fn pattern(total: usize) -> Self {
        MockBody {
            kind: Kind::Pattern { sent: 0, total },
        }
    }

    /// Sends `partial`, then errors so the connection is aborted mid-body.
    pub(crate) fn abort_after(partial: Bytes) -> Self {
        MockBody {
            kind: Kind::Abort {
                partial: Some(partial),
                grace: None,
            },
        }
    }
}

/// Byte `i` of the pattern the gateway's `pattern` endpoints serve and check: `i mod 251`
/// (a prime, so a lost, repeated or shifted chunk shows).
pub(crate) fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// The next chunk of a padding body, or `None` when all was sent.
fn padding_chunk(sent: usize, total: usize) -> Option<Bytes> {
    if sent >= total {
        return None;
    }
    let (p, s) = (PAD_PREFIX.len(), PAD_SUFFIX.len());
    if total < p + s {
        return Some(Bytes::from(vec![b' '; total]));
    }
    let fill_end = total - s;
    Some(if sent < p {
        Bytes::from_static(&PAD_PREFIX[sent..])
    } else if sent < fill_end {
        let n = (fill_end - sent).min(CHUNK);
        Bytes::from_static(&FILLER[..n])
    } else {
        Bytes::from_static(&PAD_SUFFIX[sent - fill_end..])
    })
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Full { data, .. } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Padding { sent, total } => {
                let chunk = padding_chunk(*sent, *total);
                if let Some(c) = &chunk {
                    *sent += c.len();
                }
                Poll::Ready(chunk.map(|c| Ok(Frame::data(c))))
            }
            Kind::Pattern { sent, total } => {
                let n = (*total - *sent).min(CHUNK);
                if n == 0 {
                    return Poll::Ready(None);
                }
                let chunk: Vec<u8> = (*sent..*sent + n).map(pattern_byte).collect();
                *sent += n;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
            Kind::Abort { partial, grace } => {
                if let Some(p) = partial.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                let sleep = grace.get_or_insert_with(|| Box::pin(tokio::time::sleep(ABORT_GRACE)));
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "mock: connection reset mid-body (injected fault)",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data, exact } => *exact && data.is_none(),
            Kind::Padding { sent, total } | Kind::Pattern { sent, total } => sent >= total,
            Kind::Abort { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data, exact: true } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Full { exact: false, .. } | Kind::Abort { .. } => SizeHint::default(),
            Kind::Padding { sent, total } | Kind::Pattern { sent, total } => {
                SizeHint::with_exact(total.saturating_sub(*sent) as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(total: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = padding_chunk(out.len(), total) {
            out.extend_from_slice(&c);
        }
        out
    }

    #[test]
    fn padding_has_exact_length_and_looks_like_json() {
        for total in [0, 1, 13, 14, 15, 100, CHUNK + 17, 3 * CHUNK] {
            let body = all(total);
            assert_eq!(body.len(), total);
            if total >= 14 {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
                assert!(v["padding"].is_string());
            }
        }
    }
}
