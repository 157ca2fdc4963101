//! A client connection on a TLS listener: the handshake, within
//! `server.tls.handshake_timeout` and under the shard's limit of handshakes in
//! flight (`server.tls.max_handshakes`), then the same HTTP/1.1 loop as plain TCP.
//!
//! A client that opens TCP and sends nothing, or half a ClientHello, is closed at
//! the deadline; one that arrives while the shard already runs `max_handshakes`
//! handshakes is closed at once (counted as `overload`), so a flood of slow
//! handshakes cannot take a shard's memory or CPU.
//!
//! On an mTLS listener the verified client certificate's subject is forwarded as
//! `x-forwarded-client-cert: Subject="CN=…"` (Envoy's XFCC), and kept on the
//! connection for routing and auth.

use crate::config::tls::TlsServerSettings;
use crate::io::{Conn, TlsStream};
use crate::observe::metrics::TlsListenerStats;
use crate::shard::Shard;
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

/// Decrements the shard's handshakes-in-flight count however the handshake ends.
struct InFlight<'a>(&'a Shard);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.handshakes.set(self.0.handshakes.get() - 1);
    }
}

/// Handshakes with a client on a TLS listener, then serves it.
pub async fn serve_tls(
    shard: Rc<Shard>,
    tcp: TcpStream,
    peer: SocketAddr,
    settings: Arc<TlsServerSettings>,
    stats: Arc<TlsListenerStats>,
) {
    if shard.handshakes.get() >= settings.max_handshakes {
        stats.failed("overload");
        return;
    }
    let send_timeout = shard.view().snap.config.limits.send_timeout;
    let stream = {
        shard.handshakes.set(shard.handshakes.get() + 1);
        let _guard = InFlight(&shard);
        let Ok(mut s) = TlsStream::server(tcp, settings.rustls.clone(), send_timeout) else {
            stats.failed("protocol");
            return;
        };
        if let Err(e) = s.handshake(settings.handshake_timeout).await {
            stats.failed(e.reason());
            return;
        }
        s
    };
    stats.handshakes.inc();
    let session = stream.session();
    if session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        stats.resumed.inc();
    }
    match session.alpn_protocol() {
        Some(b"http/1.1") => stats.alpn_http11.inc(),
        _ => stats.alpn_none.inc(),
    }
    let client_cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| forwarded_client_cert(leaf));
    super::serve_with(shard, Conn::Tls(Box::new(stream)), peer, client_cert).await;
}

/// The `x-forwarded-client-cert` value (Envoy's XFCC) for a verified client
/// certificate: `Subject="…"`, the subject as RFC 4514 text, with `"` and `\`
/// escaped. Only rustls' verifier let the certificate through, so it parses.
fn forwarded_client_cert(leaf: &[u8]) -> Option<Box<[u8]>> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let subject = cert.subject().to_string();
    let mut v = String::with_capacity(subject.len() + 10);
    v.push_str("Subject=\"");
    for ch in subject.chars() {
        match ch {
            '"' | '\\' => {
                v.push('\\');
                v.push(ch);
            }
            // A field value carries no control bytes.
            c if c.is_control() => v.push(' '),
            c => v.push(c),
        }
    }
    v.push('"');
    Some(v.into_bytes().into_boxed_slice())
}
