//! The root certificates the default token client trusts: the webpki roots (Mozilla's, built
//! in), and with feature `native-roots` the operating system's as well, or instead.

use rustls::RootCertStore;

/// Which root certificates the default client trusts (see
/// [`HttpClientBuilder::roots`](crate::HttpClientBuilder::roots)).
///
/// The default is [`Roots::WebpkiAndNative`] when feature `native-roots` is on, else
/// [`Roots::Webpki`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Roots {
    /// The webpki roots (Mozilla's root program, compiled in): the same on every machine.
    #[cfg_attr(not(feature = "native-roots"), default)]
    Webpki,
    /// The operating system's roots only (rustls-native-certs: the platform store, or the
    /// files `SSL_CERT_FILE` / `SSL_CERT_DIR` name).
    #[cfg(feature = "native-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "native-roots")))]
    Native,
    /// Both: what a machine behind a TLS-inspecting proxy whose CA is installed in the system
    /// store needs, while still working anywhere else.
    #[cfg(feature = "native-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "native-roots")))]
    #[default]
    WebpkiAndNative,
}

impl Roots {
    /// The certificates, loaded now. Platform certificates that cannot be read or parsed are
    /// skipped with a `tracing` warning; with `Native` and none found, TLS fails at connect
    /// time with an unknown-issuer error.
    pub(crate) fn load(self) -> RootCertStore {
        let mut store = RootCertStore::empty();
        if self.with_webpki() {
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        #[cfg(feature = "native-roots")]
        if !matches!(self, Roots::Webpki) {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "a platform root certificate could not be loaded");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "platform root certificates");
            if added == 0 {
                tracing::warn!("no platform root certificates were found");
            }
        }
        store
    }

    fn with_webpki(self) -> bool {
        match self {
            Roots::Webpki => true,
            #[cfg(feature = "native-roots")]
            Roots::Native => false,
            #[cfg(feature = "native-roots")]
            Roots::WebpkiAndNative => true,
        }
    }
}
