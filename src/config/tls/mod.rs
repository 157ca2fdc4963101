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
//! - this file: the provider, the files a config refers to ([`FileSet`]), PEM
//!   loading shared by both sides;
//! - `server.rs`: [`TlsServerSettings`] — listeners, the SNI resolver, resumption;
//! - `upstream.rs`: [`UpstreamTls`] — HTTPS backends, their verification and
//!   client certificates.

mod server;
mod upstream;

pub(in crate::config) use server::server_tls;
pub use server::{ClientAuth, TlsServerSettings};
pub use upstream::UpstreamTls;
pub(in crate::config) use upstream::{tls_keys_without_https, upstream_tls, ClientConfigs};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The crypto provider every TLS configuration of ringway uses.
pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
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

/// A file's path relative to the config file's directory.
pub(in crate::config) fn relative(base: &Path, p: &str) -> PathBuf {
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
    pub(in crate::config) fn read(&mut self, path: &Path) -> Result<Vec<u8>, String> {
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

    /// The contents' hash of `path` as last read (0 if it was not).
    pub fn hash_of(&self, path: &Path) -> u64 {
        self.0.iter().rev().find(|(p, _)| p == path).map_or(0, |f| f.1)
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
pub(super) fn names_and_expiry(der: &CertificateDer<'_>, path: &Path) -> Result<(Vec<String>, i64), String> {
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
pub(super) fn load_cert(
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

pub(super) fn roots_from_file(files: &mut FileSet, path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(&files.read(path)?, path)? {
        roots
            .add(c)
            .map_err(|e| format!("'{}': a CA certificate is not usable: {e}", path.display()))?;
    }
    Ok(roots)
}
