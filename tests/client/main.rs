//! The default token client (feature `default-client`): proxies, trusted roots, and an OAuth
//! 2.0 server nobody here wrote.
//!
//! The proxy and roots tests change their environment only in a child process: they run this
//! binary again with `--exact <module>::<child test>` (`proxy::env_child`,
//! `native_roots::child`), so nothing here changes the environment of the tests beside them.

#[path = "../common/mod.rs"]
mod common;

mod native_roots;
mod oauth2_mock_server;
mod proxy;
