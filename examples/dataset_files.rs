//! `dataset_files`: list a Data Workbench dataset's files and read one, through object_store
//! with a SAS that renews itself.
//!
//! ```text
//! cargo run --all-features --example dataset_files
//! ```
//!
//! With `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`, `VERACITY_API_KEY`,
//! `VERACITY_WORKSPACE_ID` and `VERACITY_DATASET_ID` set: the real gateway and the dataset's
//! storage. With none of them: the embedded mock and Azurite, Microsoft's storage emulator
//! (npm: `npm ci --prefix .ci/azurite`, or `AZURITE_BLOB` naming its `azurite-blob`), with a
//! dataset of a few files, and SAS cut to 4 seconds so the renewals show.
//!
//! The same `SasStore` goes to anything that takes an object_store 0.14; DataFusion 55 and
//! delta-rs 1.1 take `veracity_auth::object_store_0_13::SasStore` (engines/'s `dataset_sql`
//! example runs SQL over a dataset).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitCode, Stdio},
    time::Duration,
};

use futures_util::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tower::BoxError;
use veracity_auth::{Authenticator, ClientCredentials, SasStore, StorageSas, TokenEndpoint, env};
use veracity_auth_mock::MockVeracity;

const WORKSPACE_ID: &str = "VERACITY_WORKSPACE_ID";
const DATASET_ID: &str = "VERACITY_DATASET_ID";

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
    let (sas, demo) = match env::is_configured(&[WORKSPACE_ID, DATASET_ID])? {
        true => {
            let auth = Authenticator::builder(ClientCredentials::from_env()?)
                .api_key(std::env::var(env::API_KEY)?)
                .build()?;
            let (workspace, dataset) = (std::env::var(WORKSPACE_ID)?, std::env::var(DATASET_ID)?);
            let sas = StorageSas::dataset(&auth, workspace.trim(), dataset.trim())
                .lifetime(Duration::from_secs(15 * 60));
            (sas.build()?, None)
        }
        false => {
            let demo = Demo::start().await?;
            let sas = StorageSas::dataset(&demo.authenticator()?, demo.mock.workspace_id(), DEMO)
                .gateway(format!("{}/veracity/dw/gateway", demo.mock.url()))
                .lifetime(Duration::from_secs(15 * 60));
            (sas.build()?, Some(demo))
        }
    };

    // One SAS request here: the store learns its account, container and folder from it.
    let store = SasStore::new(sas).await?;
    println!("{store}");
    let files: Vec<ObjectMeta> = store.list(None).try_collect().await?;
    for file in &files {
        println!("{:>12} bytes  {}", file.size, file.location);
    }
    let Some(first) = files
        .iter()
        .find(|f| !f.location.as_ref().starts_with("_delta_log"))
        .or(files.first())
    else {
        println!("the dataset has no files");
        return Ok(());
    };
    let bytes = store.get(&first.location).await?.bytes().await?;
    println!("read {} bytes of {}", bytes.len(), first.location);

    if demo.is_some() {
        // Keep reading across a few 4-second SAS: each is renewed ahead of its expiry.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            store.get(&first.location).await?.bytes().await?;
        }
        println!("read it 20 more times over 10 s");
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

// === the demo: the mock and Azurite ===

const DEMO: &str = "demo-dataset";

struct Demo {
    mock: MockVeracity,
    _azurite: Azurite,
}

impl Demo {
    async fn start() -> Result<Demo, BoxError> {
        let azurite = tokio::task::spawn_blocking(Azurite::start).await??;
        let mock = MockVeracity::builder()
            .storage_emulator(azurite.url.clone())
            .max_sas_lifetime(Duration::from_secs(4))
            .start()
            .await?;
        let container = mock.storage_container().to_owned();
        mock.create_container(&container).await?;
        mock.add_dataset(DEMO, &container, "datasets/demo");
        let files: [(&str, &[u8]); 3] = [
            (
                "_delta_log/00000000000000000000.json",
                b"{\"commitInfo\":{}}\n",
            ),
            ("part-00000.parquet", &[b'x'; 2048]),
            ("part-00001.parquet", &[b'y'; 512]),
        ];
        for (name, data) in files {
            let path = format!("datasets/demo/{name}");
            mock.upload_blob(&container, &path, data.to_vec()).await?;
        }
        Ok(Demo {
            mock,
            _azurite: azurite,
        })
    }

    fn authenticator(&self) -> Result<Authenticator, veracity_auth::ConfigError> {
        let credentials = ClientCredentials::new(self.mock.client_id(), self.mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(self.mock.token_url())?);
        Authenticator::builder(credentials)
            .origins([self.mock.url()])
            .api_key(self.mock.api_key())
            .build()
    }
}

/// Azurite's blob service on `127.0.0.1`, at a port of its choosing; killed on drop.
struct Azurite {
    child: Child,
    url: String,
}

impl Azurite {
    fn start() -> Result<Azurite, BoxError> {
        let binary = std::env::var_os("AZURITE_BLOB").unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/.ci/azurite/node_modules/.bin/azurite-blob"
            )
            .into()
        });
        let mut child = Command::new(&binary)
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
            // Nothing on disk, no telemetry to the internet, any client's API version.
            .args([
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ])
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run Azurite ({}): {e}; install it with `npm ci --prefix .ci/azurite` \
                     (Node.js 20+), or set AZURITE_BLOB",
                    binary.to_string_lossy()
                )
            })?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) =
                        line.strip_prefix("Azurite Blob service successfully listens on ")
                    {
                        break url.trim().to_owned();
                    }
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("Azurite exited before it listened".into());
                }
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Azurite { child, url })
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
