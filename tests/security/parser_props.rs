//! Property tests for token-response parsing (the same parser the fuzz target in `fuzz/`
//! drives): no input panics, and every well-formed response in any of Veracity's styles
//! parses to exactly its token and lifetime.
//!
//! The parser is public only with the hidden `__fuzzing` feature (`--all-features`).
#![cfg(feature = "__fuzzing")]

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use veracity_auth::{Error, parse_token_response};

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::String),
        prop::sample::select(vec![
            "access_token",
            "token_type",
            "expires_in",
            "error",
            "Bearer",
            "3599"
        ])
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "access_token",
                        "token_type",
                        "expires_in",
                        "error",
                        "error_description",
                        "error_codes",
                        "trace_id",
                        "correlation_id",
                        "other",
                    ]),
                    inner,
                ),
                0..8
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

fn status() -> impl Strategy<Value = StatusCode> {
    (100u16..600).prop_map(|s| StatusCode::from_u16(s).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(status in status(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_token_response(status, &HeaderMap::new(), &body).map_err(|e| e.to_string());
    }

    #[test]
    fn arbitrary_json_never_panics(status in status(), value in any_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Err(e) = parse_token_response(status, &HeaderMap::new(), &body) {
            let _ = (e.to_string(), e.is_permanent(), e.retry_after());
        }
    }

    #[test]
    fn well_formed_responses_parse_exactly(
        token in "[A-Za-z0-9._~+/-]{1,200}=*",
        secs in 1u64..=366 * 24 * 3600,
        as_string in any::<bool>(),
        token_type in prop::sample::select(vec!["Bearer", "bearer", "BEARER"]),
        extra in prop::collection::btree_map("[a-z_]{1,12}", any::<i32>(), 0..4),
    ) {
        let mut obj = Map::new();
        for (k, v) in extra {
            obj.insert(k, json!(v));
        }
        obj.insert("access_token".into(), json!(token));
        obj.insert("token_type".into(), json!(token_type));
        obj.insert("expires_in".into(), if as_string { json!(secs.to_string()) } else { json!(secs) });
        obj.remove("error");
        let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
        let parsed = parse_token_response(StatusCode::OK, &HeaderMap::new(), &body).unwrap();
        prop_assert_eq!(parsed.access_token(), token.as_str());
        prop_assert_eq!(parsed.expires_in(), Some(Duration::from_secs(secs)));
    }

    #[test]
    fn oauth_errors_always_name_their_error(
        status in (400u16..600).prop_map(|s| StatusCode::from_u16(s).unwrap()),
        error in "[a-z_]{1,30}",
        code in any::<u32>(),
    ) {
        let body = json!({"error": error, "error_description": format!("AADSTS{code}: text"), "error_codes": [code]});
        let err = parse_token_response(status, &HeaderMap::new(), body.to_string().as_bytes()).unwrap_err();
        prop_assert!(matches!(err, Error::OAuth(_)));
        let message = err.to_string();
        prop_assert!(message.contains(&error));
        let aadsts = format!("AADSTS{}", code);
        prop_assert!(message.contains(&aadsts));
    }
}
