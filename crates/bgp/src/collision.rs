//! The connections of one peer and the collision rules of RFC 4271 §6.8, sans IO.
//!
//! A session may have two TCP connections at once: ours, and one the peer opened while ours
//! was opening. The second runs a state machine of its own (which sends our OPEN on it) until
//! one of the two knows the peer's BGP Identifier; then the connection opened by the speaker
//! with the higher identifier stays and the other is closed with Cease/Connection Collision
//! Resolution. If the peer settles first (it closes our connection, or sends that Cease on
//! it), the other connection carries the session on; one that reached Established in the
//! read that brought its OPEN is up as soon as it is kept.
//!
//! [`Connections`] is fed what happened on the connections, named by the I/O layer's
//! [`ConnId`]s, and answers with [`Out`]s: connect, send on, close, and what the session
//! reports. `peer::run` carries them out on tokio.

use std::time::Instant;

use crate::fsm::{self, keep_ours_on_collision, Action, Down, Event, Negotiated, Session, State};
use crate::wire::{code, Family, Message, Notification, MAX_EXTENDED_LEN, MAX_LEN};

/// A connection, as the I/O layer numbers them.
pub type ConnId = u64;

/// What happened.
#[derive(Debug)]
pub enum In {
    /// For the session (ManualStart, ManualStop, a reset from above).
    Session(Event),
    /// The connection we opened is up.
    Connected(ConnId),
    /// The connection we tried to open failed.
    ConnectFailed,
    /// The peer opened a connection.
    Accepted(ConnId),
    /// Messages read on a connection (and a malformed one last, if any).
    Read(ConnId, Vec<Event>),
    /// A connection closed, or could not be written to.
    Closed(ConnId),
}

/// What the I/O layer is asked to do, or told.
#[derive(Debug, PartialEq)]
pub enum Out {
    /// Open a connection to the peer (report `Connected` or `ConnectFailed`).
    Connect,
    /// Give up the connection being opened: the session came up on the peer's. An attempt
    /// left to finish would reach a peer that takes a new connection while Established as a
    /// restart (RFC 4724 §4.2, as OpenBGPD does) and drops the session.
    CancelConnect,
    Send(ConnId, Message),
    /// Close the connection and forget it.
    Close(ConnId),
    /// The session is Established, on this connection.
    Up(Box<Negotiated>, ConnId),
    Down(Down),
    Failed(Down),
    Update(Vec<u8>),
    RouteRefresh(Family),
}

/// A connection and who opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Conn {
    id: ConnId,
    /// We opened it.
    ours: bool,
}

/// The session of one peer and its connections.
pub struct Connections {
    cfg: fsm::Config,
    session: Session,
    /// The connection the session runs on.
    primary: Option<Conn>,
    /// A colliding connection and its own state machine, until the collision is settled.
    other: Option<(Conn, Session)>,
    /// The colliding connection's session came up (its OPEN and KEEPALIVE came in one
    /// read) before the collision was settled.
    other_up: Option<Box<Negotiated>>,
    /// A connection of ours is being opened.
    connecting: bool,
}

impl Connections {
    pub fn new(cfg: fsm::Config) -> Connections {
        Connections {
            session: Session::new(cfg.clone()),
            cfg,
            primary: None,
            other: None,
            other_up: None,
            connecting: false,
        }
    }

    pub fn state(&self) -> State {
        self.session.state()
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.session.negotiated()
    }

    /// The connection the session runs on, and the colliding one, if any.
    pub fn primary(&self) -> Option<ConnId> {
        self.primary.map(|c| c.id)
    }

    pub fn other(&self) -> Option<ConnId> {
        self.other.as_ref().map(|(c, _)| c.id)
    }

    /// The largest message the session takes now (RFC 8654 once negotiated).
    pub fn max_len(&self) -> usize {
        if self.negotiated().is_some_and(|n| n.extended_message) {
            MAX_EXTENDED_LEN
        } else {
            MAX_LEN
        }
    }

    pub fn next_timer(&self) -> Option<Instant> {
        self.session.next_timer()
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Out> {
        let acts = self.session.on_timer(now);
        let mut out = Vec::new();
        self.carry(acts, &mut out);
        out
    }

    /// An UPDATE was written to the session (the hold-down of our keepalives restarts).
    pub fn sent_update(&mut self, now: Instant) {
        self.session.sent_update(now);
    }

    pub fn handle(&mut self, now: Instant, input: In) -> Vec<Out> {
        let mut out = Vec::new();
        let acts = match input {
            In::Session(ev) => self.session.handle(now, ev),
            // An attempt given up (`CancelConnect`) that finished meanwhile.
            In::Connected(id) if !self.connecting => {
                out.push(Out::Close(id));
                Vec::new()
            }
            In::Connected(id) => {
                self.connecting = false;
                match self.session.state() {
                    State::Connect | State::Active if self.primary.is_none() => {
                        self.primary = Some(Conn { id, ours: true });
                        self.session.handle(now, Event::Connected)
                    }
                    // The peer's connection came first and is opening: ours is a collision,
                    // run alongside until the identifiers decide. Dropping it instead lost
                    // both when the peer had done the same with ours.
                    State::OpenSent | State::OpenConfirm if self.other.is_none() => {
                        self.collide(now, Conn { id, ours: true }, &mut out);
                        Vec::new()
                    }
                    // Settled meanwhile.
                    _ => {
                        out.push(Out::Close(id));
                        Vec::new()
                    }
                }
            }
            // Our attempt failed: that ends the session only if it was the session's way
            // to the peer. With TCP-MD5 a peer that is not listening yet drops our SYNs
            // without a reset, so the attempt fails seconds later, when the session may be
            // up on the peer's connection: that one must not go down with it.
            In::ConnectFailed => {
                let ours = std::mem::replace(&mut self.connecting, false);
                match self.session.state() {
                    State::Connect | State::Active if ours && self.primary.is_none() => {
                        self.session.handle(now, Event::ConnectionClosed)
                    }
                    _ => Vec::new(),
                }
            }
            In::Accepted(id) => match self.session.state() {
                State::Connect | State::Active if self.primary.is_none() => {
                    self.primary = Some(Conn { id, ours: false });
                    self.session.handle(now, Event::Connected)
                }
                // A collision: the new connection gets its own state machine, which sends
                // our OPEN on it, until the identifiers decide.
                State::OpenSent | State::OpenConfirm if self.other.is_none() => {
                    self.collide(now, Conn { id, ours: false }, &mut out);
                    Vec::new()
                }
                _ => {
                    out.push(Out::Close(id));
                    Vec::new()
                }
            },
            In::Read(id, events) if self.other() == Some(id) => {
                self.read_other(now, events, &mut out);
                Vec::new()
            }
            In::Read(id, events) if self.primary() == Some(id) => {
                let mut acts = Vec::new();
                for ev in events {
                    // The peer settled the collision against this connection before we did:
                    // the other one carries the session on.
                    let collision = matches!(&ev, Event::Received(Message::Notification(n))
                        if n.code == code::CEASE && n.subcode == code::CEASE_COLLISION);
                    if collision && self.other.is_some() {
                        self.switch(&mut out);
                        // What the closed connection's session did in this read (up, in
                        // the read that also closed it) is not the session's any more:
                        // carried, it reported the other connection up before it was, and
                        // up again when it was.
                        acts.clear();
                        break;
                    }
                    acts.extend(self.session.handle(now, ev));
                }
                acts
            }
            In::Closed(id) if self.other() == Some(id) => {
                self.other = None;
                self.other_up = None;
                out.push(Out::Close(id));
                Vec::new()
            }
            In::Closed(id) if self.primary() == Some(id) => {
                if self.other.is_some() {
                    // Closed by a peer that settled the collision against it: the other
                    // connection goes on (it cannot be Established: that ends `other`).
                    self.switch(&mut out);
                    Vec::new()
                } else {
                    self.primary = None;
                    out.push(Out::Close(id));
                    self.session.handle(now, Event::ConnectionClosed)
                }
            }
            // A connection already forgotten.
            In::Read(id, _) | In::Closed(id) => {
                out.push(Out::Close(id));
                Vec::new()
            }
        };
        self.carry(acts, &mut out);
        out
    }

    /// Runs the colliding connection's own state machine from its start: it sends our OPEN.
    fn collide(&mut self, now: Instant, conn: Conn, out: &mut Vec<Out>) {
        let mut s = Session::new(self.cfg.clone());
        s.handle(now, Event::Start);
        for a in s.handle(now, Event::Connected) {
            if let Action::Send(m) = a {
                out.push(Out::Send(conn.id, m));
            }
        }
        self.other = Some((conn, s));
    }

    fn read_other(&mut self, now: Instant, events: Vec<Event>, out: &mut Vec<Out>) {
        let Some((c, s)) = self.other.as_mut() else {
            return;
        };
        let id = c.id;
        let mut alive = true;
        for ev in events {
            for a in s.handle(now, ev) {
                match a {
                    Action::Send(m) => out.push(Out::Send(id, m)),
                    Action::Close | Action::Failed(_) | Action::Down(_) => alive = false,
                    Action::Up(n) => self.other_up = Some(n),
                    _ => {}
                }
            }
        }
        if !alive {
            self.other = None;
            self.other_up = None;
            out.push(Out::Close(id));
        }
    }

    /// The colliding connection takes over: the primary one is closed.
    fn switch(&mut self, out: &mut Vec<Out>) {
        let Some((c, s)) = self.other.take() else {
            return;
        };
        if let Some(p) = self.primary.take() {
            out.push(Out::Close(p.id));
        }
        self.primary = Some(c);
        self.session = s;
        // The kept connection may have reached Established in the read that brought its
        // OPEN: it is up now.
        if let Some(n) = self.other_up.take() {
            out.push(Out::Up(n, c.id));
        }
    }

    /// Carries out the session's actions, then settles a collision if the peer's identifier
    /// is known now.
    fn carry(&mut self, acts: Vec<Action>, out: &mut Vec<Out>) {
        for a in acts {
            match a {
                Action::Connect => {
                    if !self.connecting {
                        self.connecting = true;
                        out.push(Out::Connect);
                    }
                }
                Action::Send(m) => {
                    if let Some(p) = self.primary {
                        out.push(Out::Send(p.id, m));
                    }
                }
                Action::Close => {
                    if let Some(p) = self.primary.take() {
                        out.push(Out::Close(p.id));
                    }
                }
                Action::Up(n) => {
                    if std::mem::replace(&mut self.connecting, false) {
                        out.push(Out::CancelConnect);
                    }
                    // The collision is settled: the connection that got here wins.
                    if let Some((c, _)) = self.other.take() {
                        self.other_up = None;
                        out.push(Out::Close(c.id));
                    }
                    if let Some(p) = self.primary {
                        out.push(Out::Up(n, p.id));
                    }
                }
                Action::Down(d) => out.push(Out::Down(d)),
                Action::Failed(d) => out.push(Out::Failed(d)),
                Action::Update(u) => out.push(Out::Update(u)),
                Action::RouteRefresh(f) => out.push(Out::RouteRefresh(f)),
            }
        }
        self.settle(out);
    }

    /// RFC 4271 §6.8: once either connection knows the peer's identifier, the connection
    /// opened by the speaker with the higher identifier stays; the other is closed with
    /// Cease/Connection Collision Resolution.
    fn settle(&mut self, out: &mut Vec<Out>) {
        let Some((c2, s2)) = &self.other else { return };
        let remote_id = self
            .session
            .negotiated()
            .or_else(|| s2.negotiated())
            .map(|n| n.peer.router_id);
        let Some(remote_id) = remote_id else { return };
        let keep_ours = keep_ours_on_collision(self.cfg.router_id, remote_id);
        let primary_ours = self.primary.is_some_and(|p| p.ours);
        let cease =
            || Message::Notification(Notification::new(code::CEASE, code::CEASE_COLLISION, &[]));
        if keep_ours == primary_ours {
            out.push(Out::Send(c2.id, cease()));
            out.push(Out::Close(c2.id));
            self.other = None;
            self.other_up = None;
        } else {
            if let Some(p) = self.primary {
                out.push(Out::Send(p.id, cease()));
            }
            self.switch(out);
            self.other_up = None;
        }
    }
}
