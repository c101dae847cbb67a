//! gRPC through the layer: a real tonic server on 127.0.0.1 that answers UNAUTHENTICATED
//! (trailers-only, `grpc-status: 16` in the response headers) to revoked tokens, and the
//! generated tonic client over `ServiceBuilder::new().layer(auth).service(channel)`.
#![cfg(feature = "tonic")]

#[path = "../grpc/greeter.rs"]
#[allow(clippy::all, unreachable_pub, missing_docs)]
mod greeter;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use greeter::{
    HelloReply, HelloRequest,
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer},
};
use tonic::{Request, Response, Status, Streaming, transport::Channel};
use tower::ServiceBuilder;
use veracity_auth::{Authenticator, AuthenticatorBuilder, Token, VeracityAuthLayer, token_fn};

/// The tokens the identity provider stand-in issued and the server still accepts.
#[derive(Clone, Default)]
struct Tokens {
    valid: Arc<Mutex<HashSet<String>>>,
    issued: Arc<AtomicU64>,
    rejected: Arc<AtomicU64>,
}

impl Tokens {
    fn issue(&self) -> Token {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("grpc-token-{n}");
        self.valid.lock().unwrap().insert(token.clone());
        Token::new(token, Some(Duration::from_secs(3600)))
    }

    fn revoke_all(&self) {
        self.valid.lock().unwrap().clear();
    }

    fn check(&self, req: Request<()>) -> Result<Request<()>, Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if self.valid.lock().unwrap().contains(token) {
            Ok(req)
        } else {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            Err(Status::unauthenticated("invalid token"))
        }
    }
}

struct Hello;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            message: format!("Hello {}", req.into_inner().name),
        }))
    }

    async fn collect_hellos(
        &self,
        req: Request<Streaming<HelloRequest>>,
    ) -> Result<Response<HelloReply>, Status> {
        let mut stream = req.into_inner();
        let mut names = Vec::new();
        while let Some(hello) = stream.message().await? {
            names.push(hello.name);
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {}", names.join(", ")),
        }))
    }
}

async fn serve(tokens: Tokens) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let service = GreeterServer::with_interceptor(Hello, move |req| tokens.check(req));
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(service, incoming));
    addr
}

type Client = GreeterClient<veracity_auth::VeracityAuth<Channel>>;

/// A server, a layer with default settings, and a client that has made one call.
async fn connected() -> (Tokens, VeracityAuthLayer, Client) {
    connected_with(|auth| auth).await
}

/// The same with the layer's settings edited by `configure`.
async fn connected_with(
    configure: impl FnOnce(AuthenticatorBuilder) -> AuthenticatorBuilder,
) -> (Tokens, VeracityAuthLayer, Client) {
    let tokens = Tokens::default();
    let addr = serve(tokens.clone()).await;
    let source = tokens.clone();
    let auth = VeracityAuthLayer::new(
        configure(Authenticator::builder(token_fn(move || {
            let token = source.issue();
            async move { Ok::<_, std::convert::Infallible>(token) }
        })))
        .build()
        .unwrap(),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GreeterClient::new(ServiceBuilder::new().layer(auth.clone()).service(channel));
    let reply = client.say_hello(hello("first")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello first");
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 1);
    (tokens, auth, client)
}

fn hello(name: &str) -> HelloRequest {
    HelloRequest { name: name.into() }
}

#[tokio::test]
async fn a_unary_call_succeeds_after_revocation() {
    let (tokens, auth, mut client) = connected().await;
    tokens.revoke_all();
    // UNAUTHENTICATED, a new token, one replay, success.
    let reply = client.say_hello(hello("unary")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello unary");
    assert_eq!(tokens.rejected.load(Ordering::SeqCst), 1);
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);
    assert_eq!(auth.stats().replays, 1);
}

#[tokio::test]
async fn a_client_streaming_call_succeeds_after_revocation() {
    let (tokens, auth, mut client) = connected().await;
    tokens.revoke_all();
    // The streamed request body was recorded as it was sent, and is replayed.
    let names = ["a", "b", "c"].map(hello);
    let reply = client
        .collect_hellos(tokio_stream::iter(names))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "Hello a, b, c");
    assert_eq!(tokens.rejected.load(Ordering::SeqCst), 1);
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);
    assert_eq!(auth.stats().replays, 1);
}

/// A channel's requests name no origin (`/greeter.Greeter/SayHello`: the channel adds its
/// own further down), so they are the layer's to authorize whatever origins are set.
#[tokio::test]
async fn a_channels_requests_are_authorized_and_replayed_with_origins_set() {
    let (tokens, auth, mut client) =
        connected_with(|auth| auth.origins(["https://api.veracity.com"])).await;
    tokens.revoke_all();
    let reply = client.say_hello(hello("origins")).await.unwrap();
    assert_eq!(reply.into_inner().message, "Hello origins");
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);
    assert_eq!(auth.stats().replays, 1);
}
