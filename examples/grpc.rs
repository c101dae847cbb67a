//! The layer on a tonic `Channel`: a Greeter server on 127.0.0.1 that demands a bearer
//! token, and the generated client over `ServiceBuilder::new().layer(auth).service(channel)`.
//! The server revokes its tokens half way; the layer refreshes and replays, even the
//! client-streaming call.
//!
//! ```text
//! cargo run --example grpc --features tonic
//! ```

#[path = "../tests/grpc/greeter.rs"]
#[allow(clippy::all, unreachable_pub, missing_docs)]
mod greeter;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use greeter::{
    HelloReply, HelloRequest,
    greeter_client::GreeterClient,
    greeter_server::{Greeter, GreeterServer},
};
use tonic::{Request, Response, Status, Streaming, transport::Channel};
use tower::{BoxError, ServiceBuilder};
use veracity_auth::{Authenticator, Token, VeracityAuthLayer, token_fn};

struct Hello;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let message = format!("Hello {}", req.into_inner().name);
        Ok(Response::new(HelloReply { message }))
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
        let message = format!("Hello {}", names.join(", "));
        Ok(Response::new(HelloReply { message }))
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Display with every cause: which endpoint, which stage, why.
            eprintln!("error: {:#}", anyhow::Error::from_boxed(e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // The identity provider and the server share this set of valid tokens.
    let valid: Arc<Mutex<HashSet<String>>> = Arc::default();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let accepted = Arc::clone(&valid);
    let server = GreeterServer::with_interceptor(Hello, move |req: Request<()>| {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if accepted.lock().unwrap().contains(token) {
            Ok(req)
        } else {
            Err(Status::unauthenticated("invalid token"))
        }
    });
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().serve_with_incoming(server, incoming));

    let issuer = Arc::clone(&valid);
    let auth = VeracityAuthLayer::new(
        Authenticator::builder(token_fn(move || {
            let token = format!("token-{}", issuer.lock().unwrap().len() + 1);
            issuer.lock().unwrap().insert(token.clone());
            async move { Ok::<_, BoxError>(Token::new(token, Some(Duration::from_secs(3600)))) }
        }))
        .build()?,
    );

    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = GreeterClient::new(ServiceBuilder::new().layer(auth.clone()).service(channel));

    let reply = client
        .say_hello(HelloRequest {
            name: "Veracity".into(),
        })
        .await?;
    println!("{}", reply.into_inner().message);

    valid.lock().unwrap().clear(); // the server forgets every token
    let names = ["a", "b", "c"].map(|n| HelloRequest { name: n.into() });
    let reply = client.collect_hellos(tokio_stream::iter(names)).await?;
    println!(
        "{} (after UNAUTHENTICATED, a new token and a replay)",
        reply.into_inner().message
    );

    let stats = auth.stats();
    println!(
        "token fetches: {}, replays: {}",
        stats.fetches, stats.replays
    );
    Ok(())
}
