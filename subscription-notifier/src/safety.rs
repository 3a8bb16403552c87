//! Where notifications may go. An endpoint must be `https` unless its host is allow-listed, and
//! every address its host resolves to must be public (not loopback, private, link-local, the
//! cloud metadata address, shared, multicast or unspecified) unless allow-listed: a subscription
//! must not turn the server into a client of its own network. The scheme is checked when a
//! subscription is written; the addresses before every delivery, since DNS answers change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Debug, Default)]
pub struct EndpointPolicy {
    /// Hosts (names or addresses, as in the URL) exempt from both rules.
    pub allowed_hosts: Vec<String>,
}

impl EndpointPolicy {
    fn allowed(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// The endpoint's host, if the endpoint is a URL with one.
    fn host(endpoint: &str) -> Result<(String, u16), String> {
        let url = reqwest::Url::parse(endpoint).map_err(|error| format!("the endpoint is not a URL: {error}"))?;
        let host = url.host_str().ok_or("the endpoint has no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = url.port_or_known_default().ok_or("the endpoint has no port")?;
        Ok((host, port))
    }

    /// `https`, unless the host is allow-listed.
    pub fn check_scheme(&self, endpoint: &str) -> Result<(), String> {
        let (host, _) = Self::host(endpoint)?;
        if endpoint.starts_with("https://") || self.allowed(&host) {
            Ok(())
        } else {
            Err(format!("endpoints must be https (or their host allow-listed in subscriptions.allowed_hosts): {host}"))
        }
    }

    /// Every address of the host public, unless the host is allow-listed.
    pub async fn check_addresses(&self, endpoint: &str) -> Result<(), String> {
        let (host, port) = Self::host(endpoint)?;
        if self.allowed(&host) {
            return Ok(());
        }
        let addresses: Vec<_> = tokio::net::lookup_host((host.as_str(), port)).await.map_err(|error| format!("cannot resolve {host}: {error}"))?.collect();
        if addresses.is_empty() {
            return Err(format!("{host} has no address"));
        }
        match addresses.iter().find(|address| !is_public(address.ip())) {
            Some(address) => Err(format!("{host} resolves to {}, which is not a public address", address.ip())),
            None => Ok(()),
        }
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // Shared address space (carrier-grade NAT), and benchmarking.
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7) and link-local (fe80::/10).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        // The AWS metadata service over IPv6.
        || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for private in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00:ec2::254", "fe80::1", "::ffff:10.0.0.1", "224.0.0.1"] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn schemes_and_addresses() {
        let strict = EndpointPolicy::default();
        assert!(strict.check_scheme("https://example.org/hook").is_ok());
        assert!(strict.check_scheme("http://example.org/hook").is_err());
        assert!(strict.check_addresses("https://127.0.0.1:8443/hook").await.unwrap_err().contains("not a public address"));
        assert!(strict.check_addresses("https://localhost/hook").await.is_err());
        assert!(strict.check_addresses("https://[::1]/hook").await.is_err());
        let local = EndpointPolicy { allowed_hosts: vec!["127.0.0.1".into()] };
        assert!(local.check_scheme("http://127.0.0.1:9000/hook").is_ok());
        assert!(local.check_addresses("http://127.0.0.1:9000/hook").await.is_ok());
        assert!(local.check_addresses("http://10.0.0.1/hook").await.is_err(), "only what is listed");
    }
}
