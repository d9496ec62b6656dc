//! The target guard: batchq must not become a way into the network it runs
//! in (SSRF). An endpoint whose host is, or resolves to, a private,
//! loopback, link-local, CGNAT, unique-local, multicast, documentation or
//! unspecified address is refused at registration, and again at every
//! delivery: the HTTP sender resolves names through [`GuardedResolver`],
//! so a name that later resolves elsewhere (DNS rebinding) is refused at
//! connect time, not trusted from the first check.
//! `BATCHQ_WEBHOOK_ALLOW_PRIVATE=true` turns the guard off (local tests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::endpoint::EndpointUrl;
use crate::error::ValidationError;

/// Whether targets in private address space are allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    pub allow_private: bool,
}

impl TargetPolicy {
    /// Whether `ip` may be connected to.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || is_public(ip)
    }
}

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{host} resolves to {ip}, which is not a public address (set BATCHQ_WEBHOOK_ALLOW_PRIVATE=true to allow)")]
    Private { host: String, ip: IpAddr },
    #[error("{host} could not be resolved: {reason}")]
    Unresolvable { host: String, reason: String },
}

impl From<TargetError> for ValidationError {
    fn from(e: TargetError) -> Self {
        let code = match e {
            TargetError::Private { .. } => "private_address",
            TargetError::Unresolvable { .. } => "unresolvable",
        };
        ValidationError::new("url", code, e.to_string())
    }
}

/// Checks that every address `url`'s host names or resolves to is allowed.
pub async fn check(url: &EndpointUrl, policy: TargetPolicy) -> Result<(), TargetError> {
    let u = url.url();
    let host = u.host_str().unwrap_or_default().to_owned();
    let port = u.port_or_known_default().unwrap_or(443);
    if let Some(ip) = literal_ip(&u) {
        return if policy.allows(ip) {
            Ok(())
        } else {
            Err(TargetError::Private { host, ip })
        };
    }
    if policy.allow_private {
        return Ok(());
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| TargetError::Unresolvable {
            host: host.clone(),
            reason: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable {
            host,
            reason: "no addresses".into(),
        });
    }
    match addrs.iter().find(|a| !policy.allows(a.ip())) {
        Some(a) => Err(TargetError::Private { host, ip: a.ip() }),
        None => Ok(()),
    }
}

/// The host of `url` when it is an IP literal.
pub fn literal_ip(u: &reqwest::Url) -> Option<IpAddr> {
    let host = u.host_str()?;
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse().ok()
}

/// Whether `ip` is a globally routable unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..=127).contains(&b)) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 (embeds IPv4 of any kind)
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // discard-only
        || ip.to_ipv4().is_some_and(|v4| !is_public_v4(v4) && s[5] == 0)) // IPv4-compatible ::a.b.c.d
}

/// A DNS resolver for the webhook HTTP client that drops every address the
/// policy refuses, and fails when none is left: the address connected to is
/// the one checked (no window for DNS rebinding).
#[derive(Clone, Copy, Debug)]
pub struct GuardedResolver {
    pub policy: TargetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = match addrs.first() {
                    Some(a) => Box::new(TargetError::Private { host, ip: a.ip() }),
                    None => Box::new(TargetError::Unresolvable {
                        host,
                        reason: "no addresses".into(),
                    }),
                };
                return Err(err);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_cgnat_unique_local_multicast_and_unspecified_are_not_public() {
        for s in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip(s)), "{s} counted as public");
        }
        for s in [
            "93.184.216.34",
            "100.128.0.1",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip(s)), "{s} counted as private");
        }
    }

    #[tokio::test]
    async fn literal_private_targets_are_refused_naming_url_unless_allowed() {
        let url = EndpointUrl::parse("http://127.0.0.1:9/hook").unwrap();
        let err = check(&url, TargetPolicy::default()).await.unwrap_err();
        assert!(matches!(err, TargetError::Private { .. }));
        assert_eq!(ValidationError::from(err).field, "url");
        check(&url, TargetPolicy { allow_private: true }).await.unwrap();
        let v6 = EndpointUrl::parse("http://[fe80::1]/hook").unwrap();
        assert!(check(&v6, TargetPolicy::default()).await.is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_at_check_and_by_the_resolver() {
        let url = EndpointUrl::parse("http://localhost:9/hook").unwrap();
        assert!(matches!(
            check(&url, TargetPolicy::default()).await,
            Err(TargetError::Private { .. })
        ));
        let resolver = GuardedResolver {
            policy: TargetPolicy::default(),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(reqwest::dns::Resolve::resolve(&resolver, name).await.is_err());
        let open = GuardedResolver {
            policy: TargetPolicy { allow_private: true },
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(reqwest::dns::Resolve::resolve(&open, name).await.is_ok());
    }
}
