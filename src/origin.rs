//! Which origins (scheme, host and port) credentials are for: parsed once when the
//! authenticator is built, compared per request without allocating.
//!
//! The builder starts from Veracity's gateway alone (`VERACITY_ORIGIN`); a request whose
//! URI names another origin gets no credentials: that is what keeps the API key and
//! the token from following a redirect to another host. A URI without an authority (a
//! tonic `Channel`'s `/pkg.Service/Method`, whose channel adds its own origin further down)
//! counts as one of ours.
//!
//! Parsed with `http::Uri`, not `url::Url`: `url` would add idna and the ICU crates (some 25
//! crates) to the default features for origins that are ASCII hosts.

use std::{fmt, sync::Arc};

use http::Uri;

use crate::ConfigError;

/// The origins an authenticator's credentials are for: `None` for no restriction. One
/// pointer, so the authenticator stays small and cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Origins(Option<Arc<[Origin]>>);

/// One origin: its scheme, its host in lower case, and its port (explicit or the
/// scheme's default), with the two ways a request's authority may spell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    https: bool,
    host: Box<str>,
    port: u16,
    /// `host:port`
    host_port: Box<str>,
    /// The port is the scheme's default, so a bare `host` names this origin too.
    default_port: bool,
}

impl Origins {
    /// Parses `origins` (`https://api.veracity.com`, `http://127.0.0.1:8080`): an absolute
    /// `http` or `https` URL with a host, an optional port and nothing else (a `/` path at
    /// most). An empty list, or any other value, is [`ConfigError::Origin`] naming it.
    pub(crate) fn parse<I>(origins: I) -> Result<Origins, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let list = origins
            .into_iter()
            .map(|origin| Origin::parse(origin.as_ref()))
            .collect::<Result<Arc<[Origin]>, ConfigError>>()?;
        if list.is_empty() {
            return Err(ConfigError::Origin(
                "origins: the list is empty; name at least one origin".into(),
            ));
        }
        Ok(Origins(Some(list)))
    }

    /// Whether credentials go with a request to `uri`. With no origins set, one branch.
    #[inline]
    pub(crate) fn allows(&self, uri: &Uri) -> bool {
        match &self.0 {
            None => true,
            Some(list) => allows_uri(list, uri),
        }
    }

    /// The same for a URL already split: `scheme` in lower case, `host` as a URL serializes
    /// it (IPv6 in brackets), `port` `None` for the scheme's default.
    #[cfg(any(feature = "reqwest-middleware", test))]
    pub(crate) fn allows_parts(&self, scheme: &str, host: Option<&str>, port: Option<u16>) -> bool {
        match self.0.as_deref() {
            None => true,
            Some(list) => {
                let Some(host) = host else { return true };
                allows_split(list, scheme, host, port)
            }
        }
    }
}

/// A URI with no authority is ours; one with an authority but no scheme is not. The
/// authority is compared as written (a user name in it, or an empty port, makes it no
/// origin of ours), without parsing it again.
fn allows_uri(list: &[Origin], uri: &Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return true;
    };
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) if other.eq_ignore_ascii_case("https") => true,
        Some(other) if other.eq_ignore_ascii_case("http") => false,
        _ => return false,
    };
    let authority = authority.as_str();
    // As written most often first: the bare host, or host and port, in any case.
    list.iter().any(|o| {
        o.https == https
            && ((o.default_port && same_host(authority, &o.host))
                || same_host(authority, &o.host_port))
    })
}

impl fmt::Debug for Origins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_deref() {
            None => f.write_str("Any"),
            Some(list) => f
                .debug_list()
                .entries(list.iter().map(|o| o.to_string()))
                .finish(),
        }
    }
}

impl Origin {
    fn parse(text: &str) -> Result<Origin, ConfigError> {
        let bad = |why: &str| ConfigError::Origin(format!("origin `{}`: {why}", printable(text)));
        let uri: Uri = text
            .trim()
            .parse()
            .map_err(|_| bad("not a URL; write it as https://host[:port]"))?;
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(_) => return Err(bad("the scheme must be http or https")),
            None => return Err(bad("no scheme; write it as https://host[:port]")),
        };
        let Some(authority) = uri.authority() else {
            return Err(bad("no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad("an origin carries no user name or password"));
        }
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad(
                "an origin is a scheme, a host and a port: no path or query",
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(default_port(https));
        Ok(Origin {
            https,
            host_port: format!("{host}:{port}").into(),
            default_port: port == default_port(https),
            host: host.into(),
            port,
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Hosts compare case-insensitively; most are written in lower case already, which one
/// `memcmp` settles.
#[inline]
fn same_host(written: &str, ours: &str) -> bool {
    written.len() == ours.len() && (written == ours || written.eq_ignore_ascii_case(ours))
}

fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

#[cfg(any(feature = "reqwest-middleware", test))]
fn allows_split(list: &[Origin], scheme: &str, host: &str, port: Option<u16>) -> bool {
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return false;
    };
    let port = port.unwrap_or(default_port(https));
    list.iter()
        .any(|o| o.https == https && o.port == port && same_host(host, &o.host))
}

/// `text` for an error message: a user name and password redacted, at most 100
/// characters, control characters as `?`.
fn printable(text: &str) -> String {
    let redacted;
    let text = match text.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => {
                    redacted = format!("{scheme}://[redacted]{}", &rest[at..]);
                    redacted.as_str()
                }
                None => text,
            }
        }
        None => text,
    };
    text.chars()
        .take(100)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(origins: &[&str]) -> Origins {
        Origins::parse(origins).unwrap()
    }

    fn allows(origins: &Origins, uri: &str) -> bool {
        origins.allows(&uri.parse().unwrap())
    }

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        let o = only(&["https://api.veracity.com", "http://127.0.0.1:8080/"]);
        assert!(allows(
            &o,
            "https://api.veracity.com/veracity/dw/gateway/api/v2"
        ));
        assert!(allows(&o, "https://API.Veracity.com:443/x?y=1"));
        assert!(allows(&o, "HTTPS://api.veracity.com/"));
        assert!(allows(&o, "http://127.0.0.1:8080/token"));
        // Another scheme, port or host is another origin.
        assert!(!allows(&o, "http://api.veracity.com/"));
        assert!(!allows(&o, "https://api.veracity.com:8443/"));
        assert!(!allows(&o, "https://api.veracity.com.evil.example/"));
        assert!(!allows(&o, "https://evil.example/api.veracity.com"));
        assert!(!allows(&o, "http://localhost:8080/"));
        assert!(!allows(&o, "http://127.0.0.1:8081/"));
        assert!(!allows(&o, "ftp://api.veracity.com/"));
        // A user name, or an empty port, is no origin of ours.
        assert!(!allows(&o, "https://user@api.veracity.com/"));
        assert!(!allows(&o, "https://api.veracity.com:/"));
    }

    #[test]
    fn a_uri_without_authority_is_ours_one_without_scheme_is_not() {
        let o = only(&["https://api.veracity.com"]);
        assert!(allows(&o, "/greeter.Greeter/SayHello"));
        assert!(allows(&o, "/"));
        assert!(!allows(&o, "api.veracity.com:443"));
    }

    #[test]
    fn ipv6_hosts_compare_with_their_brackets() {
        let o = only(&["http://[::1]:9000"]);
        assert!(allows(&o, "http://[::1]:9000/x"));
        assert!(o.allows_parts("http", Some("[::1]"), Some(9000)));
        assert!(!o.allows_parts("http", Some("[::1]"), None));
    }

    #[test]
    fn split_urls_compare_like_uris() {
        let o = only(&["https://api.veracity.com"]);
        assert!(o.allows_parts("https", Some("api.veracity.com"), None));
        assert!(o.allows_parts("https", Some("api.veracity.com"), Some(443)));
        assert!(!o.allows_parts("http", Some("api.veracity.com"), None));
        assert!(!o.allows_parts("https", Some("localhost"), None));
        assert!(
            o.allows_parts("https", None, None),
            "no host: not a network origin"
        );
    }

    #[test]
    fn no_origins_allows_everything() {
        let any = Origins::default();
        assert!(allows(&any, "https://anywhere.example/"));
        assert!(any.allows_parts("ftp", Some("x"), None));
    }

    #[test]
    fn a_bad_origin_is_a_config_error_naming_it() {
        for (bad, why) in [
            ("api.veracity.com", "no scheme"),
            ("ftp://api.veracity.com", "http or https"),
            ("https://api.veracity.com/veracity", "no path"),
            ("https://api.veracity.com/?x=1", "no path or query"),
            ("https://", "not a URL"),
            ("not a url", "not a URL"),
            ("", "not a URL"),
        ] {
            let parsed = Origins::parse([bad]);
            let Err(ConfigError::Origin(message)) = parsed else {
                panic!("{bad}: {parsed:?}");
            };
            assert!(message.contains(&format!("`{bad}`")), "{message}");
            assert!(message.contains(why), "{bad}: {message}");
        }
        let Err(ConfigError::Origin(message)) = Origins::parse(Vec::<String>::new()) else {
            panic!("an empty list is refused");
        };
        assert!(message.contains("empty"), "{message}");
    }

    #[test]
    fn a_password_in_a_refused_origin_is_not_repeated() {
        let parsed = Origins::parse(["https://user:s3cret-pw@api.veracity.com/"]);
        let message = parsed.as_ref().unwrap_err().to_string();
        assert!(!message.contains("s3cret-pw"), "{message}");
        assert!(!message.contains("user:"), "{message}");
        assert!(
            message.contains("`https://[redacted]@api.veracity.com/`"),
            "{message}"
        );
        assert!(!format!("{parsed:?}").contains("s3cret-pw"));
    }
}
