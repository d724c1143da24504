//! Packet numbers that survive the process, for keys that do (static keys).
//!
//! AES-GCM must never see the same key and IV twice, and the 802.1AE IV is the SCI (or SSCI
//! and salt) with the PN: a static SAK that restarted at PN 1 after a crash, a watchdog kill
//! or a reload would send new frames under IVs it had used. So the transmit side reserves
//! PNs in blocks and writes the block's end to a file (write, fsync, rename, fsync of the
//! directory) before it uses any PN of the block; the next start resumes above it. A kill -9
//! loses at most the rest of a block and never reuses a PN.
//!
//! The receive side keeps the limit below which it accepts frames the same way, so that
//! frames captured before a restart are refused after it: a valid frame above the stored
//! limit is delivered only once a higher limit is durable. The limit runs ahead of the
//! highest PN accepted by a margin sized to about 200 ms of the recent rate, so that the
//! writes stay off the packet path; after a restart the peer's first frames up to that
//! margin are refused (counted as `InPktsUnreserved`) unless the stop was clean, when the
//! exact values are written.
//!
//! One file per link, `<state_dir>/<link>.pn`, text:
//!
//! ```text
//! interlink-pn-state 1
//! tx <sha-256 of the key, hex> <the first PN a restart may use>
//! rx <sha-256 of the key, hex> <the lowest PN a restart accepts>
//! ```
//!
//! Nothing secret is stored: keys are named by a one-way hash (domain-separated SHA-256 of
//! the suite, the SAK and, for XPN, the SSCI and salt). A key that is replaced gets a record
//! of its own and starts at 1; records of earlier keys are kept, so that going back to an
//! old key resumes where it stopped.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use interlink_macsec::{CipherSuite, TxSecY};

use crate::link::SaKeys;

/// The first line of a state file.
const MAGIC: &str = "interlink-pn-state 1";
/// State files larger than this are refused: a record is about 90 octets.
const MAX_FILE_LEN: u64 = 1 << 20;
/// Records kept per file; the oldest (least recently used) go first.
const MAX_RECORDS: usize = 4096;

/// PNs reserved at a time for transmission: about a second of a busy link, and 4096
/// restarts of a 32-bit PN space.
pub fn tx_block(suite: CipherSuite) -> u64 {
    if suite.is_xpn() {
        1 << 24
    } else {
        1 << 20
    }
}

/// The most a receive limit runs ahead of the highest PN accepted.
pub const MAX_RX_MARGIN: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Tx,
    Rx,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Tx => "tx",
            Direction::Rx => "rx",
        }
    }
}

/// A key as the state file names it: a one-way hash.
pub type KeyId = [u8; 32];

/// Names a key by a domain-separated SHA-256 of everything that makes its IVs.
pub fn key_id(suite: CipherSuite, keys: &SaKeys) -> KeyId {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"interlink pn-state key id\0");
    ctx.update(suite.name().as_bytes());
    ctx.update(&[0]);
    ctx.update(&(keys.sak.as_bytes().len() as u32).to_be_bytes());
    ctx.update(keys.sak.as_bytes());
    if let Some((ssci, salt)) = keys.xpn {
        ctx.update(&ssci.to_be_bytes());
        ctx.update(&salt);
    }
    let mut id = [0; 32];
    id.copy_from_slice(ctx.finish().as_ref());
    id
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("PN state {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("PN state {}:{line}: {what}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    dir: Direction,
    key: KeyId,
    resume: u64,
}

/// A link's state file, as read and as it will be written.
#[derive(Debug)]
pub struct PnFile {
    path: PathBuf,
    records: Vec<Record>,
}

impl PnFile {
    /// Reads the state at `path`. A file that does not exist is a link's first start; its
    /// directory must exist. Anything else that is wrong is an error naming the file.
    pub fn load(path: &Path) -> Result<PnFile, StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let meta = std::fs::metadata(dir).map_err(|e| StateError::Io {
            path: dir.to_owned(),
            source: e,
        })?;
        if !meta.is_dir() {
            return Err(StateError::Io {
                path: dir.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let text = match File::open(path) {
            Ok(f) => {
                let len = f.metadata().map_err(io)?.len();
                if len > MAX_FILE_LEN {
                    return Err(StateError::Corrupt {
                        path: path.to_owned(),
                        line: 0,
                        what: format!("{len} octets, more than a state file holds"),
                    });
                }
                io::read_to_string(f).map_err(io)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let records = if text.is_empty() {
            Vec::new()
        } else {
            parse(&text).map_err(|(line, what)| StateError::Corrupt {
                path: path.to_owned(),
                line,
                what,
            })?
        };
        Ok(PnFile {
            path: path.to_owned(),
            records,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `key` resumes in direction `dir`: 1 for a key never seen.
    pub fn resume(&self, dir: Direction, key: &KeyId) -> u64 {
        self.records
            .iter()
            .find(|r| r.dir == dir && r.key == *key)
            .map_or(1, |r| r.resume)
    }

    /// Records where `key` resumes; the record moves to the end (most recently used).
    pub fn set(&mut self, dir: Direction, key: &KeyId, resume: u64) {
        self.records.retain(|r| !(r.dir == dir && r.key == *key));
        self.records.push(Record {
            dir,
            key: *key,
            resume,
        });
        if self.records.len() > MAX_RECORDS {
            let excess = self.records.len() - MAX_RECORDS;
            self.records.drain(..excess);
        }
    }

    /// Writes the state durably: a temporary file, fsync, rename over the old one, fsync of
    /// the directory. Either the old or the new state survives a crash at any point.
    pub fn save(&self) -> Result<(), StateError> {
        let mut text = String::with_capacity(32 + self.records.len() * 90);
        text.push_str(MAGIC);
        text.push('\n');
        for r in &self.records {
            let _ = write!(text, "{} ", r.dir.name());
            for b in r.key {
                let _ = write!(text, "{b:02x}");
            }
            let _ = writeln!(text, " {}", r.resume);
        }
        interlink_sys::write_durably(&self.path, text.as_bytes(), 0o600).map_err(|source| {
            StateError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        Ok(())
    }
}

fn parse(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, MAGIC)) => {}
        _ => return Err((1, format!("does not start with {MAGIC:?}"))),
    }
    let mut records = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split(' ');
        let (Some(dir), Some(key), Some(resume), None) = (f.next(), f.next(), f.next(), f.next())
        else {
            return Err((n, "expected: tx|rx KEY-HASH PN".into()));
        };
        let dir = match dir {
            "tx" => Direction::Tx,
            "rx" => Direction::Rx,
            other => return Err((n, format!("unknown direction {other:?}"))),
        };
        let mut id = [0u8; 32];
        let hex = key.as_bytes();
        if hex.len() != 64 {
            return Err((n, "the key hash is not 64 hex digits".into()));
        }
        for (b, pair) in id.iter_mut().zip(hex.chunks_exact(2)) {
            let s = std::str::from_utf8(pair).map_err(|_| (n, "not hex".to_owned()))?;
            *b =
                u8::from_str_radix(s, 16).map_err(|_| (n, "the key hash is not hex".to_owned()))?;
        }
        let resume: u64 = resume
            .parse()
            .map_err(|_| (n, format!("PN {resume:?} is not a number")))?;
        if resume == 0 {
            return Err((n, "PN 0".into()));
        }
        if records.iter().any(|r: &Record| r.dir == dir && r.key == id) {
            return Err((n, "a key recorded twice".into()));
        }
        records.push(Record {
            dir,
            key: id,
            resume,
        });
        if records.len() > MAX_RECORDS {
            return Err((n, format!("more than {MAX_RECORDS} records")));
        }
    }
    Ok(records)
}

/// What the transmit SA and the receive worker want reserved, and what is durable, between
/// the link's threads and its persister thread.
#[derive(Default)]
struct Wants {
    /// The receive limit wanted (the highest PN to accept), higher or lower than the one
    /// written: the receive worker never accepts above either.
    rx_want: u64,
    /// Someone saw the transmit SA near its ceiling.
    poke: bool,
    /// The link is stopping, its workers gone: the receive SA's exact next PN (0 if the
    /// receive worker did not leave one).
    stop: Option<u64>,
    /// Writes that failed, and the last failure.
    errors: u64,
    last_error: Option<String>,
    /// A failed write is tried again no sooner than this.
    retry_at: Option<Instant>,
}

/// The link's side of the persister: asks for reservations, waits for them, reads what is
/// durable. Shared by the workers and the persister thread.
pub struct Reserve {
    wants: Mutex<Wants>,
    cv: Condvar,
    /// The receive limit frames may be accepted up to: what the file holds, or lower while
    /// a lower one is on its way there (never higher).
    rx_durable: AtomicU64,
    /// The receive limit last asked for (`Wants::rx_want`), readable without the lock: every
    /// receive worker sets the SA's limit from the same request (see `rx::RxReserve`).
    rx_requested: AtomicU64,
    /// Per receive worker (lane), how many times it has applied the limits after a batch: a
    /// lower limit goes to the file only once every worker has done so twice since it was
    /// asked for, so that none is still validating under the higher one (see `Persister`).
    rx_ticks: Vec<AtomicU64>,
    /// The transmit SA's next PN passed this: time to reserve the next block.
    tx_low_water: AtomicU64,
}

impl Reserve {
    pub(crate) fn new(rx_durable: u64, tx_low_water: u64, lanes: usize) -> Reserve {
        Reserve {
            wants: Mutex::new(Wants {
                rx_want: rx_durable,
                ..Wants::default()
            }),
            cv: Condvar::new(),
            rx_durable: AtomicU64::new(rx_durable),
            rx_requested: AtomicU64::new(rx_durable),
            rx_ticks: (0..lanes.max(1)).map(|_| AtomicU64::new(0)).collect(),
            tx_low_water: AtomicU64::new(tx_low_water),
        }
    }

    /// For a transmit worker after each batch: wakes the persister once the SA's next PN is
    /// past the low-water mark. One load and a compare on the common path.
    #[inline]
    pub(crate) fn check_tx(&self, next_pn: u64) {
        if next_pn > self.tx_low_water.load(Ordering::Relaxed) {
            if let Ok(mut w) = self.wants.lock() {
                if !w.poke {
                    w.poke = true;
                    self.cv.notify_all();
                }
            }
        }
    }

    /// The receive limit that is durable now.
    #[inline]
    pub(crate) fn rx_durable(&self) -> u64 {
        self.rx_durable.load(Ordering::Acquire)
    }

    /// The receive limit last asked for, by any worker.
    pub(crate) fn rx_requested(&self) -> u64 {
        self.rx_requested.load(Ordering::Acquire)
    }

    /// Receive worker `lane` has applied the limits after a batch.
    pub(crate) fn ticked(&self, lane: usize) {
        if let Some(t) = self.rx_ticks.get(lane) {
            t.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn ticks(&self) -> Vec<u64> {
        self.rx_ticks
            .iter()
            .map(|t| t.load(Ordering::Acquire))
            .collect()
    }

    /// Asks for the receive limit `limit`, without waiting.
    pub(crate) fn request_rx(&self, limit: u64) {
        if let Ok(mut w) = self.wants.lock() {
            if limit != w.rx_want {
                w.rx_want = limit;
                self.rx_requested.store(limit, Ordering::Release);
                self.cv.notify_all();
            }
        }
    }

    /// Asks for the receive limit `limit` and waits until at least `needed` is durable, a
    /// write fails, or `timeout` passes. Returns the durable limit.
    pub(crate) fn reserve_rx(&self, limit: u64, needed: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let Ok(mut w) = self.wants.lock() else {
            return self.rx_durable();
        };
        if limit != w.rx_want {
            w.rx_want = limit;
            self.rx_requested.store(limit, Ordering::Release);
            self.cv.notify_all();
        }
        let errors = w.errors;
        while self.rx_durable() < needed && w.errors == errors && w.stop.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Another lane may have asked for a lower limit meanwhile (it read the PNs
            // before this frame): a frame waiting here asks again.
            if w.rx_want < needed {
                w.rx_want = limit.max(needed);
                self.rx_requested.store(w.rx_want, Ordering::Release);
                self.cv.notify_all();
            }
            w = match self.cv.wait_timeout(w, left) {
                Ok((w, _)) => w,
                Err(_) => return self.rx_durable(),
            };
        }
        self.rx_durable()
    }

    /// Failed writes so far, and the last failure.
    pub fn errors(&self) -> (u64, Option<String>) {
        self.wants
            .lock()
            .map(|w| (w.errors, w.last_error.clone()))
            .unwrap_or_default()
    }

    /// Tells the persister the link has stopped: the transmit SA's next PN and the receive
    /// SA's (`rx_next`, 0 if unknown), exact now that no worker runs, are written as they are.
    pub(crate) fn stop(&self, rx_next: u64) {
        if let Ok(mut w) = self.wants.lock() {
            w.stop = Some(rx_next);
            self.cv.notify_all();
        }
    }
}

/// The persister thread of a link with static keys: writes reservations as the link needs
/// them, and the exact state when it stops.
pub(crate) struct Persister {
    pub(crate) file: PnFile,
    pub(crate) tx_key: KeyId,
    pub(crate) rx_key: KeyId,
    /// A clone of the link's transmit SC: it shares the SA, and so its PNs and ceiling.
    pub(crate) tx: TxSecY,
    pub(crate) tx_an: interlink_macsec::An,
    pub(crate) block: u64,
    pub(crate) reserve: std::sync::Arc<Reserve>,
    /// A clone of the link's receive SecY (it shares the SAs), the peer's SCI and the static
    /// key's AN: the highest PN accepted, read before a lower limit is written.
    pub(crate) rx: interlink_macsec::RxSecY,
    pub(crate) rx_sci: interlink_macsec::Sci,
    pub(crate) rx_an: interlink_macsec::An,
}

impl Persister {
    /// The highest PN the static key's receive SA has accepted (0: none, or the SA on its AN
    /// is another's).
    fn rx_accepted(&self) -> u64 {
        self.rx
            .sc(self.rx_sci)
            .and_then(|sc| sc.sa(self.rx_an))
            .filter(|sa| sa.limit() != u64::MAX)
            .map_or(0, |sa| sa.next_pn().saturating_sub(1))
    }

    /// Writes the reservations as the workers ask. A higher receive limit is written at
    /// once. A lower one (the traffic slowed) takes effect in memory at once, but goes to
    /// the file only once every receive worker has applied the limits twice since (so none
    /// is still validating a batch under the higher one), and then no lower than the
    /// highest PN accepted by then: the file never says less than a PN some worker accepted.
    pub(crate) fn run(mut self) {
        let max = self.tx.suite().max_pn();
        let r = self.reserve.clone();
        // What the file holds, and the workers' ticks when the limit last went down.
        let mut file_rx = r.rx_durable();
        let mut lowering: Option<Vec<u64>> = None;
        loop {
            let Ok(mut w) = r.wants.lock() else { return };
            // Wait for work: a poke, a receive limit wanted, the stop; every 100 ms the
            // transmit SA is looked at anyway, every 5 ms while a lower limit waits.
            let rx_durable = r.rx_durable();
            let idle = |w: &Wants| {
                w.stop.is_none()
                    && !w.poke
                    && ((w.rx_want == rx_durable && w.rx_want == file_rx && lowering.is_none())
                        || w.retry_at.is_some_and(|t| Instant::now() < t))
            };
            if idle(&w) {
                w = match r.cv.wait_timeout(w, Duration::from_millis(100)) {
                    Ok((w, _)) => w,
                    Err(_) => return,
                };
            } else if lowering.is_some() && w.stop.is_none() && !w.poke {
                w = match r.cv.wait_timeout(w, Duration::from_millis(5)) {
                    Ok((w, _)) => w,
                    Err(_) => return,
                };
            }
            if let Some(rx_next) = w.stop {
                drop(w);
                // Exact: no PN at or above the SA's next was used (this clone holds the static
                // key's SA even if the link has since put another on its AN), none at or
                // above `rx_next` accepted.
                let tx_next = self
                    .tx
                    .sa(self.tx_an)
                    .map_or(u64::MAX, |sa| sa.next_pn().unwrap_or(u64::MAX));
                // Every worker gone: what the SA accepted is exact.
                let rx_next = match rx_next {
                    0 => file_rx.saturating_add(1),
                    n => n,
                }
                .max(self.rx_accepted().saturating_add(1));
                self.file.set(Direction::Tx, &self.tx_key, tx_next.max(1));
                self.file.set(Direction::Rx, &self.rx_key, rx_next.max(1));
                if let Err(e) = self.file.save() {
                    // The reservations already written stand: nothing is reused.
                    if let Ok(mut w) = r.wants.lock() {
                        w.errors += 1;
                        w.last_error = Some(e.to_string());
                    }
                }
                return;
            }
            if w.retry_at.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            w.poke = false;
            let rx_want = w.rx_want;
            drop(w);

            let Some(sa) = self.tx.sa(self.tx_an) else {
                return;
            };
            let ceiling = sa.ceiling();
            let next = sa.next_pn().unwrap_or(max);
            let tx_new = (ceiling < max && next.saturating_add(self.block / 2) > ceiling)
                .then(|| ceiling.saturating_add(self.block).min(max));
            let mut rx_new = None;
            if rx_want >= file_rx {
                // Higher than the file (or back to it): written at once.
                lowering = None;
                if rx_want != file_rx {
                    rx_new = Some(rx_want);
                } else if r.rx_durable() != file_rx {
                    r.rx_durable.store(file_rx, Ordering::Release);
                    r.cv.notify_all();
                }
            } else {
                // Lower than the file: in memory now (workers waiting for a limit within the
                // file's go on), on disk once the workers are past the higher one.
                let mem = r.rx_durable();
                if rx_want != mem {
                    r.rx_durable.store(rx_want, Ordering::Release);
                    r.cv.notify_all();
                }
                if rx_want < mem || lowering.is_none() {
                    lowering = Some(r.ticks());
                }
                let quiet = lowering.as_ref().is_some_and(|from| {
                    r.ticks()
                        .iter()
                        .zip(from)
                        .all(|(now, then)| *now >= then + 2)
                });
                if quiet {
                    rx_new = Some(rx_want.max(self.rx_accepted()));
                }
            }
            if tx_new.is_none() && rx_new.is_none() {
                continue;
            }
            if let Some(c) = tx_new {
                self.file
                    .set(Direction::Tx, &self.tx_key, c.saturating_add(1));
            }
            if let Some(l) = rx_new {
                self.file
                    .set(Direction::Rx, &self.rx_key, l.saturating_add(1));
            }
            let result = self.file.save();
            let Ok(mut w) = r.wants.lock() else { return };
            match result {
                Ok(()) => {
                    if let Some(c) = tx_new {
                        sa.set_ceiling(c);
                        r.tx_low_water
                            .store(c.saturating_sub(self.block / 2), Ordering::Relaxed);
                    }
                    if let Some(l) = rx_new {
                        r.rx_durable.store(l, Ordering::Release);
                        file_rx = l;
                        lowering = None;
                    }
                    w.retry_at = None;
                }
                Err(e) => {
                    // What was set in memory but not written stays unused: the ceiling and
                    // the limit only move after a write that succeeded.
                    if tx_new.is_some() {
                        self.file
                            .set(Direction::Tx, &self.tx_key, ceiling.saturating_add(1));
                    }
                    if rx_new.is_some() {
                        self.file
                            .set(Direction::Rx, &self.rx_key, file_rx.saturating_add(1));
                    }
                    w.errors += 1;
                    w.last_error = Some(e.to_string());
                    w.retry_at = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            r.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_macsec::Sak;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("il-pnstate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn keys(b: u8) -> SaKeys {
        SaKeys {
            sak: Sak::new(vec![b; 16]),
            xpn: None,
        }
    }

    #[test]
    fn records_round_trip_and_replace() {
        let d = dir("roundtrip");
        let path = d.join("l.pn");
        let mut f = PnFile::load(&path).unwrap();
        let (a, b) = (
            key_id(CipherSuite::GcmAes128, &keys(1)),
            key_id(CipherSuite::GcmAes128, &keys(2)),
        );
        assert_ne!(a, b);
        assert_eq!(f.resume(Direction::Tx, &a), 1);
        f.set(Direction::Tx, &a, 1 << 20);
        f.set(Direction::Rx, &a, 77);
        f.set(Direction::Tx, &b, 5);
        f.set(Direction::Tx, &a, (1 << 20) + 1);
        f.save().unwrap();
        let g = PnFile::load(&path).unwrap();
        assert_eq!(g.resume(Direction::Tx, &a), (1 << 20) + 1);
        assert_eq!(g.resume(Direction::Rx, &a), 77);
        assert_eq!(g.resume(Direction::Tx, &b), 5);
        assert_eq!(g.resume(Direction::Rx, &b), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(MAGIC), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
        // Nothing of the key itself is in the file.
        assert!(!text.contains("01010101"), "{text}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_key_id_covers_suite_key_and_xpn_parameters() {
        let k = keys(7);
        let mut x = SaKeys {
            sak: Sak::new(vec![7; 16]),
            xpn: Some((1, [0; 12])),
        };
        let base = key_id(CipherSuite::GcmAesXpn128, &x);
        x.xpn = Some((2, [0; 12]));
        assert_ne!(base, key_id(CipherSuite::GcmAesXpn128, &x));
        assert_ne!(
            key_id(CipherSuite::GcmAes128, &k),
            key_id(CipherSuite::GcmAesXpn128, &k)
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let d = dir("bad");
        let path = d.join("l.pn");
        let key = "ab".repeat(32);
        for (text, line) in [
            ("something else\n".to_owned(), 1),
            (format!("{MAGIC}\ntx {key}\n"), 2),
            (format!("{MAGIC}\ntx {key} 0\n"), 2),
            (format!("{MAGIC}\ntx {key} 12x\n"), 2),
            (format!("{MAGIC}\nup {key} 12\n"), 2),
            (format!("{MAGIC}\ntx {} 12\n", "zz".repeat(32)), 2),
            (format!("{MAGIC}\ntx {key} 3\ntx {key} 4\n"), 3),
        ] {
            std::fs::write(&path, &text).unwrap();
            match PnFile::load(&path) {
                Err(StateError::Corrupt { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // A missing directory is an error naming it; a missing file is a first start.
        let missing = d.join("nowhere").join("l.pn");
        let e = PnFile::load(&missing).unwrap_err().to_string();
        assert!(e.contains("nowhere"), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert!(PnFile::load(&path).unwrap().records.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_unwritable_directory_fails_the_save() {
        // As root, a read-only directory is still writable; a file in place of the
        // directory is not.
        let d = dir("unwritable");
        let blocker = d.join("file");
        std::fs::write(&blocker, b"").unwrap();
        let f = PnFile {
            path: blocker.join("l.pn"),
            records: Vec::new(),
        };
        assert!(matches!(f.save(), Err(StateError::Io { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }
}
