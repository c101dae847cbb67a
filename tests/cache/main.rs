//! The token cache: under load, over paused time, through faults and cancellation, and every
//! bad answer a token endpoint or gateway can give.

#[path = "../common/mod.rs"]
mod common;

mod cache;
mod faults;
mod runtimes;
