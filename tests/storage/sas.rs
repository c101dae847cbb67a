//! `StorageSas` against the mock's SAS endpoints, with Rust alone: single flight, refresh
//! ahead of `se=`, backoff keeping a valid SAS, the margin, rejection, typed refusals and
//! redaction. Lifetimes are the mock's SAS cap, a few seconds of real time (the one wait
//! allowed: a real server's lifetime).

use std::time::{Duration, SystemTime};

use crate::common::{logs::Captured, runtimes};
use tokio::{task::JoinSet, time::Instant};
use veracity_auth::{
    Authenticator, CachePolicy, ClientCredentials, Error, SasAccess, SasError, StorageSas,
    TokenEndpoint,
};
use veracity_auth_mock::{Fault, MockVeracity, Times};

const DATASET: &str = "dataset-1";
const SCOPED_KEY: &str = "dataset-scoped-key";

async fn mock_with_cap(cap: Option<Duration>) -> MockVeracity {
    let mut builder = MockVeracity::builder().dataset_scoped_api_key(SCOPED_KEY);
    if let Some(cap) = cap {
        builder = builder.max_sas_lifetime(cap);
    }
    let mock = builder.start().await.unwrap();
    mock.add_dataset(DATASET, mock.storage_container(), "datasets/dataset-1");
    mock
}

fn authenticator(mock: &MockVeracity, key: &str) -> Authenticator {
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap());
    Authenticator::builder(credentials)
        .api_key(key)
        .build()
        .unwrap()
}

fn gateway(mock: &MockVeracity) -> String {
    format!("{}/veracity/dw/gateway", mock.url())
}

fn dataset_sas(mock: &MockVeracity) -> veracity_auth::StorageSasBuilder {
    StorageSas::dataset(
        &authenticator(mock, mock.api_key()),
        mock.workspace_id(),
        DATASET,
    )
    .gateway(gateway(mock))
}

fn remaining(sas: &veracity_auth::Sas) -> Duration {
    sas.expires_at()
        .expect("the mock's SAS name se=")
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

#[tokio::test]
async fn five_hundred_callers_on_a_cold_sas_make_exactly_one_sas_request() {
    let mock = mock_with_cap(None).await;
    let sas = dataset_sas(&mock).build().unwrap();
    let mut callers = JoinSet::new();
    for _ in 0..500 {
        let sas = sas.clone();
        callers.spawn(async move { sas.current().await });
    }
    let mut generations = Vec::new();
    while let Some(done) = callers.join_next().await {
        generations.push(done.unwrap().unwrap().generation().get());
    }
    assert!(generations.iter().all(|&g| g == 1));
    assert_eq!(mock.stats().dataset_sas_requests, 1);
    assert_eq!(sas.stats().fetches, 1);
    assert_eq!(sas.stats().waits, 500);
    assert_eq!(mock.stats().token_requests, 1);
}

#[tokio::test]
async fn a_sas_is_the_dataset_folder_read_only_and_lives_what_was_asked_or_its_se() {
    let mock = mock_with_cap(None).await;
    let sas = dataset_sas(&mock)
        .lifetime(Duration::from_secs(90))
        .build()
        .unwrap();
    let current = sas.current().await.unwrap();
    assert!(
        current.resource_uri().ends_with("/datasets/dataset-1"),
        "{}",
        current.resource_uri()
    );
    let pair = |k: &str| {
        current
            .query_pairs()
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(pair("sp").as_deref(), Some("rl"));
    assert!(pair("sig").is_some());
    // 90 s asked is 2 minutes on the wire: the SAS lives about 120 s.
    let left = remaining(&current);
    assert!(
        left > Duration::from_secs(100) && left <= Duration::from_secs(121),
        "{left:?}"
    );
    let issued = mock.issued_sas();
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0].path, "datasets/dataset-1");
}

/// Four-second SAS (the mock's cap; 60 s asked), a caller every 50 ms for 12 s of real time:
/// renewed ahead in the background, only the first call waits, and no SAS is handed out
/// within a second of its `se=` (`se=` is to the second: the margin floor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sas_is_renewed_ahead_of_se_and_never_handed_out_in_its_last_margin() {
    let mock = mock_with_cap(Some(Duration::from_secs(4))).await;
    let sas = dataset_sas(&mock)
        .lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let start = Instant::now();
    let mut least = Duration::MAX;
    let mut last_generation = 0;
    while start.elapsed() < Duration::from_secs(12) {
        let current = sas.current().await.unwrap();
        least = least.min(remaining(&current));
        last_generation = current.generation().get();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = sas.stats();
    println!(
        "12 s of 4 s SAS: {} SAS requests, {} waits, least time left {least:?}",
        stats.fetches, stats.waits
    );
    assert_eq!(stats.waits, 1, "only the first call waits");
    assert_eq!(stats.fetch_failures, 0);
    // A SAS of at most 4 s (3 to 4 s left when it arrives, `se=` being whole seconds) is
    // renewed at least every 3 s: at least 4 in 12 s; at most one per second.
    assert!(
        (4..=12).contains(&stats.fetches),
        "{} fetches",
        stats.fetches
    );
    // `fetches` counts started requests: the last call had the newest SAS, or the one whose
    // renewal was still in flight.
    assert!(
        (stats.fetches - 1..=stats.fetches).contains(&last_generation),
        "last SAS {last_generation} of {} fetched",
        stats.fetches
    );
    assert!(least >= Duration::from_millis(900), "{least:?} left");
}

/// The gateway fails every renewal: the valid SAS is kept to its margin, renewals back off,
/// and once it is gone callers fail fast with the gateway's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_keeps_the_valid_sas_and_backs_off() {
    let mock = mock_with_cap(Some(Duration::from_secs(4))).await;
    let sas = dataset_sas(&mock)
        .lifetime(Duration::from_secs(60))
        .cache_policy(
            CachePolicy::default()
                .backoff(Duration::from_millis(400), Duration::from_secs(2))
                .jitter(0.0),
        )
        .build()
        .unwrap();
    let first = sas.current().await.unwrap();
    mock.fail_api_requests(Fault::status(503), Times::Always);
    let until = first.expires_at().unwrap();
    let mut kept = 0;
    loop {
        match sas.current().await {
            Ok(current) => {
                assert_eq!(current.generation().get(), 1, "no new SAS was issued");
                assert!(remaining(&current) >= Duration::from_millis(900));
                kept += 1;
            }
            Err(error) => {
                assert!(
                    matches!(&error, Error::Sas(SasError::Refused { status, .. }) if status.as_u16() == 503),
                    "{error:?}"
                );
                break;
            }
        }
        assert!(
            SystemTime::now() < until,
            "the SAS was handed out past its se="
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = sas.stats();
    println!(
        "kept the SAS for {kept} calls; {} failed renewals",
        stats.fetch_failures
    );
    assert!(kept > 10);
    // About 1.5 s between the refresh point and the margin, backing off from 400 ms.
    assert!(
        (1..=4).contains(&stats.fetch_failures),
        "{} failed renewals",
        stats.fetch_failures
    );
    // Negative caching: callers now fail at once, without a request each.
    let requests = mock.stats().dataset_sas_requests;
    for _ in 0..100 {
        assert!(sas.current().await.is_err());
    }
    assert!(mock.stats().dataset_sas_requests <= requests + 1);
    assert!(sas.stats().fast_failures >= 99);
}

#[tokio::test]
async fn a_rejected_sas_is_replaced_once_per_interval() {
    let mock = mock_with_cap(None).await;
    let sas = dataset_sas(&mock).build().unwrap();
    let first = sas.current().await.unwrap();
    sas.rejected(&first);
    let second = sas.current().await.unwrap();
    assert_eq!(second.generation().get(), 2);
    // A refusal of the SAS already replaced changes nothing.
    sas.rejected(&first);
    assert_eq!(sas.current().await.unwrap().generation().get(), 2);
    // Within the interval, a refusal of the new one gets no third SAS.
    sas.rejected(&second);
    let err_or_same = sas.current().await;
    assert!(
        err_or_same
            .as_ref()
            .is_ok_and(|s| s.generation().get() == 2),
        "{err_or_same:?}"
    );
    assert_eq!(mock.stats().dataset_sas_requests, 2);
    assert_eq!(sas.stats().renewals_after_refusal, 1);
}

/// The gateway refuses a wrong API key with API Management's key challenge: no token fixes
/// that, so the SAS request's 401 drops no token and costs no token fetch.
#[tokio::test]
async fn a_wrong_api_key_costs_no_token_fetch() {
    let mock = mock_with_cap(None).await;
    let auth = authenticator(&mock, "not-the-key");
    let sas = StorageSas::dataset(&auth, mock.workspace_id(), DATASET)
        .gateway(gateway(&mock))
        .build()
        .unwrap();
    let err = sas.current().await.unwrap_err();
    assert!(
        matches!(&err, Error::Sas(SasError::Refused { status, .. }) if status.as_u16() == 401),
        "{err:?}"
    );
    assert_eq!(auth.stats().replay_refreshes, 0);
    assert_eq!(mock.stats().token_requests, 1);
}

#[tokio::test]
async fn file_storage_sas_ask_for_their_access_and_a_dataset_scoped_account_gets_a_typed_403() {
    let mock = mock_with_cap(None).await;
    let write = StorageSas::storage(
        &authenticator(&mock, mock.api_key()),
        mock.workspace_id(),
        SasAccess::Write,
    )
    .gateway(gateway(&mock))
    .path("out")
    .build()
    .unwrap();
    let current = write.current().await.unwrap();
    assert!(current.resource_uri().ends_with("/out"), "{current:?}");
    let sp = current
        .query_pairs()
        .iter()
        .find(|(k, _)| k == "sp")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(sp.contains('w'), "{sp}");
    assert_eq!(mock.stats().storage_sas_requests, 1);

    let scoped = StorageSas::storage(
        &authenticator(&mock, SCOPED_KEY),
        mock.workspace_id(),
        SasAccess::Read,
    )
    .gateway(gateway(&mock))
    .build()
    .unwrap();
    let err = scoped.current().await.unwrap_err();
    assert!(
        matches!(&err, Error::Sas(SasError::Refused { status, .. }) if status.as_u16() == 403),
        "{err:?}"
    );
    assert!(err.is_permanent());
    let unknown = StorageSas::dataset(
        &authenticator(&mock, mock.api_key()),
        mock.workspace_id(),
        "no-such-dataset",
    )
    .gateway(gateway(&mock))
    .build()
    .unwrap();
    let err = unknown.current().await.unwrap_err();
    assert!(
        matches!(&err, Error::Sas(SasError::Refused { status, .. }) if status.as_u16() == 404),
        "{err:?}"
    );
}

#[tokio::test]
async fn unusable_settings_and_answers_are_typed_errors() {
    let mock = mock_with_cap(None).await;
    let err = dataset_sas(&mock)
        .lifetime(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, veracity_auth::ConfigError::Sas(m) if m.contains("lifetime")),
        "{err:?}"
    );
    let err = dataset_sas(&mock)
        .gateway("http://gateway.example/veracity/dw/gateway")
        .build()
        .unwrap_err();
    assert!(
        matches!(err, veracity_auth::ConfigError::InsecureUrl { .. }),
        "{err:?}"
    );
    // A gateway answering 200 with HTML, or with a URI without a signature.
    mock.fail_api_requests(
        Fault::Respond {
            status: http::StatusCode::OK,
            headers: vec![("content-type".into(), "text/html".into())],
            body: "<html>maintenance</html>".into(),
        },
        Times::Once,
    );
    let err = dataset_sas(&mock)
        .build()
        .unwrap()
        .current()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Sas(SasError::InvalidResponse(_))),
        "{err:?}"
    );
    mock.fail_api_requests(
        Fault::json(
            200,
            serde_json::json!("https://acct.dfs.core.windows.net/c/p?sv=1&se=2030-01-01"),
        ),
        Times::Once,
    );
    let err = dataset_sas(&mock)
        .build()
        .unwrap()
        .current()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Sas(SasError::InvalidResponse(_))),
        "{err:?}"
    );
    // A SAS whose `se=` had already passed is an invalid SAS answer, said as such.
    mock.fail_api_requests(
        Fault::json(
            200,
            serde_json::json!(
                "https://acct.dfs.core.windows.net/c/p?sv=1&se=2020-01-01T00%3A00%3A00Z&sig=s"
            ),
        ),
        Times::Once,
    );
    let err = dataset_sas(&mock)
        .build()
        .unwrap()
        .current()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Sas(SasError::InvalidResponse(m)) if m.contains("already expired") && m.contains("2020-01-01T00:00:00Z")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("token"), "{err}");
}

/// The gateway is one idea: its base (`…/dw/gateway`) or the API's base URL under it
/// (`…/dw/gateway/api/v2`, as the README's set-up table has it) reach the same SAS endpoint.
#[tokio::test]
async fn the_gateway_may_be_named_by_its_base_or_the_apis_base_url() {
    let mock = mock_with_cap(None).await;
    for gateway in [
        gateway(&mock),
        format!("{}/", gateway(&mock)),
        format!("{}/api/v2", gateway(&mock)),
        format!("{}/api/v1/", gateway(&mock)),
    ] {
        let sas = dataset_sas(&mock).gateway(&gateway).build().unwrap();
        let current = sas
            .current()
            .await
            .unwrap_or_else(|e| panic!("{gateway}: {e}"));
        assert!(current.resource_uri().ends_with("datasets/dataset-1"));
    }
    assert_eq!(mock.stats().dataset_sas_requests, 4);
}

/// `Sas::file_url` names a file under the SAS's folder, each segment percent-encoded, with the
/// SAS query, for clients that take a URL (curl, DuckDB, azcopy).
#[tokio::test]
async fn a_file_url_is_under_the_folder_percent_encoded_and_signed() {
    let mock = mock_with_cap(None).await;
    let current = dataset_sas(&mock).build().unwrap().current().await.unwrap();
    let url = current.file_url("/year=2026/part 0#1.parquet");
    let (path, query) = url.split_once('?').unwrap();
    assert_eq!(
        path,
        format!(
            "{}/year%3D2026/part%200%231.parquet",
            current.resource_uri()
        )
    );
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    assert_eq!(pairs, current.query_pairs());
    // What a client caching the SAS itself is told: before `se=`, by the safety margin.
    let (until, se) = (current.valid_until(), current.expires_at().unwrap());
    assert!(until < se, "{until:?} {se:?}");
    assert!(
        se.duration_since(until).unwrap() >= Duration::from_secs(29),
        "{until:?} {se:?}"
    );
}

/// The expiring cache says what it fetches: a SAS fetch logs as a SAS, in a span of its own.
///
/// It asserts that a line is there, and a thread-local subscriber can miss one when tests on
/// other threads register the same callsites first (tracing caches their interest
/// process-wide): so it re-runs itself alone in a child process.
#[test]
fn sas_fetches_log_as_sas_fetches() {
    if crate::common::child::ran_alone("sas::sas_fetches_log_as_sas_fetches") {
        return;
    }
    runtimes::current_thread().block_on(sas_fetch_log_lines());
}

async fn sas_fetch_log_lines() {
    let (lines, _guard) = Captured::on_this_thread(tracing::Level::DEBUG);
    let mock = mock_with_cap(None).await;
    let sas = dataset_sas(&mock).build().unwrap();
    sas.current().await.unwrap();
    let log = lines.text();
    let fetched = log
        .lines()
        .find(|l| l.contains("storage SAS fetched"))
        .unwrap_or_else(|| panic!("{log}"));
    // The spans the event is in, outermost first: a SAS fetch's own, not a token fetch's.
    let spans = fetched.split(" veracity_auth::cache:").next().unwrap();
    assert!(spans.contains("sas_fetch{"), "{fetched}");
    assert!(!spans.contains("token_fetch"), "{fetched}");
}

#[tokio::test]
async fn the_signature_never_reaches_debug_errors_or_logs() {
    let (lines, _guard) = Captured::on_this_thread(tracing::Level::TRACE);

    let mock = mock_with_cap(None).await;
    let sas = dataset_sas(&mock).build().unwrap();
    let current = sas.current().await.unwrap();
    let sig = current
        .query_pairs()
        .iter()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(current.signed_url().contains("sig="));
    // A gateway error quoting a SAS back.
    mock.fail_api_requests(
        Fault::json(
            400,
            serde_json::json!({ "message": format!("bad request for ?sv=1&sig={sig}") }),
        ),
        Times::Once,
    );
    let err = dataset_sas(&mock)
        .build()
        .unwrap()
        .current()
        .await
        .unwrap_err();
    let encoded: String = serde_urlencoded::to_string([("s", &sig)]).unwrap()[2..].to_owned();
    for text in [
        format!("{current:?}"),
        format!("{sas:?}"),
        format!("{err}"),
        format!("{err:?}"),
        lines.text(),
    ] {
        assert!(!text.contains(&sig) && !text.contains(&encoded), "{text}");
    }
}

/// One `StorageSas` on two current-thread runtimes: the one that fetched the first SAS (and
/// armed its refresh timer) is dropped; the other keeps renewing it ahead of `se=`, and none
/// of its calls waits or fails.
#[test]
fn a_sas_whose_timer_runtime_died_is_renewed_by_another_runtime_without_waits() {
    let runtime = runtimes::current_thread;
    let server = runtimes::server();
    let mock = server.block_on(mock_with_cap(Some(Duration::from_secs(4))));
    let sas = dataset_sas(&mock)
        .lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let first = runtime().block_on(sas.current()).unwrap(); // that runtime is dropped here
    assert_eq!(first.generation().get(), 1);
    let other = runtime();
    let (generation, least) = other.block_on(async {
        let start = Instant::now();
        let (mut generation, mut least) = (1, Duration::MAX);
        while start.elapsed() < Duration::from_secs(10) {
            let current = sas.current().await.unwrap();
            least = least.min(remaining(&current));
            generation = current.generation().get();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (generation, least)
    });
    let stats = sas.stats();
    println!(
        "10 s after the timer's runtime died: {} SAS requests, {} waits, least time left {least:?}",
        stats.fetches, stats.waits
    );
    assert_eq!(
        stats.waits, 1,
        "only the first call, on the dropped runtime, waited"
    );
    assert_eq!(stats.fetch_failures, 0);
    assert!(
        generation >= 3,
        "renewed on the other runtime: generation {generation}"
    );
    assert!(least >= Duration::from_millis(900), "{least:?} left");
}
