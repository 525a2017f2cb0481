//! The AF_PACKET socket set-up calls: create, size the rings, bind, fan out.
//!
//! Order matters. The socket is created with protocol 0 so it receives nothing
//! until it is bound; the version and rings are set before `bind`, and the
//! fanout group is joined after it (the kernel requires a bound socket).
//! Every failure names the call and the interface.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::io::port::IoError;

/// `ETH_P_ALL` in network byte order, as `bind` wants it.
pub const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();

fn os_err(call: &'static str, iface: &str) -> IoError {
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => IoError::Permission {
            what: format!("{call} on {iface} (AF_PACKET needs CAP_NET_RAW)"),
        },
        _ => IoError::Os {
            call,
            iface: iface.to_owned(),
            err,
        },
    }
}

/// Sets an integer-or-struct socket option at level SOL_PACKET.
pub fn set_opt<T>(
    fd: RawFd,
    opt: libc::c_int,
    val: &T,
    call: &'static str,
    iface: &str,
) -> Result<(), IoError> {
    // SAFETY: `val` points to a live `T` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err(call, iface));
    }
    Ok(())
}

/// Reads an integer socket option at level SOL_PACKET.
pub fn get_opt_int(
    fd: RawFd,
    opt: libc::c_int,
    call: &'static str,
    iface: &str,
) -> Result<u32, IoError> {
    let mut val: u32 = 0;
    let mut len = size_of::<u32>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live and sized as the kernel expects.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            opt,
            (&mut val as *mut u32).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(os_err(call, iface));
    }
    Ok(val)
}

/// A new AF_PACKET raw socket that receives nothing until bound.
pub fn open_socket(iface: &str) -> Result<OwnedFd, IoError> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket(AF_PACKET)", iface));
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Binds the socket to `ifindex`, receiving every protocol.
pub fn bind(fd: &OwnedFd, ifindex: i32, iface: &str) -> Result<(), IoError> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL_BE;
    sll.sll_ifindex = ifindex;
    // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_err("bind(AF_PACKET)", iface));
    }
    Ok(())
}

/// Receives frames for every MAC on the interface while the socket is open
/// (a membership, so the kernel drops it with the socket).
pub fn add_promiscuous(fd: &OwnedFd, ifindex: i32, iface: &str) -> Result<(), IoError> {
    add_membership(fd, ifindex, iface, libc::PACKET_MR_PROMISC)
}

/// Receives every multicast frame on the interface while the socket is open
/// (IPv6 neighbour solicitations go to the solicited-node groups of the
/// switch's addresses). A membership is counted by the kernel and dropped
/// with the socket; an unbound socket of protocol 0 holds one while
/// receiving nothing (the AF_XDP backend's way to keep the mode).
pub fn add_allmulti(fd: &OwnedFd, ifindex: i32, iface: &str) -> Result<(), IoError> {
    add_membership(fd, ifindex, iface, libc::PACKET_MR_ALLMULTI)
}

fn add_membership(fd: &OwnedFd, ifindex: i32, iface: &str, kind: i32) -> Result<(), IoError> {
    // SAFETY: packet_mreq is plain old data; all-zero is valid.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = kind as u16;
    set_opt(
        fd.as_raw_fd(),
        libc::PACKET_ADD_MEMBERSHIP,
        &mreq,
        "setsockopt(PACKET_ADD_MEMBERSHIP)",
        iface,
    )
}

/// Reads and resets the kernel's receive counters of the socket:
/// `(packets, drops, freeze_q_cnt)`.
pub fn take_stats(fd: RawFd) -> Option<(u64, u64, u64)> {
    // SAFETY: plain old data; zero is valid.
    let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
    // SAFETY: `st` and `len` are live and sized for tpacket_stats_v3.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut st as *mut libc::tpacket_stats_v3).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some((
        st.tp_packets as u64,
        st.tp_drops as u64,
        st.tp_freeze_q_cnt as u64,
    ))
}
