//! object_store **0.14** over a renewing [`StorageSas`](crate::StorageSas) (feature
//! `object-store`): parquet 60, lance 14, DataFusion's main branch. The crate root
//! re-exports its [`SasStore`] and [`SasCredentialProvider`].
//!
//! The same source as `object_store_0_13`, built against the other major: an `ObjectStore`
//! is one trait per major, and an engine takes only its own.

// `store.rs` names the major it is built against `super::object_store`.
use ::object_store;

// Loaded once per major on purpose: one source, two builds.
#[allow(clippy::duplicate_mod)]
#[path = "store.rs"]
mod store;

pub use store::{SasCredentialProvider, SasStore, SasStoreBuilder};
