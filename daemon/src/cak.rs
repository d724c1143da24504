//! `replace_cak`: a link's configured CAK replaced by one that only the two gateways know.
//!
//! A link paired with an activation key has a CAK derived from a string that was pasted
//! between people; whoever kept a copy could derive it for as long as the link lives. Once
//! the link is up, the key server of its configured CA makes a random CAK, as long as the
//! configured one, and a random CKN, and hands them to the peer in MKA (802.1X-2020 §9.8,
//! the Distributed CAK parameter set, wrapped under the KEK). Both sides put the new CA
//! ahead of the configured one, so the port moves to it as in a CAK rollover (no frame
//! lost); once it carries the link all round (`Kay::settled`), each side drops the
//! configured CA, whose key is then refused.
//!
//! The new key is written down (`STATE_DIR/cak/LINK`, mode 0600, replaced durably) before it
//! is used: by the key server before it distributes it, by the member before it takes part
//! in its CA, and "settled" before the configured CA is dropped. So a crash or restart at
//! any point leaves each side with a CA the other still has: the new CA becomes live only
//! once both sides run it, hence wrote it down, and a side drops the configured CA only once
//! the new one is live. A state directory lost on one side (a reinstall) leaves the link
//! down for good: pair it again with a new key.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use interlink_mka::kay::CaKey;
use interlink_mka::keys::{random_sak, Secret};

/// Where a link's replaced CAK is kept.
pub(crate) fn path(state_dir: &Path, link: &str) -> PathBuf {
    state_dir.join("cak").join(link)
}

/// The replaced CAK as written down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub key: CaKey,
    /// The new CA has carried the link all round: the configured one is dropped.
    pub settled: bool,
}

/// What a link with `replace_cak` knows of its replaced CAK.
pub(crate) struct Replacement {
    path: PathBuf,
    /// The configured CKN: a file that replaced another (an earlier pairing under the same
    /// name) is not this link's.
    configured: Vec<u8>,
    pub stored: Option<Stored>,
    /// A key taken or made, not yet written down (the write failed): tried again each turn,
    /// and not used before it succeeds.
    pub unwritten: Option<CaKey>,
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The file's contents: `ckn HEX`, `cak HEX`, `replaces HEX`, `settled yes|no`, a line each.
fn parse(text: &str) -> Result<(Stored, Vec<u8>), String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
            .ok_or_else(|| format!("no {name} line"))
    };
    let bytes = |v: &str, what: &str| unhex(v).ok_or_else(|| format!("{what} is not hex"));
    let ckn = bytes(field("ckn")?, "ckn")?;
    let cak = bytes(field("cak")?, "cak")?;
    let replaces = bytes(field("replaces")?, "replaces")?;
    let settled = match field("settled")? {
        "yes" => true,
        "no" => false,
        v => return Err(format!("settled is {v:?}, not yes or no")),
    };
    if !(1..=32).contains(&ckn.len()) || ckn == replaces {
        return Err("a CKN of 1 to 32 octets, not the configured one".into());
    }
    let cak = Secret::new(cak).map_err(|e| e.to_string())?;
    Ok((
        Stored {
            key: CaKey { ckn, cak },
            settled,
        },
        replaces,
    ))
}

impl Replacement {
    /// Reads what the state directory holds for `link`, configured with `configured`. A file
    /// that is unreadable or malformed is an error (the link does not start: without it the
    /// peer may accept neither key); one written for another configured CKN is set aside.
    pub(crate) fn load(
        state_dir: &Path,
        link: &str,
        configured: &CaKey,
    ) -> Result<Replacement, String> {
        let path = path(state_dir, link);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (stored, replaces) =
                    parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                (replaces == configured.ckn).then_some(stored)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Replacement {
            path,
            configured: configured.ckn.clone(),
            stored,
            unwritten: None,
        })
    }

    /// The keychain to run: the replaced CAK ahead of the configured one until it settled,
    /// then alone.
    pub(crate) fn keychain(&self, configured: &[CaKey]) -> Vec<CaKey> {
        match &self.stored {
            None => configured.to_vec(),
            Some(s) if s.settled => vec![s.key.clone()],
            Some(s) => std::iter::once(s.key.clone())
                .chain(configured.iter().cloned())
                .collect(),
        }
    }

    /// A reload with `configured`: another configured CKN (the link paired again) starts
    /// over.
    pub(crate) fn reconfigure(&mut self, configured: &CaKey) {
        if configured.ckn != self.configured {
            self.configured = configured.ckn.clone();
            self.stored = None;
            self.unwritten = None;
        }
    }

    /// Writes `key` down (settled or not); only then is it in `stored`.
    pub(crate) fn write(&mut self, key: CaKey, settled: bool) -> Result<(), String> {
        let text = format!(
            "ckn {}\ncak {}\nreplaces {}\nsettled {}\n",
            hex(&key.ckn),
            hex(key.cak.as_bytes()),
            hex(&self.configured),
            if settled { "yes" } else { "no" }
        );
        let written = self
            .path
            .parent()
            .map_or(Ok(()), |d| {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d)
            })
            .and_then(|()| interlink_sys::write_durably(&self.path, text.as_bytes(), 0o600));
        // The text held the CAK: not left in freed memory.
        let mut text = text.into_bytes();
        text.fill(0);
        written.map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.stored = Some(Stored { key, settled });
        self.unwritten = None;
        Ok(())
    }
}

/// A fresh CAK of `len` octets and a CKN of 16, both random.
pub(crate) fn random_key(len: usize) -> Result<CaKey, String> {
    let cak = random_sak(len).map_err(|e| e.to_string())?;
    let ckn = random_sak(16).map_err(|e| e.to_string())?;
    Ok(CaKey {
        ckn: ckn.as_bytes().to_vec(),
        cak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CaKey {
        CaKey {
            ckn: vec![n; 16],
            cak: Secret::new(vec![n; 16]).unwrap(),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("il-cak-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn written_down_then_read_back_in_the_keychain_order() {
        let d = dir("order");
        let configured = key(1);
        let chain = [configured.clone()];
        let mut r = Replacement::load(&d, "l", &configured).unwrap();
        assert_eq!(r.keychain(&chain), vec![configured.clone()]);
        r.write(key(2), false).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(&d, "l"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A restart reads it: the new key first, the configured one after it until settled.
        let mut r = Replacement::load(&d, "l", &configured).unwrap();
        assert_eq!(r.keychain(&chain), vec![key(2), key(1)]);
        r.write(key(2), true).unwrap();
        let r = Replacement::load(&d, "l", &configured).unwrap();
        assert_eq!(r.keychain(&chain), vec![key(2)]);
        // Another configured CKN (paired again under this name): the file is not its.
        let r = Replacement::load(&d, "l", &key(3)).unwrap();
        assert_eq!(r.stored, None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let d = dir("bad");
        std::fs::create_dir_all(d.join("cak")).unwrap();
        for text in [
            "",
            "ckn 0101\ncak 00\nreplaces 01\nsettled no\n",
            "ckn 01\ncak 0101010101010101010101010101010101\nreplaces 02\nsettled no\n",
            "ckn zz\ncak 01010101010101010101010101010101\nreplaces 02\nsettled no\n",
            "ckn 01\ncak 01010101010101010101010101010101\nreplaces 01\nsettled no\n",
            "ckn 01\ncak 01010101010101010101010101010101\nreplaces 02\nsettled maybe\n",
        ] {
            std::fs::write(path(&d, "l"), text).unwrap();
            let e = Replacement::load(&d, "l", &key(1)).err();
            assert!(e.is_some_and(|e| e.contains("cak/l")), "{text:?}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
