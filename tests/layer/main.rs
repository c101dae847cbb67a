//! The layer and its adapters end to end: requests through `VeracityAuthLayer` over real
//! clients (hyper-util, reqwest, tonic) against the embedded mock on 127.0.0.1, replay after a
//! 401 with every kind of body, and the repository's documents that describe them.

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod grpc;
mod layer;
mod replay;
mod reqwest;
