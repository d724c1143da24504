//! A raw `NETLINK_ROUTE` socket: the one piece of unsafe in the crate, kept small.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Multicast groups (linux/rtnetlink.h `RTNLGRP_*`).
pub const RTNLGRP_LINK: u32 = 1;
pub const RTNLGRP_IPV4_IFADDR: u32 = 5;
pub const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub const RTNLGRP_IPV6_IFADDR: u32 = 9;
pub const RTNLGRP_IPV6_ROUTE: u32 = 11;
/// Linux 5.3 and later.
pub const RTNLGRP_NEXTHOP: u32 = 32;

use interlink_sys::cvt;
pub use interlink_sys::{if_index, poll_readable as poll};

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub struct NlSocket {
    fd: OwnedFd,
    portid: u32,
}

impl NlSocket {
    /// A non-blocking rtnetlink socket with a receive buffer of `rcvbuf` octets (forced past
    /// the sysctl limit where the process may), joined to `groups`. Errors come back capped
    /// (the request's header only) and with the kernel's extended-ack text.
    pub fn open(groups: &[u32], rcvbuf: usize) -> io::Result<NlSocket> {
        // SAFETY: plain socket call; the result is checked.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: just opened, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let size = rcvbuf.min(i32::MAX as usize) as libc::c_int;
        if set_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_err() {
            set_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, size)?;
        }
        // Both are optional refinements: older kernels go without.
        let _ = set_int(raw, SOL_NETLINK, NETLINK_CAP_ACK, 1);
        let _ = set_int(raw, SOL_NETLINK, NETLINK_EXT_ACK, 1);
        // SAFETY: zero is a valid sockaddr_nl; it lives across bind and getsockname.
        let portid = unsafe {
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            cvt(libc::bind(
                raw,
                (&sa as *const libc::sockaddr_nl).cast(),
                len,
            ))?;
            let mut got = len;
            cvt(libc::getsockname(
                raw,
                (&mut sa as *mut libc::sockaddr_nl).cast(),
                &mut got,
            ))?;
            sa.nl_pid
        };
        for &g in groups {
            set_int(raw, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g as libc::c_int)?;
        }
        Ok(NlSocket { fd, portid })
    }

    /// Joins one more multicast group.
    pub fn join(&self, group: u32) -> io::Result<()> {
        set_int(
            self.fd.as_raw_fd(),
            SOL_NETLINK,
            NETLINK_ADD_MEMBERSHIP,
            group as libc::c_int,
        )
    }

    /// The port id the kernel gave the socket: notifications caused by its requests carry it.
    pub fn portid(&self) -> u32 {
        self.portid
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Sends `buf` (one or more messages) to the kernel, which handles them before returning.
    pub fn send(&self, buf: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: zero is a valid sockaddr_nl (the kernel); `buf` is valid for its length.
            let r = unsafe {
                let mut sa: libc::sockaddr_nl = std::mem::zeroed();
                sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
                libc::sendto(
                    self.fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    0,
                    (&sa as *const libc::sockaddr_nl).cast(),
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram without blocking; None if there is none. ENOBUFS (messages were
    /// lost) comes back as an error for the caller to resync on.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let r = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r >= 0 {
                return Ok(Some(r as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }
}

impl NlSocket {
    /// Drops, in the kernel, every message whose `nlmsg_pid` is `portid`: the notifications
    /// that our own requests cause, which the acks already told us of. Without it a million
    /// installs would flood the monitor socket with their echoes (zebra does the same).
    pub fn ignore_port(&self, portid: u32) -> io::Result<()> {
        // cBPF loads words in network byte order; nlmsg_pid is in host order.
        let k = u32::from_be_bytes(portid.to_ne_bytes());
        let code = [
            // ld [12]: nlmsg_pid
            libc::sock_filter {
                code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                jt: 0,
                jf: 0,
                k: 12,
            },
            // jeq #k: drop, else accept
            libc::sock_filter {
                code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                jt: 1,
                jf: 0,
                k,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: u32::MAX,
            },
            libc::sock_filter {
                code: (libc::BPF_RET | libc::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k: 0,
            },
        ];
        let prog = libc::sock_fprog {
            len: code.len() as u16,
            filter: code.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the program lives across the call; the kernel copies it.
        cvt(unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    }
}
