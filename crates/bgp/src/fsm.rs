//! The BGP session state machine of RFC 4271 §8, for one TCP connection to one peer, sans IO:
//! `handle` takes an event and the time it happened at, `on_timer` the time now, and both
//! return the actions for the I/O layer (connect, send, close) and for the RIB (up, down,
//! UPDATE bodies). Time is only ever what the caller passes, so tests drive it with a fake
//! clock.
//!
//! After a failure the session waits before it starts again (the IdleHoldTimer of RFC 4271
//! §8.1.1's DampPeerOscillations), doubling the wait on each failure up to a limit; it resets
//! once the session has been Established.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::wire::{code, Capabilities, Family, GracefulRestart, Message, Notification, Open};

/// The hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2: "a large value", 4 min).
const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub peer_as: u32,
    /// Proposed hold time, 0 (no keepalives) or at least 3 seconds.
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Wait for the peer to connect; never connect out.
    pub passive: bool,
    /// What the OPEN advertises.
    pub caps: Capabilities,
    /// The first wait after a failure, doubled on each further one up to `max_idle_hold`.
    pub idle_hold: Duration,
    pub max_idle_hold: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// ManualStart.
    Start,
    /// ManualStop, with the shutdown communication for the peer (RFC 8203).
    Stop(String),
    /// The TCP connection is up, whichever side opened it.
    Connected,
    /// The TCP connection failed or closed.
    ConnectionClosed,
    Received(Message),
    /// An incoming message did not decode: send this and close.
    Malformed(Notification),
    /// Something above the session (an UPDATE error under RFC 7606, max-prefix) asks for a
    /// reset with this NOTIFICATION.
    Reset(Notification),
}

/// What was agreed in the OPEN exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub peer: Open,
    /// 0: no keepalives and no hold timer.
    pub hold_time: u16,
    pub keepalive: Duration,
    /// Families both sides advertised (IPv4 unicast when neither advertised MP-BGP: RFC 4760
    /// §8).
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    pub extended_message: bool,
    pub peer_graceful_restart: Option<GracefulRestart>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Down {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this one.
    Received(Notification),
    /// The connection closed without a NOTIFICATION.
    ConnectionClosed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    Send(Message),
    /// Close the TCP connection (after sending what was queued).
    Close,
    /// The session is Established.
    Up(Box<Negotiated>),
    /// The session left Established: the RIB flushes the peer's routes, or keeps them stale
    /// if the peer does graceful restart.
    Down(Down),
    /// A session that never got Established failed, for the log.
    Failed(Down),
    /// An UPDATE body, for the RIB.
    Update(Vec<u8>),
    /// The peer asks for our routes again (RFC 2918).
    RouteRefresh(Family),
}

pub struct Session {
    cfg: Config,
    state: State,
    /// Started and not stopped: restarts after a failure.
    enabled: bool,
    connect_retry: Option<Instant>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    idle_hold: Option<Instant>,
    /// The next wait after a failure.
    backoff: Duration,
    negotiated: Option<Negotiated>,
}

impl Session {
    pub fn new(cfg: Config) -> Session {
        let backoff = cfg.idle_hold;
        Session {
            cfg,
            state: State::Idle,
            enabled: false,
            connect_retry: None,
            hold: None,
            keepalive: None,
            idle_hold: None,
            backoff,
            negotiated: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// When `on_timer` next has something to do.
    pub fn next_timer(&self) -> Option<Instant> {
        [
            self.connect_retry,
            self.hold,
            self.keepalive,
            self.idle_hold,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn open(&self) -> Open {
        Open {
            asn: self.cfg.local_as,
            hold_time: self.cfg.hold_time,
            router_id: self.cfg.router_id,
            caps: self.cfg.caps.clone(),
        }
    }

    fn clear_timers(&mut self) {
        self.connect_retry = None;
        self.hold = None;
        self.keepalive = None;
    }

    /// Leaves for Idle after a failure: closes, reports, and schedules the restart.
    fn fail(&mut self, now: Instant, why: Down, out: &mut Vec<Action>) {
        if let Down::Sent(n) = &why {
            out.push(Action::Send(Message::Notification(n.clone())));
        }
        if self.state != State::Idle && self.state != State::Connect && self.state != State::Active
        {
            out.push(Action::Close);
        }
        out.push(if self.state == State::Established {
            Action::Down(why)
        } else {
            Action::Failed(why)
        });
        self.state = State::Idle;
        self.negotiated = None;
        self.clear_timers();
        if self.enabled {
            self.idle_hold = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(self.cfg.max_idle_hold);
        }
    }

    /// Leaves Idle: connects out, or waits for the peer.
    fn begin(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.idle_hold = None;
        self.connect_retry = Some(now + self.cfg.connect_retry);
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Action::Connect);
        }
    }

    pub fn handle(&mut self, now: Instant, ev: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, ev) {
            (_, Event::Start) => {
                self.enabled = true;
                self.backoff = self.cfg.idle_hold;
                if self.state == State::Idle {
                    self.begin(now, &mut out);
                }
            }
            (state, Event::Stop(text)) => {
                self.enabled = false;
                self.idle_hold = None;
                if matches!(
                    state,
                    State::OpenSent | State::OpenConfirm | State::Established
                ) {
                    let n = Notification::shutdown(code::CEASE_ADMIN_SHUTDOWN, &text);
                    self.fail(now, Down::Sent(n), &mut out);
                } else {
                    if state == State::Connect {
                        out.push(Action::Close);
                    }
                    self.state = State::Idle;
                    self.clear_timers();
                }
            }
            (State::Idle, _) => {
                // RFC 4271 §8.2.2: Idle refuses connections and ignores everything else; the
                // I/O layer closes a connection it has no use for.
            }
            (State::Connect | State::Active, Event::Connected) => {
                self.connect_retry = None;
                out.push(Action::Send(Message::Open(self.open())));
                self.hold = Some(now + OPEN_HOLD);
                self.state = State::OpenSent;
            }
            (State::Connect, Event::ConnectionClosed) => {
                // Keep the ConnectRetry timer running; try again when it fires.
                self.state = State::Active;
            }
            (State::Active, Event::ConnectionClosed) => {}
            (
                State::Connect | State::Active,
                Event::Received(_) | Event::Malformed(_) | Event::Reset(_),
            ) => {
                // Nothing can arrive without a connection; a stray event is ignored.
            }
            (State::OpenSent, Event::Received(Message::Open(peer))) => {
                self.on_open(now, peer, &mut out)
            }
            (State::OpenSent, Event::ConnectionClosed) => {
                // RFC 4271: close, restart ConnectRetry, and wait in Active.
                self.hold = None;
                self.connect_retry = Some(now + self.cfg.connect_retry);
                self.state = State::Active;
                out.push(Action::Failed(Down::ConnectionClosed));
            }
            (State::OpenConfirm, Event::Received(Message::Keepalive)) => {
                let Some(n) = self.negotiated.clone() else {
                    return out;
                };
                self.restart_hold(now);
                self.state = State::Established;
                self.backoff = self.cfg.idle_hold;
                out.push(Action::Up(Box::new(n)));
            }
            (State::Established, Event::Received(Message::Keepalive)) => self.restart_hold(now),
            (State::Established, Event::Received(Message::Update(body))) => {
                self.restart_hold(now);
                out.push(Action::Update(body));
            }
            (State::Established, Event::Received(Message::RouteRefresh { family, .. })) => {
                self.restart_hold(now);
                let negotiated = self.negotiated.as_ref();
                if negotiated.is_some_and(|n| n.route_refresh && n.families.contains(&family)) {
                    out.push(Action::RouteRefresh(family));
                }
            }
            (_, Event::Received(Message::Notification(n))) => {
                self.fail(now, Down::Received(n), &mut out)
            }
            (_, Event::Malformed(n) | Event::Reset(n)) => self.fail(now, Down::Sent(n), &mut out),
            (_, Event::ConnectionClosed) => self.fail(now, Down::ConnectionClosed, &mut out),
            (state, Event::Received(_) | Event::Connected) => {
                // An unexpected message: an FSM error with the RFC 6608 subcode of the state.
                let subcode = match state {
                    State::OpenSent => 1,
                    State::OpenConfirm => 2,
                    _ => 3,
                };
                let n = Notification::new(code::FSM, subcode, &[]);
                self.fail(now, Down::Sent(n), &mut out);
            }
        }
        out
    }

    fn restart_hold(&mut self, now: Instant) {
        if let Some(n) = &self.negotiated {
            if n.hold_time > 0 {
                self.hold = Some(now + Duration::from_secs(n.hold_time.into()));
            }
        }
    }

    /// The peer's OPEN in OpenSent: checks it against the configuration and negotiates.
    fn on_open(&mut self, now: Instant, peer: Open, out: &mut Vec<Action>) {
        if peer.asn != self.cfg.peer_as {
            let data = u16::try_from(peer.asn).unwrap_or(crate::wire::AS_TRANS);
            let n = Notification::new(code::OPEN, code::OPEN_BAD_PEER_AS, &data.to_be_bytes());
            return self.fail(now, Down::Sent(n), out);
        }
        // An iBGP peer with our own identifier is a loop or a misconfiguration (RFC 6286 §2.2
        // allows equal identifiers between different ASes).
        if peer.router_id == self.cfg.router_id && peer.asn == self.cfg.local_as {
            let n = Notification::new(code::OPEN, code::OPEN_BAD_BGP_ID, &peer.router_id.octets());
            return self.fail(now, Down::Sent(n), out);
        }
        let hold_time = self.cfg.hold_time.min(peer.hold_time);
        let ours = &self.cfg.caps;
        let theirs = &peer.caps;
        let families = if ours.multiprotocol.is_empty() && theirs.multiprotocol.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            ours.multiprotocol
                .iter()
                .filter(|f| theirs.multiprotocol.contains(f))
                .copied()
                .collect()
        };
        let n = Negotiated {
            hold_time,
            keepalive: Duration::from_secs(u64::from(hold_time / 3)),
            families,
            four_octet_as: ours.four_octet_as.is_some() && theirs.four_octet_as.is_some(),
            route_refresh: ours.route_refresh && theirs.route_refresh,
            extended_message: ours.extended_message && theirs.extended_message,
            peer_graceful_restart: theirs.graceful_restart.clone(),
            peer,
        };
        out.push(Action::Send(Message::Keepalive));
        self.hold = (hold_time > 0).then(|| now + Duration::from_secs(hold_time.into()));
        self.keepalive = (hold_time > 0).then(|| now + n.keepalive);
        self.negotiated = Some(n);
        self.state = State::OpenConfirm;
    }

    /// Fires the timers that have expired by `now`.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.idle_hold) {
            self.idle_hold = None;
            if self.enabled && self.state == State::Idle {
                self.begin(now, &mut out);
            }
        }
        if due(self.hold) {
            self.hold = None;
            let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, &[]);
            self.fail(now, Down::Sent(n), &mut out);
            return out;
        }
        if due(self.connect_retry) {
            self.connect_retry = Some(now + self.cfg.connect_retry);
            match self.state {
                // Drop the attempt in progress and try again.
                State::Connect => {
                    out.push(Action::Close);
                    out.push(Action::Connect);
                }
                State::Active if !self.cfg.passive => {
                    self.state = State::Connect;
                    out.push(Action::Connect);
                }
                _ => {}
            }
        }
        if due(self.keepalive) {
            if let Some(n) = &self.negotiated {
                self.keepalive = Some(now + n.keepalive);
                out.push(Action::Send(Message::Keepalive));
            }
        }
        out
    }

    /// We sent an UPDATE: it counts as a KEEPALIVE (RFC 4271 §4.4).
    pub fn sent_update(&mut self, now: Instant) {
        if let (Some(n), State::Established) = (&self.negotiated, self.state) {
            if n.hold_time > 0 {
                self.keepalive = Some(now + n.keepalive);
            }
        }
    }
}

/// Connection collision resolution (RFC 4271 §6.8): of two connections with the same peer,
/// the one initiated by the speaker with the higher BGP identifier survives. True if the
/// connection we opened is the one to keep.
pub fn keep_ours_on_collision(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> bool {
    u32::from(local_id) > u32::from(remote_id)
}
