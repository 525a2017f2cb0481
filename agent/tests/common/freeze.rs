//! The switch's half of a handoff, played by a real kernel: a connection the
//! switch namespace accepted is frozen with `TCP_REPAIR`, its state read out
//! (sequence numbers, options, windows, timestamp clock) and the socket closed
//! silently, exactly what a THOP_CREATE needs.

use agent::repair::TcpRepairWindow;
use handoff_proto::{Endpoints, TcpState, Timestamps, WindowScale};
use std::io;
use std::mem::size_of;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;

fn set(fd: i32, name: i32, v: i32) {
    // SAFETY: v is a live c_int.
    let rc =
        unsafe { libc::setsockopt(fd, libc::IPPROTO_TCP, name, &v as *const i32 as *const _, 4) };
    assert_eq!(rc, 0, "setsockopt {name}: {}", io::Error::last_os_error());
}

fn get<T: Copy + Default>(fd: i32, name: i32) -> T {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: v is a writable T of len bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            name,
            &mut v as *mut T as *mut _,
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt {name}: {}", io::Error::last_os_error());
    v
}

/// Freezes `stream` (whose `request` bytes have been read) and returns its
/// state; the socket is closed in repair mode, so the client sees nothing.
///
/// The client's last TSval is not in TCP_INFO, so `recent` is 0; the agent's
/// kernel has no way to take it anyway and learns it from the next segment.
pub fn freeze(stream: TcpStream, request: &[u8]) -> TcpState {
    let fd = stream.as_raw_fd();
    let client = stream.peer_addr().unwrap();
    let vip = stream.local_addr().unwrap();
    // SAFETY: tcp_info is plain old data.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: info is writable for len bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            &mut info as *mut _ as *mut _,
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    set(fd, libc::TCP_REPAIR, 1);
    set(fd, libc::TCP_REPAIR_QUEUE, TCP_SEND_QUEUE);
    let snd_seq: u32 = get(fd, libc::TCP_QUEUE_SEQ);
    set(fd, libc::TCP_REPAIR_QUEUE, TCP_RECV_QUEUE);
    let rcv_nxt: u32 = get(fd, libc::TCP_QUEUE_SEQ);
    let mss: u32 = get(fd, libc::TCP_MAXSEG);
    let ts: u32 = get(fd, libc::TCP_TIMESTAMP);
    let win: TcpRepairWindow = get(fd, libc::TCP_REPAIR_WINDOW);
    let opts = info.tcpi_options;
    let snd_wscale = info.tcpi_snd_rcv_wscale & 0x0f;
    let rcv_wscale = info.tcpi_snd_rcv_wscale >> 4;
    let wscale = opts & TCPI_OPT_WSCALE != 0;
    let st = TcpState {
        endpoints: Endpoints::new(client, vip).unwrap(),
        client_isn: rcv_nxt.wrapping_sub(request.len() as u32).wrapping_sub(1),
        client_next: rcv_nxt,
        server_isn: snd_seq.wrapping_sub(1),
        server_next: snd_seq,
        client_window: win.snd_wnd,
        server_window: win.rcv_wnd,
        mss: mss as u16,
        window_scale: wscale.then_some(WindowScale {
            client: snd_wscale,
            server: rcv_wscale,
        }),
        sack_permitted: opts & TCPI_OPT_SACK != 0,
        timestamps: (opts & TCPI_OPT_TIMESTAMPS != 0).then_some(Timestamps {
            recent: 0,
            next_val: ts,
        }),
    };
    drop(stream); // closed in repair mode: no FIN, no RST
    st
}
