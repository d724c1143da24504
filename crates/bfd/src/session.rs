//! One BFD session (RFC 5880 §6), asynchronous mode, sans IO: fed the packets addressed to it
//! and the time, it says what to send and when the state changed.
//!
//! - Slow start (§6.8.3): while not Up, packets go at most once a second; once Up, at the
//!   configured interval, announced with a Poll Sequence (§6.5) until the peer's Final.
//! - Transmission (§6.8.7): every max(DesiredMinTx, the peer's RequiredMinRx), less 0 to 25 %
//!   of jitter (10 to 25 % with a detect multiplier of 1); a Poll is answered at once with a
//!   Final.
//! - Detection (§6.8.4): no valid packet within the peer's detect multiplier times
//!   max(our RequiredMinRx, its DesiredMinTx), in Init or Up: Down, diagnostic 1.
//! - Reception (§6.8.6): the state table Down -> Init -> Up, AdminDown and Down from the peer
//!   taking an Up session Down (diagnostic 3).

use std::time::{Duration, Instant};

use crate::packet::{sha1_digest, Auth, ControlPacket, Diag, State, AUTH_LEN};

/// How a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// DesiredMinTxInterval and RequiredMinRxInterval once Up.
    pub interval: Duration,
    pub detect_mult: u8,
    /// Send nothing until the peer has (§6.1, the passive role).
    pub passive: bool,
    /// Keyed SHA1 authentication (§6.7.4), if configured: every packet carries it, and a
    /// packet without it, or that does not verify, is discarded.
    pub auth: Option<AuthKey>,
}

/// A SHA1 key: its id, its 1 to 20 octets, and whether the sequence numbers are meticulous.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthKey {
    pub key_id: u8,
    pub meticulous: bool,
    key: [u8; 20],
    len: u8,
}

impl AuthKey {
    /// None if `key` is empty or longer than 20 octets (§4.4).
    pub fn new(key_id: u8, key: &[u8], meticulous: bool) -> Option<AuthKey> {
        if key.is_empty() || key.len() > 20 {
            return None;
        }
        let mut k = [0u8; 20];
        k[..key.len()].copy_from_slice(key);
        Some(AuthKey {
            key_id,
            meticulous,
            key: k,
            len: key.len() as u8,
        })
    }

    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.len)]
    }
}

/// The key itself never shows.
impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKey")
            .field("key_id", &self.key_id)
            .field("meticulous", &self.meticulous)
            .field("key", &"(redacted)")
            .finish()
    }
}

impl Default for SessionConfig {
    /// AWS Direct Connect's: 300 ms, multiplier 3.
    fn default() -> SessionConfig {
        SessionConfig {
            interval: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
            auth: None,
        }
    }
}

/// A change of the session's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Why (for a session going down).
    pub diag: Diag,
}

/// While not Up, packets go at most this often (§6.8.3: not less than one second).
const SLOW: u32 = 1_000_000;

#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    local_discr: u32,
    local_diag: Diag,
    remote_discr: u32,
    remote_state: State,
    /// The peer's RequiredMinRxInterval and DesiredMinTxInterval, µs, and multiplier.
    remote_min_rx: u32,
    remote_min_tx: u32,
    remote_detect_mult: u8,
    /// What we announce, µs.
    desired_min_tx: u32,
    required_min_rx: u32,
    /// A Poll Sequence under way: packets carry P until the peer's F.
    polling: bool,
    /// The peer polled: the next packet carries F, and goes at once.
    answer_final: bool,
    /// A packet is due now, whatever the interval (a state change, a Final).
    send_now: bool,
    next_tx: Instant,
    detect_at: Option<Instant>,
    /// xorshift state for the jitter: any sequence serves, this is about spreading packets.
    rng: u64,
    transitions: Vec<Transition>,
    /// Authentication: the next sequence number to send, the last one received (once one
    /// has been: bfd.AuthSeqKnown).
    xmit_seq: u32,
    rcv_seq: Option<u32>,
    /// When the last packet was taken: the sequence number is forgotten after twice the
    /// detection time without one (§6.8.1, bfd.AuthSeqKnown).
    last_rx: Option<Instant>,
    /// Packets refused by authentication.
    pub auth_failed: u64,
    /// Packets received and taken, sent, and discarded by the session's own checks.
    pub received: u64,
    pub sent: u64,
    pub discarded: u64,
}

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

impl Session {
    /// A session in Down with discriminator `local_discr` (non-zero, unique on the system).
    pub fn new(cfg: SessionConfig, local_discr: u32, now: Instant) -> Session {
        assert_ne!(local_discr, 0, "a discriminator is never zero");
        let mut s = Session {
            cfg,
            state: State::Down,
            local_discr,
            local_diag: Diag::None,
            remote_discr: 0,
            remote_state: State::Down,
            remote_min_rx: 1,
            remote_min_tx: 0,
            remote_detect_mult: 0,
            desired_min_tx: SLOW.max(us(cfg.interval)),
            required_min_rx: us(cfg.interval),
            polling: false,
            answer_final: false,
            send_now: !cfg.passive,
            next_tx: now,
            detect_at: None,
            rng: 0x9e37_79b9_7f4a_7c15 ^ u64::from(local_discr),
            transitions: Vec::new(),
            xmit_seq: local_discr.rotate_left(16) ^ 0x5a5a_5a5a,
            rcv_seq: None,
            last_rx: None,
            auth_failed: 0,
            received: 0,
            sent: 0,
            discarded: 0,
        };
        s.schedule(now);
        s
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn remote_state(&self) -> State {
        self.remote_state
    }

    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// The diagnostic of the last time the session went down.
    pub fn diag(&self) -> Diag {
        self.local_diag
    }

    pub fn config(&self) -> SessionConfig {
        self.cfg
    }

    /// The interval packets go at now (without the jitter).
    pub fn tx_interval(&self) -> Duration {
        Duration::from_micros(u64::from(self.desired_min_tx.max(self.remote_min_rx)))
    }

    /// How long the session waits for the peer's packets before it goes down, once up.
    pub fn detection_time(&self) -> Duration {
        let agreed = self.required_min_rx.max(self.remote_min_tx);
        Duration::from_micros(u64::from(self.remote_detect_mult) * u64::from(agreed))
    }

    /// State changes since the last call.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// The next time the session has something to do (`on_timer`, `poll_transmit`).
    pub fn next_deadline(&self) -> Instant {
        match self.detect_at {
            Some(d) => d.min(self.next_tx),
            None => self.next_tx,
        }
    }

    fn jitter(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The next periodic packet: the interval less 0 to 25 % (10 to 25 % with a
    /// multiplier of 1, so that the peer's detection never meets it).
    fn schedule(&mut self, now: Instant) {
        let interval = self.tx_interval().as_micros() as u64;
        let (lo, span) = if self.cfg.detect_mult == 1 {
            (75, 15)
        } else {
            (75, 25)
        };
        let pct = lo + self.jitter() % (span + 1);
        self.next_tx = now + Duration::from_micros(interval * pct / 100);
    }

    fn go(&mut self, to: State, diag: Diag, now: Instant) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if to == State::Down || to == State::AdminDown {
            self.local_diag = diag;
        }
        if to == State::Up {
            // Fast from now on, announced with a Poll Sequence (§6.8.3).
            self.desired_min_tx = us(self.cfg.interval);
            self.polling = true;
        } else if from == State::Up {
            self.desired_min_tx = SLOW.max(us(self.cfg.interval));
            self.polling = false;
        }
        if to == State::Down {
            self.detect_at = None;
        }
        self.send_now = true;
        self.next_tx = now;
        self.transitions.push(Transition { from, to, diag });
    }

    /// What the peer last said, forgotten (it is gone, or we were not listening): its
    /// discriminator, state and timers back to their initial values (§6.8.1), so that a
    /// stale "send me nothing" (RequiredMinRx 0), or "every hour", cannot keep the session
    /// quiet (found by the fuzzer).
    fn forget_peer(&mut self, now: Instant) {
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.remote_min_rx = 1;
        self.remote_min_tx = 0;
        self.remote_detect_mult = 0;
        self.next_tx = self.next_tx.min(now + self.tx_interval());
    }

    /// Takes the session administratively down (`true`), telling the peer, or lets it come
    /// up again.
    pub fn set_admin_down(&mut self, down: bool, now: Instant) {
        match (down, self.state) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => {}
            (true, _) => {
                self.detect_at = None;
                self.go(State::AdminDown, Diag::AdminDown, now);
            }
            (false, State::AdminDown) => {
                self.forget_peer(now);
                self.go(State::Down, Diag::AdminDown, now);
            }
        }
    }

    /// A packet for this session (the caller found it by our discriminator, or by the
    /// peer's address when it names none). False if the session's checks discard it.
    pub fn on_packet(&mut self, p: &ControlPacket, now: Instant) -> bool {
        // Heard from (authenticated, if we authenticate), whatever happens to it next.
        self.last_rx = Some(now);
        // §6.8.6: a packet naming no session must be from a peer that is Down.
        if p.your_discr == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            self.discarded += 1;
            return false;
        }
        if p.your_discr != 0 && p.your_discr != self.local_discr {
            self.discarded += 1;
            return false;
        }
        if self.state == State::AdminDown {
            self.discarded += 1;
            return false;
        }
        self.received += 1;
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_min_tx = p.desired_min_tx;
        self.remote_detect_mult = p.detect_mult;
        // A shorter interval asked for now: the next packet comes by it, not by the longer
        // one it was scheduled with (found by the fuzzer: a session that had been told to
        // send every hour kept to it after its peer said 300 ms).
        if self.next_tx > now + self.tx_interval() {
            self.schedule(now);
        }
        if p.fin {
            self.polling = false;
        }
        if p.poll {
            self.answer_final = true;
            self.send_now = true;
            self.next_tx = now;
        }
        match (p.state, self.state) {
            (State::AdminDown, s) if s != State::Down => {
                self.go(State::Down, Diag::NeighborDown, now)
            }
            (State::AdminDown, _) => {}
            (State::Down, State::Down) => self.go(State::Init, Diag::None, now),
            (State::Init, State::Down) => self.go(State::Up, Diag::None, now),
            (State::Init | State::Up, State::Init) => self.go(State::Up, Diag::None, now),
            (State::Down, State::Up) => self.go(State::Down, Diag::NeighborDown, now),
            _ => {}
        }
        if matches!(self.state, State::Init | State::Up) {
            self.detect_at = Some(now + self.detection_time());
        }
        true
    }

    /// What `p` (from `poll_transmit`) is on the wire: with its digest if authenticated.
    pub fn encode(&self, p: &ControlPacket) -> Vec<u8> {
        match &self.cfg.auth {
            Some(k) => p.encode_with(k.key()),
            None => p.encode().to_vec(),
        }
    }

    /// Whether `p`, read from datagram `raw`, passes this session's authentication
    /// (§6.7.4): present exactly when configured, of the configured kind and key, its digest
    /// right, its sequence number within 3 x Detect Mult of the last one (past it, for the
    /// meticulous kind). Call before `on_packet`; a failure is counted.
    pub fn authentic(&mut self, raw: &[u8], p: &ControlPacket) -> bool {
        let ok = match (&self.cfg.auth, &p.auth) {
            (None, None) => true,
            (Some(k), Some(a)) => {
                let window = 3 * u32::from(p.detect_mult);
                let in_window = match self.rcv_seq {
                    None => true,
                    Some(last) => {
                        let ahead = a.seq.wrapping_sub(last);
                        if k.meticulous {
                            (1..=window).contains(&ahead)
                        } else {
                            ahead <= window
                        }
                    }
                };
                let digest_ok = raw
                    .get(..AUTH_LEN)
                    .and_then(|b| <&[u8; AUTH_LEN]>::try_from(b).ok())
                    .is_some_and(|b| sha1_digest(b, k.key()) == a.digest);
                a.key_id == k.key_id && a.meticulous == k.meticulous && digest_ok && in_window
            }
            _ => false,
        };
        match (ok, &p.auth) {
            (true, Some(a)) => self.rcv_seq = Some(a.seq),
            (false, _) => self.auth_failed += 1,
            _ => {}
        }
        ok
    }

    /// Timers due at `now`: the detection time running out; a peer's sequence number
    /// forgotten after twice the detection time (at least 6 s) without a packet (found by
    /// the fuzzer: a session left down with a number its peer had long passed refused that
    /// peer for ever).
    pub fn on_timer(&mut self, now: Instant) {
        if let Some(t) = self.last_rx {
            // Down, the detection time is the peer's word from before, whatever it said.
            let quiet = match self.state {
                State::Down | State::AdminDown => Duration::from_secs(6),
                _ => (2 * self.detection_time()).max(Duration::from_secs(6)),
            };
            if now.saturating_duration_since(t) >= quiet {
                self.rcv_seq = None;
                // Down, what the peer said long ago is stale too: its "send me nothing"
                // must not keep us quiet while it waits to hear from us.
                if self.state == State::Down {
                    self.forget_peer(now);
                }
                self.last_rx = None;
            }
        }
        if let Some(at) = self.detect_at {
            if now >= at && matches!(self.state, State::Init | State::Up) {
                // A peer that stopped may come back with any sequence number.
                self.rcv_seq = None;
                self.forget_peer(now);
                self.go(State::Down, Diag::TimeExpired, now);
            }
        }
    }

    /// The packet to send at `now`, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<ControlPacket> {
        // The passive role waits for the peer (§6.1); a peer that asks for no packets
        // (RequiredMinRx 0) gets none but Finals (§6.8.7).
        let quiet = (self.cfg.passive && self.remote_discr == 0) || self.remote_min_rx == 0;
        if quiet && !self.answer_final {
            if now >= self.next_tx {
                self.schedule(now);
            }
            return None;
        }
        if !self.send_now && now < self.next_tx {
            return None;
        }
        let fin = std::mem::take(&mut self.answer_final);
        let p = ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // A Final is never sent with a Poll (§6.5).
            poll: self.polling && !fin,
            fin,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: self.desired_min_tx,
            required_min_rx: self.required_min_rx,
            required_min_echo_rx: 0,
            auth: self.cfg.auth.map(|k| Auth {
                meticulous: k.meticulous,
                key_id: k.key_id,
                seq: self.xmit_seq,
                digest: [0; 20],
            }),
        };
        // Every packet gets the next number (the meticulous kind requires it; the other
        // allows it).
        self.xmit_seq = self.xmit_seq.wrapping_add(1);
        self.send_now = false;
        self.sent += 1;
        self.schedule(now);
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A datagram read, authenticated and taken, as the service does.
    fn deliver(raw: &[u8], to: &mut Session, now: Instant) {
        let p = ControlPacket::parse(raw).unwrap();
        if to.authentic(raw, &p) {
            to.on_packet(&p, now);
        }
    }

    /// Two sessions and a wire between them, on a simulated clock: what each sends goes to
    /// the other (unless the wire is cut), in steps of 1 ms.
    struct Pair {
        a: Session,
        b: Session,
        now: Instant,
        cut: bool,
        /// Packets A sent, with when.
        a_sent: Vec<(Instant, ControlPacket)>,
    }

    impl Pair {
        fn new(a: SessionConfig, b: SessionConfig) -> Pair {
            let now = Instant::now();
            Pair {
                a: Session::new(a, 1, now),
                b: Session::new(b, 2, now),
                now,
                cut: false,
                a_sent: Vec::new(),
            }
        }

        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.a.on_timer(self.now);
                self.b.on_timer(self.now);
                while let Some(p) = self.a.poll_transmit(self.now) {
                    self.a_sent.push((self.now, p));
                    if !self.cut {
                        deliver(&self.a.encode(&p), &mut self.b, self.now);
                    }
                }
                while let Some(p) = self.b.poll_transmit(self.now) {
                    if !self.cut {
                        deliver(&self.b.encode(&p), &mut self.a, self.now);
                    }
                }
                self.now += Duration::from_millis(1);
            }
        }
    }

    #[test]
    fn two_sessions_come_up_and_go_fast() {
        let mut w = Pair::new(SessionConfig::default(), SessionConfig::default());
        w.run(Duration::from_millis(100));
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
        let ups: Vec<Transition> = w.a.take_transitions();
        assert_eq!(ups.last().unwrap().to, State::Up);
        // Up: 300 ms apart, less the jitter, once the Poll Sequence is over.
        w.run(Duration::from_secs(3));
        assert!(!w.a.polling && !w.b.polling, "the poll sequence ended");
        let late: Vec<Instant> = w
            .a_sent
            .iter()
            .filter(|(t, _)| *t > w.now - Duration::from_secs(2))
            .map(|(t, _)| *t)
            .collect();
        for pair in late.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(225) && gap <= Duration::from_millis(300),
                "{gap:?}"
            );
        }
        assert_eq!(w.a.detection_time(), Duration::from_millis(900));
    }

    #[test]
    fn a_cut_is_detected_within_the_detection_time() {
        let mut w = Pair::new(SessionConfig::default(), SessionConfig::default());
        w.run(Duration::from_secs(2));
        w.a.take_transitions();
        w.cut = true;
        let cut = w.now;
        w.run(Duration::from_secs(2));
        let t = w.a.take_transitions();
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(
            (t[0].from, t[0].to, t[0].diag),
            (State::Up, State::Down, Diag::TimeExpired)
        );
        assert_eq!(w.a.diag(), Diag::TimeExpired);
        // Down after at most 900 ms, and not before 900 ms less one interval.
        let down_at = w
            .a_sent
            .iter()
            .find(|(t, p)| *t >= cut && p.state == State::Down)
            .unwrap()
            .0;
        let after = down_at - cut;
        assert!(after <= Duration::from_millis(901), "{after:?}");
        assert!(after >= Duration::from_millis(600), "{after:?}");
        // Down, it tells the peer it has lost it (your discriminator zero), slowly.
        let (_, p) = w.a_sent.last().unwrap();
        assert_eq!((p.your_discr, p.desired_min_tx), (0, 1_000_000));
        // The wire back: up again.
        w.cut = false;
        w.run(Duration::from_secs(3));
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn admin_down_takes_the_peer_down_with_its_reason() {
        let mut w = Pair::new(SessionConfig::default(), SessionConfig::default());
        w.run(Duration::from_secs(1));
        w.b.take_transitions();
        w.a.set_admin_down(true, w.now);
        w.run(Duration::from_millis(50));
        assert_eq!(w.a.state(), State::AdminDown);
        let t = w.b.take_transitions();
        assert_eq!(t[0].to, State::Down);
        assert_eq!(t[0].diag, Diag::NeighborDown);
        // It stays down while A is admin down, and comes up when A does.
        w.run(Duration::from_secs(3));
        assert_eq!(w.b.state(), State::Down);
        w.a.set_admin_down(false, w.now);
        w.run(Duration::from_secs(3));
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn a_passive_session_waits_for_its_peer() {
        let passive = SessionConfig {
            passive: true,
            ..SessionConfig::default()
        };
        let mut w = Pair::new(passive, passive);
        w.run(Duration::from_secs(3));
        assert!(w.a_sent.is_empty());
        assert_eq!(w.a.state(), State::Down);
        let mut w = Pair::new(passive, SessionConfig::default());
        w.run(Duration::from_secs(1));
        assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
    }

    #[test]
    fn packets_for_another_session_or_out_of_turn_are_discarded() {
        let now = Instant::now();
        let mut s = Session::new(SessionConfig::default(), 5, now);
        let p = ControlPacket {
            diag: Diag::None,
            state: State::Up,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 9,
            your_discr: 0,
            desired_min_tx: 300_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
            auth: None,
        };
        // Up, naming no session: discarded (§6.8.6).
        assert!(!s.on_packet(&p, now));
        // Naming another.
        assert!(!s.on_packet(&ControlPacket { your_discr: 6, ..p }, now));
        assert_eq!((s.discarded, s.state()), (2, State::Down));
        // A Poll is answered at once with a Final, without a Poll.
        assert!(s.on_packet(
            &ControlPacket {
                state: State::Down,
                poll: true,
                ..p
            },
            now
        ));
        let r = s.poll_transmit(now).unwrap();
        assert!(r.fin && !r.poll);
        assert_eq!((r.state, r.your_discr), (State::Init, 9));
    }

    fn keyed(key: &[u8], meticulous: bool) -> SessionConfig {
        SessionConfig {
            auth: AuthKey::new(1, key, meticulous),
            ..SessionConfig::default()
        }
    }

    /// Keyed SHA1 both ways: up with the same key (either kind), never with another key,
    /// with another kind, or with authentication on one side only.
    #[test]
    fn sha1_authenticated_sessions_come_up_only_with_the_same_key() {
        for meticulous in [false, true] {
            let k = keyed(b"s3cret", meticulous);
            let mut w = Pair::new(k, k);
            w.run(Duration::from_secs(3));
            assert_eq!((w.a.state(), w.b.state()), (State::Up, State::Up));
            assert_eq!((w.a.auth_failed, w.b.auth_failed), (0, 0));
        }
        for (a, b) in [
            (keyed(b"s3cret", false), keyed(b"other", false)),
            (keyed(b"s3cret", false), keyed(b"s3cret", true)),
            (keyed(b"s3cret", false), SessionConfig::default()),
        ] {
            let mut w = Pair::new(a, b);
            w.run(Duration::from_secs(3));
            assert_eq!((w.a.state(), w.b.state()), (State::Down, State::Down));
            assert!(w.a.auth_failed > 0 && w.b.auth_failed > 0);
        }
        assert!(AuthKey::new(1, b"", false).is_none());
        assert!(AuthKey::new(1, &[7; 21], false).is_none());
        assert!(!format!("{:?}", AuthKey::new(1, b"s3cret", false)).contains("s3cret"));
    }

    /// A packet replayed, out of the sequence window, or tampered with is refused.
    #[test]
    fn replayed_or_tampered_packets_are_refused() {
        let k = keyed(b"s3cret", true);
        let now = Instant::now();
        let mut tx = Session::new(k, 1, now);
        let mut rx = Session::new(k, 2, now);
        let p0 = tx.poll_transmit(now).unwrap();
        let first = tx.encode(&p0);
        let p = ControlPacket::parse(&first).unwrap();
        assert!(rx.authentic(&first, &p));
        // Meticulous: the same number again is a replay.
        assert!(!rx.authentic(&first, &p));
        let mut later = now;
        let mut next = Vec::new();
        for _ in 0..20 {
            later += Duration::from_secs(1);
            let pn = tx.poll_transmit(later).unwrap();
            next = tx.encode(&pn);
        }
        // Twenty ahead: beyond 3 x 3.
        let q = ControlPacket::parse(&next).unwrap();
        assert!(!rx.authentic(&next, &q));
        let mut flipped = next.clone();
        flipped[16] ^= 0x80;
        let f = ControlPacket::parse(&flipped).unwrap();
        assert!(!rx.authentic(&flipped, &f));
        assert_eq!(rx.auth_failed, 3);
    }

    /// A peer's sequence number is forgotten after a quiet spell, so that a peer that sent
    /// on while we did not listen is taken again (the fuzzer found a session refusing its
    /// peer for ever after an admin down).
    #[test]
    fn a_sequence_number_is_forgotten_after_a_quiet_spell() {
        let k = keyed(b"s3cret", true);
        let now = Instant::now();
        let mut tx = Session::new(k, 1, now);
        let mut rx = Session::new(k, 2, now);
        let p0 = tx.poll_transmit(now).unwrap();
        deliver(&tx.encode(&p0), &mut rx, now);
        let mut t = now;
        let mut last = Vec::new();
        for _ in 0..30 {
            t += Duration::from_millis(100);
            if let Some(p) = tx.poll_transmit(t) {
                last = tx.encode(&p);
            }
            tx.send_now = true;
        }
        let p = ControlPacket::parse(&last).unwrap();
        assert!(!rx.authentic(&last, &p), "far past the window");
        rx.on_timer(now + Duration::from_secs(7));
        assert!(rx.authentic(&last, &p), "forgotten after the quiet spell");
    }

    /// Told to send every hour, then every 300 ms: the next packet comes by the new interval
    /// (found by the fuzzer); and a Down session forgets a stale "send me nothing".
    #[test]
    fn a_shorter_interval_reschedules_and_stale_silence_is_forgotten() {
        let now = Instant::now();
        let mut s = Session::new(SessionConfig::default(), 1, now);
        let peer = |rx: u32| ControlPacket {
            diag: Diag::None,
            state: State::Down,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 9,
            your_discr: 0,
            desired_min_tx: 1_000_000,
            required_min_rx: rx,
            required_min_echo_rx: 0,
            auth: None,
        };
        s.on_packet(&peer(3_600_000_000), now);
        s.poll_transmit(now);
        assert!(s.next_tx > now + Duration::from_secs(600));
        s.on_packet(&peer(300_000), now);
        assert!(s.next_tx <= now + Duration::from_secs(1));
        // "Send nothing", then silence: after 6 s the session speaks again.
        let mut s = Session::new(SessionConfig::default(), 2, now);
        s.on_packet(&peer(0), now);
        let later = now + Duration::from_secs(3);
        assert!(s.poll_transmit(later).is_none());
        let much_later = now + Duration::from_secs(7);
        s.on_timer(much_later);
        assert!(s
            .poll_transmit(much_later + Duration::from_secs(1))
            .is_some());
    }
}
