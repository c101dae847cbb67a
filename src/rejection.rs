//! The 401 decision, written once: what a response means for the request it answers (hand
//! it on, wait for a newer token, or replay with new headers). Every adapter (the tower
//! future, the reqwest middleware) asks it and only does the I/O. No body is read: the
//! decision is the response head's alone.
//!
//! - [`classify`] reads the status and headers.
//! - A rejected API key is handed on, with a warning: no token fixes it.
//! - A rejected token (a bearer challenge, a bare 401, gRPC `UNAUTHENTICATED`) starts a
//!   refresh through [`Authenticator::rejected`] (only that token is dropped; at most one
//!   per rejection interval), even when the request cannot be replayed, so the next request
//!   gets a good token. Then the request is replayed once, if it can be, with a token newer
//!   than the rejected one.

use http::{HeaderMap, StatusCode};

use crate::{
    AfterRejection, AuthHeaders, Authenticator, Generation, HeadersFuture,
    classify::{Rejection, classify},
};

/// What an adapter does with a response, from [`after_response`].
pub(crate) enum Decision {
    /// Hand the response on as it is.
    Return,
    /// Wait for a token newer than the rejected one and replay with it; if none comes, hand
    /// the response on.
    Wait(HeadersFuture),
    /// Replay now with these headers (through [`replaying`]).
    Replay(AuthHeaders),
}

/// What the response to a request sent with the token of `generation` means, by its
/// `status` and `headers`. `replayable`: whether the request can be sent once more.
#[inline]
pub(crate) fn after_response(
    authenticator: &Authenticator,
    generation: Generation,
    status: StatusCode,
    headers: &HeaderMap,
    replayable: bool,
) -> Decision {
    if !may_be_rejection(status, headers) {
        return Decision::Return;
    }
    classified(authenticator, generation, status, headers, replayable)
}

/// The hot path's one question: whether a response with this `status` and `headers` may be
/// a rejection at all (a 401, or a 200 with headers, where a gRPC status may be). `false`
/// means [`after_response`] would say [`Decision::Return`]; an adapter may ask this first
/// and hand the response on without a decision to drop.
#[inline]
pub(crate) fn may_be_rejection(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED || (status == StatusCode::OK && !headers.is_empty())
}

/// [`after_response`] for a response that may be a rejection.
fn classified(
    authenticator: &Authenticator,
    generation: Generation,
    status: StatusCode,
    headers: &HeaderMap,
    replayable: bool,
) -> Decision {
    match classify(status, headers) {
        Rejection::None => Decision::Return,
        Rejection::ApiKey => api_key_rejected(status),
        Rejection::Token => token_rejected(authenticator, generation, replayable),
    }
}

/// Puts `token` into the replay's `headers`, and counts and logs the replay.
pub(crate) fn replaying(
    authenticator: &Authenticator,
    token: &AuthHeaders,
    headers: &mut HeaderMap,
) {
    token.insert_into(headers);
    authenticator.count_replay();
    tracing::debug!(
        target: "veracity_auth",
        generation = token.generation().get(),
        "replaying the request with a new token after a 401"
    );
}

/// A token rejection: get a newer token (single flight, rate-limited) even if the request
/// cannot be replayed, so the next request gets a good one (dropping the wait does not
/// cancel the refresh it may have started), and replay if the request allows.
fn token_rejected(
    authenticator: &Authenticator,
    generation: Generation,
    replayable: bool,
) -> Decision {
    let after = authenticator.rejected(generation);
    if !replayable {
        tracing::debug!(
            target: "veracity_auth",
            "401 for a request that cannot be replayed: returning it"
        );
        return Decision::Return;
    }
    match after {
        AfterRejection::Newer(token) => Decision::Replay(token),
        AfterRejection::Wait(token) => Decision::Wait(token),
        AfterRejection::Refused => {
            tracing::debug!(
                target: "veracity_auth",
                "401 within the replay refresh interval: returning it without a new token"
            );
            Decision::Return
        }
    }
}

/// The gateway rejected the API key: says so; the response is handed on.
fn api_key_rejected(status: StatusCode) -> Decision {
    tracing::warn!(
        target: "veracity_auth",
        status = status.as_u16(),
        "the gateway rejected the API key (Ocp-Apim-Subscription-Key); \
         a new token cannot fix that, returning the response"
    );
    Decision::Return
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, header::WWW_AUTHENTICATE};

    use super::*;
    use crate::StaticToken;

    async fn sent() -> (Authenticator, Generation) {
        let auth = Authenticator::builder(StaticToken::new("token"))
            .build()
            .unwrap();
        let generation = auth.headers().await.unwrap().generation();
        (auth, generation)
    }

    fn challenge(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
        headers
    }

    #[tokio::test]
    async fn a_response_that_is_no_rejection_is_handed_on_without_a_refresh() {
        let (auth, generation) = sent().await;
        for (status, headers) in [
            (StatusCode::OK, HeaderMap::new()),
            (StatusCode::FORBIDDEN, HeaderMap::new()),
            (StatusCode::UNAUTHORIZED, challenge("Basic realm=\"api\"")),
        ] {
            let decision = after_response(&auth, generation, status, &headers, true);
            assert!(matches!(decision, Decision::Return), "{status}");
        }
        assert_eq!(auth.stats().replay_refreshes, 0);
    }

    #[tokio::test]
    async fn an_api_key_rejection_is_handed_on_without_a_refresh() {
        let (auth, generation) = sent().await;
        let headers = challenge("AzureApiManagementKey realm=\"x\",name=\"k\",type=\"header\"");
        let decision = after_response(&auth, generation, StatusCode::UNAUTHORIZED, &headers, true);
        assert!(matches!(decision, Decision::Return));
        assert_eq!(auth.stats().replay_refreshes, 0);
    }

    #[tokio::test]
    async fn a_bare_401_is_a_token_rejection_by_its_head_alone() {
        let (auth, generation) = sent().await;
        let bare = HeaderMap::new();
        let decision = after_response(&auth, generation, StatusCode::UNAUTHORIZED, &bare, true);
        assert!(matches!(decision, Decision::Wait(_) | Decision::Replay(_)));
        assert_eq!(auth.stats().replay_refreshes, 1);
    }

    #[tokio::test]
    async fn a_token_rejection_refreshes_and_replays_once_per_interval() {
        let (auth, generation) = sent().await;
        let bearer = challenge("Bearer error=\"invalid_token\"");
        let decision = after_response(&auth, generation, StatusCode::UNAUTHORIZED, &bearer, true);
        let newer = match decision {
            Decision::Replay(newer) => newer,
            Decision::Wait(future) => future.await.unwrap(),
            _ => panic!("a token rejection of a replayable request is replayed"),
        };
        assert!(newer.generation() > generation);
        // The replay is rejected too: within the interval, no second refresh.
        let bare = HeaderMap::new();
        let again = after_response(
            &auth,
            newer.generation(),
            StatusCode::UNAUTHORIZED,
            &bare,
            true,
        );
        assert!(matches!(again, Decision::Return));
        assert_eq!(auth.stats().replay_refreshes, 1);
    }

    #[tokio::test]
    async fn a_token_rejection_of_a_request_that_cannot_be_replayed_still_refreshes() {
        let (auth, generation) = sent().await;
        let bearer = challenge("Bearer error=\"invalid_token\"");
        let decision = after_response(&auth, generation, StatusCode::UNAUTHORIZED, &bearer, false);
        assert!(matches!(decision, Decision::Return));
        assert_eq!(
            auth.stats().replay_refreshes,
            1,
            "the next request gets a new token"
        );
    }
}
