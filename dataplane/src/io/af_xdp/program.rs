//! The XDP program on the data interface (STUB: the interface only; the
//! loader, lifetime and maps are being written).

use std::os::fd::RawFd;

use crate::io::af_xdp::config::AfXdpConfig;
use crate::io::af_xdp::flows::FlowTable;
use crate::io::port::{FastPathStats, IoError};

/// The fast-path program attached to one interface; dropping it detaches it.
pub struct XdpProgram {
    _private: (),
}

impl XdpProgram {
    /// Loads the program, sizes its maps for `queues` queues and
    /// `cfg.flow_capacity` flows, writes the switch's `mac` into its
    /// configuration and attaches it to `ifindex` (`cfg.iface`) in
    /// `cfg.attach` mode.
    pub fn attach(
        cfg: &AfXdpConfig,
        ifindex: u32,
        queues: u32,
        mac: [u8; 6],
    ) -> Result<XdpProgram, IoError> {
        let _ = (cfg, ifindex, queues, mac);
        Err(IoError::Config(
            "the XDP program loader is not written yet".into(),
        ))
    }

    /// Sends frames received on `queue` to the AF_XDP socket `fd`.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), IoError> {
        let _ = (queue, fd);
        Ok(())
    }

    /// A worker's handle on the flow map; `None` when the fast path is off.
    pub fn flows(&self) -> Result<Option<FlowTable>, IoError> {
        Ok(None)
    }

    /// The program's counters, summed over CPUs.
    pub fn stats(&self) -> FastPathStats {
        FastPathStats::default()
    }
}
