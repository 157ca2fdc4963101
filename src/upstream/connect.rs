//! Opening an upstream connection within its deadline: TCP, then for an HTTPS
//! upstream the TLS handshake, both within the one connect timeout.

use crate::config::tls::UpstreamTls;
use crate::io::{Conn, HandshakeError, TlsStream};
use monoio::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why a connection could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectError {
    /// The upstream answered the SYN with a reset.
    Refused,
    /// Any other failure (unreachable, no socket, …).
    Failed,
    /// No answer within the connect timeout (TCP or TLS handshake).
    TimedOut,
    /// The upstream's certificate did not verify.
    Verify(VerifyFailure),
    /// The TLS handshake failed otherwise (no common version or cipher, an alert,
    /// the upstream closed).
    Handshake,
}

/// Why an upstream certificate was refused, in words for the 502's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyFailure {
    WrongName,
    UnknownIssuer,
    Expired,
    Other,
}

impl VerifyFailure {
    fn of(e: &rustls::CertificateError) -> VerifyFailure {
        use rustls::CertificateError as C;
        match e {
            C::NotValidForName | C::NotValidForNameContext { .. } => VerifyFailure::WrongName,
            C::UnknownIssuer => VerifyFailure::UnknownIssuer,
            C::Expired | C::ExpiredContext { .. } => VerifyFailure::Expired,
            _ => VerifyFailure::Other,
        }
    }

    /// What the client is told.
    pub fn problem(self) -> &'static str {
        match self {
            VerifyFailure::WrongName => "upstream TLS certificate is not valid for the upstream's name (SNI)",
            VerifyFailure::UnknownIssuer => "upstream TLS certificate is not signed by a trusted CA",
            VerifyFailure::Expired => "upstream TLS certificate has expired",
            VerifyFailure::Other => "upstream TLS certificate failed verification",
        }
    }
}

/// Connects to `addr` within `timeout`, with TLS when `tls` is given (the handshake
/// shares the timeout). Writes on the connection fail when they make no progress
/// for `send_timeout`.
pub async fn connect_to(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
    send_timeout: Duration,
) -> Result<Conn, ConnectError> {
    let start = Instant::now();
    let (stream, control) = connect_tcp(addr, timeout).await?;
    let Some(tls) = tls else {
        return Ok(Conn::upstream(stream, control, send_timeout));
    };
    let mut t = TlsStream::client(stream, control, tls.config.clone(), tls.sni.clone(), send_timeout)
        .map_err(|_| ConnectError::Handshake)?;
    let left = timeout.saturating_sub(start.elapsed());
    match t.handshake(left).await {
        Ok(()) => Ok(Conn::Tls(Box::new(t))),
        Err(HandshakeError::TimedOut) => Err(ConnectError::TimedOut),
        Err(HandshakeError::Tls(rustls::Error::InvalidCertificate(e))) => {
            Err(ConnectError::Verify(VerifyFailure::of(&e)))
        }
        Err(_) => Err(ConnectError::Handshake),
    }
}

/// A TCP connection to `addr` within `timeout`, with a second descriptor of its
/// socket (see [`Conn::upstream`]).
///
/// The connect is started on a non-blocking socket and its completion awaited as a
/// poll for writability. On timeout the half-open connection is aborted, which
/// completes the poll: a dropped, still-pending operation would otherwise keep the
/// socket open (for minutes, against a blackholed upstream).
async fn connect_tcp(
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(TcpStream, socket2::Socket), ConnectError> {
    use socket2::{Domain, Socket, Type};
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ConnectError::Refused,
        _ => ConnectError::Failed,
    };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(failed)?;
    sock.set_nonblocking(true).map_err(failed)?;
    let _ = sock.set_nodelay(true);
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) /* EINPROGRESS */ => {}
        Err(e) => return Err(failed(e)),
    }
    // A second handle on the socket to read SO_ERROR once it is writable.
    let probe = sock.try_clone().map_err(failed)?;
    let conn = TcpStream::from_std(sock.into()).map_err(failed)?;
    // Dropping the poll on timeout is safe here only because the abort below
    // completes it at once (see the lint's reason in clippy.toml).
    #[allow(clippy::disallowed_methods)]
    let polled = monoio::time::timeout(timeout, conn.writable(false)).await;
    match polled {
        Err(_) => {
            // Abort the half-open connection (shutdown on a SYN_SENT socket
            // disconnects it): the poll still in flight completes at once and lets
            // go of the socket, instead of holding it until the kernel gives up.
            let _ = probe.shutdown(std::net::Shutdown::Both);
            return Err(ConnectError::TimedOut);
        }
        Ok(Err(e)) => return Err(failed(e)),
        Ok(Ok(())) => {}
    }
    match probe.take_error() {
        Ok(None) => Ok((conn, probe)),
        Ok(Some(e)) | Err(e) => Err(failed(e)),
    }
}
