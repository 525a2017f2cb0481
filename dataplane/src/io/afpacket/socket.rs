//! The AF_PACKET socket set-up calls: create, size the rings, bind, fan out.
//!
//! Order matters. The socket is created with protocol 0 so it receives nothing
//! until it is bound; the version and rings are set before `bind`, and the
//! fanout group is joined after it (the kernel requires a bound socket).
//! Every failure names the call and the interface.

use std::ffi::CString;
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

/// The interface index of `iface` in this thread's network namespace.
pub fn ifindex(iface: &str) -> Result<i32, IoError> {
    let name = CString::new(iface)
        .map_err(|_| IoError::Config(format!("interface name {iface:?} contains NUL")))?;
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
        return Err(IoError::Config(format!(
            "interface name {iface:?} is empty or too long"
        )));
    }
    // SAFETY: `name` is a valid C string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(IoError::NoSuchInterface(iface.to_owned()));
    }
    Ok(idx as i32)
}

fn ifreq_for(iface: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(iface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

/// The interface's hardware (MAC) address.
pub fn hw_addr(fd: &OwnedFd, iface: &str) -> Result<[u8; 6], IoError> {
    let mut req = ifreq_for(iface);
    // SAFETY: SIOCGIFHWADDR fills `ifr_hwaddr` of a valid ifreq.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) };
    if rc != 0 {
        return Err(os_err("ioctl(SIOCGIFHWADDR)", iface));
    }
    // SAFETY: the ioctl succeeded, so the hwaddr member is the one written.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

/// Interface flags (IFF_UP, IFF_RUNNING, ...).
pub fn if_flags(fd: RawFd, iface: &str) -> Result<u32, IoError> {
    let mut req = ifreq_for(iface);
    // SAFETY: SIOCGIFFLAGS fills `ifr_flags` of a valid ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) };
    if rc != 0 {
        return Err(os_err("ioctl(SIOCGIFFLAGS)", iface));
    }
    // SAFETY: the ioctl succeeded, so the flags member is the one written.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as u16 as u32)
}

/// The interface MTU.
pub fn mtu(fd: RawFd, iface: &str) -> Result<u32, IoError> {
    let mut req = ifreq_for(iface);
    // SAFETY: SIOCGIFMTU fills `ifr_mtu` of a valid ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return Err(os_err("ioctl(SIOCGIFMTU)", iface));
    }
    // SAFETY: the ioctl succeeded, so the mtu member is the one written.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u32)
}

/// Link speed in Mb/s from ETHTOOL_GSET, when the driver reports one.
pub fn link_speed(fd: RawFd, iface: &str) -> Option<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolCmd {
        cmd: u32,
        supported: u32,
        advertising: u32,
        speed: u16,
        duplex: u8,
        port: u8,
        phy_address: u8,
        transceiver: u8,
        autoneg: u8,
        mdio_support: u8,
        maxtxpkt: u32,
        maxrxpkt: u32,
        speed_hi: u16,
        eth_tp_mdix: u8,
        eth_tp_mdix_ctrl: u8,
        lp_advertising: u32,
        reserved: [u32; 2],
    }
    const ETHTOOL_GSET: u32 = 1;
    let mut cmd = EthtoolCmd {
        cmd: ETHTOOL_GSET,
        ..Default::default()
    };
    let mut req = ifreq_for(iface);
    req.ifr_ifru.ifru_data = (&mut cmd as *mut EthtoolCmd).cast();
    // SAFETY: SIOCETHTOOL with ETHTOOL_GSET writes an ethtool_cmd into the
    // buffer `ifru_data` points at, which is live and of that layout.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    if rc != 0 {
        return None;
    }
    let speed = (cmd.speed_hi as u32) << 16 | cmd.speed as u32;
    (speed != 0 && speed != u32::MAX && speed != 0xffff).then_some(speed)
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
    // SAFETY: packet_mreq is plain old data; all-zero is valid.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = ifindex;
    mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
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
