//! `Noop`, the inner service that is always ready and answers at once: what the layer wraps
//! when a test or benchmark measures the layer alone (`tests/alloc.rs`, `benches/`).

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

/// Always ready; answers every request at once with an empty `200 OK`.
#[derive(Clone, Copy, Debug)]
pub struct Noop;

impl Service<Request<()>> for Noop {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(String::new())))
    }
}
