//! A flow table of one worker and direction: fed a packet at a time from the data path, with
//! no lock and no allocation per packet once a flow exists; bounded to `max_flows`. Flows end
//! as IPFIX exporters end them (RFC 5102 flowEndReason): idle for `idle` (1), alive for
//! `active` (2, the flow goes on as a new one), a TCP FIN or RST seen and quiet for a second
//! (3), the table stopped (4), or evicted when the table is full and a new flow comes (5).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::key::{parse, Key};

/// Why a flow's record was exported (IPFIX flowEndReason, IE 136).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    Idle = 1,
    Active = 2,
    EndOfFlow = 3,
    Forced = 4,
    LackOfResources = 5,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub octets: u64,
    pub packets: u64,
    /// Milliseconds since the Unix epoch.
    pub first_ms: u64,
    pub last_ms: u64,
    /// Every TCP flag seen, OR'd.
    pub tcp_flags: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Key,
    pub counts: Counts,
    pub reason: EndReason,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableConfig {
    pub max_flows: usize,
    pub active_ms: u64,
    pub idle_ms: u64,
    /// 1:N packet sampling: every Nth packet is counted (1 counts all).
    pub sampling: u32,
}

/// A TCP FIN or RST: the flow ends once it has been quiet this long (late ACKs and
/// retransmissions stay in it).
const END_QUIET_MS: u64 = 1000;
const FIN_RST: u8 = 0x01 | 0x04;

/// A keyed hash for flow keys: a multiply-fold per 8 octets (the mixing ahash and foldhash
/// use without AES), seeded at random per table, so that hosts cannot pick keys that land in
/// one bucket; several times cheaper than SipHash on the per-packet path.
#[derive(Clone, Copy)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    fn random() -> KeyHasher {
        // RandomState is seeded from the OS; its first hash is a random number.
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        KeyHasher { seed: seed | 1 }
    }
}

pub struct KeyHash {
    seed: u64,
    h: u64,
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

impl Hasher for KeyHash {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 octets"));
            self.h = fold(self.h ^ w, self.seed ^ 0x9e37_79b9_7f4a_7c15);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.h = fold(
                self.h ^ u64::from_le_bytes(w) ^ rest.len() as u64,
                self.seed ^ 0x9e37_79b9_7f4a_7c15,
            );
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.h = fold(self.h ^ u64::from(i), self.seed ^ 0xa076_1d64_78bd_642f);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.h = fold(self.h ^ u64::from(i), self.seed ^ 0xe703_7ed1_a0b4_28db);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold(self.h, self.seed)
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;
    fn build_hasher(&self) -> KeyHash {
        KeyHash {
            seed: self.seed,
            h: self.seed,
        }
    }
}

pub struct Table {
    cfg: TableConfig,
    flows: HashMap<Key, Counts, KeyHasher>,
    /// Consecutive packets of one flow (the segments of a TSO packet, a train of a bulk
    /// transfer), added up before they go into the map: one lookup a run, not a packet.
    pending: Option<(Key, Counts)>,
    /// Packets seen, for sampling.
    seen: u64,
    /// Flows evicted from a full table, in all.
    pub evicted: u64,
    /// Packets that were not IP or too short for their headers.
    pub unparsed: u64,
}

impl Table {
    pub fn new(cfg: TableConfig) -> Table {
        let cfg = TableConfig {
            max_flows: cfg.max_flows.max(1),
            sampling: cfg.sampling.max(1),
            ..cfg
        };
        Table {
            // Room for a quarter to start with: the table grows with the traffic up to the
            // bound, which is what memory per flow is quoted against.
            flows: HashMap::with_capacity_and_hasher(
                (cfg.max_flows / 4).min(4096),
                KeyHasher::random(),
            ),
            cfg,
            pending: None,
            seen: 0,
            evicted: 0,
            unparsed: 0,
        }
    }

    pub fn config(&self) -> TableConfig {
        self.cfg
    }

    /// Flows in the table, the run being added up included.
    pub fn len(&self) -> usize {
        self.flows.len()
            + usize::from(
                self.pending
                    .as_ref()
                    .is_some_and(|(k, _)| !self.flows.contains_key(k)),
            )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Octets the table's slots take: a key and its counts (80) and the hash table's control
    /// octet per slot. The table holds at most 7/8 of its slots and doubles as it grows, so a
    /// flow costs 93 to 186 octets.
    pub fn memory(&self) -> usize {
        self.flows.capacity() * (std::mem::size_of::<(Key, Counts)>() + 1)
    }

    /// Counts the IP packet `ip` seen at `now_ms` (1 in `sampling` of them). A flow evicted
    /// to make room goes to `out`.
    #[inline]
    pub fn account(&mut self, ip: &[u8], now_ms: u64, out: &mut Vec<Record>) {
        self.seen += 1;
        if self.cfg.sampling > 1 && self.seen % u64::from(self.cfg.sampling) != 0 {
            return;
        }
        let Some(p) = parse(ip) else {
            self.unparsed += 1;
            return;
        };
        if let Some((key, c)) = &mut self.pending {
            if *key == p.key {
                c.octets += u64::from(p.octets);
                c.packets += 1;
                c.last_ms = now_ms;
                c.tcp_flags |= p.tcp_flags;
                return;
            }
        }
        self.commit(out);
        self.pending = Some((
            p.key,
            Counts {
                octets: u64::from(p.octets),
                packets: 1,
                first_ms: now_ms,
                last_ms: now_ms,
                tcp_flags: p.tcp_flags,
            },
        ));
    }

    /// Puts the run being added up into the table (at the end of each batch, and before the
    /// table is read). A flow evicted to make room goes to `out`.
    pub fn commit(&mut self, out: &mut Vec<Record>) {
        let Some((key, run)) = self.pending.take() else {
            return;
        };
        if let Some(c) = self.flows.get_mut(&key) {
            c.octets += run.octets;
            c.packets += run.packets;
            c.last_ms = c.last_ms.max(run.last_ms);
            c.tcp_flags |= run.tcp_flags;
            return;
        }
        if self.flows.len() >= self.cfg.max_flows {
            self.evict(run.last_ms, out);
        }
        self.flows.insert(key, run);
    }

    /// Makes room in a full table: an eighth of it goes at once, exported early, the flows
    /// not seen in the last second first (as far as one pass finds them), then any. Two
    /// passes over the table for every eighth of it: a flood of new flows costs each about
    /// 16 slots visited. (Removing one at a time, the first the map yields, emptied the front
    /// of the table and made each search longer: 225 ns a packet.)
    fn evict(&mut self, now_ms: u64, out: &mut Vec<Record>) {
        let batch = (self.cfg.max_flows / 8).max(1);
        let mut room = batch;
        for quiet_only in [true, false] {
            if room == 0 {
                break;
            }
            self.flows.retain(|key, c| {
                if room == 0 || (quiet_only && c.last_ms + 1000 > now_ms) {
                    return true;
                }
                room -= 1;
                out.push(Record {
                    key: *key,
                    counts: *c,
                    reason: EndReason::LackOfResources,
                });
                false
            });
        }
        self.evicted += (batch - room) as u64;
    }

    /// Ends the flows whose time has come (idle, active, FIN or RST and quiet) into `out`.
    pub fn expire(&mut self, now_ms: u64, out: &mut Vec<Record>) {
        self.commit(out);
        let cfg = self.cfg;
        self.flows.retain(|key, c| {
            let quiet = now_ms.saturating_sub(c.last_ms);
            let reason = if quiet >= cfg.idle_ms {
                EndReason::Idle
            } else if c.tcp_flags & FIN_RST != 0 && quiet >= END_QUIET_MS {
                EndReason::EndOfFlow
            } else if now_ms.saturating_sub(c.first_ms) >= cfg.active_ms {
                EndReason::Active
            } else {
                return true;
            };
            out.push(Record {
                key: *key,
                counts: *c,
                reason,
            });
            false
        });
    }

    /// Ends every flow (the link stops) into `out`.
    pub fn drain(&mut self, out: &mut Vec<Record>) {
        self.commit(out);
        out.extend(self.flows.drain().map(|(key, counts)| Record {
            key,
            counts,
            reason: EndReason::Forced,
        }));
    }

    /// The `n` flows with the most octets now, largest first.
    pub fn top(&self, n: usize) -> Vec<Record> {
        let mut all: Vec<Record> = self
            .flows
            .iter()
            .map(|(key, counts)| Record {
                key: *key,
                counts: *counts,
                reason: EndReason::Forced,
            })
            .collect();
        if let Some((key, run)) = &self.pending {
            match all.iter_mut().find(|r| r.key == *key) {
                Some(r) => {
                    r.counts.octets += run.octets;
                    r.counts.packets += run.packets;
                    r.counts.last_ms = r.counts.last_ms.max(run.last_ms);
                }
                None => all.push(Record {
                    key: *key,
                    counts: *run,
                    reason: EndReason::Forced,
                }),
            }
        }
        if all.len() > n {
            all.select_nth_unstable_by(n, |a, b| b.counts.octets.cmp(&a.counts.octets));
            all.truncate(n);
        }
        all.sort_by_key(|r| std::cmp::Reverse(r.counts.octets));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(src_last: u8, sport: u16, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len.max(28)];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&[10, 1, 0, src_last]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&5001u16.to_be_bytes());
        p
    }

    fn tcp(flags: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        p[33] = flags;
        p
    }

    fn cfg() -> TableConfig {
        TableConfig {
            max_flows: 100,
            active_ms: 60_000,
            idle_ms: 15_000,
            sampling: 1,
        }
    }

    #[test]
    fn a_flow_counts_octets_packets_times_and_flags() {
        let mut t = Table::new(cfg());
        let mut out = Vec::new();
        for i in 0..10 {
            t.account(&udp(2, 1000, 128), 1000 + i, &mut out);
        }
        t.account(&udp(3, 1000, 100), 1005, &mut out);
        assert_eq!(t.len(), 2);
        t.account(&tcp(0x02), 1010, &mut out);
        t.account(&tcp(0x10), 1011, &mut out);
        let top = t.top(1);
        assert_eq!(top[0].counts.octets, 1280);
        assert_eq!(top[0].counts.packets, 10);
        assert_eq!(
            (top[0].counts.first_ms, top[0].counts.last_ms),
            (1000, 1009)
        );
        let all = t.top(10);
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter()
                .find(|r| r.key.proto == 6)
                .unwrap()
                .counts
                .tcp_flags,
            0x12
        );
        assert!(out.is_empty());
    }

    #[test]
    fn flows_end_idle_active_at_fin_and_when_stopped() {
        let mut t = Table::new(cfg());
        let mut out = Vec::new();
        t.account(&udp(2, 1, 100), 0, &mut out);
        t.account(&udp(2, 2, 100), 0, &mut out);
        t.account(&tcp(0x11), 0, &mut out); // FIN ACK
                                            // Flow 2 keeps going; flow 1 goes quiet.
        for s in (1..=16).map(|s| s * 1000) {
            t.account(&udp(2, 2, 100), s, &mut out);
        }
        t.expire(16_000, &mut out);
        let reason = |sport: u16, out: &[Record]| {
            out.iter().find(|r| r.key.sport == sport).map(|r| r.reason)
        };
        assert_eq!(reason(1, &out), Some(EndReason::Idle));
        assert_eq!(reason(0, &out), Some(EndReason::Idle));
        assert_eq!(reason(2, &out), None);
        out.clear();
        // FIN seen, quiet a second: end of flow, before the idle timeout.
        t.account(&tcp(0x11), 20_000, &mut out);
        t.expire(21_000, &mut out);
        assert_eq!(reason(0, &out), Some(EndReason::EndOfFlow));
        // Flow 2, alive since 0: the active timeout ends its record, the flow goes on anew.
        for s in 17..=60 {
            t.account(&udp(2, 2, 100), s * 1000, &mut out);
        }
        out.clear();
        t.expire(60_000, &mut out);
        assert_eq!(reason(2, &out), Some(EndReason::Active));
        assert_eq!(out[0].counts.packets, 61);
        t.account(&udp(2, 2, 100), 60_001, &mut out);
        assert_eq!(t.top(1)[0].counts.first_ms, 60_001);
        out.clear();
        t.drain(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reason, EndReason::Forced);
        assert!(t.is_empty());
    }

    #[test]
    fn a_full_table_evicts_and_counts() {
        let mut t = Table::new(TableConfig {
            max_flows: 10,
            ..cfg()
        });
        let mut out = Vec::new();
        for sport in 0..25 {
            t.account(&udp(2, sport, 100), 0, &mut out);
        }
        t.commit(&mut out);
        assert_eq!(t.len(), 10);
        assert_eq!(t.evicted, 15);
        assert_eq!(out.len(), 15);
        assert!(out.iter().all(|r| r.reason == EndReason::LackOfResources));
        // Every packet is in exactly one record or flow.
        let counted: u64 = out.iter().map(|r| r.counts.packets).sum::<u64>()
            + t.top(100).iter().map(|r| r.counts.packets).sum::<u64>();
        assert_eq!(counted, 25);
    }

    #[test]
    fn memory_per_flow() {
        assert_eq!(std::mem::size_of::<(Key, Counts)>(), 80);
        let mut t = Table::new(TableConfig {
            max_flows: 1 << 16,
            ..cfg()
        });
        let mut out = Vec::new();
        for i in 0..(1u32 << 16) {
            let mut p = udp(2, (i & 0xffff) as u16, 100);
            p[14] = (i >> 16) as u8;
            t.account(&p, 0, &mut out);
        }
        assert_eq!(t.len(), 1 << 16);
        let per = t.memory() as f64 / t.len() as f64;
        assert!((93.0..=186.0).contains(&per), "{per} octets a flow");
    }

    #[test]
    fn runs_of_one_flow_are_added_up_before_the_map() {
        let mut t = Table::new(cfg());
        let mut out = Vec::new();
        for i in 0..5 {
            t.account(&udp(2, 1, 100), 10 + i, &mut out);
        }
        // Seen before it is in the map.
        assert_eq!((t.len(), t.flows.len()), (1, 0));
        assert_eq!(t.top(1)[0].counts.packets, 5);
        t.account(&udp(3, 1, 100), 20, &mut out);
        t.account(&udp(2, 1, 100), 21, &mut out);
        t.commit(&mut out);
        let top = t.top(2);
        assert_eq!((top[0].counts.packets, top[0].counts.last_ms), (6, 21));
        assert_eq!(top[0].counts.first_ms, 10);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn sampling_counts_one_in_n() {
        let mut t = Table::new(TableConfig {
            sampling: 10,
            ..cfg()
        });
        let mut out = Vec::new();
        for i in 0..100 {
            t.account(&udp(2, 1, 100), i, &mut out);
        }
        assert_eq!(t.top(1)[0].counts.packets, 10);
    }

    #[test]
    fn garbage_is_counted_not_kept() {
        let mut t = Table::new(cfg());
        let mut out = Vec::new();
        t.account(&[0x45, 0, 0], 0, &mut out);
        t.account(&[], 0, &mut out);
        assert_eq!((t.unparsed, t.len()), (2, 0));
    }

    #[test]
    fn the_hash_spreads_keys() {
        // Keys differing in one port land in many buckets: the low 8 bits of 4096 hashes
        // take most of their 256 values.
        let h = KeyHasher::random();
        let mut seen = std::collections::HashSet::new();
        for port in 0..4096u16 {
            let k = Key {
                src: [0; 16],
                dst: [0; 16],
                sport: port,
                dport: 80,
                proto: 6,
                v6: false,
            };
            seen.insert(h.hash_one(k) & 0xff);
        }
        assert!(seen.len() > 240, "{}", seen.len());
    }
}
