//! Another origin on loopback: a server on a port of its own that records the headers of
//! every request it gets and answers `200 landed elsewhere`; and the mock's redirect there.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use veracity_auth_mock::Fault;

/// What [`Elsewhere`] answers.
pub const LANDED: &str = "landed elsewhere";

/// A plain HTTP/1 server on `127.0.0.1:0`; stops when dropped.
pub struct Elsewhere {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    task: JoinHandle<()>,
}

impl Elsewhere {
    pub async fn start() -> Elsewhere {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    record.lock().unwrap().push(req.headers().clone());
                    std::future::ready(Ok::<_, Infallible>(Response::new(Full::new(
                        Bytes::from_static(LANDED.as_bytes()),
                    ))))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Elsewhere { addr, seen, task }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The headers of every request received so far, oldest first.
    pub fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `302 Found` to `location`, as a gateway fault.
pub fn redirect_to(location: &str) -> Fault {
    Fault::Respond {
        status: StatusCode::FOUND,
        headers: vec![("location".into(), location.into())],
        body: Bytes::new(),
    }
}

/// Whether `headers` hold either credential.
pub fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::AUTHORIZATION)
        || headers.contains_key("ocp-apim-subscription-key")
}
