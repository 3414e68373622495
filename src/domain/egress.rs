//! Which network addresses the broker may connect to on behalf of a tenant (a
//! webhook endpoint, a JWKS source, a tenant's storage): public addresses, and
//! the ones the operator lists in `EGRESS_ALLOW`. Pure rules, no I/O: the
//! resolving and connecting are done by the outbound module, outside the domain.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The operator's exceptions (`EGRESS_ALLOW`): networks the broker may reach
/// although they are not public.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressAllow {
    nets: Vec<IpNet>,
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the address is not allowed: it is {0} (the broker connects only to public addresses and those in EGRESS_ALLOW)")]
pub struct NotAllowed(pub &'static str);

impl EgressAllow {
    /// A comma-separated list of CIDRs (`127.0.0.0/8,::1/128`); a bare address
    /// is a network of one. Empty: nothing but public addresses.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("{item:?} is not a CIDR such as 10.0.0.0/8")),
                },
            };
            nets.push(net);
        }
        Ok(Self { nets })
    }

    /// Whether `ip` is inside one of the listed networks (an IPv4-mapped IPv6
    /// address also as its IPv4 self).
    pub fn lists(&self, ip: IpAddr) -> bool {
        let v4 = embedded_v4(ip);
        self.nets
            .iter()
            .any(|n| n.contains(&ip) || v4.is_some_and(|v4| n.contains(&IpAddr::V4(v4))))
    }

    /// `Ok` when the broker may connect to `ip`: a public address, or one the
    /// operator listed.
    pub fn check(&self, ip: IpAddr) -> Result<(), NotAllowed> {
        match non_public(ip) {
            Some(what) if !self.lists(ip) => Err(NotAllowed(what)),
            _ => Ok(()),
        }
    }
}

/// The IPv4 address an IPv6 one stands for: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, _, _] if !(s[6] == 0 && s[7] <= 1) => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return non_public_v4(v4);
    }
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _) => "unspecified (0.0.0.0/8)",
        (127, _) => "loopback",
        (10, _) | (192, 168) => "private",
        (172, 16..=31) => "private",
        (169, 254) => "link-local",
        (100, 64..=127) => "shared (100.64.0.0/10)",
        (192, 0) if c == 0 => "reserved for protocols (192.0.0.0/24)",
        (198, 18 | 19) => "reserved for benchmarks (198.18.0.0/15)",
        (224..=239, _) => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        (240..=255, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xfc00..=0xfdff => "private (unique local)",
        0xff00..=0xffff => "multicast",
        // Local-use NAT64 (64:ff9b:1::/48) and discard-only (100::/64).
        0x64 if s[1] == 0xff9b && s[2] == 1 => "local NAT64",
        0x100 if s[1..4] == [0, 0, 0] => "discard-only",
        // Teredo tunnels hide the address they lead to.
        0x2001 if s[1] == 0 => "a Teredo tunnel",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_spelling_of_a_non_public_address_is_refused() {
        let none = EgressAllow::default();
        for s in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378::1",
            "64:ff9b:1::1",
        ] {
            assert!(none.check(ip(s)).is_err(), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let none = EgressAllow::default();
        for s in [
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(none.check(ip(s)).is_ok(), "{s} is public");
        }
    }

    #[test]
    fn the_operator_lists_exceptions() {
        let allow = EgressAllow::parse(" 127.0.0.0/8, ::1/128 ,10.9.8.7").unwrap();
        assert!(allow.check(ip("127.0.0.1")).is_ok());
        assert!(allow.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(allow.check(ip("::1")).is_ok());
        assert!(allow.check(ip("10.9.8.7")).is_ok());
        assert!(allow.check(ip("10.9.8.8")).is_err());
        assert!(allow.check(ip("169.254.169.254")).is_err());
        assert!(allow.lists(ip("127.0.0.1")) && !allow.lists(ip("8.8.8.8")));
        assert_eq!(EgressAllow::parse("").unwrap(), EgressAllow::default());
        assert!(EgressAllow::parse("127.0.0.0/33").is_err());
        assert!(EgressAllow::parse("localhost").is_err());
    }
}
