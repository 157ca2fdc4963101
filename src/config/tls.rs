//! TLS settings: `[server.tls]` (listeners, certificates by SNI, mTLS) and the TLS of
//! HTTPS endpoints, loaded from their PEM files into rustls configurations.
//!
//! Everything a handshake needs is built here, when the config is loaded, so that a
//! broken certificate, a key that does not match it or an unreadable CA bundle is a
//! config error naming the file (and the running version keeps serving). The
//! crypto provider is rustls' `ring` one, chosen explicitly: it builds with a C
//! compiler only (aws-lc-rs needs cmake and much longer builds) and covers the
//! suites and key types an edge needs (ECDSA P-256/P-384, RSA, Ed25519).
//!
//! Resumption is process-wide: one ticketer (rotated every 6 hours by rustls' ring
//! ticketer, the previous key still accepted) and one TLS 1.2 session-id cache are
//! made once and shared by every shard and every config version, so a client that
//! reconnects lands on any shard (SO_REUSEPORT) and still resumes, across reloads.
//! There is one such pair per client-certificate policy (off, or required/optional
//! with a given CA bundle): a resumed session skips the certificate request, so a
//! session made without a client certificate, or verified by a CA since removed,
//! must not resume where one is now required.

use super::error::Diagnostics;
use super::file::{TlsFile, UpstreamTlsFile};
use super::sections::{duration, parse_listen_list};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use toml::Spanned;

/// The crypto provider every TLS configuration of ringway uses.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

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

/// One server certificate.
#[derive(Clone)]
pub struct ServerCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// DNS names of its subjectAltName (`*.example.com` included as written).
    pub names: Vec<String>,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
    pub key: Arc<CertifiedKey>,
    /// Where the certificate is named in the config file (for `check`'s warnings).
    pub line: usize,
    pub column: usize,
}

impl fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_path", &self.cert_path)
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
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

/// A file's path relative to the config file's directory.
pub(super) fn relative(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Files the config refers to, with a hash of their contents: a certificate renewed
/// on disk changes the config's hash, and a reload picks it up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSet(pub Vec<(PathBuf, u64)>);

impl FileSet {
    fn read(&mut self, path: &Path) -> Result<Vec<u8>, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
        self.0.push((path.to_path_buf(), super::fnv1a(&bytes)));
        Ok(bytes)
    }

    /// Whether every file still has the contents it had (an unreadable one has not).
    pub fn unchanged(&self) -> bool {
        self.0
            .iter()
            .all(|(p, h)| std::fs::read(p).is_ok_and(|b| super::fnv1a(&b) == *h))
    }

    /// One hash over every file's.
    pub fn hash(&self) -> u64 {
        self.0.iter().fold(0, |acc, (_, h)| {
            acc.rotate_left(7) ^ h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        })
    }

    /// The directories the files are in (to watch for renewals).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .0
            .iter()
            .filter_map(|(p, _)| p.parent().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }
}

fn certs_from_pem(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(bytes).collect();
    let certs = certs.map_err(|e| format!("'{}': not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("'{}': no CERTIFICATE block in the file", path.display()));
    }
    Ok(certs)
}

fn key_from_pem(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| {
        format!(
            "'{}': no private key (PKCS#8, PKCS#1 RSA or SEC1 EC PEM block): {e}",
            path.display()
        )
    })
}

/// DNS names and notAfter of an end-entity certificate.
fn names_and_expiry(der: &CertificateDer<'_>, path: &Path) -> Result<(Vec<String>, i64), String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("'{}': the first certificate does not parse: {e}", path.display()))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_ascii_lowercase()),
                GeneralName::IPAddress(ip) if ip.len() == 4 => {
                    names.push(std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string())
                }
                _ => {}
            }
        }
    }
    Ok((names, cert.validity().not_after.timestamp()))
}

/// Loads one certificate chain and its key; the key must match the certificate.
/// Also returns the key as read (a client certificate is configured with it).
fn load_cert(
    files: &mut FileSet,
    cert_path: PathBuf,
    key_path: PathBuf,
) -> Result<(ServerCert, PrivateKeyDer<'static>), String> {
    let chain = certs_from_pem(&files.read(&cert_path)?, &cert_path)?;
    let der = key_from_pem(&files.read(&key_path)?, &key_path)?;
    let (names, not_after) = names_and_expiry(&chain[0], &cert_path)?;
    let key = CertifiedKey::from_der(chain, der.clone_key(), &provider()).map_err(|e| {
        format!(
            "'{}' and '{}' do not make a certificate: {e} (is the key the certificate's?)",
            cert_path.display(),
            key_path.display()
        )
    })?;
    let cert = ServerCert {
        cert_path,
        key_path,
        names,
        not_after,
        key: Arc::new(key),
        line: 0,
        column: 0,
    };
    Ok((cert, der))
}

fn roots_from_file(files: &mut FileSet, path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(&files.read(path)?, path)? {
        roots
            .add(c)
            .map_err(|e| format!("'{}': a CA certificate is not usable: {e}", path.display()))?;
    }
    Ok(roots)
}

/// `[server.tls]` → [`TlsServerSettings`]; problems go to `d`.
pub(super) fn server_tls(
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
    // The CA bundle's contents were hashed when it was read (the last file read for
    // it); a bundle edited in place is a new policy.
    let policy = match &client_auth {
        ClientAuth::Off => String::new(),
        ClientAuth::Optional(p) | ClientAuth::Required(p) => {
            let hash = files.0.iter().rev().find(|(f, _)| f == p).map_or(0, |f| f.1);
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

/// The TLS of one HTTPS upstream: what it is verified as, and the rustls
/// configuration its connections use. Two upstreams with equal [`UpstreamTls::id`]
/// are interchangeable; connections are pooled by it.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The server name sent (SNI) and verified.
    pub sni: ServerName<'static>,
    /// Everything that makes two connections interchangeable: SNI, CA file (and its
    /// contents' hash), verification on/off, client certificate.
    pub id: Arc<str>,
    pub verify: bool,
    pub config: Arc<rustls::ClientConfig>,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for UpstreamTls {}

impl std::hash::Hash for UpstreamTls {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.id.hash(h);
    }
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpstreamTls({})", self.id)
    }
}

/// Accepts any certificate (`insecure_skip_verify`), still checking that the
/// handshake is signed by the key the certificate carries.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The public CAs HTTPS upstreams are verified against by default: Mozilla's set as
/// compiled into webpki-roots (the same on every machine, whatever the OS has).
fn public_roots() -> Arc<rustls::RootCertStore> {
    static R: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        Arc::new(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    })
    .clone()
}

/// Client configurations by id, so that upstreams with the same settings share one
/// (and its resumption store) within a config.
#[derive(Default)]
pub(super) struct ClientConfigs(HashMap<String, Arc<rustls::ClientConfig>>);

/// The TLS of an `https://` upstream whose host is `host`, with the table's
/// settings if it has one.
pub(super) fn upstream_tls(
    host: &str,
    settings: Option<&UpstreamTlsFile>,
    base: &Path,
    files: &mut FileSet,
    configs: &mut ClientConfigs,
) -> Result<UpstreamTls, String> {
    let empty = UpstreamTlsFile::default();
    let s = settings.unwrap_or(&empty);
    let sni_text = s.sni.as_deref().unwrap_or(host);
    let host_for_sni = sni_text.trim_start_matches('[').trim_end_matches(']');
    let sni = ServerName::try_from(host_for_sni.to_string())
        .map_err(|_| format!("'{sni_text}' is not a DNS name or IP address to send as SNI"))?;
    let verify = !s.insecure_skip_verify.unwrap_or(false);
    let mut id = format!("sni={host_for_sni}");
    let roots = match &s.ca {
        Some(ca) => {
            let path = relative(base, ca);
            let roots = roots_from_file(files, &path)?;
            id += &format!(
                ";ca={}#{:016x}",
                path.display(),
                files.0.last().map_or(0, |f| f.1)
            );
            Arc::new(roots)
        }
        None => public_roots(),
    };
    if !verify {
        id += ";insecure";
    }
    let client_cert = match (&s.client_cert, &s.client_key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let (cert, der) = load_cert(files, relative(base, c), relative(base, k))?;
            id += &format!(";cert={}#{:016x}", cert.cert_path.display(), files.hash());
            Some((cert.key.cert.clone(), der))
        }
        _ => return Err("client_cert and client_key go together".into()),
    };
    // The rustls configuration does not depend on the name: share it.
    let settings_id = id[id.find(';').unwrap_or(id.len())..].to_string();
    if let Some(cfg) = configs.0.get(&settings_id) {
        return Ok(UpstreamTls {
            sni,
            id: id.into(),
            verify,
            config: cfg.clone(),
        });
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let b = if verify {
        b.with_root_certificates(roots)
    } else {
        b.dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    let mut cfg = match client_cert {
        None => b.with_no_client_auth(),
        Some((chain, der)) => b
            .with_client_auth_cert(chain, der)
            .map_err(|e| format!("client certificate: {e}"))?,
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    configs.0.insert(settings_id, cfg.clone());
    Ok(UpstreamTls {
        sni,
        id: id.into(),
        verify,
        config: cfg,
    })
}

/// Validates the TLS keys of an endpoint table that has no `https://` URL.
pub(super) fn tls_keys_without_https(s: &UpstreamTlsFile) -> Option<&'static str> {
    if s.sni.is_some() {
        Some("sni")
    } else if s.ca.is_some() {
        Some("ca")
    } else if s.insecure_skip_verify.is_some() {
        Some("insecure_skip_verify")
    } else if s.client_cert.is_some() || s.client_key.is_some() {
        Some("client_cert")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
