//! The layer and its adapters end to end: requests through `VeracityAuthLayer` over real
//! clients (hyper-util, reqwest, tonic) against the embedded mock on 127.0.0.1, and replay
//! after a 401 with every kind of body. The scenarios both the layer and the reqwest
//! middleware must pass are written once (`scenarios`) and run over each (`clients`).

#[path = "../common/mod.rs"]
mod common;

mod bodies;
mod clients;
mod grpc;
mod layer;
mod replay;
mod reqwest;
mod scenarios;
