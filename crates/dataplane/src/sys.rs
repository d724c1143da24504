//! The few system calls the data plane needs, wrapped once: TUN creation, poll, and batched
//! datagram I/O (recvmmsg/sendmmsg). Everything else stays safe Rust.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `_IOW('T', 202, int)` from linux/if_tun.h; libc does not export it.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `_IOW('T', 203, int)`: the interface outlives its queues (or, with 0, goes with them).
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `_IOW('T', 208, unsigned int)`: which offloads userspace accepts from TUN.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_TSO_ECN: libc::c_ulong = 0x08;
/// UDP segmentation offload (Linux 6.2+), both families or neither.
const TUN_F_USO4: libc::c_ulong = 0x20;
const TUN_F_USO6: libc::c_ulong = 0x40;

use interlink_sys::{cvt, cvt_size};
pub use interlink_sys::{if_index, poll_readable};

/// Opens one queue of the TUN device `name` (created by the first open), layer 3, no packet
/// information header, non-blocking. Every packet read or written starts with a
/// `virtio_net_hdr`, and the interface offloads checksums and TCP segmentation (TSO) to us:
/// reads may be partial-checksum packets or TCP super-packets (see `offload`). The device
/// disappears when its last queue is closed, unless made persistent ([`set_persist`]).
///
/// `exclusive` creates the interface, refusing one that exists (EBUSY); without it an
/// existing persistent one is attached to (EINVAL if its flags differ: one queue against
/// several).
///
/// UDP segmentation offload is asked for too: where the kernel has it (6.2+), reads may be
/// UDP GSO packets and writes may be, and the second value is true; an older kernel refuses
/// it and the TUN works without.
pub fn open_tun_queue(
    name: &str,
    multi_queue: bool,
    exclusive: bool,
) -> io::Result<(OwnedFd, bool)> {
    let path = CString::new("/dev/net/tun").expect("no NUL in a literal");
    // SAFETY: a valid C string and flags; the result is checked.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq_for(name)?;
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    // The interface must be new: never attach to one someone else made (or left), whose
    // packets would then be read and protected as ours (EBUSY if it exists).
    if exclusive {
        flags |= libc::IFF_TUN_EXCL;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF takes a pointer to an ifreq that lives across the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) })?;
    let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    let uso = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            TUNSETOFFLOAD as _,
            offloads | TUN_F_USO4 | TUN_F_USO6,
        )
    } == 0;
    if !uso {
        // SAFETY: as above.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, offloads) })?;
    }
    Ok((fd, uso))
}

/// Makes the TUN interface behind `fd` outlive its queues (a restart of the process, a
/// crash), or, with false, go with the last of them.
pub fn set_persist(fd: RawFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its flag by value.
    cvt(unsafe { libc::ioctl(fd, TUNSETPERSIST as _, libc::c_ulong::from(persist)) }).map(|_| ())
}

/// Gives the CPU to another runnable thread, if there is one.
pub fn yield_now() {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::sched_yield() };
}

/// Reads one packet into `buf`; `Ok(None)` when none is waiting.
pub fn read_nonblocking(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: `buf` is valid for writes of its length.
    match cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes one packet.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

pub fn set_int_opt(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: the option value is a c_int that lives across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub fn get_int_opt(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value and len are valid for writes and sized for a c_int.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// `UDP_SEGMENT` (linux/udp.h): the datagram size of a UDP GSO send.
pub const UDP_SEGMENT: libc::c_int = 103;
/// `UDP_GRO` (linux/udp.h): receive coalesced datagrams; the cmsg gives their size.
pub const UDP_GRO: libc::c_int = 104;

/// Room for one cmsg carrying an int, whatever the alignment rules.
const CTRL_LEN: usize = 32;

/// Message headers for up to `N` datagrams per system call, built once over fixed slots of a
/// buffer that the caller owns: no allocation per call.
pub struct MmsgBatch<const N: usize> {
    iovs: [libc::iovec; N],
    hdrs: [libc::mmsghdr; N],
    ctrl: [[u64; CTRL_LEN / 8]; N],
}

impl<const N: usize> MmsgBatch<N> {
    pub fn new() -> Self {
        // SAFETY: iovec and mmsghdr are plain old data; zero is a valid (empty) value.
        unsafe { std::mem::zeroed() }
    }

    /// Receives up to `N` messages without blocking, message `i` into `slots[i]`. Returns how
    /// many arrived; their lengths are in `lens`. With `UDP_GRO` on, a message may hold several
    /// datagrams of `gro[i]` octets each (the last may be shorter); `gro[i]` is 0 otherwise.
    pub fn recv(
        &mut self,
        fd: RawFd,
        slots: &mut [&mut [u8]; N],
        lens: &mut [usize; N],
        gro: &mut [usize; N],
    ) -> io::Result<usize> {
        for (((iov, hdr), slot), ctrl) in self
            .iovs
            .iter_mut()
            .zip(self.hdrs.iter_mut())
            .zip(slots.iter_mut())
            .zip(self.ctrl.iter_mut())
        {
            *iov = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            // SAFETY: zero is a valid msghdr.
            hdr.msg_hdr = unsafe { std::mem::zeroed() };
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = CTRL_LEN as _;
            hdr.msg_len = 0;
        }
        // SAFETY: the headers point at iovecs over `slots` and at control buffers, all alive
        // for the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                N as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match cvt(n) {
            Ok(n) => {
                let n = n as usize;
                for i in 0..n {
                    lens[i] = self.hdrs[i].msg_len as usize;
                    gro[i] = gro_size(&self.hdrs[i].msg_hdr);
                }
                Ok(n)
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends `datagrams`, all of one size but the last (which may be shorter), as one UDP GSO
    /// message on a connected socket: the kernel splits it back into datagrams, and carries
    /// it as one packet as far as it can.
    pub fn send_gso(&mut self, fd: RawFd, datagrams: &[&[u8]]) -> io::Result<()> {
        let count = datagrams.len().min(N);
        let Some(first) = datagrams.first() else {
            return Ok(());
        };
        for (iov, d) in self.iovs.iter_mut().zip(&datagrams[..count]) {
            *iov = libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            };
        }
        let ctrl = &mut self.ctrl[0];
        // SAFETY: zero is a valid msghdr; the cmsg macros stay inside `ctrl`, which is sized
        // for one int-sized cmsg; everything pointed at lives across the call.
        unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = self.iovs.as_mut_ptr();
            msg.msg_iovlen = count as _;
            msg.msg_control = ctrl.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), first.len() as u16);
            cvt_size(libc::sendmsg(fd, &msg, 0)).map(|_| ())
        }
    }

    /// Sends `packets` on a connected socket, as few system calls as the kernel allows.
    /// Returns how many were sent before an error, with the error if one stopped it.
    pub fn send(&mut self, fd: RawFd, packets: &[&[u8]]) -> (usize, Option<io::Error>) {
        let count = packets.len().min(N);
        for (i, p) in packets[..count].iter().enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            };
            // SAFETY: zero is a valid msghdr.
            self.hdrs[i].msg_hdr = unsafe { std::mem::zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0;
        while sent < count {
            // SAFETY: headers [sent..count] point at iovecs over `packets`, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[sent..].as_mut_ptr(),
                    (count - sent) as libc::c_uint,
                    0,
                )
            };
            match cvt(n) {
                Ok(n) => sent += n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return (sent, Some(e)),
            }
        }
        (sent, None)
    }
}

/// The datagram size of a `UDP_GRO` message, or 0.
fn gro_size(msg: &libc::msghdr) -> usize {
    // SAFETY: the kernel filled the control buffer; the cmsg macros walk it within
    // msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return v.max(0) as usize;
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    0
}

impl<const N: usize> Default for MmsgBatch<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// An `AF_PACKET` socket for EtherType `protocol` on interface `ifindex`: it receives the
/// frames of that EtherType the interface accepts, and sends whole Ethernet frames out of it.
pub fn open_packet_socket(ifindex: u32, protocol: u16) -> io::Result<OwnedFd> {
    let proto_be = protocol.to_be() as libc::c_int;
    // SAFETY: plain syscall; the result is checked.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            proto_be,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a valid sockaddr_ll for the duration of the call.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

/// The MAC address and MTU of interface `name`.
pub fn if_mac_mtu(name: &str) -> io::Result<([u8; 6], u32)> {
    // SAFETY: plain syscall; the result is checked.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFHWADDR fills the ifreq it is given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR as _, &mut req) })?;
    let mut mac = [0u8; 6];
    // SAFETY: after SIOCGIFHWADDR the union holds ifru_hwaddr.
    let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
    for (m, b) in mac.iter_mut().zip(hw.sa_data.iter()) {
        *m = *b as u8;
    }
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFMTU fills the ifreq it is given.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU as _, &mut req) })?;
    // SAFETY: after SIOCGIFMTU the union holds ifru_mtu.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok((mac, mtu.max(0) as u32))
}

/// Sends one datagram on a connected socket.
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<()> {
    // SAFETY: `data` is valid for reads of its length.
    cvt_size(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) }).map(|_| ())
}

/// Sends a whole Ethernet frame out of interface `ifindex` through a packet socket.
pub fn send_frame(fd: RawFd, ifindex: u32, dest: &[u8; 6], frame: &[u8]) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(dest);
    // SAFETY: `frame` is valid for reads of its length; `sll` lives across the call.
    cvt_size(unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}
