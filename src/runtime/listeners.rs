//! Listening sockets: `shards` SO_REUSEPORT listeners per address, bound before the
//! shards start so that port 0 resolves once and every shard listens on the same
//! port.

use std::net::{SocketAddr, TcpListener};

/// The listeners of one configured address.
#[derive(Debug)]
pub struct Bound {
    /// As written in the config (`127.0.0.1:0`).
    pub configured: SocketAddr,
    /// As bound (port 0 resolved).
    pub actual: SocketAddr,
    /// One per shard, in shard order.
    pub sockets: Vec<TcpListener>,
}

/// Binds `n` SO_REUSEPORT listeners on every address of `addrs`, in order. The
/// error names the address that could not be bound.
pub fn bind_all(addrs: &[SocketAddr], n: usize) -> Result<Vec<Bound>, String> {
    addrs
        .iter()
        .map(|a| bind_addr(*a, n).map_err(|e| format!("cannot listen on {a}: {e}")))
        .collect()
}

/// Binds `n` SO_REUSEPORT listeners on `addr`. Port 0 is resolved by the first bind
/// so that every shard listens on the same port.
pub fn bind_addr(addr: SocketAddr, n: usize) -> std::io::Result<Bound> {
    use socket2::{Domain, Socket, Type};
    let mut actual = addr;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(actual), Type::STREAM, None)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        s.bind(&actual.into())?;
        s.listen(4096)?;
        let l: TcpListener = s.into();
        actual = l.local_addr()?;
        sockets.push(l);
    }
    Ok(Bound {
        configured: addr,
        actual,
        sockets,
    })
}
