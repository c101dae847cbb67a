//! object_store **0.13** over a renewing [`StorageSas`](crate::StorageSas) (feature
//! `object-store-013`): DataFusion 55, delta-rs 1.1, polars 0.55.
//!
//! ```no_run
//! # async fn run(auth: veracity_auth::Authenticator) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use veracity_auth::{StorageSas, object_store_0_13::SasStore};
//!
//! let sas = StorageSas::dataset(&auth, "workspace-id", "dataset-id").build()?;
//! let store = SasStore::new(sas).await?;
//! let table = store.delta_table_url().await?; // abfss://…, where `_delta_log/` is
//! // delta-rs: DeltaTableBuilder::from_url(table.clone())?
//! //     .with_storage_backend(store.container_store(), table).load().await?
//! // DataFusion, over the files themselves:
//! // ctx.register_object_store(store.url(), Arc::new(store))
//! # Ok(())
//! # }
//! ```
//!
//! The same source as `object_store_0_14`, built against the other major.

// `store.rs` names the major it is built against `super::object_store`.
use ::object_store_013 as object_store;

// Loaded once per major on purpose: one source, two builds.
#[allow(clippy::duplicate_mod)]
#[path = "store.rs"]
mod store;

pub use store::{SasCredentialProvider, SasStore, SasStoreBuilder};
