//! Real engines over a Data Workbench dataset: a Delta table that delta-rs writes into Azurite
//! through a Write storage SAS and the crate's store, then reads back through the read-only
//! dataset SAS the mock hands out; DataFusion SQL over delta-rs's table provider answers what
//! the log says, not what the folder's Parquet files sum to; every request the read path sends
//! stays inside the dataset's folder (Azure's dataset SAS is a directory SAS); and a scan runs
//! across several 5-second SAS without failing.
//!
//! The tests need Azurite (npm), so they are `#[ignore]`d: `.ci/run` installs it and runs them
//! with `--include-ignored`. The rig (`veracity_auth_engines::Rig`) is shared with the example.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use datafusion::{
    arrow::{
        array::{Array, AsArray},
        datatypes::Int64Type,
    },
    prelude::{ParquetReadOptions, SessionContext},
};
use deltalake::{DeltaTable, DeltaTableBuilder, kernel::DataType as DeltaType};
use object_store::{ObjectStoreExt, path::Path};
use veracity_auth::object_store_0_13::SasStore;
use veracity_auth_engines::{
    BoxError, Dataset, Rig, SQL, VERSION, answer, live_rows, rows_in_every_file, schema,
};
use veracity_auth_mock::MockVeracity;

const DATASET: &str = "dataset-1";

// === helpers: the user's read path ===

/// The rig, with the table written by delta-rs and known to the mock as [`DATASET`].
async fn written(builder: veracity_auth_mock::MockBuilder) -> (Rig, Dataset) {
    let rig = Rig::start(builder).await.unwrap();
    let auth = rig.authenticator();
    let (dataset, table) = rig.write_dataset(&auth, DATASET).await.unwrap();
    assert_eq!(
        table.version(),
        Some(VERSION),
        "delta-rs wrote every commit"
    );
    (rig, dataset)
}

/// delta-rs opens the dataset's table through `store`: where `_delta_log/` is, then the
/// table there, every request through the store's SAS.
async fn open(store: &SasStore) -> Result<DeltaTable, BoxError> {
    let url = store.delta_table_url().await?;
    let table = DeltaTableBuilder::from_url(url.clone())?
        .with_storage_backend(store.container_store(), url)
        .load()
        .await?;
    Ok(table)
}

/// [`SQL`] over delta-rs's table provider: what the log says.
async fn sql_over_the_log(table: &DeltaTable) -> Result<(i64, Option<i64>), BoxError> {
    let ctx = SessionContext::new();
    ctx.register_table("dataset", table.table_provider().await?)?;
    query(&ctx).await
}

/// [`SQL`] over every Parquet file in the table's folder, as a reader that ignores the log
/// sees it: DataFusion's own Parquet listing, over the store registered under its URL. The
/// schema is given: delta-rs's files disagree on `city` (its appends store `Utf8`, the
/// delete's rewrite `Utf8View`), which DataFusion refuses to merge when it infers one.
async fn sql_over_every_file(store: &Arc<SasStore>) -> Result<(i64, Option<i64>), BoxError> {
    let ctx = SessionContext::new();
    ctx.register_object_store(store.url(), store.clone());
    let folder = store.url().join("Processed/")?;
    let schema = schema();
    let options = ParquetReadOptions::default().schema(&schema);
    ctx.register_parquet("dataset", folder.as_str(), options)
        .await?;
    query(&ctx).await
}

/// Runs [`SQL`]: `(count, sum)`.
async fn query(ctx: &SessionContext) -> Result<(i64, Option<i64>), BoxError> {
    let batches = ctx.sql(SQL).await?.collect().await?;
    let [batch] = batches.as_slice() else {
        return Err(format!("{} batches, one expected", batches.len()).into());
    };
    let count = batch.column(0).as_primitive::<Int64Type>();
    let sum = batch.column(1).as_primitive::<Int64Type>();
    Ok((count.value(0), (!sum.is_null(0)).then(|| sum.value(0))))
}

async fn dataset_store(rig: &Rig, lifetime: Option<Duration>) -> Arc<SasStore> {
    let auth = rig.authenticator();
    let mut sas = rig.dataset_sas(&auth, DATASET);
    if let Some(lifetime) = lifetime {
        sas = sas.lifetime(lifetime);
    }
    Arc::new(SasStore::new(sas.build().unwrap()).await.unwrap())
}

// === must-shows ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn delta_rs_opens_through_a_read_only_dataset_sas_the_table_it_wrote_through_a_write_sas() {
    let (rig, dataset) = written(MockVeracity::builder()).await;
    let store = dataset_store(&rig, None).await;

    let table = open(&store).await.unwrap();
    assert_eq!(
        table.table_url().as_str().trim_end_matches('/'),
        store.abfss_url("Processed").as_str().trim_end_matches('/'),
        "the table is found one folder below the dataset's"
    );
    assert_eq!(table.version(), Some(VERSION));
    let snapshot = table.snapshot().unwrap();
    let schema = snapshot.schema();
    let columns: Vec<(&str, &DeltaType)> = schema
        .fields()
        .map(|f| (f.name().as_str(), f.data_type()))
        .collect();
    assert_eq!(
        columns,
        [
            ("id", &DeltaType::LONG),
            ("city", &DeltaType::STRING),
            ("value", &DeltaType::LONG)
        ]
    );
    let files: Vec<_> = snapshot.log_data().iter().collect();
    let rows: usize = files.iter().map(|f| f.num_records().unwrap()).sum();
    assert_eq!(rows, live_rows().len(), "rows, from the adds' stats");

    // The delete's commit removed a file and added its rewrite.
    let commit = Path::from("Processed/_delta_log/00000000000000000002.json");
    let log = store.get(&commit).await.unwrap().bytes().await.unwrap();
    let log = String::from_utf8(log.to_vec()).unwrap();
    let removes = log.lines().filter(|l| l.starts_with("{\"remove\"")).count();
    let adds = log.lines().filter(|l| l.starts_with("{\"add\"")).count();
    assert_eq!((removes, adds), (1, 1), "{log}");
    println!(
        "delta-rs opened {} at version {VERSION}: {} live files, {rows} rows; the delete \
         removed 1 file and added 1",
        dataset.table,
        files.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn sql_over_a_delta_dataset_answers_what_the_log_says_not_the_files() {
    let (rig, _) = written(MockVeracity::builder()).await;
    let store = dataset_store(&rig, None).await;
    let before = rig.mock.stats().dataset_sas_requests;

    let table = open(&store).await.unwrap();
    let through_the_log = sql_over_the_log(&table).await.unwrap();
    let every_file = sql_over_every_file(&store).await.unwrap();

    let expected = answer(&live_rows());
    assert_eq!(through_the_log, expected, "the log's answer");
    assert_eq!(
        every_file,
        answer(&rows_in_every_file()),
        "every file's sum"
    );
    assert_ne!(
        through_the_log, every_file,
        "ignoring the log counts removed rows"
    );
    let traffic = rig.front.traffic();
    println!(
        "{SQL}\n  through delta-rs's log: {through_the_log:?} (count, sum) over {} live rows\n  \
         every Parquet file in the folder: {every_file:?} over {} rows\n  dataset SAS \
         requests: {}; storage requests with a SAS (writes and reads): {}, {} refused; failed \
         operations: 0",
        live_rows().len(),
        rows_in_every_file().len(),
        rig.mock.stats().dataset_sas_requests - before + 1,
        traffic.requests,
        traffic.refused,
    );
    assert_eq!(store.sas().stats().fetches, 1);
    assert_eq!(traffic.refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn every_request_of_the_read_path_stays_inside_the_datasets_folder() {
    let (rig, dataset) = written(MockVeracity::builder()).await;
    let mark = rig.front.requests().len();

    let store = dataset_store(&rig, None).await;
    let table = open(&store).await.unwrap();
    sql_over_the_log(&table).await.unwrap();
    sql_over_every_file(&store).await.unwrap();

    let read = rig.front.requests().split_off(mark);
    let container = format!("/devstoreaccount1/{}", dataset.container);
    let inside = format!("{container}/{}/", dataset.folder);
    let folder = format!("{}/", dataset.folder);
    let mut outside = Vec::new();
    for request in &read {
        let confined = request.sas
            && matches!(request.method.as_str(), "GET" | "HEAD")
            && match request.list {
                true => {
                    request.path == container
                        && request
                            .prefix
                            .as_ref()
                            .is_some_and(|p| p.starts_with(&folder))
                }
                false => request.path.starts_with(&inside),
            };
        if !confined {
            outside.push(request);
        }
    }
    let lists = read.iter().filter(|r| r.list).count();
    let mut prefixes: Vec<_> = read.iter().filter_map(|r| r.prefix.as_deref()).collect();
    prefixes.sort_unstable();
    prefixes.dedup();
    println!(
        "read path: {} requests ({lists} lists, {} gets/heads), all under {folder}; list \
         prefixes: {prefixes:?}",
        read.len(),
        read.len() - lists
    );
    assert!(outside.is_empty(), "outside {folder}: {outside:#?}");
    assert!(lists > 0 && read.len() > lists, "{read:#?}");
}

/// SAS requests a 22-second scan on 5-second SAS makes: the first, then at least four
/// renewals (one per lifetime at the least; the cache renews ahead, so more).
const SCAN: Duration = Duration::from_secs(22);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn a_sql_scan_across_several_five_second_sas_fails_no_operation() {
    let (rig, _) = written(MockVeracity::builder().max_sas_lifetime(Duration::from_secs(5))).await;
    let before = rig.mock.stats().dataset_sas_requests;
    // 60 s asked (a dataset SAS counts minutes): the mock's cap makes it 5 s.
    let store = dataset_store(&rig, Some(Duration::from_secs(60))).await;
    let issued = rig.mock.issued_sas();
    let lifetime = issued
        .last()
        .unwrap()
        .expires_at
        .duration_since(std::time::SystemTime::now());
    assert!(lifetime.unwrap() <= Duration::from_secs(5), "{issued:?}");

    let expected = answer(&live_rows());
    let start = Instant::now();
    let (mut queries, mut failures) = (0, Vec::new());
    while start.elapsed() < SCAN {
        // The whole read path each time: find the table, read its log, scan its files.
        let outcome = async { sql_over_the_log(&open(&store).await?).await }.await;
        match outcome {
            Ok(answer) if answer == expected => {}
            Ok(answer) => failures.push(format!("answered {answer:?}")),
            Err(error) => failures.push(error.to_string()),
        }
        queries += 1;
    }
    let elapsed = start.elapsed();
    let sas_requests = rig.mock.stats().dataset_sas_requests - before;
    let traffic = rig.front.traffic();
    println!(
        "{:.1} s of SQL on 5 s SAS: {queries} queries (open + SQL), {} failed; {sas_requests} \
         dataset SAS requests ({} renewals); at Azurite: {} requests with a SAS, {} refused, \
         {} with an expired se=",
        elapsed.as_secs_f64(),
        failures.len(),
        sas_requests.saturating_sub(1),
        traffic.requests,
        traffic.refused,
        traffic.expired_on_arrival,
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        sas_requests >= 5,
        "at least 4 renewals: {sas_requests} SAS requests"
    );
    // A renewal per lifetime at the most a few times over: not a renewal per request.
    assert!(sas_requests <= 12, "{sas_requests} SAS requests");
    // `fetches` counts requests started: a renewal may be under way as the scan ends.
    let fetches = store.sas().stats().fetches;
    assert!(
        (sas_requests..=sas_requests + 1).contains(&fetches),
        "{fetches} fetches"
    );
    assert_eq!(traffic.refused, 0, "{traffic:?}");
    assert_eq!(traffic.expired_on_arrival, 0, "{traffic:?}");
}

/// DataFusion keys its object stores by scheme and host (`get_url_key`), and delta-rs
/// registers each table's root store under its table URL's `scheme://host`, never replacing
/// one already there (`ensure_object_store_registered`). So two tables whose URLs share a
/// host read, in one session, through whichever store was registered first: the other
/// dataset's SAS and container. Here the second dataset lives in another container, so a
/// shared store shows as `BlobNotFound`; on Azure, where a dataset SAS is a directory SAS,
/// it would be a `403` even in one container.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn two_datasets_in_one_session_each_read_through_their_own_sas() {
    let rig = Rig::start(MockVeracity::builder()).await.unwrap();
    let auth = rig.authenticator();
    rig.write_dataset(&auth, "first").await.unwrap();
    rig.write_dataset_in(&auth, "second", Some("elsewhere"))
        .await
        .unwrap();

    let ctx = SessionContext::new();
    let mut urls = Vec::new();
    for dataset in ["first", "second"] {
        let store = SasStore::new(rig.dataset_sas(&auth, dataset).build().unwrap())
            .await
            .unwrap();
        let table = open(&store).await.unwrap();
        urls.push(table.table_url().to_string());
        ctx.register_table(dataset, table.table_provider().await.unwrap())
            .unwrap();
    }
    let expected = answer(&live_rows());
    for dataset in ["first", "second"] {
        let sql = SQL.replace("FROM dataset", &format!("FROM {dataset}"));
        let batches = async { ctx.sql(&sql).await?.collect().await }.await;
        let batches = batches.unwrap_or_else(|e| panic!("{dataset} ({urls:?}): {e}"));
        let count = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(count, expected.0, "{dataset}");
    }
}
