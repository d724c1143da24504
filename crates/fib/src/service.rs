//! The FIB on a thread of its own, for the daemon: commands in through a channel (with an
//! eventfd to wake the thread from its poll), events out through another. The thread owns
//! the driver, so the sockets live in the network namespace of the thread that starts it.

use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interlink_sys::EventFd;

use crate::driver::{Driver, DriverError, Options};
use crate::fib::{FibEvent, FibStats};
use crate::route::{Prefix, Route};
use crate::wire::Target;

enum Command {
    Set(Prefix, Option<Route>),
    /// Many at once: a table load crosses in batches, not route by route.
    SetMany(Vec<(Prefix, Option<Route>)>),
    Sweep,
    /// Next hops in a network failed (true) or forward again (false): see
    /// [`crate::Fib::fail_over_net`].
    Switch(Prefix, bool),
    Stop {
        withdraw: bool,
    },
}

/// What the FIB thread publishes for metrics and `show fib`.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub stats: FibStats,
    /// Adopted routes still waiting for the sweep.
    pub stale: usize,
    /// Requests queued or in flight: 0 when the kernel holds what the sources want.
    pub busy: bool,
    /// Commands the thread has taken in.
    pub processed: u64,
    /// Routes go through nexthop objects (the kernel has them and they are on).
    pub nexthop_objects: bool,
}

pub struct FibService {
    cmds: Sender<Command>,
    /// Commands sent, to tell whether the thread has seen them all.
    sent: std::cell::Cell<u64>,
    wake: Arc<EventFd>,
    events: Receiver<FibEvent>,
    snapshot: Arc<Mutex<Snapshot>>,
    thread: Option<JoinHandle<Result<(), DriverError>>>,
}

impl FibService {
    /// Starts the FIB thread: it opens the netlink sockets, learns the kernel's state
    /// (adopting interlink's routes as stale) and then waits for commands. Fails if the
    /// sockets cannot be opened or the first dump fails.
    pub fn start(target: Target, window: usize, opts: Options) -> Result<FibService, DriverError> {
        let wake = Arc::new(EventFd::new().map_err(DriverError::Socket)?);
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let snapshot = Arc::new(Mutex::new(Snapshot::default()));
        let thread = {
            let wake = wake.clone();
            let snapshot = snapshot.clone();
            std::thread::Builder::new()
                .name("il-fib".into())
                .spawn(move || {
                    let driver = match Driver::open_with(target, window, opts) {
                        Ok(d) => {
                            // What the first dump found, before `start` returns.
                            if let Ok(mut s) = snapshot.lock() {
                                s.stale = d.fib_ref().stale();
                                s.stats = d.fib_ref().stats();
                                s.nexthop_objects = d.fib_ref().nexthop_objects();
                            }
                            let _ = ready_tx.send(Ok(()));
                            d
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    run(driver, cmd_rx, &wake, ev_tx, &snapshot)
                })
                .map_err(DriverError::Socket)?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err(DriverError::Timeout),
        }
        Ok(FibService {
            cmds: cmd_tx,
            sent: std::cell::Cell::new(0),
            wake,
            events: ev_rx,
            snapshot,
            thread: Some(thread),
        })
    }

    fn send(&self, c: Command) {
        if self.cmds.send(c).is_ok() {
            self.sent.set(self.sent.get() + 1);
            self.wake.wake();
        }
    }

    /// Whether the kernel holds what every command sent so far asks for: the thread has taken
    /// them all in and has nothing queued or in flight.
    pub fn in_sync(&self) -> bool {
        let s = self.snapshot();
        s.processed == self.sent.get() && !s.busy
    }

    /// What the sources want for `prefix` (None: no route).
    pub fn set(&self, prefix: Prefix, route: Option<Route>) {
        self.send(Command::Set(prefix, route));
    }

    /// What the sources want for many prefixes, in order.
    pub fn set_many(&self, routes: Vec<(Prefix, Option<Route>)>) {
        if !routes.is_empty() {
            self.send(Command::SetMany(routes));
        }
    }

    /// The next hop through `gateway` failed: routes through it that have a backup move to
    /// it at once (see [`crate::Fib::fail_over`]).
    pub fn fail_over(&self, gateway: std::net::IpAddr) {
        self.send(Command::Switch(crate::fib::host(gateway), true));
    }

    /// Every next hop in `net` failed (a link whose peer stopped answering), or (`failed`
    /// false) forwards again.
    pub fn fail_over_net(&self, net: Prefix, failed: bool) {
        self.send(Command::Switch(net, failed));
    }

    /// The sources have converged: routes adopted at start and not wanted again go.
    pub fn sweep(&self) {
        self.send(Command::Sweep);
    }

    /// Events since the last call.
    pub fn events(&self) -> Vec<FibEvent> {
        self.events.try_iter().collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the thread, withdrawing interlink's routes first if `withdraw`, within
    /// `timeout`. The routes are otherwise left in the kernel, forwarding.
    pub fn stop(mut self, withdraw: bool, timeout: Duration) -> Result<Snapshot, DriverError> {
        self.send(Command::Stop { withdraw });
        let deadline = Instant::now() + timeout;
        let thread = self.thread.take().expect("running");
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return Err(DriverError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().map_err(|_| DriverError::Timeout)??;
        Ok(self.snapshot())
    }
}

impl Drop for FibService {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.cmds.send(Command::Stop { withdraw: false });
            self.wake.wake();
            let _ = t.join();
        }
    }
}

/// How often a busy FIB counts its stale routes for the snapshot.
const STALE_EVERY: Duration = Duration::from_millis(250);

fn run(
    mut d: Driver,
    cmds: Receiver<Command>,
    wake: &EventFd,
    events: Sender<FibEvent>,
    snapshot: &Mutex<Snapshot>,
) -> Result<(), DriverError> {
    let mut processed = 0u64;
    // The count of stale routes walks every slot: a million of them at each turn of the loop
    // cost the writer about a second in a million-route load. Counted again at most every
    // `STALE_EVERY`, and whenever the FIB is idle (a sweep's end is seen at once).
    let mut stale = (Instant::now(), d.fib_ref().stale());
    let mut publish = |d: &mut Driver, processed: u64| {
        let fib = d.fib_ref();
        let idle = fib.is_idle();
        if idle || stale.0.elapsed() >= STALE_EVERY {
            stale = (Instant::now(), fib.stale());
        }
        if let Ok(mut s) = snapshot.lock() {
            *s = Snapshot {
                stats: fib.stats(),
                stale: stale.1,
                busy: !idle,
                processed,
                nexthop_objects: fib.nexthop_objects(),
            };
        }
    };
    publish(&mut d, processed);
    loop {
        loop {
            let c = cmds.try_recv();
            if c.is_ok() {
                processed += 1;
            }
            match c {
                Ok(Command::Set(p, r)) => d.fib().set(p, r.as_ref()),
                Ok(Command::SetMany(list)) => {
                    let fib = d.fib();
                    for (p, r) in list {
                        fib.set(p, r.as_ref());
                    }
                }
                Ok(Command::Sweep) => {
                    d.fib().sweep_stale();
                }
                Ok(Command::Switch(net, failed)) => {
                    d.fib().fail_over_net(net, failed);
                }
                Ok(Command::Stop { withdraw }) => {
                    if withdraw {
                        d.fib().withdraw_all();
                    }
                    let r = d.run_until_idle(Duration::from_secs(60));
                    for e in d.fib().drain_events() {
                        let _ = events.send(e);
                    }
                    publish(&mut d, processed);
                    return r;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        // Errors of one turn (a send that failed and was resynced) are not fatal.
        let woken = d
            .pump(Some(wake.fd()), Duration::from_secs(1))
            .unwrap_or(false);
        if woken {
            wake.drain();
        }
        for e in d.fib().drain_events() {
            let _ = events.send(e);
        }
        publish(&mut d, processed);
    }
}
