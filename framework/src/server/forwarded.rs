//! Who the client is behind a reverse proxy: `Forwarded` (RFC 7239), `X-Forwarded-For` and
//! `X-Forwarded-Proto`, believed only from trusted peers.
//!
//! Anyone can send these headers, so they are read only when the connection comes from a peer
//! in [`ForwardedAllow`] (uvicorn's `--forwarded-allow-ips`, gunicorn's `forwarded_allow_ips`).
//! Each proxy appends the address it received the request from, so the list is walked **from
//! the right**, skipping the trusted hops: the first untrusted address is the client, whatever
//! a client wrote at the left of the list to pass for someone else (taking the leftmost, as
//! daphne's `--proxy-headers` does, believes exactly that). If every hop is trusted, the
//! leftmost is the client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::{Error, Result};

/// The peers whose forwarding headers are believed: CIDRs or single addresses, or `*` for any
/// peer (only when nothing but the proxy can reach the server). Empty by default: the headers
/// are ignored and the client is the TCP peer.
///
/// ```
/// use switchboard::server::ForwardedAllow;
///
/// let allow: ForwardedAllow = "127.0.0.1, 10.0.0.0/8, ::1".parse().unwrap();
/// assert!(allow.contains("10.1.2.3".parse().unwrap()));
/// assert!(!allow.contains("192.0.2.1".parse().unwrap()));
/// assert!("10.0.0.0/33".parse::<ForwardedAllow>().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardedAllow {
    nets: Vec<IpNet>,
    any: bool,
}

impl ForwardedAllow {
    /// Trusts no peer (the default).
    pub fn none() -> ForwardedAllow {
        ForwardedAllow::default()
    }

    /// Trusts every peer: only for a server no client can reach but through the proxy.
    pub fn any() -> ForwardedAllow {
        ForwardedAllow {
            nets: Vec::new(),
            any: true,
        }
    }

    /// Trusts these networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> ForwardedAllow {
        ForwardedAllow {
            nets: nets.into_iter().collect(),
            any: false,
        }
    }

    /// Whether no peer is trusted.
    pub fn is_empty(&self) -> bool {
        !self.any && self.nets.is_empty()
    }

    /// Whether `ip` is a trusted peer.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.any || self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for ForwardedAllow {
    type Err = Error;

    /// A comma-separated list of CIDRs (`10.0.0.0/8`), addresses (`127.0.0.1`, `::1`) or `*`.
    fn from_str(list: &str) -> Result<ForwardedAllow> {
        let mut allow = ForwardedAllow::none();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                allow.any = true;
                continue;
            }
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Error::Config(format!(
                        "trusted proxy {item:?} is not an IP address or a CIDR such as 10.0.0.0/8 or ::1"
                    ))
                })?;
            allow.nets.push(net);
        }
        Ok(allow)
    }
}

impl fmt::Display for ForwardedAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = self.nets.iter().map(IpNet::to_string).collect();
        if self.any {
            items.push("*".to_owned());
        }
        f.write_str(&items.join(","))
    }
}

/// Where a request really came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The client's address (port 0 when the proxy did not say).
    pub client: SocketAddr,
    /// Whether the client used TLS to reach the first proxy; `false` when not said.
    pub secure: bool,
}

/// The request's real origin: from its forwarding headers when `peer` is trusted, else the
/// peer itself. `header` gives every value of a header (named in lower case), in order.
pub(crate) fn resolve<'h, I>(
    allow: &ForwardedAllow,
    peer: SocketAddr,
    header: impl Fn(&'static str) -> I,
) -> Origin
where
    I: Iterator<Item = &'h [u8]>,
{
    let direct = Origin {
        client: peer,
        secure: false,
    };
    if allow.is_empty() || !allow.contains(peer.ip()) {
        return direct;
    }
    let values = |name| header(name).filter_map(|value| std::str::from_utf8(value).ok());
    // RFC 7239 first; several headers are one list, in order.
    let forwarded: Vec<Hop> = values("forwarded").flat_map(parse_forwarded).collect();
    if !forwarded.is_empty() {
        return choose(allow, direct, &forwarded);
    }
    let mut hops: Vec<Hop> = values("x-forwarded-for")
        .flat_map(|value| value.split(','))
        .map(|item| Hop {
            node: parse_node(item.trim()),
            proto: None,
        })
        .collect();
    // X-Forwarded-Proto lists one scheme per hop when proxies append to it; a single value is
    // the scheme the client used.
    let protos: Vec<&str> = values("x-forwarded-proto")
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    if protos.len() == hops.len() {
        for (hop, proto) in hops.iter_mut().zip(&protos) {
            hop.proto = Some(proto);
        }
    } else if let [proto] = protos.as_slice() {
        for hop in &mut hops {
            hop.proto = Some(proto);
        }
    }
    if hops.is_empty() {
        // A proxy that says only the scheme.
        return match protos.as_slice() {
            [proto] => Origin {
                secure: is_secure(proto),
                ..direct
            },
            _ => direct,
        };
    }
    choose(allow, direct, &hops)
}

/// One proxy hop: the address it saw (`None`: hidden or unreadable) and the scheme it was
/// reached with.
#[derive(Debug, Clone, Copy)]
struct Hop<'a> {
    node: Option<SocketAddr>,
    proto: Option<&'a str>,
}

/// Walks the hops from the right past the trusted ones.
fn choose(allow: &ForwardedAllow, direct: Origin, hops: &[Hop<'_>]) -> Origin {
    let chosen = hops
        .iter()
        .rev()
        .find(|hop| hop.node.is_none_or(|node| !allow.contains(node.ip())))
        .or(hops.first());
    let Some(hop) = chosen else { return direct };
    // A hidden or unreadable address says nothing: the peer stays the client.
    let secure = hop.proto.is_some_and(is_secure);
    Origin {
        client: hop.node.unwrap_or(direct.client),
        secure,
    }
}

fn is_secure(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("https") || proto.eq_ignore_ascii_case("wss")
}

/// The elements of one `Forwarded` header: `for=192.0.2.60;proto=https, for="[2001:db8::1]:80"`.
fn parse_forwarded(value: &str) -> impl Iterator<Item = Hop<'_>> {
    value.split(',').map(|element| {
        let mut hop = Hop {
            node: None,
            proto: None,
        };
        for pair in element.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                k if k.eq_ignore_ascii_case("for") => hop.node = parse_node(value),
                k if k.eq_ignore_ascii_case("proto") => hop.proto = Some(value),
                _ => {}
            }
        }
        hop
    })
}

/// An address as proxies write it: `192.0.2.60`, `192.0.2.60:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`; `unknown` and obfuscated names (`_hidden`) are `None`.
fn parse_node(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn resolve_with(allow: &str, from: &str, headers: &[(&str, &str)]) -> Origin {
        let allow: ForwardedAllow = allow.parse().unwrap();
        resolve(&allow, peer(from), |wanted| {
            headers
                .iter()
                .filter(move |(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.as_bytes())
        })
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let origin = resolve_with(
            "10.0.0.0/8",
            "192.0.2.9:5000",
            &[
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Forwarded-Proto", "https"),
                ("Forwarded", "for=5.6.7.8;proto=https"),
            ],
        );
        assert_eq!(origin.client, peer("192.0.2.9:5000"));
        assert!(!origin.secure);
        assert_eq!(
            resolve_with("", "10.0.0.1:1", &[("X-Forwarded-For", "1.2.3.4")]).client,
            peer("10.0.0.1:1")
        );
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_past_trusted_hops() {
        // The client forged "6.6.6.6"; the edge proxy appended the address it saw, 203.0.113.7;
        // an inner trusted proxy appended the edge's 10.0.0.2.
        let origin = resolve_with(
            "10.0.0.0/8",
            "10.0.0.3:80",
            &[
                ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
                ("x-forwarded-for", "10.0.0.2"),
                ("X-Forwarded-Proto", "https"),
            ],
        );
        assert_eq!(origin.client, peer("203.0.113.7:0"));
        assert!(origin.secure);
        // Every hop trusted: the leftmost.
        let all = resolve_with(
            "10.0.0.0/8",
            "10.0.0.3:80",
            &[("X-Forwarded-For", "10.9.9.9, 10.0.0.2")],
        );
        assert_eq!(all.client, peer("10.9.9.9:0"));
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_carries_the_scheme_per_hop() {
        let origin = resolve_with(
            "127.0.0.1, ::1",
            "[::1]:9000",
            &[
                ("X-Forwarded-For", "9.9.9.9"),
                (
                    "Forwarded",
                    r#"for=6.6.6.6;proto=http, for="[2001:db8::7]:4711";proto=https"#,
                ),
                ("Forwarded", "for=127.0.0.1;proto=http"),
            ],
        );
        assert_eq!(origin.client, peer("[2001:db8::7]:4711"));
        assert!(origin.secure);
        // The scheme is the chosen hop's: a forged element's `proto` says nothing.
        let forged = resolve_with(
            "127.0.0.1",
            "127.0.0.1:9000",
            &[("Forwarded", "for=6.6.6.6;proto=https, for=203.0.113.7")],
        );
        assert_eq!(forged.client, peer("203.0.113.7:0"));
        assert!(!forged.secure);
    }

    #[test]
    fn hidden_and_garbled_hops_leave_the_peer_as_the_client() {
        let origin = resolve_with(
            "*",
            "10.0.0.3:80",
            &[("Forwarded", "for=_hidden;proto=https, for=unknown")],
        );
        assert_eq!(origin.client, peer("10.0.0.3:80"));
        let garbage = resolve_with("*", "10.0.0.3:80", &[("X-Forwarded-For", "not an ip, ,")]);
        assert_eq!(garbage.client, peer("10.0.0.3:80"));
        let scheme_only = resolve_with("*", "10.0.0.3:80", &[("X-Forwarded-Proto", "wss")]);
        assert_eq!(scheme_only.client, peer("10.0.0.3:80"));
        assert!(scheme_only.secure);
    }

    #[test]
    fn mapped_ipv4_peers_match_ipv4_networks() {
        let origin = resolve_with(
            "127.0.0.0/8",
            "[::ffff:127.0.0.1]:80",
            &[("X-Forwarded-For", "198.51.100.1")],
        );
        assert_eq!(origin.client, peer("198.51.100.1:0"));
    }

    #[test]
    fn lists_parse_and_print() {
        let allow: ForwardedAllow = " 10.0.0.0/8 ,::1,*".parse().unwrap();
        assert_eq!(allow.to_string(), "10.0.0.0/8,::1/128,*");
        assert!(allow.contains("8.8.8.8".parse().unwrap()));
        assert!(ForwardedAllow::none().is_empty());
        assert!("".parse::<ForwardedAllow>().unwrap().is_empty());
        let err = "10.0.0.0/8,bogus".parse::<ForwardedAllow>().unwrap_err();
        assert!(err.to_string().contains("\"bogus\""), "{err}");
    }
}
