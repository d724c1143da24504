//! Runs the FIB core against the kernel: a request socket (requests out, acks and dumps
//! in) and a monitor socket (notifications of what others change), one thread, no tokio.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::fib::{Fib, Work};
use crate::sock::{self, NlSocket};
use crate::wire::{self, KernelEvent, Target};

#[derive(Debug, Error)]
pub enum DriverError {
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("netlink send: {0}")]
    Send(#[source] io::Error),
    #[error("the kernel refused a dump of its tables: errno {0}")]
    Dump(i32),
    #[error("timed out waiting for the kernel")]
    Timeout,
}

/// Requests per sendmsg are bounded by the socket's send buffer (212 KiB by default).
const SEND_BATCH: usize = 128 * 1024;
/// Acks are ~40 octets of payload but a few hundred of buffer each: room for the window.
const RCVBUF: usize = 32 << 20;
/// Dumps come in datagrams of up to 32 KiB.
const RECV_BUF: usize = 64 * 1024;
/// Dump sequence numbers live above the FIB's.
const DUMP_SEQ_BASE: u32 = 0x8000_0000;

/// How the driver runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The monitor socket's receive buffer: a small one loses notifications under a burst
    /// (ENOBUFS), as a test of the resync wants.
    pub rcvbuf: usize,
    /// Routes through nexthop objects where the kernel has them (Linux 5.3 and later).
    pub nexthop_objects: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rcvbuf: RCVBUF,
            nexthop_objects: true,
        }
    }
}

pub struct Driver {
    fib: Fib,
    req: NlSocket,
    mon: NlSocket,
    out: Vec<u8>,
    inbuf: Vec<u8>,
    dump_seq: u32,
    /// Netlink messages that could not be parsed, for the logs.
    pub unparsed: u64,
    /// Resyncs after lost messages.
    pub resyncs: u64,
    /// The kernel has nexthop objects: they are dumped in a resync.
    objects: bool,
}

impl Driver {
    /// Opens the sockets, subscribes to route, link, address and nexthop changes, then
    /// learns the kernel's links, addresses, nexthop objects and routes: interlink's own are
    /// adopted as stale.
    pub fn open(target: Target, window: usize) -> Result<Driver, DriverError> {
        Driver::open_with(target, window, Options::default())
    }

    pub fn open_with(target: Target, window: usize, opts: Options) -> Result<Driver, DriverError> {
        let rcvbuf = opts.rcvbuf;
        let mon = NlSocket::open(
            &[
                sock::RTNLGRP_LINK,
                sock::RTNLGRP_IPV4_IFADDR,
                sock::RTNLGRP_IPV6_IFADDR,
                sock::RTNLGRP_IPV4_ROUTE,
                sock::RTNLGRP_IPV6_ROUTE,
            ],
            rcvbuf,
        )
        .map_err(DriverError::Socket)?;
        let req = NlSocket::open(&[], RCVBUF).map_err(DriverError::Socket)?;
        mon.ignore_port(req.portid()).map_err(DriverError::Socket)?;
        let mut d = Driver {
            fib: Fib::new(target, window),
            req,
            mon,
            out: Vec::with_capacity(SEND_BATCH + 4096),
            inbuf: vec![0; RECV_BUF],
            dump_seq: DUMP_SEQ_BASE,
            unparsed: 0,
            resyncs: 0,
            objects: false,
        };
        d.dump(wire::RTM_GETLINK, libc::AF_UNSPEC as u8, true)?;
        d.dump(wire::RTM_GETADDR, libc::AF_UNSPEC as u8, true)?;
        // Objects before routes, so that routes through them are known as such. A kernel
        // without them refuses the dump (EOPNOTSUPP, or EINVAL for an unknown message) and
        // gets per-route next hops; one with them is asked to tell of changes.
        match d.dump(wire::RTM_GETNEXTHOP, libc::AF_UNSPEC as u8, true) {
            Ok(()) => {
                let _ = d.mon.join(sock::RTNLGRP_NEXTHOP);
                d.fib.use_nexthop_objects(opts.nexthop_objects);
                d.objects = true;
            }
            Err(DriverError::Dump(_)) => {}
            Err(e) => return Err(e),
        }
        d.dump(wire::RTM_GETROUTE, libc::AF_INET as u8, true)?;
        d.dump(wire::RTM_GETROUTE, libc::AF_INET6 as u8, true)?;
        Ok(d)
    }

    pub fn fib(&mut self) -> &mut Fib {
        &mut self.fib
    }

    pub fn fib_ref(&self) -> &Fib {
        &self.fib
    }

    /// Sends requests while the window has room, in batches of many messages per sendmsg.
    fn send_requests(&mut self) -> Result<bool, DriverError> {
        let mut sent = false;
        loop {
            self.out.clear();
            while self.out.len() < SEND_BATCH {
                let Some(r) = self.fib.next_request() else {
                    break;
                };
                let target = *self.fib.target();
                match r {
                    Work::Route(r) => {
                        if let Some(nh) = r.via {
                            wire::encode_route_via(
                                &mut self.out,
                                r.seq,
                                r.op,
                                &target,
                                &r.prefix,
                                nh,
                            );
                            continue;
                        }
                        // A delete carries no route; any does for the encoder.
                        let route = match r.route {
                            Some(id) => self.fib.route(id),
                            None => &crate::Route::Blackhole,
                        };
                        wire::encode_route(&mut self.out, r.seq, r.op, &target, &r.prefix, route);
                    }
                    Work::Nexthop { seq, op, id, hop } => {
                        wire::encode_nexthop(&mut self.out, seq, op, target.protocol, id, &hop);
                    }
                    Work::Group {
                        seq,
                        op,
                        id,
                        members,
                    } => {
                        wire::encode_group(&mut self.out, seq, op, target.protocol, id, &members);
                    }
                }
            }
            if self.out.is_empty() {
                return Ok(sent);
            }
            if let Err(e) = self.req.send(&self.out) {
                // The batch went nowhere: start again from what the kernel holds.
                self.fib.forget_in_flight();
                self.resync()?;
                return Err(DriverError::Send(e));
            }
            sent = true;
        }
    }

    /// Handles one message from the request socket: an ack, or part of a dump.
    fn on_request_reply(&mut self, m: &wire::Message<'_>, startup: bool) -> Option<bool> {
        if m.seq >= DUMP_SEQ_BASE {
            if m.seq != self.dump_seq {
                return None;
            }
            return match m.kind {
                wire::NLMSG_DONE => Some(true),
                wire::NLMSG_ERROR => Some(true),
                _ => {
                    match wire::parse_event(m) {
                        Some(KernelEvent::NewRoute(kr)) => self.fib.adopt(&kr, startup),
                        Some(KernelEvent::Nexthop { nh, .. }) => {
                            self.fib.adopt_nexthop(&nh, startup)
                        }
                        Some(ev) => self.fib.observe(&ev),
                        None => self.unparsed += 1,
                    }
                    None
                }
            };
        }
        if let Some((errno, msg)) = wire::parse_error(m) {
            self.fib.ack(m.seq, errno, msg);
        }
        None
    }

    /// Dumps one kind of object and feeds it to the FIB; waits for the end of the dump.
    fn dump(&mut self, kind: u16, family: u8, startup: bool) -> Result<(), DriverError> {
        self.dump_seq = self.dump_seq.wrapping_add(1).max(DUMP_SEQ_BASE);
        self.out.clear();
        wire::encode_dump(&mut self.out, self.dump_seq, kind, family);
        self.req.send(&self.out).map_err(DriverError::Send)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let result = loop {
            let n = match self.req.recv(&mut inbuf) {
                Ok(Some(n)) => n,
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break Err(DriverError::Timeout);
                    }
                    if let Err(e) = sock::poll([self.req.fd()], left.as_millis() as i32) {
                        break Err(DriverError::Socket(e));
                    }
                    continue;
                }
                Err(e) => break Err(DriverError::Socket(e)),
            };
            let mut done = None;
            for m in wire::messages(&inbuf[..n]) {
                if m.seq == self.dump_seq && m.kind == wire::NLMSG_ERROR {
                    let errno = wire::parse_error(&m).map_or(0, |e| e.0);
                    done = Some(if errno == 0 {
                        Ok(())
                    } else {
                        Err(DriverError::Dump(errno))
                    });
                } else if self.on_request_reply(&m, startup) == Some(true) {
                    done = Some(Ok(()));
                }
            }
            if let Some(r) = done {
                break r;
            }
        };
        self.inbuf = inbuf;
        result
    }

    /// Learns the kernel's routes again after messages were lost, and queues whatever
    /// differs from what the sources want.
    pub fn resync(&mut self) -> Result<(), DriverError> {
        self.resyncs += 1;
        self.fib.begin_resync();
        self.dump(wire::RTM_GETLINK, libc::AF_UNSPEC as u8, false)?;
        if self.objects {
            self.dump(wire::RTM_GETNEXTHOP, libc::AF_UNSPEC as u8, false)?;
        }
        self.dump(wire::RTM_GETROUTE, libc::AF_INET as u8, false)?;
        self.dump(wire::RTM_GETROUTE, libc::AF_INET6 as u8, false)?;
        self.fib.finish_resync();
        Ok(())
    }

    /// Reads everything waiting on both sockets. True if anything came.
    fn read_all(&mut self) -> Result<bool, DriverError> {
        let mut any = false;
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut lost = false;
        loop {
            match self.req.recv(&mut inbuf) {
                Ok(Some(n)) => {
                    any = true;
                    for m in wire::messages(&inbuf[..n]) {
                        self.on_request_reply(&m, false);
                    }
                }
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Acks were lost: what is in flight is unknown.
                    self.fib.forget_in_flight();
                    lost = true;
                }
                Err(e) => {
                    self.inbuf = inbuf;
                    return Err(DriverError::Socket(e));
                }
            }
        }
        let own = self.req.portid();
        loop {
            match self.mon.recv(&mut inbuf) {
                Ok(Some(n)) => {
                    any = true;
                    for m in wire::messages(&inbuf[..n]) {
                        if m.pid == own {
                            continue;
                        }
                        match wire::parse_event(&m) {
                            Some(ev) => self.fib.observe(&ev),
                            None => self.unparsed += 1,
                        }
                    }
                }
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                Err(e) => {
                    self.inbuf = inbuf;
                    return Err(DriverError::Socket(e));
                }
            }
        }
        self.inbuf = inbuf;
        if lost {
            self.resync()?;
        } else if self.fib.take_nexthop_check() {
            // An interface with objects on it went down: which the kernel dropped (and the
            // routes through them), only a dump of the objects tells.
            self.fib.begin_nexthop_check();
            self.dump(wire::RTM_GETNEXTHOP, libc::AF_UNSPEC as u8, false)?;
            self.fib.finish_nexthop_check();
        }
        Ok(any)
    }

    /// One turn: sends what the window allows, handles what came back, and if nothing did,
    /// waits up to `timeout` for the kernel or for `extra` (the caller's own wake-up fd).
    /// Returns whether `extra` is readable.
    pub fn pump(&mut self, extra: Option<RawFd>, timeout: Duration) -> Result<bool, DriverError> {
        let sent = self.send_requests()?;
        let got = self.read_all()?;
        if sent || got {
            let ready = match extra {
                Some(fd) => sock::poll([fd], 0).map_err(DriverError::Socket)?[0],
                None => false,
            };
            return Ok(ready);
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let ready = match extra {
            Some(fd) => sock::poll([self.req.fd(), self.mon.fd(), fd], ms),
            None => sock::poll([self.req.fd(), self.mon.fd(), self.mon.fd()], ms),
        }
        .map_err(DriverError::Socket)?;
        if ready[0] || ready[1] {
            self.read_all()?;
        }
        Ok(extra.is_some() && ready[2])
    }

    /// Pumps until nothing is queued or in flight, or `timeout` passes.
    pub fn run_until_idle(&mut self, timeout: Duration) -> Result<(), DriverError> {
        let deadline = Instant::now() + timeout;
        while !self.fib.is_idle() {
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout);
            }
            self.pump(None, Duration::from_millis(50))?;
        }
        // Notifications of what others did meanwhile.
        self.read_all()?;
        Ok(())
    }
}
