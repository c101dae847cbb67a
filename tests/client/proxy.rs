//! Token requests through an HTTP CONNECT proxy on loopback: the tunnels it opens (exact
//! counts), `NO_PROXY`, the environment against explicit settings, proxy credentials, and
//! proxies that refuse.
//!
//! The proxy here is a test double (tests/common/proxy.rs), so `cargo test --all-features`
//! covers all of this with Rust alone; the `npm_proxy_*` tests repeat the core against the
//! npm `proxy` package (Node.js 20+, `#[ignore]`d: `cargo test -- --include-ignored`). Environment variables are only ever set on a child process: this binary
//! runs itself again for each case (`env_child`).
#![cfg(feature = "default-client")]

use crate::common;

use std::{
    process::Command,
    sync::{Arc, Mutex},
};

use common::child::{self, Child};
use common::npm::{NodeServer, install_hint, package_file, port_of, repo};
use common::proxy::{ConnectProxy, ProxyMode, TlsFront, test_ca_roots};
use veracity_auth::{ClientCredentials, Error, HttpClient, TokenEndpoint, TokenSource};
use veracity_auth_mock::MockVeracity;

fn creds(mock: &MockVeracity, token_url: String, client: Option<HttpClient>) -> ClientCredentials {
    let endpoint = TokenEndpoint::plain_http(token_url).unwrap();
    let endpoint = match client {
        Some(client) => endpoint.http_client(client),
        None => endpoint,
    };
    ClientCredentials::new(mock.client_id(), mock.client_secret()).endpoint(endpoint)
}

#[tokio::test]
async fn token_requests_tunnel_through_the_proxy_unless_no_proxy_names_the_host() {
    let mock = MockVeracity::start().await.unwrap();
    let proxy = ConnectProxy::start(ProxyMode::Open).await;

    let through = HttpClient::builder().proxy(proxy.url()).build().unwrap();
    creds(&mock, mock.token_url(), Some(through))
        .fetch()
        .await
        .unwrap();
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(proxy.seen()[0].target, mock.addr().to_string());
    assert_eq!(proxy.seen()[0].authorization, None);
    assert_eq!(mock.stats().tokens_issued, 1);

    // NO_PROXY syntax, by IP address and by network: straight to the mock.
    for bypass in ["127.0.0.1", "localhost, 127.0.0.0/8"] {
        let bypassed = HttpClient::builder()
            .proxy(proxy.url())
            .proxy_bypass(bypass)
            .build()
            .unwrap();
        creds(&mock, mock.token_url(), Some(bypassed))
            .fetch()
            .await
            .unwrap();
    }
    assert_eq!(proxy.seen().len(), 1, "{:?}", proxy.seen());
    assert_eq!(mock.stats().tokens_issued, 3);

    // A bypass list naming another host leaves the proxy in use.
    let other = HttpClient::builder()
        .proxy(proxy.url())
        .proxy_bypass("login.example.com,10.0.0.0/8")
        .build()
        .unwrap();
    creds(&mock, mock.token_url(), Some(other))
        .fetch()
        .await
        .unwrap();
    assert_eq!(proxy.tunnels(), 2);
    assert_eq!(mock.stats().tokens_issued, 4);
}

#[tokio::test]
async fn a_bypass_of_star_sends_every_request_direct() {
    let mock = MockVeracity::start().await.unwrap();
    let proxy = ConnectProxy::start(ProxyMode::Open).await;
    let by_name = mock.token_url().replace("127.0.0.1", "localhost");
    // `*` alone or as one entry of the list: host names and IP addresses alike.
    for bypass in ["*", " * ", "login.example.com, *"] {
        for token_url in [mock.token_url(), by_name.clone()] {
            let client = HttpClient::builder()
                .proxy(proxy.url())
                .proxy_bypass(bypass)
                .build()
                .unwrap();
            let fetched = creds(&mock, token_url.clone(), Some(client)).fetch().await;
            assert!(fetched.is_ok(), "{bypass:?} {token_url}: {fetched:?}");
        }
    }
    assert_eq!(proxy.seen().len(), 0, "{:?}", proxy.seen());
    assert_eq!(mock.stats().tokens_issued, 6);

    // The proxy URL is still checked: `*` does not make a bad one acceptable.
    let err = HttpClient::builder()
        .proxy("ftp://alice:hunter2@127.0.0.1:21")
        .proxy_bypass("*")
        .build()
        .unwrap_err();
    let shown = format!("{:#}", anyhow::Error::from(err));
    assert!(shown.contains("not a usable proxy URL"), "{shown}");
    assert_eq!(mock.stats().token_requests, 6);
}

#[tokio::test]
async fn https_token_requests_run_tls_inside_the_tunnel() {
    let mock = MockVeracity::start().await.unwrap();
    let front = TlsFront::start(mock.addr()).await;
    let proxy = ConnectProxy::start(ProxyMode::Open).await;
    let token_url = mock
        .token_url()
        .replace(&mock.url(), &format!("https://localhost:{}", front.port()));
    assert!(token_url.starts_with("https://localhost:"), "{token_url}");

    let client = HttpClient::builder()
        .root_certificates(test_ca_roots())
        .proxy(proxy.url())
        .build()
        .unwrap();
    creds(&mock, token_url, Some(client)).fetch().await.unwrap();
    assert_eq!(proxy.tunnels(), 1);
    // The proxy is asked for the host name; the certificate is checked for it inside.
    assert_eq!(
        proxy.seen()[0].target,
        format!("localhost:{}", front.port())
    );
    assert_eq!(mock.stats().tokens_issued, 1);
}

#[tokio::test]
async fn proxy_credentials_are_sent_as_basic_and_never_shown() {
    let mock = MockVeracity::start().await.unwrap();
    // "Aladdin:open sesame" (RFC 7617); the URL carries it percent-encoded.
    let expected = "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==";
    let proxy = ConnectProxy::start(ProxyMode::RequireAuth(expected.into())).await;
    let url = format!("http://Aladdin:open%20sesame@{}", proxy.addr());

    let builder = HttpClient::builder().proxy(&url);
    let shown = format!("{builder:?}");
    assert!(
        !shown.contains("sesame") && !shown.contains("Aladdin"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("http://{}", proxy.addr())),
        "{shown}"
    );
    let client = builder.build().unwrap();
    let shown = format!("{client:?}");
    assert!(
        !shown.contains("sesame") && !shown.contains("Aladdin"),
        "{shown}"
    );

    let source = creds(&mock, mock.token_url(), Some(client));
    let shown = format!("{source:?}");
    assert!(
        !shown.contains("sesame") && !shown.contains("Aladdin"),
        "{shown}"
    );
    source.fetch().await.unwrap();
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(proxy.seen()[0].authorization.as_deref(), Some(expected));

    // Wrong credentials: the proxy answers 407, and the error shows no password.
    let wrong = HttpClient::builder()
        .proxy(format!("http://Aladdin:s3cret-guess@{}", proxy.addr()))
        .build()
        .unwrap();
    let err = creds(&mock, mock.token_url(), Some(wrong))
        .fetch()
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?} {:#}", anyhow::Error::from(err.clone()));
    assert!(
        !shown.contains("s3cret-guess") && !shown.contains("Aladdin"),
        "{shown}"
    );
    assert!(shown.contains("proxy authorization required"), "{shown}");
    assert!(
        shown.contains(&format!("the proxy http://{}", proxy.addr())),
        "{shown}"
    );
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(mock.stats().token_requests, 1);
}

/// A refusing proxy's error names the proxy (scheme, host and port, no credentials).
async fn refused(proxy_url: &str, proxy_addr: &str) -> String {
    let mock = MockVeracity::start().await.unwrap();
    let client = HttpClient::builder().proxy(proxy_url).build().unwrap();
    let err = creds(&mock, mock.token_url(), Some(client))
        .fetch()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    let message = format!("{:#}", anyhow::Error::from(err.clone()));
    assert!(
        message.contains(&format!(
            "the proxy http://{proxy_addr} did not open a tunnel to {}",
            mock.addr()
        )),
        "{message}"
    );
    let shown = format!("{message} {err:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("alice"),
        "{shown}"
    );
    assert_eq!(mock.stats().token_requests, 0);
    message
}

#[tokio::test]
async fn a_refusing_proxy_is_named_in_the_error() {
    let forbidden = ConnectProxy::start(ProxyMode::Refuse(403)).await;
    let addr = forbidden.addr().to_string();
    let message = refused(&format!("http://alice:hunter2@{addr}"), &addr).await;
    assert!(message.contains("unsuccessful"), "{message}");
    assert_eq!(forbidden.seen().len(), 1);
    assert_eq!(forbidden.tunnels(), 0);

    let auth = ConnectProxy::start(ProxyMode::RequireAuth("Basic x".into())).await;
    let addr = auth.addr().to_string();
    let message = refused(&format!("http://{addr}"), &addr).await;
    assert!(
        message.contains("proxy authorization required"),
        "{message}"
    );
    assert_eq!(auth.tunnels(), 0);

    // Nothing listening.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let message = refused(&format!("http://alice:hunter2@{addr}"), &addr).await;
    assert!(
        message.contains("failed to create underlying connection"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unusable_proxy_url_is_refused_at_build_instead_of_going_direct() {
    let mock = MockVeracity::start().await.unwrap();
    for url in [
        "ftp://alice:hunter2@127.0.0.1:21",
        "socks5://alice:hunter2@127.0.0.1:1080",
    ] {
        let err = HttpClient::builder().proxy(url).build().unwrap_err();
        assert!(
            matches!(err, veracity_auth::ConfigError::Proxy(_)),
            "{err:?}"
        );
        let shown = format!("{:#} {err:?}", anyhow::Error::from(err.clone()));
        assert!(
            !shown.contains("hunter2") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
    assert_eq!(mock.stats().token_requests, 0);
}

// ---------------------------------------------------------------------------------------
// The environment, in child processes.
// ---------------------------------------------------------------------------------------

const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Runs `env_child` in a fresh copy of this test binary with exactly `vars` as proxy
/// environment: it fetches one token from `token_url` with the client `client` names.
fn run_child(client: &str, mock: &MockVeracity, vars: &[(&str, String)]) -> bool {
    let stdout = Child::new("proxy::env_child", client)
        .client(mock.client_id(), mock.client_secret(), &mock.token_url())
        .env_remove("REQUEST_METHOD")
        .envs_removed(PROXY_VARS)
        .envs(vars.iter().map(|(name, value)| (name, value)))
        .printed("child fetched: ");
    stdout.contains("child fetched: ok")
}

/// The child side of the environment tests; does nothing unless run by `run_child`.
#[tokio::test]
async fn env_child() {
    let Some(client) = child::role() else {
        return;
    };
    let endpoint = child::endpoint();
    let endpoint = match client.as_str() {
        "default" => endpoint,
        "no_proxy" => endpoint.http_client(HttpClient::builder().no_proxy().build().unwrap()),
        explicit => endpoint.http_client(
            HttpClient::builder()
                .proxy(explicit.strip_prefix("explicit:").unwrap())
                .build()
                .unwrap(),
        ),
    };
    let creds = child::credentials_at(endpoint);
    match creds.fetch().await {
        Ok(_) => println!("child fetched: ok"),
        Err(e) => println!("child fetched: error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_client_honours_the_proxy_environment() {
    let mock = MockVeracity::start().await.unwrap();
    let proxy = ConnectProxy::start(ProxyMode::Open).await;
    let url = proxy.url();

    // Plain-HTTP (loopback) token URLs take HTTP_PROXY, in either case, or ALL_PROXY.
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        assert!(
            run_child("default", &mock, &[(name, url.clone())]),
            "{name}"
        );
    }
    assert_eq!(proxy.tunnels(), 4);
    // HTTPS_PROXY is for HTTPS token URLs only.
    assert!(run_child("default", &mock, &[("HTTPS_PROXY", url.clone())]));
    assert_eq!(proxy.tunnels(), 4);
    // NO_PROXY, in either case, exempts the host.
    for name in ["NO_PROXY", "no_proxy"] {
        let vars = [
            ("HTTP_PROXY", url.clone()),
            (name, "localhost,127.0.0.1".into()),
        ];
        assert!(run_child("default", &mock, &vars), "{name}");
    }
    assert_eq!(proxy.tunnels(), 4);
    // No variables: direct.
    assert!(run_child("default", &mock, &[]));
    assert_eq!(proxy.seen().len(), 4);
    assert_eq!(mock.stats().tokens_issued, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_star_in_the_environment_sends_every_request_direct() {
    let mock = MockVeracity::start().await.unwrap();
    let proxy = ConnectProxy::start(ProxyMode::Open).await;
    let url = proxy.url();
    // The token URL is on 127.0.0.1: curl bypasses IP addresses for `*` too.
    for (name, value) in [
        ("NO_PROXY", "*"),
        ("no_proxy", "*"),
        ("NO_PROXY", "login.example.com, *"),
    ] {
        let vars = [("ALL_PROXY", url.clone()), (name, value.to_owned())];
        assert!(run_child("default", &mock, &vars), "{name}={value}");
    }
    assert_eq!(proxy.seen().len(), 0, "{:?}", proxy.seen());
    assert_eq!(mock.stats().tokens_issued, 3);
    // NO_PROXY wins over no_proxy, as in hyper-util's matcher: a `*` there is not read.
    let vars = [
        ("ALL_PROXY", url.clone()),
        ("NO_PROXY", "login.example.com".to_owned()),
        ("no_proxy", "*".to_owned()),
    ];
    assert!(run_child("default", &mock, &vars));
    assert_eq!(proxy.tunnels(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_settings_override_the_environment() {
    let mock = MockVeracity::start().await.unwrap();
    let refusing = ConnectProxy::start(ProxyMode::Refuse(403)).await;
    let open = ConnectProxy::start(ProxyMode::Open).await;
    let env = [("ALL_PROXY", refusing.url())];

    // The environment's proxy refuses...
    assert!(!run_child("default", &mock, &env));
    assert_eq!(refusing.seen().len(), 1);
    // ...`no_proxy()` goes direct, `proxy(url)` uses that proxy, even with NO_PROXY set.
    assert!(run_child("no_proxy", &mock, &env));
    let explicit = format!("explicit:{}", open.url());
    let with_no_proxy = [("ALL_PROXY", refusing.url()), ("NO_PROXY", "*".to_owned())];
    assert!(run_child(&explicit, &mock, &with_no_proxy));
    assert_eq!(refusing.seen().len(), 1);
    assert_eq!(open.tunnels(), 1);
    assert_eq!(mock.stats().tokens_issued, 2);
}

// ---------------------------------------------------------------------------------------
// A proxy nobody here wrote: the npm `proxy` package (pinned in `.ci/proxy/`).
// ---------------------------------------------------------------------------------------

/// `node .ci/proxy/launch.mjs`, killed on drop.
struct NpmProxy {
    server: NodeServer,
    seen: Vec<String>,
    port: u16,
}

impl NpmProxy {
    /// Starts the proxy (installing the package once if npm is there and it is not).
    async fn start(auth: Option<&str>) -> NpmProxy {
        package_file("proxy", "node_modules/proxy/package.json", None);
        let mut command = Command::new("node");
        command.arg(repo().join(".ci/proxy/launch.mjs"));
        if let Some(auth) = auth {
            command.args(["--auth", auth]);
        }
        let port = Arc::new(Mutex::new(None));
        let found = port.clone();
        let server = NodeServer::spawn(command, install_hint("proxy"), move |line| {
            *found.lock().unwrap() = line.strip_prefix("listening ").and_then(port_of);
            found.lock().unwrap().is_some()
        })
        .await;
        let port = port.lock().unwrap().take().unwrap();
        NpmProxy {
            server,
            seen: Vec::new(),
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every line the proxy printed up to now (it echoes `sync` after all earlier ones).
    fn lines(&mut self) -> Vec<String> {
        self.server.send("sync");
        loop {
            let line = self.server.next_line(&install_hint("proxy"));
            if line == "sync" {
                return self.seen.clone();
            }
            self.seen.push(line);
        }
    }

    /// The targets of the CONNECT requests it received.
    fn connects(&mut self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("CONNECT ").map(str::to_owned))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js 20+ (proxy): cargo test -- --include-ignored"]
async fn npm_proxy_tunnels_token_requests_unless_no_proxy_names_the_host() {
    let mock = MockVeracity::start().await.unwrap();
    let front = TlsFront::start(mock.addr()).await;
    let mut proxy = NpmProxy::start(None).await;

    // Plain HTTP to loopback, then HTTPS with TLS inside the tunnel.
    let client = HttpClient::builder()
        .root_certificates(test_ca_roots())
        .proxy(proxy.url())
        .build()
        .unwrap();
    creds(&mock, mock.token_url(), Some(client.clone()))
        .fetch()
        .await
        .unwrap();
    let https_url = mock
        .token_url()
        .replace(&mock.url(), &format!("https://localhost:{}", front.port()));
    creds(&mock, https_url.clone(), Some(client))
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        proxy.connects(),
        [
            mock.addr().to_string(),
            format!("localhost:{}", front.port())
        ]
    );
    assert_eq!(mock.stats().tokens_issued, 2);

    // NO_PROXY syntax: both hosts bypass it.
    let bypassed = HttpClient::builder()
        .root_certificates(test_ca_roots())
        .proxy(proxy.url())
        .proxy_bypass("localhost,127.0.0.1")
        .build()
        .unwrap();
    creds(&mock, mock.token_url(), Some(bypassed.clone()))
        .fetch()
        .await
        .unwrap();
    creds(&mock, https_url.clone(), Some(bypassed))
        .fetch()
        .await
        .unwrap();
    assert_eq!(proxy.connects().len(), 2);
    assert_eq!(mock.stats().tokens_issued, 4);

    // `*`: every host bypasses it, IP addresses included.
    let star = HttpClient::builder()
        .root_certificates(test_ca_roots())
        .proxy(proxy.url())
        .proxy_bypass("*")
        .build()
        .unwrap();
    creds(&mock, mock.token_url(), Some(star.clone()))
        .fetch()
        .await
        .unwrap();
    creds(&mock, https_url, Some(star)).fetch().await.unwrap();
    assert_eq!(proxy.connects().len(), 2);
    assert_eq!(mock.stats().tokens_issued, 6);

    // The environment, in a child process: HTTP_PROXY, then with NO_PROXY.
    let url = proxy.url();
    assert!(run_child("default", &mock, &[("HTTP_PROXY", url.clone())]));
    assert_eq!(proxy.connects().len(), 3);
    for no_proxy in ["127.0.0.1", "*"] {
        let vars = [("HTTP_PROXY", url.clone()), ("NO_PROXY", no_proxy.into())];
        assert!(run_child("default", &mock, &vars), "{no_proxy}");
    }
    assert_eq!(proxy.connects().len(), 3);
    assert_eq!(mock.stats().tokens_issued, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js 20+ (proxy): cargo test -- --include-ignored"]
async fn npm_proxy_checks_basic_credentials_and_a_refusal_names_it() {
    let mock = MockVeracity::start().await.unwrap();
    let mut proxy = NpmProxy::start(Some("Aladdin:open sesame")).await;

    let good = format!("http://Aladdin:open%20sesame@127.0.0.1:{}", proxy.port);
    let client = HttpClient::builder().proxy(&good).build().unwrap();
    creds(&mock, mock.token_url(), Some(client))
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        proxy.lines(),
        ["AUTH ok".to_owned(), format!("CONNECT {}", mock.addr())]
    );

    let wrong = format!("http://Aladdin:hunter2@127.0.0.1:{}", proxy.port);
    let client = HttpClient::builder().proxy(&wrong).build().unwrap();
    let err = creds(&mock, mock.token_url(), Some(client))
        .fetch()
        .await
        .unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err.clone()));
    let shown = format!("{chain} {err:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("Aladdin"),
        "{shown}"
    );
    assert!(
        chain.contains(&format!(
            "the proxy http://127.0.0.1:{} did not open a tunnel to {}: tunnel error: proxy authorization required",
            proxy.port,
            mock.addr()
        )),
        "{chain}"
    );
    assert_eq!(
        proxy.lines()[2..],
        [
            "AUTH refused".to_owned(),
            format!("CONNECT {}", mock.addr())
        ]
    );
    assert_eq!(mock.stats().token_requests, 1);
}
