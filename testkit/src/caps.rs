//! Capabilities of the calling thread: tests that check the clear error a
//! missing capability gives drop it from one thread (capabilities are per
//! thread in Linux), not from the whole test process.

/// `CAP_NET_ADMIN`.
pub const NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW`.
pub const NET_RAW: u32 = 13;
/// `CAP_SYS_ADMIN`.
pub const SYS_ADMIN: u32 = 21;
/// `CAP_PERFMON`.
pub const PERFMON: u32 = 38;
/// `CAP_BPF`.
pub const BPF: u32 = 39;

/// Removes `caps` from the calling thread's effective set.
#[track_caller]
pub fn drop_effective(caps: &[u32]) {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut hdr = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data words.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()),
            0
        );
        for &c in caps {
            data[(c / 32) as usize].effective &= !(1 << (c % 32));
        }
        assert_eq!(libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()), 0);
    }
}
