//! Small value types with a human spelling in YAML: durations (`250ms`, `2s`),
//! MAC addresses (`02:00:00:00:00:0b`) and one-or-more IP addresses
//! (`198.18.0.2` or `[198.18.0.2, "2001:2::2"]`).
//!
//! Durations are always written with a unit so a reader never has to guess
//! whether `5` meant seconds or milliseconds.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A duration written with a unit: `us`, `ms`, `s`, `m` or `h` (e.g. `250ms`, `1.5s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DurationStr(pub Duration);

impl DurationStr {
    /// Whole seconds.
    pub const fn secs(s: u64) -> Self {
        Self(Duration::from_secs(s))
    }

    /// Milliseconds.
    pub const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// Parses `<number><unit>`; the error says what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("duration `{s}` has no unit (write e.g. `500ms` or `2s`)"))?;
        let (num, unit) = s.split_at(split);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("duration `{s}`: `{num}` is not a number"))?;
        let scale = match unit {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "duration `{s}`: unknown unit `{unit}` (use us, ms, s, m or h)"
                ))
            }
        };
        let secs = value * scale;
        if !secs.is_finite() || secs > 1e9 {
            return Err(format!("duration `{s}` is out of range"));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for DurationStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 && d.as_secs() > 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.subsec_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}us", d.as_micros())
        }
    }
}

impl Serialize for DurationStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = DurationStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. `500ms` or `2s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationStr, E> {
                DurationStr::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationStr, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit (write e.g. `{v}ms` or `{v}s`)"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationStr, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit (write e.g. `{v}ms` or `{v}s`)"
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationStr, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit (write e.g. `{v}s`)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DurationStr {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]+)?(us|µs|ms|s|m|h)$",
            "description": "A duration with a unit: us, ms, s, m or h (e.g. `250ms`, `2s`)."
        })
    }
}

/// An Ethernet MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses six colon- or dash-separated hex octets.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(format!("MAC address `{s}` must have six octets"));
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(format!(
                    "MAC address `{s}`: octet `{p}` must be two hex digits"
                ));
            }
            *o = u8::from_str_radix(p, 16)
                .map_err(|_| format!("MAC address `{s}`: `{p}` is not hex"))?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MacAddr::parse(&s).map_err(de::Error::custom)
    }
}

impl JsonSchema for MacAddr {
    fn schema_name() -> Cow<'static, str> {
        "MacAddr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$",
            "description": "An Ethernet MAC address, e.g. `02:00:00:00:00:0b`."
        })
    }
}

/// One IP address, or a list of at most one per family (a dual-stack
/// address): `198.18.0.2`, `"2001:2::2"` or `[198.18.0.2, "2001:2::2"]`.
///
/// A single address is read and written as a scalar, as before dual stack;
/// a list stays a list. Two values are equal when they hold the same
/// addresses in the same order, whichever way they were written. That a
/// list is not empty and holds one address per family is checked with the
/// rest of the profile (so the error carries its field path and line).
#[derive(Debug, Clone, Eq)]
pub struct Addresses {
    addrs: Vec<IpAddr>,
    listed: bool,
}

impl Addresses {
    /// A single address, written as a scalar.
    pub fn one(ip: impl Into<IpAddr>) -> Self {
        Self {
            addrs: vec![ip.into()],
            listed: false,
        }
    }

    /// A list, written as a list.
    pub fn list(addrs: Vec<IpAddr>) -> Self {
        Self {
            addrs,
            listed: true,
        }
    }

    /// The addresses in the order given.
    pub fn as_slice(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// The addresses in the order given.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.addrs.iter().copied()
    }

    /// No address at all (an empty list, refused by validation).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The first address given.
    pub fn first(&self) -> Option<IpAddr> {
        self.addrs.first().copied()
    }

    /// The (first) IPv4 address.
    pub fn v4(&self) -> Option<Ipv4Addr> {
        self.addrs.iter().find_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            IpAddr::V6(_) => None,
        })
    }

    /// The (first) IPv6 address.
    pub fn v6(&self) -> Option<Ipv6Addr> {
        self.addrs.iter().find_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            IpAddr::V4(_) => None,
        })
    }

    /// Whether an address of `ip`'s family is among them.
    pub fn has_family_of(&self, ip: IpAddr) -> bool {
        self.addrs.iter().any(|a| a.is_ipv4() == ip.is_ipv4())
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.addrs.contains(&ip)
    }

    /// Written as a list (even of one).
    pub fn is_list(&self) -> bool {
        self.listed
    }

    /// The field path of the `i`-th address of the field at `at`: `at[i]`
    /// for a list, `at` itself for a single address.
    pub fn path(&self, at: &str, i: usize) -> String {
        if self.listed {
            format!("{at}[{i}]")
        } else {
            at.to_string()
        }
    }
}

impl PartialEq for Addresses {
    fn eq(&self, other: &Self) -> bool {
        self.addrs == other.addrs
    }
}

impl From<IpAddr> for Addresses {
    fn from(ip: IpAddr) -> Self {
        Self::one(ip)
    }
}

impl From<Ipv4Addr> for Addresses {
    fn from(ip: Ipv4Addr) -> Self {
        Self::one(ip)
    }
}

impl From<Ipv6Addr> for Addresses {
    fn from(ip: Ipv6Addr) -> Self {
        Self::one(ip)
    }
}

/// The addresses separated by `, ` (just the address when there is one).
impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl Serialize for Addresses {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.addrs.as_slice() {
            [one] if !self.listed => s.collect_str(one),
            all => s.collect_seq(all.iter().map(|a| a.to_string())),
        }
    }
}

impl<'de> Deserialize<'de> for Addresses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Addresses;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address, or a list of one IPv4 and one IPv6 address")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Addresses, E> {
                v.trim()
                    .parse::<IpAddr>()
                    .map(Addresses::one)
                    .map_err(|_| E::custom(format!("`{v}` is not an IP address")))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Addresses, A::Error> {
                let mut addrs = Vec::new();
                while let Some(ip) = a.next_element::<IpAddr>()? {
                    addrs.push(ip);
                }
                Ok(Addresses::list(addrs))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Addresses {
    fn schema_name() -> Cow<'static, str> {
        "Addresses".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "One IP address, or a list of at most one IPv4 and one IPv6 address (dual stack), e.g. `198.18.0.10` or `[198.18.0.10, \"2001:2::10\"]`.",
            "anyOf": [
                { "type": "string", "format": "ip" },
                {
                    "type": "array",
                    "items": { "type": "string", "format": "ip" },
                    "minItems": 1,
                    "maxItems": 2
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_units_and_round_trip() {
        assert_eq!(
            DurationStr::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            DurationStr::parse("1.5s").unwrap().0,
            Duration::from_millis(1500)
        );
        assert_eq!(
            DurationStr::parse("2m").unwrap().0,
            Duration::from_secs(120)
        );
        assert!(DurationStr::parse("5").unwrap_err().contains("no unit"));
        assert!(DurationStr::parse("5 parsecs").is_err());
        assert!(DurationStr::parse("1e400s").is_err());
        for s in ["250ms", "2s", "15us"] {
            assert_eq!(DurationStr::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn mac_addresses_parse_strictly() {
        let m = MacAddr::parse("02:00:00:00:00:0b").unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 0, 0x0b]);
        assert_eq!(m.to_string(), "02:00:00:00:00:0b");
        assert!(MacAddr::parse("02:00:00:00:00").is_err());
        assert!(MacAddr::parse("02:00:00:00:00:zz").is_err());
        assert!(MacAddr::parse("002:00:00:00:00:0b").is_err());
    }
}
