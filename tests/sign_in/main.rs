//! Signing in as a person against the embedded mock: authorization code with PKCE over a
//! loopback redirect, refresh tokens through the layer, and the store that keeps a sign-in
//! across runs. The tests play the browser ([`browser`]) with a plain hyper-util client.
//!
//! Some tests run this binary again in a child process (`flood::flood_child` under a lower
//! `ulimit -n`, `sign_in_store::child` for a second process on the same store); only the child
//! sees the changed environment.

#[path = "../common/mod.rs"]
mod common;

mod b2c;
mod browser;
// Runs the sign-in in a child process under `sh -c 'ulimit -Sn ...'`.
#[cfg(unix)]
mod flood;
mod refresh_once;
mod sign_in;
mod sign_in_store;
