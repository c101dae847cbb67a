//! A profile's credentials: its token source, its access token (from the cache across runs
//! or fetched now), its API key, and an [`Authenticator`] for `sas` and `proxy`.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use veracity_auth::{
    Authenticator, ClientCredentials, Error, FileStore, RefreshTokenStore, SignIn, SignInError,
    Token, TokenEndpoint, TokenSource, token_fn,
};

use crate::{
    CliError,
    cache::{Entry, Issued},
    config::{Kind, Profile},
};

/// Veracity's Data Workbench gateway.
pub const DEFAULT_GATEWAY: &str = "https://api.veracity.com/veracity/dw/gateway";

/// How fresh the token must be: `--min-valid`, `--force-refresh`.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct Want {
    /// Reuse a kept token only while it has at least this long left (300, 90s, 5m, 1h30m).
    #[arg(long, default_value = "5m", value_parser = crate::output::parse_duration)]
    pub min_valid: Duration,
    /// Fetch a new token even if a kept one would do.
    #[arg(long)]
    pub force_refresh: bool,
}

impl Default for Want {
    /// What `--min-valid` and `--force-refresh` default to: at least 5 minutes left.
    fn default() -> Self {
        Want {
            min_valid: Duration::from_secs(300),
            force_refresh: false,
        }
    }
}

/// An access token for `profile`: the one kept from an earlier run while it has at least
/// `min_valid` left, or a new one, kept for the next runs. The entry's lock is held from the
/// read to the write, so processes started at once fetch once. Never prompts: a person's
/// profile with no usable sign-in is [`CliError::SignInNeeded`].
pub async fn access_token(profile: &Profile, want: Want) -> Result<Issued, CliError> {
    let entry = Entry::lock(profile)?;
    if !want.force_refresh
        && let Some(kept) = entry.read()
        && kept.valid_for() >= want.min_valid
    {
        return Ok(kept);
    }
    let started = SystemTime::now();
    let token = match profile.kind {
        Kind::ServiceAccount => service_account(profile)?.fetch().await?,
        Kind::Person => restore(profile).await?.fetch().await?,
    };
    let issued = issued(&token, started);
    entry.write(&issued);
    Ok(issued)
}

/// What to keep of a token fetched at `started`. A token of unknown lifetime is kept as
/// already expired: it is used this once.
pub fn issued(token: &Token, started: SystemTime) -> Issued {
    let expires = started + token.expires_in().unwrap_or_default();
    Issued {
        access_token: token.access_token().to_owned(),
        expires_on: expires
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    }
}

/// The API key of `profile`.
pub fn api_key(profile: &Profile) -> Result<String, CliError> {
    profile
        .api_key
        .resolve(&format!("the API key of profile `{}`", profile.name))
}

/// The profile's token endpoint: HTTPS, or plain HTTP to loopback only (a mock).
fn endpoint(url: &str) -> Result<TokenEndpoint, CliError> {
    let loopback = url
        .parse::<http::Uri>()
        .ok()
        .filter(|uri| uri.scheme_str() == Some("http"))
        .and_then(|uri| uri.host().map(str::to_owned))
        .is_some_and(|host| matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]"));
    let endpoint = match loopback {
        true => TokenEndpoint::plain_http(url),
        false => TokenEndpoint::new(url),
    };
    endpoint.map_err(|e| CliError::Config(format!("`token_url`: {e}")))
}

fn client_secret(profile: &Profile) -> Result<Option<String>, CliError> {
    let what = format!("the client secret of profile `{}`", profile.name);
    profile
        .client_secret
        .as_ref()
        .map(|s| s.resolve(&what))
        .transpose()
}

fn service_account(profile: &Profile) -> Result<ClientCredentials, CliError> {
    let secret = client_secret(profile)?.unwrap_or_default();
    let mut source = ClientCredentials::new(&profile.client_id, secret);
    if let Some(url) = &profile.token_url {
        source = source.endpoint(endpoint(url)?);
    }
    if let Some(scope) = &profile.scope {
        source = source.scope(scope);
    } else if let Some(resource) = &profile.resource {
        source = source.resource(resource);
    }
    Ok(source)
}

/// A person's sign-in, configured by the profile.
pub fn sign_in(profile: &Profile) -> Result<SignIn, CliError> {
    let mut sign_in = SignIn::new(&profile.client_id);
    if let Some(url) = &profile.authorize_url {
        sign_in = sign_in.authorize_url(url);
    }
    if let Some(url) = &profile.token_url {
        sign_in = sign_in.endpoint(endpoint(url)?);
    }
    if let Some(scope) = &profile.scope {
        sign_in = sign_in.scope(scope);
    }
    if let Some(secret) = client_secret(profile)? {
        sign_in = sign_in.client_secret(secret);
    }
    Ok(sign_in)
}

/// Where sign-ins are kept: the library's [`FileStore`], one file per app.
pub fn store() -> Result<FileStore, CliError> {
    FileStore::new().map_err(|e| CliError::Config(e.to_string()))
}

/// The stored sign-in of a person's profile, without a prompt: none stored, or one the
/// provider refused, is [`CliError::SignInNeeded`].
async fn restore(profile: &Profile) -> Result<veracity_auth::RefreshToken, CliError> {
    let store = store()?;
    let needed = || CliError::SignInNeeded {
        profile: profile.name.clone(),
        login: "login",
    };
    if store
        .load(&profile.client_id)
        .map_err(Error::from)?
        .is_none()
    {
        return Err(needed());
    }
    // `restore_or_sign_in` signs in only when the stored token is refused; with no time to
    // wait for a browser, that sign-in ends at once, shown to nobody.
    let sign_in = sign_in(profile)?
        .timeout(Duration::ZERO)
        .on_authorize_url(|_| {});
    match sign_in.restore_or_sign_in(store).await {
        Err(Error::SignIn(SignInError::TimedOut(_))) => Err(needed()),
        Err(e) if e.is_sign_in_required() => Err(needed()),
        other => Ok(other?),
    }
}

/// The gateway of `profile`, parsed.
pub fn gateway(profile: &Profile) -> Result<http::Uri, CliError> {
    let url = profile.gateway.as_deref().unwrap_or(DEFAULT_GATEWAY);
    url.parse::<http::Uri>()
        .ok()
        .filter(|uri| uri.scheme().is_some() && uri.authority().is_some())
        .ok_or_else(|| CliError::Config(format!("`gateway` is not an absolute URL: {url}")))
}

/// An [`Authenticator`] for the profile's gateway whose tokens come through the cache
/// across runs. It asks again only when it needs another token (ahead of expiry, after a
/// 401), so a kept token it was already given is never handed to it twice.
pub fn authenticator(profile: &Profile, want: Want) -> Result<Authenticator, CliError> {
    let gateway = gateway(profile)?;
    let origin = format!(
        "{}://{}",
        gateway.scheme_str().unwrap_or("https"),
        gateway.authority().map_or("", |a| a.as_str())
    );
    let last: Arc<Mutex<Option<String>>> = Arc::default();
    let profile = profile.clone();
    let key = api_key(&profile)?;
    let source = token_fn(move || {
        let (profile, last) = (profile.clone(), Arc::clone(&last));
        async move {
            let given = |issued: &Issued| {
                last.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_deref()
                    == Some(issued.access_token.as_str())
            };
            let mut issued = access_token(&profile, want).await.map_err(into_error)?;
            if given(&issued) {
                let again = Want {
                    force_refresh: true,
                    ..want
                };
                issued = access_token(&profile, again).await.map_err(into_error)?;
            }
            *last.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(issued.access_token.clone());
            Ok::<_, Error>(Token::new(
                issued.access_token.clone(),
                Some(issued.valid_for()),
            ))
        }
    });
    Ok(Authenticator::builder(source)
        .api_key(key)
        .origins([origin])
        .build()?)
}

fn into_error(e: CliError) -> Error {
    match e {
        CliError::Auth(e) => e,
        other => Error::source_error(other.to_string()),
    }
}
