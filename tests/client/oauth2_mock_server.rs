//! Against an OAuth 2.0 server nobody here wrote: `oauth2-mock-server` from the npm registry
//! (pinned in `.ci/oauth2-mock-server/`), over plain HTTP and over HTTPS with a test CA.
//!
//! `ClientCredentials` gets RS256 JWTs from its token endpoint; an API stand-in checks every
//! token's signature against the server's JWKS and its `exp` against the wall clock. Tokens
//! live a few seconds, and requests keep coming for about two and a half lifetimes: every
//! request must succeed, none may carry an expired token, and the layer must refresh about
//! once per lifetime.
//!
//! Needs Node.js 20+ and `npm ci --prefix .ci/oauth2-mock-server` (`.ci/run` does it), so the
//! tests are `#[ignore]`d: `cargo test --all-features` passes with Rust alone, and
//! `cargo test --all-features -- --include-ignored` (what `.ci/run` runs) includes them. Once
//! included they never skip: without Node.js they fail and say how to install it.
#![cfg(feature = "default-client")]

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crate::common::npm::{NodeServer, install_hint, package_file, port_of, repo};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::Connect},
    rt::{TokioExecutor, TokioIo},
};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use tokio::{net::TcpListener, task::JoinSet};
use tower::{Layer, ServiceExt};
use veracity_auth::{
    Authenticator, ClientCredentials, Error, HttpClient, TokenEndpoint, TokenSource,
    VeracityAuthLayer,
};

/// How long the server's access tokens live, in seconds.
const TTL: u64 = 5;
/// How long requests keep coming: about two and a half token lifetimes.
const RUN: Duration = Duration::from_millis(12_500);
/// The pace of those requests.
const PACE: Duration = Duration::from_millis(100);
const SCOPE: &str = "api://veracity-auth-test/.default";

// ---------------------------------------------------------------------------------------
// The npm server, a child process.
// ---------------------------------------------------------------------------------------

/// `oauth2-mock-server` listening on 127.0.0.1; killed on drop.
struct OAuthServer {
    _server: NodeServer,
    port: u16,
    /// The `iss` of its tokens.
    issuer: String,
}

impl OAuthServer {
    /// Starts the server on `127.0.0.1:0` (HTTPS when given a certificate and key) and waits
    /// until it reports its address and its tokens' lifetime.
    async fn start(tls: Option<(PathBuf, PathBuf)>) -> OAuthServer {
        let binary = package_file(
            "oauth2-mock-server",
            "node_modules/.bin/oauth2-mock-server",
            Some("OAUTH2_MOCK_SERVER"),
        );
        let mut command = Command::new("node");
        command
            .arg(repo().join(".ci/oauth2-mock-server/launch.mjs"))
            .arg(&binary)
            .args(["--ttl", &TTL.to_string(), "-a", "127.0.0.1", "-p", "0"]);
        if let Some((cert, key)) = tls {
            command.arg("-c").arg(cert).arg("-k").arg(key);
        }
        // The CLI prints `OAuth 2 server listening on http://127.0.0.1:<port>` (http even when
        // serving HTTPS), then `OAuth 2 issuer is <url>`; the launcher then confirms the TTL.
        let found = Arc::new(Mutex::new((0, String::new())));
        let record = found.clone();
        let server = NodeServer::spawn(command, install_hint("oauth2-mock-server"), move |line| {
            let (port, issuer) = &mut *record.lock().unwrap();
            if let Some(address) = line.strip_prefix("OAuth 2 server listening on ") {
                *port = port_of(address).unwrap_or_else(|| panic!("no port in {line:?}"));
            } else if let Some(url) = line.strip_prefix("OAuth 2 issuer is ") {
                *issuer = url.to_owned();
            }
            line == format!("Access tokens live {TTL} s")
        })
        .await;
        let (port, issuer) = found.lock().unwrap().clone();
        assert!(port != 0 && !issuer.is_empty(), "{:?}", server.startup);
        OAuthServer {
            _server: server,
            port,
            issuer,
        }
    }
}

// ---------------------------------------------------------------------------------------
// RS256 JWT validation against the server's JWKS.
// ---------------------------------------------------------------------------------------

/// Decodes unpadded base64url (RFC 4648 §5), as JWTs and JWKs use it.
fn base64url(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding, and a lone sextet is never valid.
    (bits < 6 && acc == 0).then_some(out)
}

#[derive(Debug, PartialEq)]
enum Rejection {
    Malformed,
    UnknownKey,
    Signature,
    Expired,
    Claims,
}

/// What the API stand-in accepts: tokens signed by one of `keys`, issued by `issuer` for
/// `scope`, not expired.
struct Verifier {
    keys: HashMap<String, RsaPublicKeyComponents<Vec<u8>>>,
    issuer: String,
    scope: String,
}

impl Verifier {
    fn new(jwks: &serde_json::Value, issuer: &str, scope: &str) -> Verifier {
        let keys: HashMap<_, _> = jwks["keys"]
            .as_array()
            .expect("JWKS has keys")
            .iter()
            .filter(|k| k["kty"] == "RSA")
            .map(|k| {
                let part = |name: &str| base64url(k[name].as_str().unwrap()).unwrap();
                let kid = k["kid"].as_str().unwrap().to_owned();
                (
                    kid,
                    RsaPublicKeyComponents {
                        n: part("n"),
                        e: part("e"),
                    },
                )
            })
            .collect();
        assert!(!keys.is_empty(), "no RSA key in {jwks}");
        Verifier {
            keys,
            issuer: issuer.to_owned(),
            scope: scope.to_owned(),
        }
    }

    /// Checks `token` at `now` (seconds since the epoch).
    fn check(&self, token: &str, now: f64) -> Result<(), Rejection> {
        let json = |part: &str| -> Result<serde_json::Value, Rejection> {
            let bytes = base64url(part).ok_or(Rejection::Malformed)?;
            serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)
        };
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        let header = json(head)?;
        if header["alg"] != "RS256" {
            return Err(Rejection::Malformed);
        }
        let kid = header["kid"].as_str().ok_or(Rejection::Malformed)?;
        let key = self.keys.get(kid).ok_or(Rejection::UnknownKey)?;
        let signature = base64url(signature).ok_or(Rejection::Malformed)?;
        let signed = &token.as_bytes()[..head.len() + 1 + body.len()];
        key.verify(&RSA_PKCS1_2048_8192_SHA256, signed, &signature)
            .map_err(|_| Rejection::Signature)?;

        let claims = json(body)?;
        let exp = claims["exp"].as_f64().ok_or(Rejection::Claims)?;
        let nbf = claims["nbf"].as_f64().unwrap_or(f64::MIN);
        if claims["iss"] != self.issuer.as_str() || claims["scope"] != self.scope.as_str() {
            return Err(Rejection::Claims);
        }
        if now < nbf {
            return Err(Rejection::Claims);
        }
        // RFC 7519 §4.1.4: not accepted on or after `exp`. No leeway.
        if now >= exp {
            return Err(Rejection::Expired);
        }
        Ok(())
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------
// The API stand-in: a hyper server on 127.0.0.1 that accepts only valid tokens.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    accepted: AtomicU64,
    expired: AtomicU64,
    invalid: AtomicU64,
    /// Distinct accepted tokens, in the order they first arrived.
    tokens: Mutex<Vec<String>>,
}

struct Api {
    url: String,
    seen: Arc<Seen>,
}

impl Api {
    async fn start(verifier: Verifier) -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = (Arc::new(verifier), seen.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (verifier, seen) = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let response = answer(&verifier, &seen, &req);
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Api {
            url: format!("http://{addr}/workspaces/ws-1"),
            seen,
        }
    }
}

fn answer<B>(verifier: &Verifier, seen: &Seen, req: &Request<B>) -> Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let verdict = token.map_or(Err(Rejection::Malformed), |t| verifier.check(t, unix_now()));
    match verdict {
        Ok(()) => {
            seen.accepted.fetch_add(1, Ordering::SeqCst);
            let token = token.unwrap_or_default();
            let mut tokens = seen.tokens.lock().unwrap();
            if !tokens.iter().any(|t| t == token) {
                tokens.push(token.to_owned());
            }
            Response::new(Full::from(r#"{"id":"ws-1","name":"stand-in"}"#))
        }
        Err(rejection) => {
            let counter = if rejection == Rejection::Expired {
                &seen.expired
            } else {
                &seen.invalid
            };
            counter.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
                .body(Full::default())
                .unwrap()
        }
    }
}

// ---------------------------------------------------------------------------------------
// The scenario, over HTTP and over HTTPS.
// ---------------------------------------------------------------------------------------

async fn get_json<C>(client: &Client<C, Full<Bytes>>, url: &str) -> serde_json::Value
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let request = Request::get(url).body(Full::default()).unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn get(url: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(url);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Full::default()).unwrap()
}

/// A cold burst, then paced requests for [`RUN`] through the layer; then checks what the
/// stand-in saw and that it really rejects expired and forged tokens.
async fn expiry_and_refresh(creds: ClientCredentials, api: Api) {
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let uri: http::Uri = api.url.parse().unwrap();
    let origin = format!("http://{}", uri.authority().unwrap());
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(creds)
            .origins([origin])
            .build()
            .unwrap(),
    );
    let service = layer.layer(plain.clone());

    // A cold cache and eight concurrent requests: one token fetch, shared.
    let mut burst = JoinSet::new();
    for _ in 0..8 {
        burst.spawn(service.clone().oneshot(get(&api.url, None)));
    }
    while let Some(response) = burst.join_next().await {
        assert_eq!(response.unwrap().unwrap().status(), StatusCode::OK);
    }
    let after_burst = layer.stats();
    assert_eq!(after_burst.fetches, 1);

    // Requests for about two and a half token lifetimes.
    let start = Instant::now();
    let mut sent = 8;
    while start.elapsed() < RUN {
        let response = service.clone().oneshot(get(&api.url, None)).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "request {sent} after {:?}",
            start.elapsed()
        );
        sent += 1;
        tokio::time::sleep(PACE).await;
    }
    let elapsed = start.elapsed();
    let stats = layer.stats();
    let seen = &api.seen;
    let tokens = seen.tokens.lock().unwrap().clone();
    eprintln!(
        "{sent} requests over {elapsed:?}, tokens living {TTL} s: {stats:?}, {} distinct tokens",
        tokens.len()
    );

    assert_eq!(seen.requests.load(Ordering::SeqCst), sent);
    assert_eq!(seen.accepted.load(Ordering::SeqCst), sent);
    assert_eq!(
        seen.expired.load(Ordering::SeqCst),
        0,
        "expired tokens sent"
    );
    assert_eq!(
        seen.invalid.load(Ordering::SeqCst),
        0,
        "invalid tokens sent"
    );
    assert_eq!(
        (stats.fetch_failures, stats.replay_refreshes, stats.replays),
        (0, 0, 0)
    );
    // Refresh ahead starts at 3/4 to 4/5 of a token's life (as the server states it, in whole
    // seconds: TTL - 1 or TTL): at least one fetch per lifetime after the first, and not
    // many more.
    let lifetimes = elapsed.as_secs_f64() / TTL as f64;
    assert!(
        stats.fetches as f64 >= 1.0 + lifetimes.floor(),
        "too few fetches for {lifetimes:.1} lifetimes: {stats:?}"
    );
    assert!(
        stats.fetches as f64 <= 2.0 + 2.0 * lifetimes,
        "too many fetches for {lifetimes:.1} lifetimes: {stats:?}"
    );
    // Every refresh was a new token from the server, and the layer switched to it (the last
    // one may have arrived after the last request).
    assert!(tokens.len() as u64 >= stats.fetches - 1 && tokens.len() as u64 <= stats.fetches);
    // Only the cold burst waited for a token; refreshes ran in the background.
    assert_eq!(stats.waits, after_burst.waits, "{stats:?}");

    // The stand-in is not a pushover: the first token is long expired by now, and a token
    // with a forged signature is refused.
    let first = &tokens[0];
    let response = plain.request(get(&api.url, Some(first))).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(seen.expired.load(Ordering::SeqCst), 1);
    let last = tokens.last().unwrap();
    let (signed, signature) = last.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let response = plain.request(get(&api.url, Some(&forged))).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(seen.invalid.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js 20+ (oauth2-mock-server): cargo test -- --include-ignored"]
async fn client_credentials_against_oauth2_mock_server_refreshes_before_expiry() {
    let server = OAuthServer::start(None).await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let plain = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let jwks = get_json(&plain, &format!("{base}/jwks")).await;
    let api = Api::start(Verifier::new(&jwks, &server.issuer, SCOPE)).await;

    // The default client (plain HTTP, asked for by name).
    let creds = ClientCredentials::new("veracity-auth-test", "test-secret")
        .endpoint(TokenEndpoint::plain_http(format!("{base}/token")).unwrap())
        .scope(SCOPE);
    expiry_and_refresh(creds, api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js 20+ (oauth2-mock-server): cargo test -- --include-ignored"]
async fn client_credentials_over_https_with_a_test_ca_refreshes_before_expiry() {
    let tls = repo().join("tests/fixtures/tls");
    let server =
        OAuthServer::start(Some((tls.join("localhost.pem"), tls.join("localhost.key")))).await;
    let base = format!("https://127.0.0.1:{}", server.port);
    assert!(server.issuer.starts_with("https://"), "{}", server.issuer);

    let ca = CertificateDer::from_pem_file(tls.join("ca.pem")).expect("tests/fixtures/tls/ca.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();

    // The JWKS, over the same TLS set-up.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
    let jwks = get_json(&client, &format!("{base}/jwks")).await;
    let api = Api::start(Verifier::new(&jwks, &server.issuer, SCOPE)).await;

    let endpoint = TokenEndpoint::new(format!("{base}/token")).unwrap();
    let creds = ClientCredentials::new("veracity-auth-test", "test-secret")
        .endpoint(endpoint.clone())
        .scope(SCOPE);
    // The default client trusts the webpki roots only: the test CA is refused.
    match creds.fetch().await {
        Err(Error::Transport(e)) => {
            let message = format!("{e:?}");
            assert!(message.contains("UnknownIssuer"), "{message}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    let client = HttpClient::builder()
        .root_certificates(roots)
        .build()
        .unwrap();
    let creds = creds.endpoint(endpoint.http_client(client));
    expiry_and_refresh(creds, api).await;
}
