//! Capture filters: which frames a capture keeps.
//!
//! A small language named for what a switch operator asks about, not a BPF
//! compiler: terms joined by `and`, each matching a frame in either
//! direction.
//!
//! | term | keeps |
//! |---|---|
//! | `host ADDR` | IPv4/IPv6 packets from or to ADDR (ARP for it too) |
//! | `vip ADDR[:PORT]`, `client ADDR[:PORT]` | packets from or to that address (and TCP/UDP port) |
//! | `backend ADDR` | packets from or to the backend's address (THOP, ARP, ND) and frames to or from its MAC (the segments relayed to it, which carry the client's and the VIP's addresses) |
//! | `port N` | TCP or UDP packets from or to port N |
//! | `flow ADDR:PORT ADDR:PORT` | one connection's packets, both ways |
//! | `tcp`, `udp`, `arp`, `icmp` | that protocol (`icmp`: ICMP and ICMPv6) |
//!
//! An empty filter keeps everything. IPv6 addresses with a port are
//! written `[2001:2::10]:80`.

use std::net::{IpAddr, SocketAddr};

/// One term.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Host(IpAddr),
    Endpoint(IpAddr, Option<u16>),
    Backend(IpAddr, Option<[u8; 6]>),
    Port(u16),
    Flow(SocketAddr, SocketAddr),
    Proto(Proto),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Arp,
    Icmp,
}

/// A parsed filter: every term must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter {
    terms: Vec<Term>,
    text: String,
}

/// Why a filter does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("capture filter {text:?}: {why} (terms: host ADDR, vip ADDR[:PORT], client ADDR[:PORT], backend ADDR, port N, flow ADDR:PORT ADDR:PORT, tcp, udp, arp, icmp; joined by `and`)")]
pub struct FilterError {
    text: String,
    why: String,
}

/// What one frame holds, as far as filters look.
#[derive(Debug, Default)]
struct Fields {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<Proto>,
    sport: Option<u16>,
    dport: Option<u16>,
}

fn ip_addr(s: &str) -> Option<IpAddr> {
    s.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn endpoint(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some((sa.ip(), Some(sa.port())));
    }
    ip_addr(s).map(|ip| (ip, None))
}

impl Filter {
    /// Keeps every frame.
    pub fn any() -> Filter {
        Filter::default()
    }

    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let err = |why: String| FilterError {
            text: text.to_string(),
            why,
        };
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut terms = Vec::new();
        let mut i = 0;
        let arg = |i: usize, what: &str| -> Result<&str, FilterError> {
            words
                .get(i + 1)
                .copied()
                .filter(|w| *w != "and")
                .ok_or_else(|| err(format!("`{}` needs {what}", words[i])))
        };
        while i < words.len() {
            if !terms.is_empty() {
                if words[i] != "and" {
                    return Err(err(format!("expected `and` before `{}`", words[i])));
                }
                i += 1;
                if i == words.len() {
                    return Err(err("nothing after `and`".into()));
                }
            }
            let w = words[i];
            let (term, used) = match w {
                "host" => {
                    let a = arg(i, "an address")?;
                    let ip = ip_addr(a).ok_or_else(|| err(format!("`{a}` is not an address")))?;
                    (Term::Host(ip), 2)
                }
                "vip" | "client" => {
                    let a = arg(i, "an address")?;
                    let (ip, port) =
                        endpoint(a).ok_or_else(|| err(format!("`{a}` is not an address")))?;
                    (Term::Endpoint(ip, port), 2)
                }
                "backend" => {
                    let a = arg(i, "an address")?;
                    let ip = ip_addr(a).ok_or_else(|| err(format!("`{a}` is not an address")))?;
                    (Term::Backend(ip, None), 2)
                }
                "port" => {
                    let a = arg(i, "a port number")?;
                    let p = a
                        .parse::<u16>()
                        .map_err(|_| err(format!("`{a}` is not a port number")))?;
                    (Term::Port(p), 2)
                }
                "flow" => {
                    let a = arg(i, "two ADDR:PORT")?;
                    let b = words
                        .get(i + 2)
                        .copied()
                        .filter(|w| *w != "and")
                        .ok_or_else(|| err("`flow` needs two ADDR:PORT".into()))?;
                    let pa = a
                        .parse::<SocketAddr>()
                        .map_err(|_| err(format!("`{a}` is not ADDR:PORT")))?;
                    let pb = b
                        .parse::<SocketAddr>()
                        .map_err(|_| err(format!("`{b}` is not ADDR:PORT")))?;
                    (Term::Flow(pa, pb), 3)
                }
                "tcp" => (Term::Proto(Proto::Tcp), 1),
                "udp" => (Term::Proto(Proto::Udp), 1),
                "arp" => (Term::Proto(Proto::Arp), 1),
                "icmp" | "icmp6" => (Term::Proto(Proto::Icmp), 1),
                other => return Err(err(format!("unknown term `{other}`"))),
            };
            terms.push(term);
            i += used;
        }
        Ok(Filter {
            terms,
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }

    /// The filter as given (whitespace normalised).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Gives `backend` terms the backend's MAC (when the switch knows it).
    pub fn resolve_backends(&mut self, mac_of: impl Fn(IpAddr) -> Option<[u8; 6]>) {
        for t in &mut self.terms {
            if let Term::Backend(ip, mac) = t {
                *mac = mac_of(*ip);
            }
        }
    }

    /// True when the Ethernet frame matches every term.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if self.terms.is_empty() {
            return true;
        }
        let f = parse(frame);
        self.terms.iter().all(|t| term_matches(t, &f))
    }
}

fn term_matches(t: &Term, f: &Fields) -> bool {
    let either = |ip: &IpAddr| f.src.as_ref() == Some(ip) || f.dst.as_ref() == Some(ip);
    match t {
        Term::Host(ip) => either(ip),
        Term::Endpoint(ip, None) => either(ip),
        Term::Endpoint(ip, Some(p)) => {
            (f.src.as_ref() == Some(ip) && f.sport == Some(*p))
                || (f.dst.as_ref() == Some(ip) && f.dport == Some(*p))
        }
        Term::Backend(ip, mac) => {
            either(ip) || mac.is_some_and(|m| f.src_mac == m || f.dst_mac == m)
        }
        Term::Port(p) => f.sport == Some(*p) || f.dport == Some(*p),
        Term::Flow(a, b) => {
            let (Some(src), Some(dst), Some(sp), Some(dp)) = (f.src, f.dst, f.sport, f.dport)
            else {
                return false;
            };
            let (s, d) = (SocketAddr::new(src, sp), SocketAddr::new(dst, dp));
            (s == *a && d == *b) || (s == *b && d == *a)
        }
        Term::Proto(p) => f.proto == Some(*p),
    }
}

/// Reads the fields filters use; anything unreadable stays `None`.
fn parse(frame: &[u8]) -> Fields {
    let mut f = Fields::default();
    if frame.len() < 14 {
        return f;
    }
    f.dst_mac.copy_from_slice(&frame[0..6]);
    f.src_mac.copy_from_slice(&frame[6..12]);
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut off = 14;
    if ethertype == 0x8100 && frame.len() >= 18 {
        ethertype = u16::from_be_bytes([frame[16], frame[17]]);
        off = 18;
    }
    let ip = &frame[off..];
    let (l4, proto) = match ethertype {
        0x0806 => {
            f.proto = Some(Proto::Arp);
            // Sender and target protocol addresses (IPv4 over Ethernet).
            if ip.len() >= 28 {
                f.src = Some(IpAddr::from(<[u8; 4]>::try_from(&ip[14..18]).unwrap()));
                f.dst = Some(IpAddr::from(<[u8; 4]>::try_from(&ip[24..28]).unwrap()));
            }
            return f;
        }
        0x0800 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            f.src = Some(IpAddr::from(<[u8; 4]>::try_from(&ip[12..16]).unwrap()));
            f.dst = Some(IpAddr::from(<[u8; 4]>::try_from(&ip[16..20]).unwrap()));
            // Later fragments carry no ports.
            let frag_off = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
            if frag_off != 0 || ihl < 20 || ip.len() < ihl {
                return f;
            }
            (&ip[ihl..], ip[9])
        }
        0x86dd if ip.len() >= 40 => {
            f.src = Some(IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap()));
            f.dst = Some(IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap()));
            // The next header directly (extension headers: no ports read).
            (&ip[40..], ip[6])
        }
        _ => return f,
    };
    f.proto = match proto {
        6 => Some(Proto::Tcp),
        17 => Some(Proto::Udp),
        1 | 58 => Some(Proto::Icmp),
        _ => None,
    };
    if matches!(proto, 6 | 17) && l4.len() >= 4 {
        f.sport = Some(u16::from_be_bytes([l4[0], l4[1]]));
        f.dport = Some(u16::from_be_bytes([l4[2], l4[3]]));
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet + IPv4 + TCP frame from `src:sp` to `dst:dp`.
    fn tcp4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sp.to_be_bytes());
        f[36..38].copy_from_slice(&dp.to_be_bytes());
        f
    }

    #[test]
    fn terms_match_both_directions() {
        let c2v = tcp4([198, 18, 0, 100], 40000, [198, 18, 0, 10], 80);
        let v2c = tcp4([198, 18, 0, 10], 80, [198, 18, 0, 100], 40000);
        for (text, keep) in [
            ("", true),
            ("host 198.18.0.100", true),
            ("client 198.18.0.100", true),
            ("vip 198.18.0.10:80", true),
            ("vip 198.18.0.10:443", false),
            ("port 80 and tcp", true),
            ("udp", false),
            ("flow 198.18.0.100:40000 198.18.0.10:80", true),
            ("flow 198.18.0.100:40001 198.18.0.10:80", false),
            ("host 198.18.0.100 and port 8080", false),
            ("backend 198.18.0.11", false),
        ] {
            let f = Filter::parse(text).unwrap();
            assert_eq!(f.matches(&c2v), keep, "{text}");
            assert_eq!(f.matches(&v2c), keep, "{text} (reply)");
        }
        // A backend's MAC names the segments relayed to it.
        let mut b = Filter::parse("backend 198.18.0.11").unwrap();
        b.resolve_backends(|_| Some([2, 0, 0, 0, 0, 1]));
        assert!(b.matches(&c2v));
        assert!(!Filter::parse("tcp").unwrap().matches(&[0u8; 9]));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        for (text, says) in [
            ("hots 1.2.3.4", "unknown term `hots`"),
            ("host", "`host` needs an address"),
            ("host 1.2.3", "`1.2.3` is not an address"),
            ("port 99999", "`99999` is not a port number"),
            ("tcp udp", "expected `and` before `udp`"),
            ("tcp and", "nothing after `and`"),
            ("flow 1.2.3.4:5", "`flow` needs two ADDR:PORT"),
            ("host and tcp", "`host` needs an address"),
        ] {
            let e = Filter::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
