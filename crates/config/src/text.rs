//! The small text formats of the configuration: durations, MAC addresses, prefixes, hex keys.

use core::fmt;
use core::str::FromStr;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use interlink_secret::Secret;

/// A duration such as `"90s"`, `"500ms"`, `"2m"` or `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {s:?} has no unit"))?;
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let unit_us = match unit {
        "us" => 1,
        "ms" => 1000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(format!("duration {s:?} has an unknown unit {unit:?}")),
    };
    n.checked_mul(unit_us)
        .map(Duration::from_micros)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// An Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

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

/// A bandwidth such as "1Gbps", "500Mbps", "64kbps" or "10000bps" (decimal units), in bits
/// a second.
pub fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let bad = || format!("bandwidth {s:?} is not a number with bps, kbps, Mbps or Gbps");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: f64 = n.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "bps" => 1.0,
        "kbps" | "Kbps" => 1e3,
        "Mbps" => 1e6,
        "Gbps" => 1e9,
        _ => return Err(bad()),
    };
    let bps = n * scale;
    if !bps.is_finite() || bps > 1e12 {
        return Err(bad());
    }
    Ok(bps as u64)
}

/// A MAC address as six hex octets separated by colons.
pub fn parse_mac(s: &str) -> Result<MacAddr, String> {
    let bad = || format!("{s:?} is not a MAC address");
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for octet in mac.iter_mut() {
        let p = parts.next().ok_or_else(bad)?;
        if p.len() != 2 {
            return Err(bad());
        }
        *octet = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    if mac[0] & 1 != 0 {
        return Err(format!("{s:?} is a multicast address"));
    }
    Ok(MacAddr(mac))
}

/// An interface address with its prefix length, as `ip addr add` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IfAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("address {s:?} has no prefix length"))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length {len:?} is not 0 to {max}"))?;
        Ok(IfAddr { addr, prefix_len })
    }
}

/// Hex digits, possibly separated by whitespace, to octets.
pub fn hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err("an odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|_| "not hex".to_string())?;
            u8::from_str_radix(pair, 16).map_err(|_| "not hex".to_string())
        })
        .collect()
}

/// Reads a key written as hex in a file that only its owner may read.
/// Errors come with a hint; the key itself never appears in one.
/// Reads a secret: a file no one but its owner may read; the message and hint if not.
pub(crate) fn read_secret(path: &Path) -> Result<Secret, (String, Option<String>)> {
    let meta = std::fs::metadata(path).map_err(|e| (e.to_string(), None))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err((
            format!("is readable by group or others (mode {:o})", mode & 0o777),
            Some(format!("chmod 600 {}", path.display())),
        ));
    }
    std::fs::read(path)
        .map(Secret::new)
        .map_err(|e| (e.to_string(), None))
}

pub(crate) fn read_key_file(path: &Path, len: usize) -> Result<Secret, (String, Option<String>)> {
    let key = read_hex_key(path)?;
    if key.len() != len {
        return Err((
            format!("holds {} octets, the cipher suite takes {len}", key.len()),
            Some(format!("{} hex digits", len * 2)),
        ));
    }
    Ok(key)
}

/// Reads a key written as hex from a secret file, without leaving a copy of the text or the
/// key behind.
pub(crate) fn read_hex_key(path: &Path) -> Result<Secret, (String, Option<String>)> {
    let text = read_secret(path)?;
    interlink_secret::from_hex(text.as_bytes())
        .map_err(|e| (format!("does not hold a hex key: {e}"), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("90").unwrap_err().contains("no unit"));
        assert!(parse_duration("s").unwrap_err().contains("number"));
        assert!(parse_duration("5 s").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(
            parse_mac("02:00:00:00:00:0a"),
            Ok(MacAddr([2, 0, 0, 0, 0, 10]))
        );
        assert_eq!(
            MacAddr([2, 0, 0, 0, 0, 10]).to_string(),
            "02:00:00:00:00:0a"
        );
        for bad in [
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:01",
            "",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        assert!(parse_mac("01:00:5e:00:00:01")
            .unwrap_err()
            .contains("multicast"));
    }

    #[test]
    fn interface_addresses() {
        let a: IfAddr = "169.254.10.2/30".parse().unwrap();
        assert_eq!(a.to_string(), "169.254.10.2/30");
        let b: IfAddr = "fd00:10::2/125".parse().unwrap();
        assert_eq!(b.prefix_len, 125);
        assert!("10.0.0.1"
            .parse::<IfAddr>()
            .unwrap_err()
            .contains("no prefix"));
        assert!("10.0.0.1/33"
            .parse::<IfAddr>()
            .unwrap_err()
            .contains("0 to 32"));
        assert!("fd00::1/129"
            .parse::<IfAddr>()
            .unwrap_err()
            .contains("0 to 128"));
        assert!("host/24"
            .parse::<IfAddr>()
            .unwrap_err()
            .contains("not an IP"));
    }

    #[test]
    fn hex_keys() {
        assert_eq!(hex("0a0B 0c\n"), Ok(vec![10, 11, 12]));
        assert!(hex("abc").is_err());
        assert!(hex("zz").is_err());
    }
}
