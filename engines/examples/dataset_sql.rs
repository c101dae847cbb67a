//! `dataset_sql`: SQL over a Data Workbench dataset (a Delta table), with DataFusion over
//! delta-rs, through a storage SAS that renews itself.
//!
//! ```text
//! cargo run -p veracity-auth-engines --example dataset_sql
//! ```
//!
//! With `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`, `VERACITY_API_KEY`,
//! `VERACITY_WORKSPACE_ID` and `VERACITY_DATASET_ID` set: the real gateway and the dataset's
//! storage, and the query `VERACITY_SQL` (default `SELECT count(*) FROM dataset`). With none of
//! them: the embedded mock and Azurite, Microsoft's storage emulator (npm: `npm ci --prefix
//! .ci/azurite`, or `AZURITE_BLOB` naming its `azurite-blob`), where delta-rs first writes a
//! small table through a Write SAS; SAS are cut to 4 seconds, and the query runs again until
//! one has been renewed.

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use datafusion::prelude::SessionContext;
use deltalake::DeltaTableBuilder;
use veracity_auth::{
    Authenticator, ClientCredentials, StorageSas, env, object_store_0_13::SasStore,
};
use veracity_auth_engines::{BoxError, Rig, SQL, answer, live_rows};
use veracity_auth_mock::MockVeracity;

const WORKSPACE_ID: &str = "VERACITY_WORKSPACE_ID";
const DATASET_ID: &str = "VERACITY_DATASET_ID";
const QUERY: &str = "VERACITY_SQL";
const DEMO: &str = "demo-dataset";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {:#}", anyhow::Error::from_boxed(e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    // All of the variables, or none (the mock): a half-done set-up is an error naming the rest.
    let (sas, sql, demo) = match env::is_configured(&[WORKSPACE_ID, DATASET_ID])? {
        true => {
            let auth = Authenticator::builder(ClientCredentials::from_env()?)
                .api_key(std::env::var(env::API_KEY)?)
                .build()?;
            let (workspace, dataset) = (std::env::var(WORKSPACE_ID)?, std::env::var(DATASET_ID)?);
            let sas = StorageSas::dataset(&auth, workspace.trim(), dataset.trim())
                .lifetime(Duration::from_secs(15 * 60))
                .build()?;
            let sql =
                std::env::var(QUERY).unwrap_or_else(|_| "SELECT count(*) FROM dataset".into());
            (sas, sql, None)
        }
        false => {
            let rig = Rig::start(MockVeracity::builder().max_sas_lifetime(Duration::from_secs(4)))
                .await?;
            let auth = rig.authenticator();
            let (dataset, _) = rig.write_dataset(&auth, DEMO).await?;
            println!(
                "delta-rs wrote {} through a Write SAS (4 commits, one a delete)",
                dataset.table
            );
            // 15 minutes asked; the mock cuts every SAS to 4 seconds.
            let sas = rig
                .dataset_sas(&auth, DEMO)
                .lifetime(Duration::from_secs(15 * 60))
                .build()?;
            let sql = std::env::var(QUERY).unwrap_or_else(|_| SQL.into());
            (sas, sql, Some(rig))
        }
    };

    // One SAS request here: the store learns its account, container and folder from it.
    let store = SasStore::new(sas).await?;
    println!("{store}");
    // The Delta table: the dataset's folder, or the one below it holding `_delta_log/`.
    let url = store.delta_table_url().await?;
    let table = DeltaTableBuilder::from_url(url.clone())?
        .with_storage_backend(store.container_store(), url.clone())
        .load()
        .await?;
    println!("table {url}, version {:?}", table.version());

    let ctx = SessionContext::new();
    ctx.register_table("dataset", table.table_provider().await?)?;
    println!("{sql}");
    ctx.sql(&sql).await?.show().await?;

    if demo.is_some() {
        if sql == SQL {
            println!(
                "(the log's rows give {:?}: count, sum)",
                answer(&live_rows())
            );
        }
        // Query again until a SAS has been renewed ahead of its expiry (one every ~3 s).
        let (start, mut queries) = (Instant::now(), 0);
        while store.sas().stats().fetches < 2 && start.elapsed() < Duration::from_secs(30) {
            ctx.sql(&sql).await?.collect().await?;
            queries += 1;
        }
        println!(
            "ran it {queries} more times over {:.1} s",
            start.elapsed().as_secs_f64()
        );
    }
    let stats = store.sas().stats();
    println!(
        "SAS requests: {} ({} renewals), failed: {}",
        stats.fetches,
        stats.fetches.saturating_sub(1),
        stats.fetch_failures
    );
    Ok(())
}
