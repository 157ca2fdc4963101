//! `[server.tls]`: TLS listeners — certificates chosen by SNI, client certificates,
//! and the resumption state shared by every shard.
//!
//! Resumption is process-wide: one ticketer (rotated every 6 hours by rustls' ring
//! ticketer, the previous key still accepted) and one TLS 1.2 session-id cache are
//! made once and shared by every shard and every config version, so a client that
//! reconnects lands on any shard (SO_REUSEPORT) and still resumes, across reloads.
//! There is one such pair per client-certificate policy (off, or required/optional
//! with a given CA bundle): a resumed session skips the certificate request, so a
//! session made without a client certificate, or verified by a CA since removed,
//! must not resume where one is now required.

use super::{load_cert, provider, relative, roots_from_file, FileSet, ServerCert};
use crate::config::error::Diagnostics;
use crate::config::file::TlsFile;
use crate::config::sections::{duration, parse_listen_list};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use toml::Spanned;

/// The process-wide resumption state (see the module docs).
struct Resumption {
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
    cache: Arc<dyn rustls::server::StoresServerSessions>,
}

/// The resumption state of client-certificate policy `policy` (see the module docs).
/// Called when a config is loaded, never on the request path: the lock is the
/// control thread's.
#[allow(clippy::disallowed_types)]
fn resumption(policy: &str) -> Arc<Resumption> {
    static R: OnceLock<std::sync::Mutex<HashMap<String, Arc<Resumption>>>> = OnceLock::new();
    let mut all = R
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    all.entry(policy.to_string())
        .or_insert_with(|| {
            Arc::new(Resumption {
                ticketer: rustls::crypto::ring::Ticketer::new().ok(),
                cache: rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE),
            })
        })
        .clone()
}

/// Entries of the shared TLS 1.2 session-id cache.
const SESSION_CACHE: usize = 20_480;

/// `[server.tls]`, loaded.
#[derive(Clone)]
pub struct TlsServerSettings {
    /// TLS listen addresses (beside `[server] listen`, which stays plain).
    pub listen: Vec<SocketAddr>,
    /// In declaration order; the first is the default.
    pub certificates: Vec<ServerCert>,
    /// A client that has not finished its handshake by then is closed.
    pub handshake_timeout: Duration,
    /// Handshakes in flight per shard; a connection beyond it is closed at once.
    pub max_handshakes: usize,
    /// Whether a client certificate is asked for (and required).
    pub client_auth: ClientAuth,
    /// The rustls configuration handshakes use.
    pub rustls: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TlsServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerSettings")
            .field("listen", &self.listen)
            .field("certificates", &self.certificates)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// Client certificates on a TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    Off,
    /// Asked for; a client without one is served, one with a bad one is refused.
    Optional(PathBuf),
    /// Required and verified against the CA bundle.
    Required(PathBuf),
}

/// Chooses a certificate by SNI: an exact name, else a `*.` wildcard one label up,
/// else the default (the first certificate).
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn new(certs: &[ServerCert]) -> SniResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for c in certs {
            for n in &c.names {
                let n = n.to_ascii_lowercase();
                // The first certificate naming a name keeps it.
                match n.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()),
                    None => exact.entry(n),
                }
                .or_insert_with(|| c.key.clone());
            }
        }
        SniResolver {
            exact,
            wildcard,
            default: certs[0].key.clone(),
        }
    }

    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return self.default.clone();
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        // `*.example.com` covers exactly one label: `a.example.com`, not `a.b.example.com`.
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// `[server.tls]` → [`TlsServerSettings`]; problems go to `d`.
pub(in crate::config) fn server_tls(
    t: &Spanned<TlsFile>,
    base: &Path,
    files: &mut FileSet,
    d: &mut Diagnostics<'_>,
) -> Option<TlsServerSettings> {
    let span = t.span();
    let t = t.get_ref();
    let errors = d.len();
    let listen = parse_listen_list(&t.listen, d, "server.tls.listen");
    let mut certificates = Vec::new();
    if t.certificates.get_ref().is_empty() {
        d.at(
            t.certificates.span(),
            "server.tls.certificates: at least one { cert = …, key = … } is needed",
            None,
            None,
        );
    }
    for c in t.certificates.get_ref() {
        let c = c.get_ref();
        match load_cert(
            files,
            relative(base, c.cert.get_ref()),
            relative(base, c.key.get_ref()),
        ) {
            Ok((mut cert, _)) => {
                (cert.line, cert.column) = d.line_col(c.cert.span().start);
                certificates.push(cert)
            }
            Err(m) => d.at(c.cert.span(), format!("server.tls.certificates: {m}"), None, None),
        }
    }
    let versions: &[&rustls::SupportedProtocolVersion] =
        match t.min_version.as_ref().map(|v| (v.get_ref().as_str(), v)) {
            None | Some(("1.2", _)) => &[&rustls::version::TLS13, &rustls::version::TLS12],
            Some(("1.3", _)) => &[&rustls::version::TLS13],
            Some((other, v)) => {
                d.at(
                    v.span(),
                    format!("server.tls.min_version: '{other}' is not \"1.2\" or \"1.3\""),
                    None,
                    None,
                );
                &[&rustls::version::TLS13]
            }
        };
    let alpn: Vec<Vec<u8>> = match &t.alpn {
        None => vec![b"http/1.1".to_vec()],
        Some(list) => list
            .iter()
            .filter_map(|p| match p.get_ref().as_str() {
                "http/1.1" => Some(b"http/1.1".to_vec()),
                other => {
                    d.at(
                        p.span(),
                        format!("server.tls.alpn: '{other}' is not served (ringway speaks \"http/1.1\"; h2 comes with HTTP/2)"),
                        None,
                        None,
                    );
                    None
                }
            })
            .collect(),
    };
    let handshake_timeout = duration(
        d,
        &t.handshake_timeout,
        "server.tls.handshake_timeout",
        Duration::from_secs(10),
        false,
    );
    let max_handshakes = match &t.max_handshakes {
        None => 1024,
        Some(v) if *v.get_ref() == 0 => {
            d.at(
                v.span(),
                "server.tls.max_handshakes must be at least 1",
                None,
                None,
            );
            1
        }
        Some(v) => *v.get_ref(),
    };
    let client_auth = match (&t.client_ca, &t.client_auth) {
        (None, None) => ClientAuth::Off,
        (None, Some(a)) => {
            d.at(
                a.span(),
                "server.tls.client_auth needs client_ca (the CA bundle to verify against)",
                None,
                None,
            );
            ClientAuth::Off
        }
        (Some(ca), mode) => {
            let path = relative(base, ca.get_ref());
            match mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("required") => ClientAuth::Required(path),
                Some("optional") => ClientAuth::Optional(path),
                Some(other) => {
                    d.at(
                        mode.as_ref().map_or(ca.span(), |m| m.span()),
                        format!("server.tls.client_auth: '{other}' is not \"required\" or \"optional\""),
                        None,
                        None,
                    );
                    ClientAuth::Off
                }
            }
        }
    };
    let verifier = match &client_auth {
        ClientAuth::Off => None,
        ClientAuth::Optional(p) | ClientAuth::Required(p) => {
            let built = roots_from_file(files, p).and_then(|roots| {
                let b =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let b = if matches!(client_auth, ClientAuth::Optional(_)) {
                    b.allow_unauthenticated()
                } else {
                    b
                };
                b.build().map_err(|e| format!("'{}': {e}", p.display()))
            });
            match built {
                Ok(v) => Some(v),
                Err(m) => {
                    let at = t.client_ca.as_ref().map_or(span.clone(), |c| c.span());
                    d.at(at, format!("server.tls.client_ca: {m}"), None, None);
                    None
                }
            }
        }
    };
    if d.len() > errors || certificates.is_empty() {
        return None;
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| d.at(span.clone(), format!("server.tls: {e}"), None, None))
        .ok()?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(SniResolver::new(&certificates)));
    cfg.alpn_protocols = alpn;
    // A CA bundle edited in place is a new policy.
    let policy = match &client_auth {
        ClientAuth::Off => String::new(),
        ClientAuth::Optional(p) | ClientAuth::Required(p) => {
            let hash = files.hash_of(p);
            let mode = if matches!(client_auth, ClientAuth::Optional(_)) {
                "optional"
            } else {
                "required"
            };
            format!("{mode}:{}#{hash:016x}", p.display())
        }
    };
    let shared = resumption(&policy);
    if t.tickets.unwrap_or(true) {
        if let Some(ticketer) = &shared.ticketer {
            cfg.ticketer = ticketer.clone();
        }
    }
    cfg.session_storage = match t.session_cache {
        Some(0) => Arc::new(rustls::server::NoServerSessionStorage {}),
        _ => shared.cache.clone(),
    };
    Some(TlsServerSettings {
        listen,
        certificates,
        handshake_timeout,
        max_handshakes,
        client_auth,
        rustls: Arc::new(cfg),
    })
}

#[cfg(test)]
mod tests {
    use super::super::names_and_expiry;
    use super::*;
    use rustls_pki_types::PrivateKeyDer;

    fn cert(names: &[&str]) -> ServerCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let c = params.self_signed(&key).unwrap();
        let der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let ck = CertifiedKey::from_der(vec![c.der().clone()], der, &provider()).unwrap();
        let (names, not_after) = names_and_expiry(c.der(), Path::new("x")).unwrap();
        ServerCert {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            names,
            not_after,
            key: Arc::new(ck),
            line: 0,
            column: 0,
        }
    }

    #[test]
    fn sni_picks_exact_then_one_label_wildcard_then_default() {
        let certs = [
            cert(&["default.test"]),
            cert(&["*.example.com"]),
            cert(&["api.example.com", "API2.example.com"]),
        ];
        let r = SniResolver::new(&certs);
        let is = |sni: Option<&str>, i: usize| Arc::ptr_eq(&r.pick(sni), &certs[i].key);
        assert!(is(None, 0));
        assert!(is(Some("api.example.com"), 2));
        assert!(is(Some("API.example.com."), 2));
        assert!(is(Some("api2.example.com"), 2));
        assert!(is(Some("x.example.com"), 1));
        assert!(is(Some("a.b.example.com"), 0), "a wildcard covers one label");
        assert!(is(Some("example.com"), 0));
        assert!(is(Some("other.test"), 0));
    }
}
