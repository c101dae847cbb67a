//! The rig the engine tests (`tests/delta.rs`) and the example (`examples/dataset_sql.rs`)
//! share: Azurite, a recording [`Front`] before it, the mock Veracity handing out SAS that point
//! at the front, and a small Delta table that **delta-rs itself** writes into Azurite through a
//! Write storage SAS and the crate's store, with a delete so its log holds remove actions.
//!
//! What the table holds, and so what a query over it must answer, is data here ([`COMMITS`]),
//! not figures typed into the tests: [`live_rows`] is what the log says, [`rows_in_every_file`]
//! what reading every Parquet file in the folder sees.

use std::sync::Arc;

use datafusion::arrow::{
    array::{Int64Array, RecordBatch, StringArray},
    datatypes::{DataType, Field, Schema},
};
use deltalake::{DeltaTable, DeltaTableBuilder, protocol::SaveMode};
use veracity_auth::{
    Authenticator, ClientCredentials, SasAccess, StorageSas, StorageSasBuilder, TokenEndpoint,
    object_store_0_13::SasStore,
};
use veracity_auth_mock::{MockBuilder, MockVeracity};

#[path = "../../tests/common/npm.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
pub mod npm;

#[path = "../../tests/common/azurite.rs"]
#[allow(dead_code, unreachable_pub, clippy::all)]
pub mod azurite;

pub use azurite::{Azurite, Front, SeenRequest};

/// A boxed error, for the rig's fallible steps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

// === the data ===

/// One row of the table `(id: Int64, city: Utf8, value: Int64)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub city: &'static str,
    pub value: i64,
}

const fn row(id: i64, city: &'static str, value: i64) -> Row {
    Row { id, city, value }
}

/// One commit delta-rs makes.
#[derive(Clone, Copy, Debug)]
pub enum Commit {
    /// Append these rows (the first append creates the table).
    Append(&'static [Row]),
    /// `DELETE WHERE city = '…'`: delta-rs removes each file holding such a row and adds a
    /// rewritten file without them.
    DeleteCity(&'static str),
}

/// The table's history: versions 0 to 3. The deleted city's rows are all in version 1's file,
/// so the delete rewrites that file alone.
pub const COMMITS: [Commit; 4] = [
    Commit::Append(&[
        row(1, "Bergen", 12),
        row(2, "Høvik", 7),
        row(3, "Trondheim", 30),
        row(4, "Bergen", 3),
        row(5, "Stavanger", 25),
    ]),
    Commit::Append(&[
        row(6, "Oslo", 40),
        row(7, "Høvik", 15),
        row(8, "Oslo", 55),
        row(9, "Trondheim", 9),
    ]),
    Commit::DeleteCity("Oslo"),
    Commit::Append(&[
        row(10, "Stavanger", 18),
        row(11, "Bergen", 1),
        row(12, "Høvik", 22),
    ]),
];

/// The table's last version.
pub const VERSION: u64 = COMMITS.len() as u64 - 1;

/// The table's columns, as Arrow types.
pub const COLUMNS: [(&str, DataType); 3] = [
    ("id", DataType::Int64),
    ("city", DataType::Utf8),
    ("value", DataType::Int64),
];

/// The query the tests and the example run: an aggregate and a filter.
pub const SQL: &str = "SELECT count(*) AS n, sum(value) AS total FROM dataset WHERE value > 10";

/// The rows the Delta log says the table holds after [`COMMITS`].
pub fn live_rows() -> Vec<Row> {
    let mut live = Vec::new();
    for commit in COMMITS {
        match commit {
            Commit::Append(rows) => live.extend_from_slice(rows),
            Commit::DeleteCity(city) => live.retain(|r| r.city != city),
        }
    }
    live
}

/// The rows in all the Parquet files delta-rs wrote, removed or not: each append's file, and
/// for a delete, the rewrite of every file that held a deleted row.
pub fn rows_in_every_file() -> Vec<Row> {
    let mut files: Vec<Vec<Row>> = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    for commit in COMMITS {
        match commit {
            Commit::Append(rows) => {
                live.push(files.len());
                files.push(rows.to_vec());
            }
            Commit::DeleteCity(city) => {
                for index in std::mem::take(&mut live) {
                    if files[index].iter().any(|r| r.city == city) {
                        live.push(files.len());
                        files.push(
                            files[index]
                                .iter()
                                .copied()
                                .filter(|r| r.city != city)
                                .collect(),
                        );
                    } else {
                        live.push(index);
                    }
                }
            }
        }
    }
    files.concat()
}

/// What [`SQL`] answers over `rows`: `(count, sum)`.
pub fn answer(rows: &[Row]) -> (i64, Option<i64>) {
    let kept: Vec<i64> = rows.iter().map(|r| r.value).filter(|v| *v > 10).collect();
    (
        kept.len() as i64,
        (!kept.is_empty()).then(|| kept.iter().sum()),
    )
}

/// The table's Arrow schema, from [`COLUMNS`].
pub fn schema() -> Schema {
    Schema::new(
        COLUMNS
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), false))
            .collect::<Vec<_>>(),
    )
}

fn batch(rows: &[Row]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(schema()),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.city))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.value))),
        ],
    )
    .expect("the columns match the schema")
}

// === the rig ===

/// Azurite, the front before it, and a mock whose SAS point at the front. Dropped in field
/// order: the mock, then the front, then Azurite.
pub struct Rig {
    pub mock: MockVeracity,
    pub front: Front,
    _azurite: Azurite,
}

/// Where [`Rig::write_dataset`] put a dataset.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// The dataset's id at the mock.
    pub id: String,
    /// The container it lives in.
    pub container: String,
    /// Its folder in the container (what its SAS names): `datasets/<id>`.
    pub folder: String,
    /// The Delta table's folder: `datasets/<id>/Processed`, as Veracity's pipelines write it.
    pub table: String,
}

impl Rig {
    /// Starts Azurite and the front (panics saying how to install Azurite when it cannot),
    /// then the mock from `builder`, with the workspace's File storage container created.
    pub async fn start(builder: MockBuilder) -> Result<Rig, BoxError> {
        let azurite = tokio::task::spawn_blocking(Azurite::start).await?;
        let front = Front::start(&azurite).await;
        let mock = builder.storage_emulator(front.url()).start().await?;
        mock.create_container(mock.storage_container()).await?;
        Ok(Rig {
            mock,
            front,
            _azurite: azurite,
        })
    }

    /// An authenticator for the mock's client and API key.
    pub fn authenticator(&self) -> Authenticator {
        let credentials = ClientCredentials::new(self.mock.client_id(), self.mock.client_secret())
            .endpoint(
                TokenEndpoint::plain_http(self.mock.token_url())
                    .expect("the mock's token URL is valid"),
            );
        Authenticator::builder(credentials)
            .origins([self.mock.url()])
            .api_key(self.mock.api_key())
            .build()
            .expect("the mock's settings are valid")
    }

    /// The mock's Data Workbench gateway, `…/veracity/dw/gateway`.
    pub fn gateway(&self) -> String {
        format!("{}/veracity/dw/gateway", self.mock.url())
    }

    /// A read-only dataset SAS for `dataset`, from the mock's gateway.
    pub fn dataset_sas(&self, auth: &Authenticator, dataset: &str) -> StorageSasBuilder {
        StorageSas::dataset(auth, self.mock.workspace_id(), dataset).gateway(self.gateway())
    }

    /// delta-rs writes the table of [`COMMITS`] under `datasets/<id>/Processed` in the
    /// workspace's default File storage, through a Write storage SAS (container root) and
    /// [`SasStore::container_store`]; then the mock knows `id` as a dataset of that folder.
    /// Returns the table as delta-rs left it.
    pub async fn write_dataset(
        &self,
        auth: &Authenticator,
        id: &str,
    ) -> Result<(Dataset, DeltaTable), BoxError> {
        self.write_dataset_in(auth, id, None).await
    }

    /// [`write_dataset`](Self::write_dataset), into the File storage `storage` (a container of
    /// that name, created here) when given.
    pub async fn write_dataset_in(
        &self,
        auth: &Authenticator,
        id: &str,
        storage: Option<&str>,
    ) -> Result<(Dataset, DeltaTable), BoxError> {
        let mut sas = StorageSas::storage(auth, self.mock.workspace_id(), SasAccess::Write)
            .gateway(self.gateway());
        let container = match storage {
            Some(name) => {
                self.mock.create_container(name).await?;
                self.mock.add_storage(name, name);
                sas = sas.storage_name(name);
                name.to_owned()
            }
            None => self.mock.storage_container().to_owned(),
        };
        let folder = format!("datasets/{id}");
        let table_folder = format!("{folder}/Processed");
        let store = SasStore::new(sas.build()?).await?;
        let url = store.abfss_url(&table_folder);
        let mut table = DeltaTableBuilder::from_url(url.clone())?
            .with_storage_backend(store.container_store(), url)
            .build()?;
        for commit in COMMITS {
            table = match commit {
                Commit::Append(rows) => {
                    table
                        .write(vec![batch(rows)])
                        .with_save_mode(SaveMode::Append)
                        .await?
                }
                Commit::DeleteCity(city) => {
                    let predicate = format!("city = '{city}'");
                    table.delete().with_predicate(predicate).await?.0
                }
            };
        }
        self.mock.add_dataset(id, &container, &folder);
        let dataset = Dataset {
            id: id.to_owned(),
            container,
            folder,
            table: table_folder,
        };
        Ok((dataset, table))
    }
}
