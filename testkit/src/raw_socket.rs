//! A raw AF_PACKET socket for the far end of a veth, and numbered test
//! frames: the packet I/O conformance tests and the `io_pps` bench inject and
//! capture frames with it where the backend under test is on the other end.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// A raw AF_PACKET socket bound to one interface (in the thread's current
/// namespace), for injecting and capturing frames at the far end of a veth.
pub struct RawSock {
    fd: OwnedFd,
}

impl RawSock {
    pub fn open(ifc: &str) -> RawSock {
        let name = CString::new(ifc).unwrap();
        // SAFETY: plain syscalls; results checked.
        unsafe {
            let idx = libc::if_nametoindex(name.as_ptr());
            assert!(idx != 0, "no interface {ifc}");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                proto as i32,
            );
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = idx as i32;
            let rc = libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
            // Room for a whole test burst of full-size frames.
            let size: libc::c_int = 32 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            RawSock { fd }
        }
    }

    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: valid buffer.
        unsafe {
            libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0)
                == frame.len() as isize
        }
    }

    /// Receives one frame (incoming only), or `None` after `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 9000];
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: sockaddr_ll is plain old data.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: valid buffers of the sizes passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 || sll.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            buf.truncate(n as usize);
            return Some(buf);
        }
    }
}

/// Test frames: a local-experimental EtherType and a 4-byte sequence number,
/// padded to `len` bytes.
pub const TEST_ETHERTYPE: u16 = 0x88b5;

pub fn test_frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(60));
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len.max(60) {
        f.push((f.len() % 251) as u8);
    }
    f
}

/// The sequence number of a test frame, if it is one.
pub fn test_seq(f: &[u8]) -> Option<u32> {
    if f.len() < 18 || f[12..14] != TEST_ETHERTYPE.to_be_bytes() {
        return None;
    }
    Some(u32::from_be_bytes([f[14], f[15], f[16], f[17]]))
}
