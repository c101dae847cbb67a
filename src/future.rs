//! [`ResponseFuture`]: the state machine of one request.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, header::AUTHORIZATION};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{BoxError, Error, cache::CachedToken, source::BoxFuture};

pin_project! {
    /// The response future of [`VeracityAuth`](crate::VeracityAuth).
    ///
    /// With a cached token it is the inner service's future and nothing else; without one
    /// it first waits for the cache's single fetch.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        // Boxed: the cold path is rare, and keeping it out of line keeps the hot
        // future as small as the inner one plus a tag.
        Acquiring {
            acquiring: Option<Box<Acquiring<S, B>>>,
        },
        Failed {
            error: Option<Error>,
        },
    }
}

/// What the cold path waits with: the token fetch, the readied service and the request.
struct Acquiring<S, B> {
    token: BoxFuture<'static, Result<Arc<CachedToken>, Error>>,
    service: S,
    request: Request<B>,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn called(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Called { future },
        }
    }

    pub(crate) fn acquiring(
        token: BoxFuture<'static, Result<Arc<CachedToken>, Error>>,
        inner: S,
        request: Request<B>,
    ) -> Self {
        ResponseFuture {
            state: State::Acquiring {
                acquiring: Some(Box::new(Acquiring {
                    token,
                    service: inner,
                    request,
                })),
            },
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        ResponseFuture {
            state: State::Failed { error: Some(error) },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Acquiring { acquiring } => {
                    let Some(waiting) = acquiring else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let token = ready!(waiting.token.as_mut().poll(cx));
                    let Some(waiting) = acquiring.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let Acquiring {
                        mut service,
                        mut request,
                        ..
                    } = *waiting;
                    let token = token?;
                    request
                        .headers_mut()
                        .insert(AUTHORIZATION, token.header.clone());
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Failed { error } => {
                    let error = error
                        .take()
                        .map_or_else(polled_after_completion, Into::into);
                    return Poll::Ready(Err(error));
                }
            }
        }
    }
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
}
