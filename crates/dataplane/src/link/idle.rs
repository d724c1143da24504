//! How a worker waits for work: adaptive busy polling, then sleep.
//!
//! A sleeping worker costs a wake-up per batch, and on a busy link that is most of what the
//! scheduler does: in the lab's single TCP stream, each 64 KiB super-packet woke four threads
//! (the TUN reader, the peer's socket reader, and the same two for the ACK), and in a virtual
//! machine each wake-up of an idle CPU is an IPI and an exit. So a worker that has just had
//! work polls for more, yielding the CPU to anything runnable between polls, for up to the
//! link's `busy_poll` before it sleeps; and only while the traffic's gaps are that short: the
//! wait before the last piece of work decides whether the next wait polls. A quiet link (a
//! probe a second, BGP keepalives) never polls; a link whose gaps lengthen stops polling after
//! one wasted poll. This is the kernel's `busy_poll` for sockets, made adaptive as NAPI's
//! interrupt deferral is.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys;

pub(super) struct Idle {
    /// The last wait ended in work within the budget: the next one polls first.
    polling: bool,
}

impl Idle {
    pub(super) fn new() -> Idle {
        Idle { polling: false }
    }

    /// Waits until one of `fds` is readable (which, as with `poll`, may be none after
    /// `timeout_ms`); `budget_us` is the link's busy poll, read each time so that a reload
    /// changes it in place.
    pub(super) fn wait<const N: usize>(
        &mut self,
        fds: [RawFd; N],
        timeout_ms: i32,
        budget_us: &AtomicU64,
    ) -> io::Result<[bool; N]> {
        let budget = Duration::from_micros(budget_us.load(Ordering::Relaxed));
        let start = Instant::now();
        if self.polling && !budget.is_zero() {
            loop {
                let ready = sys::poll_readable(fds, 0)?;
                if ready.contains(&true) {
                    return Ok(ready);
                }
                if start.elapsed() >= budget {
                    break;
                }
                sys::yield_now();
            }
        }
        let ready = sys::poll_readable(fds, timeout_ms)?;
        self.polling = decide(ready.contains(&true), start.elapsed(), budget);
        Ok(ready)
    }
}

/// Whether the next wait polls: only if this one ended in work no later than a poll of
/// `budget` would have found it.
fn decide(work: bool, waited: Duration, budget: Duration) -> bool {
    work && waited <= budget
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    #[test]
    fn polls_only_after_short_gaps() {
        let b = Duration::from_micros(100);
        assert!(decide(true, Duration::from_micros(40), b));
        assert!(!decide(true, Duration::from_micros(400), b));
        // A timeout is no work: the next wait sleeps at once.
        assert!(!decide(false, Duration::from_micros(10), b));
        assert!(!decide(true, Duration::from_micros(1), Duration::ZERO));
    }

    /// Through real descriptors: a quiet fd makes the worker sleep; work that comes while it
    /// polls is found without sleeping; and work that comes later than the budget turns
    /// polling off again.
    #[test]
    fn waits_poll_while_work_comes_soon() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let fd = b.as_raw_fd();
        let budget = Arc::new(AtomicU64::new(200_000)); // 200 ms: robust on a loaded machine
        let mut idle = Idle::new();
        // Nothing to read: poll times out, polling stays off.
        assert_eq!(idle.wait([fd], 10, &budget).unwrap(), [false]);
        assert!(!idle.polling);
        // Work already there: found at once, so the gap was short and polling comes on.
        a.send(b"x").unwrap();
        assert_eq!(idle.wait([fd], 1000, &budget).unwrap(), [true]);
        assert!(idle.polling);
        b.recv(&mut [0; 8]).unwrap();
        // While polling, work that comes 20 ms later is found by the poll.
        let sender = a.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            sender.send(b"y").unwrap();
        });
        let start = Instant::now();
        assert_eq!(idle.wait([fd], 1000, &budget).unwrap(), [true]);
        assert!(start.elapsed() < Duration::from_millis(200));
        t.join().unwrap();
        b.recv(&mut [0; 8]).unwrap();
        // A shorter budget than the next gap: the poll gives up, the sleep finds the work,
        // and the gap was too long to poll next time.
        budget.store(1_000, Ordering::Relaxed);
        let sender = a.try_clone().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            sender.send(b"z").unwrap();
        });
        assert_eq!(idle.wait([fd], 1000, &budget).unwrap(), [true]);
        assert!(!idle.polling);
        t.join().unwrap();
    }
}
