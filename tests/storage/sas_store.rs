//! object_store over a renewing Data Workbench SAS, against the mock and a real blob server
//! (Azurite, `#[ignore]`d: it needs npm): 500 concurrent gets on a cold provider make one SAS
//! request; a reader on 5-second SAS for 20 s never fails and never sends an expired SAS; eight
//! readers through a revocation fail no operation, with one new SAS; a write SAS round-trips
//! a `put`, a read-only one refuses it clearly and keeps its SAS.
//!
//! Every SAS-signed request reaches Azurite through a [`Front`], which counts them, Azurite's
//! `403`s, and the requests whose `se=` had passed when they arrived. The real object_store
//! client sends them: the cold-provider test builds its own `MicrosoftAzureBuilder` with
//! Azurite as an ordinary endpoint (not `with_use_emulator`, which signs with the account key
//! and never asks the provider); the others use `SasStore::new`.
#![cfg(all(feature = "object-store", feature = "default-client"))]

use crate::common;
use crate::common::account::for_mock;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::azurite::{Azurite, Front};
use futures_util::TryStreamExt;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use object_store::{ObjectStore, ObjectStoreExt, azure::MicrosoftAzureBuilder, path::Path};
use tokio::{sync::mpsc, task::JoinSet};
use tower::{Layer, ServiceExt};
use veracity_auth::{
    Authenticator, ClientCredentials, SasAccess, SasCredentialProvider, SasStore, StorageSas,
    TokenEndpoint, VeracityAuthLayer,
};
use veracity_auth_mock::{MockBuilder, MockVeracity};

const DATASET: &str = "dataset-1";
const FOLDER: &str = "datasets/dataset-1";
/// The dataset's files: name and content.
const FILES: [(&str, &[u8]); 3] = [
    ("part-0000.parquet", b"PAR1 first part of the dataset PAR1"),
    ("part-0001.parquet", b"PAR1 second PAR1"),
    (
        "_delta_log/00000000000000000000.json",
        b"{\"commitInfo\":{}}",
    ),
];

// === helpers ===

/// Azurite, the front before it, and a mock whose SAS point at the front, with the dataset's
/// files seeded. Dropped in field order: the mock, then the front, then Azurite.
struct Rig {
    mock: MockVeracity,
    front: Front,
    _azurite: Azurite,
}

async fn rig(builder: MockBuilder) -> Rig {
    let azurite = Azurite::spawn().await;
    let front = Front::start(&azurite).await;
    let mock = builder.storage_emulator(front.url()).start().await.unwrap();
    let container = mock.storage_container().to_owned();
    mock.create_container(&container).await.unwrap();
    mock.add_dataset(DATASET, &container, FOLDER);
    for (name, content) in FILES {
        mock.upload_blob(&container, &format!("{FOLDER}/{name}"), content)
            .await
            .unwrap();
    }
    Rig {
        mock,
        front,
        _azurite: azurite,
    }
}

fn authenticator(mock: &MockVeracity) -> Authenticator {
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap());
    for_mock(credentials, mock).build().unwrap()
}

fn gateway(mock: &MockVeracity) -> String {
    format!("{}/veracity/dw/gateway", mock.url())
}

fn dataset_sas(mock: &MockVeracity, auth: &Authenticator) -> veracity_auth::StorageSasBuilder {
    StorageSas::dataset(auth, mock.workspace_id(), DATASET).gateway(gateway(mock))
}

/// One reader operation: list the store, or read one file and check its bytes.
async fn operate(store: &SasStore, n: usize) -> object_store::Result<()> {
    if n.is_multiple_of(2) {
        let listed: Vec<_> = store.list(None).try_collect().await?;
        assert_eq!(listed.len(), FILES.len(), "{listed:?}");
    } else {
        let (name, content) = FILES[n / 2 % FILES.len()];
        let bytes = store.get(&Path::from(name)).await?.bytes().await?;
        assert_eq!(bytes, content);
    }
    Ok(())
}

/// `DELETE /api/v1/workspaces/{ws}/storages/sas/revoke` through the gateway, with `auth`:
/// every stored access policy is replaced, so Azurite refuses every SAS issued so far.
async fn revoke_all(mock: &MockVeracity, auth: &Authenticator) {
    let revoke = Request::builder()
        .method(Method::DELETE)
        .uri(format!(
            "{}/api/v1/workspaces/{}/storages/sas/revoke",
            gateway(mock),
            mock.workspace_id()
        ))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let answer = VeracityAuthLayer::new(auth.clone())
        .layer(common::gateway::http_client())
        .oneshot(revoke)
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
}

// === must-shows ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn five_hundred_concurrent_gets_on_a_cold_provider_make_exactly_one_sas_request() {
    let rig = rig(MockVeracity::builder()).await;
    let auth = authenticator(&rig.mock);
    let sas = dataset_sas(&rig.mock, &auth).build().unwrap();
    // Azurite as an ordinary endpoint: every request carries the provider's SAS.
    let store = MicrosoftAzureBuilder::new()
        .with_account("devstoreaccount1")
        .with_container_name(rig.mock.storage_container())
        .with_endpoint(rig.front.account_url())
        .with_allow_http(true)
        .with_credentials(Arc::new(SasCredentialProvider::new(sas.clone())))
        .build()
        .unwrap();
    let store = Arc::new(store);
    assert_eq!(rig.mock.stats().dataset_sas_requests, 0, "cold: no SAS yet");

    let (name, content) = FILES[0];
    let location = Path::from(format!("{FOLDER}/{name}"));
    let mut gets = JoinSet::new();
    for _ in 0..500 {
        let (store, location) = (store.clone(), location.clone());
        gets.spawn(async move { store.get(&location).await?.bytes().await });
    }
    while let Some(done) = gets.join_next().await {
        assert_eq!(done.unwrap().unwrap(), content);
    }
    assert_eq!(rig.mock.stats().dataset_sas_requests, 1);
    assert_eq!(sas.stats().fetches, 1);
    let traffic = rig.front.traffic();
    assert_eq!(
        traffic.requests, 500,
        "each get carried the SAS: {traffic:?}"
    );
    assert_eq!(traffic.refused, 0);

    // A `SasStore` fetches its first SAS when built (to learn where it points): its 500
    // concurrent gets then ask for none.
    let store = Arc::new(
        SasStore::new(dataset_sas(&rig.mock, &auth).build().unwrap())
            .await
            .unwrap(),
    );
    assert_eq!(rig.mock.stats().dataset_sas_requests, 2);
    let mut gets = JoinSet::new();
    for _ in 0..500 {
        let store = store.clone();
        gets.spawn(async move { store.get(&Path::from(name)).await?.bytes().await });
    }
    while let Some(done) = gets.join_next().await {
        assert_eq!(done.unwrap().unwrap(), content);
    }
    assert_eq!(rig.mock.stats().dataset_sas_requests, 2);
    assert_eq!(store.sas().stats().fetches, 1);
    assert_eq!(rig.front.traffic().refused, 0);
}

/// SAS requests expected in 20 s of 5-second SAS. The mock caps each SAS at 5 s and rounds
/// its `se=` down to the second, so a SAS lives L in (4 s, 5 s]. Its schedule (cache timing):
/// margin 1 s (a tenth of L, raised to the 1-second floor), refresh window L/4, and the
/// refresh starts at the latest half a window before the margin: at L - 1 - L/8, which is
/// 2.5 s (L = 4) to 3.375 s (L = 5) after the fetch; jitter only moves it later than that
/// bound, which the bound then cuts. One SAS first, then one renewal per period:
/// 20 / 3.375 -> at least 5 renewals, 20 / 2.5 -> at most 8: 6 to 9 requests in all.
const EXPECTED_SAS_REQUESTS: std::ops::RangeInclusive<u64> = 6..=9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn a_reader_for_twenty_seconds_on_five_second_sas_never_fails_nor_sends_an_expired_sas() {
    let rig = rig(MockVeracity::builder().max_sas_lifetime(Duration::from_secs(5))).await;
    let auth = authenticator(&rig.mock);
    // 60 s asked (a dataset SAS counts minutes): the mock's cap makes it 5 s.
    let sas = dataset_sas(&rig.mock, &auth)
        .lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let store = SasStore::new(sas).await.unwrap();

    let start = Instant::now();
    let (mut operations, mut failures) = (0, Vec::new());
    while start.elapsed() < Duration::from_secs(20) {
        if let Err(error) = operate(&store, operations).await {
            failures.push(error.to_string());
        }
        operations += 1;
    }
    let sas_requests = rig.mock.stats().dataset_sas_requests;
    let traffic = rig.front.traffic();
    println!(
        "20 s on 5 s SAS: {operations} operations, {} failed; {sas_requests} SAS requests \
         (expected {EXPECTED_SAS_REQUESTS:?}); at Azurite: {} SAS requests, {} refused (403), \
         {} with an expired se=",
        failures.len(),
        traffic.requests,
        traffic.refused,
        traffic.expired_on_arrival
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        EXPECTED_SAS_REQUESTS.contains(&sas_requests),
        "{sas_requests} SAS requests"
    );
    assert_eq!(store.sas().stats().fetches, sas_requests);
    assert!(traffic.requests >= operations as u64, "{traffic:?}");
    assert_eq!(traffic.refused, 0, "{traffic:?}");
    assert_eq!(traffic.expired_on_arrival, 0, "{traffic:?}");
}

/// Readers that run through a revocation: how many operations each ran after it, and every
/// failure.
struct Run {
    after: Vec<usize>,
    failures: Vec<String>,
}

/// `readers` concurrent readers, each running operations until it has seen `before` succeed,
/// then `revoke` runs, then each goes on until it has run `after` more.
async fn readers_through(
    store: &Arc<SasStore>,
    readers: usize,
    before: usize,
    after: usize,
    revoke: impl Future<Output = ()>,
) -> Run {
    let (ready, mut all_ready) = mpsc::unbounded_channel();
    let (done, mut finished) = mpsc::unbounded_channel();
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for reader in 0..readers {
        let (store, ready, done, flag) = (store.clone(), ready.clone(), done.clone(), flag.clone());
        tokio::spawn(async move {
            let (mut failures, mut n) = (Vec::new(), reader);
            for _ in 0..before {
                if let Err(e) = operate(&store, n).await {
                    failures.push(format!("before the revocation: {e}"));
                }
                n += 1;
            }
            let _ = ready.send(());
            // Keep operating while the revocation happens, so some are in flight across it.
            let mut ran_after = 0;
            while ran_after < after {
                let seen = flag.load(std::sync::atomic::Ordering::SeqCst);
                if let Err(e) = operate(&store, n).await {
                    failures.push(e.to_string());
                }
                n += 1;
                if seen {
                    ran_after += 1;
                }
            }
            let _ = done.send((ran_after, failures));
        });
    }
    drop((ready, done));
    for _ in 0..readers {
        all_ready
            .recv()
            .await
            .expect("a reader stopped before the revocation");
    }
    revoke.await;
    flag.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut run = Run {
        after: Vec::new(),
        failures: Vec::new(),
    };
    while let Some((ran, failures)) = finished.recv().await {
        run.after.push(ran);
        run.failures.extend(failures);
    }
    run
}

/// Revocation and expiry are tested apart: Azurite ignores the `se=` of a SAS bound to a
/// stored access policy (`si=`), which revocable SAS are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn eight_readers_through_a_revocation_fail_no_operation_and_make_one_new_sas() {
    let rig = rig(MockVeracity::builder().revocable_sas(true)).await;
    let auth = authenticator(&rig.mock);
    let store = Arc::new(
        SasStore::new(dataset_sas(&rig.mock, &auth).build().unwrap())
            .await
            .unwrap(),
    );

    // Revoke every policy through the gateway, with the same authenticator, while eight
    // readers run.
    let run = readers_through(&store, 8, 5, 10, revoke_all(&rig.mock, &auth)).await;
    assert_eq!(rig.mock.stats().sas_revocations, 1);

    let traffic = rig.front.traffic();
    let stats = store.sas().stats();
    println!(
        "revocation, 8 readers: {} operations after it, {} failed; {} SAS requests; at \
         Azurite {} refused (403), {} requests sent again",
        run.after.iter().sum::<usize>(),
        run.failures.len(),
        rig.mock.stats().dataset_sas_requests,
        traffic.refused,
        stats.replays
    );
    assert!(run.failures.is_empty(), "{:#?}", run.failures);
    assert_eq!(run.after, vec![10; 8]);
    assert_eq!(rig.mock.stats().dataset_sas_requests, 2, "one new SAS");
    assert_eq!(stats.renewals_after_refusal, 1);
    assert!(traffic.refused >= 1, "the revocation was seen: {traffic:?}");
    assert_eq!(
        stats.replays, traffic.refused,
        "each refused request was sent again, once"
    );
    let current = store.sas().current().await.unwrap();
    assert_eq!(current.generation().get(), 2, "a new SAS serves");
    let policies: Vec<_> = rig
        .mock
        .issued_sas()
        .into_iter()
        .map(|s| s.policy)
        .collect();
    assert_eq!(policies.len(), 2);
    assert_ne!(policies[0], policies[1], "the new SAS names the new policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn a_put_through_a_write_storage_sas_then_a_get_returns_the_same_bytes() {
    let rig = rig(MockVeracity::builder()).await;
    let auth = authenticator(&rig.mock);
    let sas = StorageSas::storage(&auth, rig.mock.workspace_id(), SasAccess::Write)
        .gateway(gateway(&rig.mock))
        .build()
        .unwrap();
    let store = SasStore::new(sas).await.unwrap();
    let location = Path::from("out/report.csv");
    let content = Bytes::from_static(b"id,value\n1,42\n2,43\n");
    store.put(&location, content.clone().into()).await.unwrap();
    let read = store.get(&location).await.unwrap().bytes().await.unwrap();
    assert_eq!(read, content);
    let meta = store.head(&location).await.unwrap();
    assert_eq!(meta.size, content.len() as u64);
    assert_eq!(rig.mock.stats().storage_sas_requests, 1);
    assert_eq!(rig.front.traffic().refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn a_read_only_dataset_sas_refuses_a_put_with_permission_denied_and_no_signature() {
    let rig = rig(MockVeracity::builder()).await;
    let auth = authenticator(&rig.mock);
    let store = SasStore::new(dataset_sas(&rig.mock, &auth).build().unwrap())
        .await
        .unwrap();
    let sig = store
        .sas()
        .current()
        .await
        .unwrap()
        .query_pairs()
        .iter()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.clone())
        .unwrap();

    let error = store
        .put(
            &Path::from("part-9999.parquet"),
            Bytes::from_static(b"x").into(),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    println!("a put through a read-only SAS: {message}");
    assert!(
        matches!(error, object_store::Error::PermissionDenied { .. }),
        "{error:?}"
    );
    assert!(message.contains("part-9999.parquet"), "{message}");
    assert!(!message.contains(FOLDER), "the caller's path: {message}");
    assert!(message.contains("403"), "{message}");
    assert!(
        message.contains("AuthorizationPermissionMismatch"),
        "Azurite's reason: {message}"
    );
    let encoded: String = serde_urlencoded::to_string([("s", &sig)]).unwrap();
    for secret in [sig.as_str(), &encoded[2..]] {
        assert!(!message.contains(secret), "{message}");
        assert!(!format!("{error:?}").contains(secret), "{error:?}");
    }
    assert_eq!(rig.front.traffic().refused, 1);
    // A refusal no new SAS can fix keeps the SAS and asks for none.
    assert_eq!(
        rig.mock.stats().dataset_sas_requests,
        1,
        "0 new SAS requests"
    );
    assert_eq!(store.sas().stats().renewals_after_refusal, 0);
    assert_eq!(store.sas().stats().replays, 0);
    assert_eq!(store.sas().current().await.unwrap().generation().get(), 1);
    // Nothing was written, and reading still works.
    assert!(store.head(&Path::from("part-9999.parquet")).await.is_err());
    operate(&store, 1).await.unwrap();
}

// === bug fixes ===

/// object_store reports a refused `list` as `Generic` (a refused `get` as `PermissionDenied`),
/// so a store that read refusals from the error kind missed it. The store sees every
/// response, and sends a list refused for its SAS again with a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn a_list_refused_for_its_sas_is_sent_again_with_a_new_one() {
    let rig = rig(MockVeracity::builder().revocable_sas(true)).await;
    let auth = authenticator(&rig.mock);
    let store = SasStore::new(dataset_sas(&rig.mock, &auth).build().unwrap())
        .await
        .unwrap();
    operate(&store, 0).await.unwrap();
    revoke_all(&rig.mock, &auth).await;
    operate(&store, 0)
        .await
        .expect("the refused list is sent again with a new SAS");
    assert_eq!(store.sas().current().await.unwrap().generation().get(), 2);
    assert_eq!(rig.front.traffic().refused, 1);
    assert_eq!(store.sas().stats().replays, 1);
}

/// A store of one's own (`MicrosoftAzureBuilder`) over a `SasCredentialProvider` whose token
/// endpoint, gateway and storage are a closed port on loopback.
fn unreachable_store() -> object_store::Result<object_store::azure::MicrosoftAzure> {
    let credentials = ClientCredentials::new("client", "secret")
        .endpoint(TokenEndpoint::plain_http("http://127.0.0.1:9/token").unwrap());
    let auth = Authenticator::builder(credentials)
        .api_key("key")
        .build()
        .unwrap();
    let sas = StorageSas::dataset(&auth, "workspace", DATASET)
        .gateway("http://127.0.0.1:9/gateway")
        .build()
        .unwrap();
    MicrosoftAzureBuilder::new()
        .with_account("devstoreaccount1")
        .with_container_name("container")
        .with_endpoint("http://127.0.0.1:9/devstoreaccount1".to_owned())
        .with_allow_http(true)
        .with_credentials(Arc::new(SasCredentialProvider::new(sas)))
        .build()
}

/// A `SasCredentialProvider` handed to a `MicrosoftAzureBuilder` of one's own: the feature
/// builds reqwest's rustls without a provider (no aws-lc-rs), so before the fix a process
/// with no rustls provider installed panicked in `build()`. Runs alone in a child process (a
/// process-wide default, which other tests install): this test re-runs itself.
#[test]
fn a_credential_provider_builds_a_store_of_ones_own_in_a_process_without_a_crypto_provider() {
    if common::child::ran_alone(
        "sas_store::a_credential_provider_builds_a_store_of_ones_own_in_a_process_without_a_crypto_provider",
    ) {
        return;
    }
    assert!(
        rustls::crypto::CryptoProvider::get_default().is_none(),
        "the child starts with no process default"
    );
    let built = unreachable_store();
    assert!(built.is_ok(), "{:?}", built.err());
}

/// A failed SAS surfaces as object_store's error, and the crate's typed error is reachable
/// from it (`Error::find_in`), naming the cause.
#[tokio::test]
async fn the_crates_error_is_reachable_from_the_object_store_error_of_a_failed_operation() {
    let store = unreachable_store().unwrap();
    let error = store.get(&Path::from("part-0.parquet")).await.unwrap_err();
    let ours = veracity_auth::Error::find_in(&error).expect("the crate's error in the chain");
    assert!(
        matches!(ours, veracity_auth::Error::Transport(_)),
        "the token request could not connect: {ours:?}"
    );
}

/// The same scenario for each object_store major's store (0.13's `PrefixStore` left the
/// prefix on `head` and `get` locations; the store does its own prefixing): every path it
/// returns is relative to the dataset's folder, `list_with_offset` gives what follows the
/// offset (Azurite ignores Azure's `startFrom`), and `delta_table_url` finds `_delta_log/`
/// in the folder or a folder just below it.
macro_rules! paths_are_relative_to_the_folder {
    ($major:ident, $crate_:ident) => {
        mod $major {
            use super::*;
            // The 0.14 instance has these traits from `super` already.
            #[allow(unused_imports)]
            use $crate_::{ObjectStore as _, ObjectStoreExt as _};
            use $crate_::path::Path;
            use veracity_auth::$major::SasStore;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[ignore = "needs Azurite (npm); .ci/run installs it"]
            async fn paths_are_relative_to_the_folder_and_the_delta_log_is_found() {
                let rig = rig(MockVeracity::builder()).await;
                let auth = authenticator(&rig.mock);
                let store = SasStore::new(dataset_sas(&rig.mock, &auth).build().unwrap())
                    .await
                    .unwrap();
                let (name, content) = FILES[0];
                let location = Path::from(name);
                let got = store.get(&location).await.unwrap();
                assert_eq!(got.meta.location, location);
                assert_eq!(got.bytes().await.unwrap(), content);
                assert_eq!(store.head(&location).await.unwrap().location, location);

                let mut listed: Vec<String> = store
                    .list(None)
                    .map_ok(|m| m.location.to_string())
                    .try_collect()
                    .await
                    .unwrap();
                listed.sort();
                let mut names: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
                names.sort();
                assert_eq!(listed, names);

                let after: Vec<String> = store
                    .list_with_offset(None, &Path::from("part-0000.parquet"))
                    .map_ok(|m| m.location.to_string())
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(after, ["part-0001.parquet"], "what follows the offset");

                let top = store.list_with_delimiter(None).await.unwrap();
                assert_eq!(top.common_prefixes, [Path::from("_delta_log")]);
                assert_eq!(top.objects.len(), 2);
                let missing = store.get(&Path::from("nothing-here")).await.unwrap_err();
                assert!(
                    matches!(&missing, $crate_::Error::NotFound { path, .. } if path == "nothing-here"),
                    "{missing:?}"
                );

                let url = store.delta_table_url().await.unwrap();
                assert_eq!(url, store.abfss_url(""));
                assert_eq!(url.username(), rig.mock.storage_container());
                assert_eq!(url.path(), format!("/{FOLDER}"));

                // A table one folder down (Veracity's pipelines write `…/Processed`).
                let container = rig.mock.storage_container().to_owned();
                let processed = "datasets/dataset-2/Processed";
                rig.mock
                    .upload_blob(&container, &format!("{processed}/_delta_log/00000000000000000000.json"), &b"{}"[..])
                    .await
                    .unwrap();
                rig.mock
                    .upload_blob(&container, "datasets/dataset-2/readme.txt", &b"hi"[..])
                    .await
                    .unwrap();
                rig.mock.add_dataset("dataset-2", &container, "datasets/dataset-2");
                let two = SasStore::new(
                    StorageSas::dataset(&auth, rig.mock.workspace_id(), "dataset-2")
                        .gateway(gateway(&rig.mock)).build().unwrap(),
                )
                .await
                .unwrap();
                assert_eq!(two.delta_table_url().await.unwrap(), two.abfss_url("Processed"));
                assert!(two.delta_table_url().await.unwrap().as_str().ends_with("/datasets/dataset-2/Processed"));
                assert_ne!(two.url(), store.url(), "one URL per folder");

                // No table at all: a typed error that says so.
                rig.mock
                    .upload_blob(&container, "datasets/dataset-3/part-0.parquet", &b"PAR1"[..])
                    .await
                    .unwrap();
                rig.mock.add_dataset("dataset-3", &container, "datasets/dataset-3");
                let three = SasStore::new(
                    StorageSas::dataset(&auth, rig.mock.workspace_id(), "dataset-3")
                        .gateway(gateway(&rig.mock)).build().unwrap(),
                )
                .await
                .unwrap();
                let error = three.delta_table_url().await.unwrap_err();
                assert!(
                    matches!(&error, veracity_auth::Error::Sas(veracity_auth::SasError::InvalidResponse(m)) if m.contains("no Delta table")),
                    "{error:?}"
                );
            }
        }
    };
}

paths_are_relative_to_the_folder!(object_store_0_14, object_store);
paths_are_relative_to_the_folder!(object_store_0_13, object_store_013);
