//! A credential source's panics caught and turned into [`Error::FetchPanicked`], its message
//! cleaned of credentials.
//!
//! A source is user code: a panic in it is a failed fetch (recorded and backed off like any
//! other), never a dead flight whose waiters hang, nor a message that carries a secret to
//! the logs.

use std::{
    any::Any,
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;

use crate::Error;

/// `f()`, or the error for its panic.
pub(crate) fn call<T>(f: impl FnOnce() -> T) -> Result<T, Error> {
    catch_unwind(AssertUnwindSafe(f)).map_err(panicked)
}

pin_project! {
    /// A fetch with its panics caught: a panic becomes [`Error::FetchPanicked`]. The fetch's
    /// future is made on the first poll, so a panic while making it is caught too.
    pub(crate) struct CatchPanic<F, Fut> {
        start: Option<F>,
        #[pin]
        fetch: Option<Fut>,
    }
}

impl<F, Fut> CatchPanic<F, Fut> {
    /// The fetch `start` makes, when first polled.
    pub(crate) fn new(start: F) -> Self {
        CatchPanic {
            start: Some(start),
            fetch: None,
        }
    }
}

impl<F, Fut, T> Future for CatchPanic<F, Fut>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let polled = catch_unwind(AssertUnwindSafe(|| {
            if let Some(start) = this.start.take() {
                this.fetch.set(Some(start()));
            }
            match this.fetch.as_mut().as_pin_mut() {
                Some(fetch) => fetch.poll(cx),
                // It panicked before: it is over.
                None => Poll::Ready(Err(Error::FetchAborted)),
            }
        }));
        polled.unwrap_or_else(|panic| {
            this.fetch.set(None);
            Poll::Ready(Err(panicked(panic)))
        })
    }
}

/// The error for a panic: its message (a `&str` or `String` payload) with every credential
/// redacted wherever it sits (compact JSON, `Some("…")`, a form body), cleaned of control
/// characters and capped.
fn panicked(panic: Box<dyn Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    Error::FetchPanicked(crate::redact::free_text(message, 512))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_message_keeps_its_words_and_loses_credentials_and_control_characters() {
        let message = String::from(
            "fetch failed\r\nfor client with secret Q8~abcdEFGH1234ijklMNOP and token \
             eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln: Could not \
             automatically determine the process-level CryptoProvider",
        );
        let Error::FetchPanicked(shown) = panicked(Box::new(message)) else {
            unreachable!()
        };
        assert!(!shown.contains("Q8~abcd"), "{shown}");
        assert!(!shown.contains("eyJ0eXAi"), "{shown}");
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown}");
        assert!(
            shown.contains("Could not automatically determine the process-level CryptoProvider")
        );
        assert_eq!(shown.matches("[redacted]").count(), 2, "{shown}");
        let Error::FetchPanicked(shown) = panicked(Box::new("static str payload")) else {
            unreachable!()
        };
        assert_eq!(shown, "static str payload");
        let Error::FetchPanicked(shown) = panicked(Box::new(42_u32)) else {
            unreachable!()
        };
        assert_eq!(shown, "a panic without a message");
    }

    #[test]
    fn a_panic_making_or_polling_a_fetch_ends_it_with_its_message() {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let making = CatchPanic::new(|| -> std::future::Ready<Result<(), Error>> {
            panic!("while making it")
        });
        let polled = std::pin::pin!(making).poll(&mut cx);
        assert!(
            matches!(&polled, Poll::Ready(Err(Error::FetchPanicked(m))) if m == "while making it"),
            "{polled:?}"
        );
        let polling = CatchPanic::new(|| {
            std::future::poll_fn(|_| -> Poll<Result<(), Error>> { panic!("while polling it") })
        });
        let mut polling = std::pin::pin!(polling);
        let polled = polling.as_mut().poll(&mut cx);
        assert!(
            matches!(&polled, Poll::Ready(Err(Error::FetchPanicked(m))) if m == "while polling it"),
            "{polled:?}"
        );
        // Polled again, it does not start over.
        let polled = polling.as_mut().poll(&mut cx);
        assert!(
            matches!(polled, Poll::Ready(Err(Error::FetchAborted))),
            "{polled:?}"
        );
    }
}
