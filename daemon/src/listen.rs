//! Accept loops that clients cannot wear out, for the control socket and `/metrics`.
//!
//! - An accept error (EMFILE when descriptors run out, ECONNABORTED, ENOBUFS) is logged,
//!   counted and retried after a pause that grows to a second: the loop never ends on one,
//!   and does not spin while the error lasts.
//! - At most `max_connections` clients at once; one more is closed at once and counted, so a
//!   flood of idle connections cannot take every descriptor.
//! - Each connection has one deadline for the whole exchange (request, answer and write), so
//!   a client that sends a byte every few seconds is closed, not served for hours.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// What a listener has seen, for the metrics.
#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    /// Closed at once: `max_connections` were open.
    pub refused: AtomicU64,
    /// Closed at the deadline.
    pub timed_out: AtomicU64,
    /// accept(2) failed (EMFILE and the like).
    pub errors: AtomicU64,
}

impl Stats {
    pub const fn new() -> Stats {
        Stats {
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

/// The control socket's listener.
pub static CONTROL: Stats = Stats::new();
/// The metrics listener.
pub static METRICS: Stats = Stats::new();

/// Bounds on a listener's clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    /// For the whole exchange of one connection.
    pub deadline: Duration,
}

/// Something connections come from: a TCP or Unix listener, or a test's stand-in.
pub trait Acceptor: Send + 'static {
    type Conn: Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Conn>> + Send;
}

impl Acceptor for tokio::net::TcpListener {
    type Conn = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<Self::Conn> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Acceptor for tokio::net::UnixListener {
    type Conn = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<Self::Conn> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// The longest pause after accept errors in a row.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts from `acceptor` until the task is aborted, each connection served by `handler` in
/// a task of its own within `limits`.
pub fn serve<A, F, Fut>(
    name: &'static str,
    acceptor: A,
    limits: Limits,
    stats: &'static Stats,
    handler: F,
) -> tokio::task::JoinHandle<()>
where
    A: Acceptor,
    F: Fn(A::Conn) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let mut backoff = Duration::from_millis(10);
        loop {
            let conn = match acceptor.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    warn!("{name}: accept failed: {e}; trying again in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(10);
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                // Dropped: closed at once.
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            let work = handler(conn);
            tokio::spawn(async move {
                if tokio::time::timeout(limits.deadline, work).await.is_err() {
                    stats.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                drop(slot);
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A listener on loopback that echoes one line, within `limits`.
    async fn echo(limits: Limits, stats: &'static Stats) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        serve(
            "test",
            l,
            limits,
            stats,
            |mut s: tokio::net::TcpStream| async move {
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while s.read(&mut b).await.unwrap_or(0) == 1 && b[0] != b'\n' {
                    line.push(b[0]);
                }
                let _ = s.write_all(&line).await;
            },
        );
        addr
    }

    /// Reads until the peer closes; what came.
    async fn read_all(s: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut v = Vec::new();
        let _ = s.read_to_end(&mut v).await;
        v
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_client_is_closed_at_the_deadline() {
        static STATS: Stats = Stats::new();
        let limits = Limits {
            max_connections: 4,
            deadline: Duration::from_millis(300),
        };
        let addr = echo(limits, &STATS).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        // A byte every 100 ms: each read is quick, the whole never ends.
        for _ in 0..10 {
            if s.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = read_all(&mut s).await;
        assert!(got.is_empty(), "{got:?}");
        assert!(start.elapsed() < Duration::from_millis(1100));
        assert_eq!(STATS.timed_out.load(Ordering::Relaxed), 1);
        // A prompt client is served.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"hello\n").await.unwrap();
        assert_eq!(read_all(&mut s).await, b"hello");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connections_over_the_cap_are_closed_at_once() {
        static STATS: Stats = Stats::new();
        let limits = Limits {
            max_connections: 2,
            deadline: Duration::from_secs(30),
        };
        let addr = echo(limits, &STATS).await;
        let idle1 = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _idle2 = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Let the loop take both.
        while STATS.accepted.load(Ordering::Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = third.write_all(b"hello\n").await;
        assert_eq!(read_all(&mut third).await, b"", "closed without an answer");
        assert_eq!(STATS.refused.load(Ordering::Relaxed), 1);
        // One leaves: a slot is free again.
        drop(idle1);
        let mut next = loop {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"again\n").await.unwrap();
            let got = read_all(&mut s).await;
            if got == b"again" {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(std::mem::take(&mut next), b"again");
    }

    /// Fails as accept(2) does when descriptors run out, `fails` times, then gives a
    /// connection (a number) for each call.
    struct Flaky {
        fails: Mutex<u32>,
        next: Mutex<u32>,
    }

    impl Acceptor for Flaky {
        type Conn = u32;
        async fn accept(&self) -> io::Result<u32> {
            {
                let mut f = self.fails.lock().unwrap();
                if *f > 0 {
                    *f -= 1;
                    return Err(io::Error::from_raw_os_error(libc::EMFILE));
                }
            }
            let n = {
                let mut n = self.next.lock().unwrap();
                *n += 1;
                *n
            };
            if n > 3 {
                // Nothing more comes.
                std::future::pending::<()>().await;
            }
            Ok(n)
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn accept_errors_are_retried_with_a_growing_pause_never_ending_the_loop() {
        static STATS: Stats = Stats::new();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let acceptor = Flaky {
            fails: Mutex::new(8),
            next: Mutex::new(0),
        };
        let limits = Limits {
            max_connections: 8,
            deadline: Duration::from_secs(1),
        };
        let start = tokio::time::Instant::now();
        let task = serve("test", acceptor, limits, &STATS, move |n| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(n);
            }
        });
        for want in 1..=3 {
            assert_eq!(rx.recv().await, Some(want));
        }
        assert_eq!(STATS.errors.load(Ordering::Relaxed), 8);
        // 10+20+40+...+1000 ms: paused, growing, capped at a second.
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(10 + 20 + 40 + 80 + 160 + 320 + 640 + 1000));
        assert!(waited < Duration::from_millis(2400), "{waited:?}");
        assert!(!task.is_finished());
        task.abort();
    }
}
