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

use std::time::Instant;

use interlink_mka::kay::{Action, CaKey, Kay};
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

impl Replacement {
    /// A turn of the KaY's: a CAK the configured CA's key server handed over (`taken`) is
    /// written down and run; as that key server, one is made, written down and handed over;
    /// once the new CA carries the link all round, that is written down and the configured
    /// CA dropped. Returns what the KaY asks for meanwhile.
    pub(crate) fn step(
        &mut self,
        kay: &mut Kay,
        chain: &[CaKey],
        taken: Vec<(usize, CaKey)>,
        now: Instant,
        name: &str,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(configured) = chain.first() else {
            return out;
        };
        let configured_ca = kay.ckns().position(|c| c == configured.ckn.as_slice());
        let settled = self.stored.as_ref().is_some_and(|s| s.settled);
        for (ca, key) in taken {
            if Some(ca) == configured_ca && !settled {
                if self.stored.as_ref().map(|s| &s.key.ckn) != Some(&key.ckn) {
                    self.unwritten = Some(key);
                }
            } else {
                warn!(
                    "mka: link {name}: a CAK distributed in CKN {} not taken: only the configured CA's is, once",
                    kay.ckns().nth(ca).map(hex).unwrap_or_default()
                );
            }
        }
        if self.stored.is_none()
            && self.unwritten.is_none()
            && configured_ca.is_some_and(|ca| kay.is_key_server_of(ca))
        {
            match random_key(configured.cak.len()) {
                Ok(k) => self.unwritten = Some(k),
                Err(e) => warn!("mka: link {name}: cannot make a CAK: {e}"),
            }
        }
        let mut rechain = false;
        if let Some(key) = self.unwritten.clone() {
            let ckn = hex(&key.ckn);
            match self.write(key, false) {
                Ok(()) => {
                    log!("mka: link {name}: a new CAK, CKN {ckn}, to replace the configured one: written down, running beside it");
                    rechain = true;
                }
                Err(e) => warn!(
                    "mka: link {name}: the new CAK is not used before it is written down: {e}"
                ),
            }
        }
        if let Some(s) = self.stored.clone().filter(|s| !s.settled) {
            let first = kay.ckns().next() == Some(s.key.ckn.as_slice());
            if first && kay.settled(0) {
                match self.write(s.key, true) {
                    Ok(()) => {
                        log!(
                            "mka: link {name}: the new CAK carries the link; the configured one (CKN {}) is no longer accepted",
                            hex(&configured.ckn)
                        );
                        rechain = true;
                    }
                    Err(e) => warn!("mka: link {name}: the configured CAK stays until this is written down: {e}"),
                }
            }
        }
        if rechain {
            match kay.set_keys(self.keychain(chain), now) {
                Ok(a) => out.extend(a),
                Err(e) => warn!("mka: link {name}: keychain not taken: {e}"),
            }
        }
        // As the configured CA's key server, the new CAK goes out (again, after a restart).
        let configured_ca = kay.ckns().position(|c| c == configured.ckn.as_slice());
        if let (Some(s), Some(ca)) = (&self.stored, configured_ca) {
            if !s.settled && kay.is_key_server_of(ca) && !kay.distributes_cak(ca) {
                match kay.distribute_cak(ca, now, &s.key) {
                    Ok(a) => out.extend(a),
                    Err(e) => warn!("mka: link {name}: cannot distribute the new CAK: {e}"),
                }
            }
        }
        out
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

    /// Two gateways' KaYs with their replacements, on a fake clock and a wire that delivers
    /// at once; one (or both) can crash after any number of MKPDUs delivered: it starts
    /// again from what its state directory holds, and what was in flight is lost.
    struct Gw {
        dir: PathBuf,
        sci: u8,
        kay: Kay,
        r: Replacement,
    }

    fn configured() -> [CaKey; 1] {
        [key(1)]
    }

    impl Gw {
        fn start(dir: &Path, sci: u8, now: Instant) -> Gw {
            let template = interlink_mka::participant::Config {
                cak: Secret::new(vec![0; 16]).unwrap(),
                ckn: vec![0],
                sci: [2, 0, 0, 0, 0, sci, 0, 1],
                priority: 16,
                sak_len: 32,
                cipher_suite: Some(0x0080_c200_0001_0004),
                xpn: true,
                rekey_interval: None,
                pn_threshold: 1 << 62,
                take_cak: true,
            };
            let r = Replacement::load(dir, "l", &configured()[0]).unwrap();
            let kay = Kay::new(template, r.keychain(&configured()), now).unwrap();
            Gw {
                dir: dir.to_owned(),
                sci,
                kay,
                r,
            }
        }

        fn addrs(&self) -> [u8; 12] {
            let mut a = [0u8; 12];
            a[..6].copy_from_slice(&interlink_mka::mkpdu::MKA_GROUP);
            a[6..].copy_from_slice(&[2, 0, 0, 0, 0, self.sci]);
            a
        }
    }

    struct Net {
        now: Instant,
        gw: [Gw; 2],
        delivered: usize,
        /// Crash side 0, 1 or (2) both once this many MKPDUs have been delivered.
        crash: Option<(usize, usize)>,
    }

    impl Net {
        fn deliver(&mut self, from: usize, acts: Vec<Action>) {
            let mut queue = vec![(from, acts)];
            'turns: while let Some((i, acts)) = queue.pop() {
                let mut taken = Vec::new();
                for a in acts {
                    match a {
                        Action::Send(f) => {
                            let addrs = self.gw[i].addrs();
                            let out = self.gw[1 - i].kay.on_mkpdu(self.now, &addrs, &f);
                            self.delivered += 1;
                            queue.push((1 - i, out));
                            if let Some((victim, at)) = self.crash.filter(|c| c.1 == self.delivered)
                            {
                                let _ = at;
                                self.crash = None;
                                let victims: Vec<usize> = [0, 1]
                                    .into_iter()
                                    .filter(|v| victim == 2 || *v == victim)
                                    .collect();
                                for &v in &victims {
                                    let (dir, sci) = (self.gw[v].dir.clone(), self.gw[v].sci);
                                    self.gw[v] = Gw::start(&dir, sci, self.now);
                                }
                                // What a crashed side had yet to do is lost with it.
                                queue.retain(|(s, _)| !victims.contains(s));
                                if victims.contains(&i) {
                                    continue 'turns;
                                }
                            }
                        }
                        Action::Cak { ca, key } => taken.push((ca, key)),
                        _ => {}
                    }
                }
                let g = &mut self.gw[i];
                let more = g.r.step(&mut g.kay, &configured(), taken, self.now, "l");
                if !more.is_empty() {
                    queue.push((i, more));
                }
            }
        }

        fn run(&mut self, ticks: usize) {
            for _ in 0..ticks {
                self.now += std::time::Duration::from_millis(100);
                for i in 0..2 {
                    if self.gw[i].kay.next_timer().is_some_and(|t| t <= self.now) {
                        let acts = self.gw[i].kay.on_timer(self.now);
                        self.deliver(i, acts);
                    }
                }
            }
        }
    }

    #[test]
    fn a_crash_at_any_step_still_ends_on_one_replaced_cak_on_both_sides() {
        // How many MKPDUs a replacement without a crash takes.
        let mut whole = 0;
        for victim in [0, 1, 2] {
            for at in 0..40 {
                let d = dir(&format!("crash-{victim}-{at}"));
                let now = Instant::now();
                let mut net = Net {
                    now,
                    gw: [
                        Gw::start(&d.join("a"), 1, now),
                        Gw::start(&d.join("b"), 2, now),
                    ],
                    delivered: 0,
                    crash: (at > 0).then_some((victim, at)),
                };
                net.run(150);
                if at == 0 {
                    whole = whole.max(net.delivered);
                }
                let [a, b] = &net.gw;
                let (sa, sb) = (a.r.stored.clone(), b.r.stored.clone());
                let sa =
                    sa.unwrap_or_else(|| panic!("side 0, crash {victim} at {at}: nothing stored"));
                assert_eq!(Some(&sa), sb.as_ref(), "crash {victim} at {at}");
                assert!(sa.settled, "crash {victim} at {at}");
                for g in [a, b] {
                    assert_eq!(g.kay.ckns().collect::<Vec<_>>(), [sa.key.ckn.as_slice()]);
                    assert!(g.kay.settled(0), "crash {victim} at {at}: side {}", g.sci);
                    // What runs is what a restart would read.
                    let on_disk = Replacement::load(&g.dir, "l", &configured()[0]).unwrap();
                    assert_eq!(on_disk.stored.as_ref(), Some(&sa));
                }
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        // The crashes fell before, during and after the replacement (28 MKPDUs in all, the
        // replacement in the first few).
        assert!((10..40).contains(&whole), "{whole} MKPDUs");
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
