//! Talking to the mock Veracity ([`veracity_auth_mock::MockVeracity`]) over loopback: a plain
//! HTTP client, a layer holding the mock's service account, and the workspace request.

use bytes::Bytes;
use http::Request;
use http_body::Body;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower::{BoxError, Layer, Service, ServiceExt};
use veracity_auth::{
    Authenticator, AuthenticatorBuilder, ClientCredentials, TokenEndpoint, VeracityAuth,
    VeracityAuthLayer,
};
use veracity_auth_mock::MockVeracity;

/// A plain-HTTP hyper-util client sending `B` bodies (the mock listens on loopback).
pub type Http<B = Full<Bytes>> = Client<HttpConnector, B>;

/// What the layer over an [`Http`] client answers: the gateway's response, with the layer's body.
pub type LayeredResponse = <VeracityAuth<Http> as Service<Request<Full<Bytes>>>>::Response;

/// A fresh [`Http`] client sending `Full<Bytes>` bodies.
pub fn http_client() -> Http {
    http_client_for()
}

/// A fresh [`Http`] client sending `B` bodies (a streaming body, for instance).
pub fn http_client_for<B>() -> Http<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// A layer authenticating as the mock's first client, with its first API key.
pub fn layer_for(mock: &MockVeracity) -> VeracityAuthLayer {
    VeracityAuthLayer::new(authenticator_for(mock).build().unwrap())
}

/// The mock's service account and API key, for the mock's origin (credentials go to
/// Veracity's alone by default), to be configured further and built.
pub fn authenticator_for(mock: &MockVeracity) -> AuthenticatorBuilder {
    Authenticator::builder(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
    )
    .api_key(mock.api_key())
    .origins([mock.url()])
}

/// `GET {api}/workspaces/{id}` on the mock's gateway, without credentials (the layer adds them).
pub fn workspace(mock: &MockVeracity) -> Request<Full<Bytes>> {
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    Request::get(url).body(Full::default()).unwrap()
}

/// Sends [`workspace`] through `layer` over a fresh [`http_client`]: the one request most
/// tests make, with the layer's answer (the gateway's response or the layer's error).
pub async fn get_workspace(
    layer: &VeracityAuthLayer,
    mock: &MockVeracity,
) -> Result<LayeredResponse, BoxError> {
    layer.layer(http_client()).oneshot(workspace(mock)).await
}

/// A mock that records every request it receives ([`MockVeracity::requests`]).
pub async fn recording_mock() -> MockVeracity {
    MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap()
}

/// The URL of a dataset query on the mock's workspace (a POST endpoint that takes any body).
pub fn dataset_query(mock: &MockVeracity) -> String {
    format!(
        "{}/workspaces/{}/datasets/d1/query",
        mock.api_url(),
        mock.workspace_id()
    )
}

/// The mock `builder` makes, served by a runtime of its own (one worker thread) that no
/// runtime under test drives: tests that make, idle and drop runtimes of their own.
pub fn mock_on_its_own_runtime(
    builder: veracity_auth_mock::MockBuilder,
) -> (tokio::runtime::Runtime, MockVeracity) {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = server.block_on(builder.start()).unwrap();
    (server, mock)
}
