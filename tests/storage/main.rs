//! Data Workbench's data: storage SAS from the mock's gateway (`mock_sas`), `StorageSas`
//! against the mock with Rust alone (`sas`), and object_store over a renewing SAS against a
//! real blob server (`sas_store`). The tests that need Azurite (npm) are `#[ignore]`d;
//! `.ci/run` installs it and runs them.
//!
//! `sas_store` runs one test again in a child process (`--exact sas_store::…`), since the
//! rustls provider it checks is process-wide.

#[path = "../common/mod.rs"]
mod common;

mod mock_sas;
mod sas;
mod sas_store;
