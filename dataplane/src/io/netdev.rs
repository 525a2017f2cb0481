//! Interface facts every backend asks the kernel for: index, MAC address,
//! flags, MTU, link speed and queue count (ioctls on any socket).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::io::port::IoError;

fn os_err(call: &'static str, iface: &str) -> IoError {
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => IoError::Permission {
            what: format!("{call} on {iface}"),
        },
        _ => IoError::Os {
            call,
            iface: iface.to_owned(),
            err,
        },
    }
}

/// A datagram socket for interface ioctls.
pub fn ioctl_socket(iface: &str) -> Result<OwnedFd, IoError> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket(AF_INET)", iface));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A start-up note when the kernel runs IPv6 on `iface`, a port the switch
/// owns: the kernel's link-local address, router solicitations and
/// neighbour answers would go out beside the switch's own.
pub fn kernel_ipv6_note(iface: &str) -> Option<String> {
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    let on = std::fs::read_to_string(path).ok()?.trim() == "0";
    on.then(|| {
        format!(
            "the kernel runs IPv6 on {iface}, the switch's data port: it sends router \
             solicitations and answers neighbour solicitations beside the switch; turn it off \
             with `sysctl -w net.ipv6.conf.{iface}.disable_ipv6=1`"
        )
    })
}

/// Receive queues of the interface (ETHTOOL_GCHANNELS: dedicated receive
/// plus combined channels); `None` when the driver does not say.
pub fn rx_queues(fd: RawFd, iface: &str) -> Option<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut req = ifreq_for(iface);
    req.ifr_ifru.ifru_data = (&mut ch as *mut EthtoolChannels).cast();
    // SAFETY: SIOCETHTOOL with a live ethtool_channels buffer.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    (rc == 0).then_some(ch.rx_count + ch.combined_count)
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
