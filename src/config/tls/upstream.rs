//! The TLS of HTTPS upstreams: SNI, verification (the public roots or a CA bundle,
//! or none when a config says so), client certificates, and the identity that
//! pools their connections.

use super::{load_cert, provider, relative, roots_from_file, FileSet};
use crate::config::file::UpstreamTlsFile;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

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
pub(in crate::config) struct ClientConfigs(HashMap<String, Arc<rustls::ClientConfig>>);

/// The TLS of an `https://` upstream whose host is `host`, with the table's
/// settings if it has one.
pub(in crate::config) fn upstream_tls(
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
    // What the rustls configuration depends on — everything but the name, so
    // upstreams that differ only in SNI share one — each file with its contents.
    let mut settings = String::new();
    let roots = match &s.ca {
        Some(ca) => {
            let path = relative(base, ca);
            let roots = roots_from_file(files, &path)?;
            settings += &format!(";ca={}#{:016x}", path.display(), files.hash_of(&path));
            Arc::new(roots)
        }
        None => public_roots(),
    };
    if !verify {
        settings += ";insecure";
    }
    let client_cert = match (&s.client_cert, &s.client_key) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let (cert, der) = load_cert(files, relative(base, c), relative(base, k))?;
            settings += &format!(
                ";cert={}#{:016x}#{:016x}",
                cert.cert_path.display(),
                files.hash_of(&cert.cert_path),
                files.hash_of(&cert.key_path)
            );
            Some((cert.key.cert.clone(), der))
        }
        _ => return Err("client_cert and client_key go together".into()),
    };
    let id: Arc<str> = format!("sni={host_for_sni}{settings}").into();
    if let Some(cfg) = configs.0.get(&settings) {
        return Ok(UpstreamTls {
            sni,
            id,
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
    configs.0.insert(settings, cfg.clone());
    Ok(UpstreamTls {
        sni,
        id,
        verify,
        config: cfg,
    })
}

/// Validates the TLS keys of an endpoint table that has no `https://` URL.
pub(in crate::config) fn tls_keys_without_https(s: &UpstreamTlsFile) -> Option<&'static str> {
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
