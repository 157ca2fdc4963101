//! Addresses and networks: `trusted_proxies`' CIDRs, and IPv4-mapped IPv6
//! addresses compared as the IPv4 addresses they are.

use std::net::IpAddr;

/// A network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let written: IpAddr = addr
        .parse()
        .map_err(|_| format!("'{s}' is not an address or CIDR (as in \"10.0.0.0/8\")"))?;
    let max = if written.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= max)
            .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
    };
    // An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps,
    // as peers are compared by their IPv4 address.
    match (written, canonical(written)) {
        (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if prefix >= 96 => Ok(Cidr {
            addr: v4,
            prefix: prefix - 96,
        }),
        _ => Ok(Cidr {
            addr: written,
            prefix,
        }),
    }
}
