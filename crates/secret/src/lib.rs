//! Key material as interlink holds it outside the crypto backends: CAKs and TCP-MD5
//! passwords read from their files. A [`Secret`] never prints (its `Debug` says how long it is
//! and nothing else), and its bytes are overwritten when it is dropped, so that what a
//! configuration reload or a restart of a session leaves behind in freed memory holds no key.
//! (A core dump would hold the live ones: the systemd unit sets `LimitCORE=0`.)
//!
//! [`from_hex`] decodes hex text into a secret without a copy of the digits of its own, and
//! [`wipe`] clears a buffer the caller is done with (the text read from a key file).

use core::fmt;

/// Bytes that are a key: redacted in `Debug`, wiped on drop.
#[derive(Clone, Default)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Secret {
    /// In time that depends on the lengths only, not on where the bytes differ.
    fn eq(&self, other: &Secret) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} octets, redacted>)", self.0.len())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites `buf` with zeros, in a way the optimiser keeps.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: a valid, aligned pointer into the caller's buffer; volatile so that the
        // stores are not removed as dead.
        unsafe { core::ptr::write_volatile(b, 0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Decodes hex digits, whitespace between them ignored, straight into a secret.
pub fn from_hex(text: &[u8]) -> Result<Secret, &'static str> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err("not hex"),
    };
    let n = text.iter().filter(|c| !c.is_ascii_whitespace()).count();
    if n % 2 != 0 {
        return Err("an odd number of hex digits");
    }
    let mut out = Secret(Vec::with_capacity(n / 2));
    let mut high = None;
    for &c in text.iter().filter(|c| !c.is_ascii_whitespace()) {
        let d = digit(c)?;
        match high.take() {
            None => high = Some(d),
            Some(h) => out.0.push(h << 4 | d),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::new(b"hunter2".to_vec());
        let d = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!d.contains("hunter2") && !d.contains("104"), "{d}");
        assert!(d.contains("7 octets"), "{d}");
    }

    #[test]
    fn hex_decodes_with_whitespace_and_refuses_the_rest() {
        assert_eq!(from_hex(b"0a0B 0c\n").unwrap().as_bytes(), [10, 11, 12]);
        assert_eq!(from_hex(b"abc"), Err("an odd number of hex digits"));
        assert_eq!(from_hex(b"zz"), Err("not hex"));
        assert!(from_hex(b"").unwrap().is_empty());
    }

    #[test]
    fn equality_is_by_content() {
        assert_eq!(Secret::new(vec![1, 2]), Secret::new(vec![1, 2]));
        assert_ne!(Secret::new(vec![1, 2]), Secret::new(vec![1, 3]));
        assert_ne!(Secret::new(vec![1]), Secret::new(vec![1, 0]));
    }

    #[test]
    fn wipe_zeroes() {
        let mut b = *b"secret";
        wipe(&mut b);
        assert_eq!(b, [0; 6]);
    }
}
