//! A flood of idle connections to the redirect listener, in a process short of file
//! descriptors, neither ends nor blocks the sign-in.
//!
//! The sign-in runs in a copy of this test binary started under `ulimit -Sn <limit>`
//! (`flood_child`); this process plays the flooder and the browser, so its own connections
//! cost the child nothing but the descriptors the listener spends on accepting them.

use std::{
    io::{BufRead, BufReader},
    process::Child as Process,
    time::Duration,
};

use http::StatusCode;
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
    time::Instant,
};
use veracity_auth::{SignIn, TokenEndpoint};
use veracity_auth_mock::MockVeracity;

use super::browser::*;
use crate::common::child::{self, Child};

/// The longest any step of the test waits: a bound, not a pause.
const BOUND: Duration = Duration::from_secs(60);

/// The child: signs in with the mock the parent names, reports the authorize URL, then the
/// outcome. Does nothing unless run by [`sign_in_under_a_flood`].
#[tokio::test]
async fn flood_child() {
    if !child::running() {
        return;
    }
    // The listener's warnings, for the parent to see which way it coped.
    tracing_subscriber::fmt()
        .with_env_filter("veracity_auth=warn")
        .with_ansi(false)
        .init();
    let var = |name| std::env::var(name).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |fds| fds.count());
    println!("descriptors open at the start: {open}");
    let pending = SignIn::new(var("FLOOD_CLIENT_ID"))
        .authorize_url(var("FLOOD_AUTHORIZE_URL"))
        .endpoint(TokenEndpoint::plain_http(var("FLOOD_TOKEN_URL")).unwrap())
        .timeout(BOUND)
        .start()
        .await
        .unwrap();
    println!("url {}", pending.url());
    match pending.finish().await {
        Ok(signed_in) => println!(
            "signed in: ok, refresh token: {}",
            signed_in.refresh_token().is_some()
        ),
        Err(e) => println!("signed in: error: {e}"),
    }
}

/// The child process, killed on drop, and the lines it prints (standard error included).
struct FloodChild {
    child: Process,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Drop for FloodChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FloodChild {
    fn start(mock: &MockVeracity, limit: u32) -> FloodChild {
        let mut child = Child::new("flood::flood_child", "flood")
            .env("FLOOD_CLIENT_ID", mock.client_id())
            .env("FLOOD_AUTHORIZE_URL", mock.authorize_url())
            .env("FLOOD_TOKEN_URL", mock.user_token_url())
            .in_shell(&format!("ulimit -Sn {limit} && exec \"$0\" \"$@\" 2>&1"))
            .spawn();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        FloodChild {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The rest of the first line starting with `prefix`, or everything the child printed
    /// when it ended (or took longer than [`BOUND`]) without one.
    async fn line(&mut self, prefix: &str) -> Result<String, String> {
        loop {
            match tokio::time::timeout(BOUND, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.to_owned());
                    }
                }
                Ok(None) | Err(_) => return Err(self.seen.join("\n")),
            }
        }
    }
}

/// `limit` descriptors for the child; `idle` connections that never send a byte, opened
/// before the browser's redirect and held open until the sign-in ended. Returns what the
/// child printed.
async fn sign_in_under_a_flood(limit: u32, idle: usize) -> String {
    let mock = MockVeracity::start().await.unwrap();
    let mut child = FloodChild::start(&mock, limit);
    let url = child.line("url ").await.unwrap();
    let redirect_uri = param(&url, "redirect_uri").unwrap();
    let port = redirect_uri
        .trim_start_matches("http://localhost:")
        .trim_end_matches('/')
        .to_owned();

    let mut flood = Vec::new();
    for _ in 0..idle {
        match TcpStream::connect(format!("127.0.0.1:{port}")).await {
            Ok(stream) => flood.push(stream),
            Err(_) => break, // the listener is gone: the child reports why below
        }
    }
    // The browser: the mock consents, then the redirect to the listener flooded above.
    let (status, location, _) = get(&url).await;
    assert_eq!(status, StatusCode::FOUND);
    let redirect = over(&location.unwrap(), "127.0.0.1");
    let answered = async {
        let response = http_client().get(redirect.parse().unwrap()).await?;
        let status = response.status();
        let page = response.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, page))
    };
    let answered = tokio::time::timeout(BOUND, answered).await;

    let outcome = child.line("signed in: ").await;
    let log = child.seen.join("\n");
    assert_eq!(
        outcome.as_deref(),
        Ok("ok, refresh token: true"),
        "child output:\n{log}"
    );
    assert_eq!(flood.len(), idle, "{log}");
    let (status, page) = answered.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "{page:?}");
    assert_eq!(mock.stats().authorization_code_grants, 1);
    drop(flood);
    log
}

const ACCEPT_FAILED: &str = "could not accept a connection";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_cannot_keep_the_redirect_out() {
    // 60 connections would take more descriptors than the child has; the listener serves
    // a few at a time, closing the oldest idle one to make room.
    let log = sign_in_under_a_flood(40, 60).await;
    assert!(!log.contains(ACCEPT_FAILED), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_does_not_end_the_sign_in() {
    // Descriptors run out before the listener's own cap is reached: `accept` fails with
    // EMFILE, and the listener frees one and keeps going.
    let log = sign_in_under_a_flood(20, 60).await;
    assert!(log.contains(ACCEPT_FAILED), "{log}");
    assert!(log.contains("Too many open files"), "{log}");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_no_request_head_is_closed_within_seconds() {
    let pending = pending_for(Duration::from_secs(300)).await;
    let port = pending
        .redirect_uri()
        .trim_start_matches("http://localhost:")
        .trim_end_matches('/')
        .to_owned();
    let sign_in = tokio::spawn(pending.finish());
    let started = Instant::now();
    let idle = TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut partial = TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    partial
        .write_all(b"GET /?code=c HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    for mut stream in [idle, partial] {
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        let waited = started.elapsed();
        assert!(
            (Duration::from_secs(5)..Duration::from_secs(10)).contains(&waited),
            "closed after {waited:?}"
        );
    }
    assert!(!sign_in.is_finished());
    sign_in.abort();
}
