//! One DPDK port shared by the worker queues: set-up, steering plan, the
//! software-steering rings, and the monitor (link, stats, xstats).

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_queue::ArrayQueue;

use super::config::{DpdkConfig, DpdkPort};
use super::eal::rte_error;
use super::ffi;
use crate::io::port::{IoError, LinkStatus, PortMonitor, PortStats};

/// How frames reach the worker that owns their flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steering {
    /// One worker: queue 0 for everything.
    Single,
    /// NIC RSS over one queue per worker, symmetric Toeplitz key.
    Rss,
    /// The PMD spreads flows itself (af_packet PMD: kernel fanout hash over
    /// its `qpairs` sockets).
    PmdFanout,
    /// One NIC receive queue, polled by whichever worker holds the lock, and
    /// frames handed to their owner through per-worker rings.
    Software,
}

impl Steering {
    pub fn name(self) -> &'static str {
        match self {
            Steering::Single => "single",
            Steering::Rss => "rss",
            Steering::PmdFanout => "pmd-fanout",
            Steering::Software => "software",
        }
    }
}

/// An mbuf pointer in flight between workers.
pub struct MbufPtr(pub *mut ffi::rte_mbuf);
// SAFETY: an mbuf is owned by whoever holds the pointer; mempools are
// thread-safe.
unsafe impl Send for MbufPtr {}

/// The port and everything its queues share.
pub struct Port {
    pub id: u16,
    pub name: String,
    pub driver: String,
    pub mac: [u8; 6],
    pub steering: Steering,
    pub nb_rxq: u16,
    pub nb_txq: u16,
    pub workers: usize,
    pub pool: *mut ffi::rte_mempool,
    /// Transmit queues shared by more than one worker (fewer TX queues than
    /// workers) are locked; `None` when every worker has its own.
    pub tx_locks: Option<Vec<Mutex<()>>>,
    /// Software steering: frames for each worker.
    pub steer_rings: Vec<ArrayQueue<MbufPtr>>,
    /// Software steering: held by the worker polling the NIC queue.
    pub rx_lock: AtomicBool,
    /// Software steering: frames dropped because the owner's ring was full.
    pub steer_drops: AtomicU64,
    /// Received chained (multi-segment) mbufs, dropped.
    pub rx_chained: AtomicU64,
}

// SAFETY: `pool` is a DPDK mempool (thread-safe by design); everything else
// is Sync already.
unsafe impl Send for Port {}
// SAFETY: as above.
unsafe impl Sync for Port {}

impl Drop for Port {
    fn drop(&mut self) {
        for r in &self.steer_rings {
            while let Some(m) = r.pop() {
                // SAFETY: frames in the rings are owned by the port.
                unsafe { ffi::baton_mbuf_free(m.0) };
            }
        }
        // Stop and close the port. Mbufs still held elsewhere stay valid:
        // they belong to the mempool, which is kept for the process's life.
        // SAFETY: the port id was valid at open.
        unsafe { ffi::baton_port_shutdown(self.id) };
    }
}

fn port_err(port: &str, call: &str, rc: i32) -> IoError {
    // SAFETY: rte_strerror returns a static string for any value.
    let reason = unsafe { CStr::from_ptr(ffi::rte_strerror(-rc)) }
        .to_string_lossy()
        .into_owned();
    IoError::Dpdk {
        port: port.to_owned(),
        call: call.to_owned(),
        reason: format!("{reason} ({rc})"),
    }
}

/// Resolves the configured port to an id.
pub fn resolve(cfg: &DpdkConfig) -> Result<(u16, String), IoError> {
    // SAFETY: plain query after EAL init.
    let count = unsafe { ffi::rte_eth_dev_count_avail() };
    if count == 0 {
        return Err(IoError::Dpdk {
            port: format!("{:?}", cfg.port),
            call: "rte_eth_dev_count_avail".into(),
            reason:
                "no ports: check the EAL arguments (-a <pci> or --vdev=...), that the NIC is bound \
                     to vfio-pci and that its poll-mode driver loaded"
                    .into(),
        });
    }
    match &cfg.port {
        DpdkPort::Id(id) => {
            let mut info: ffi::baton_port_info = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is a live out-parameter.
            let rc = unsafe { ffi::baton_port_info(*id, &mut info) };
            if rc != 0 {
                return Err(port_err(&format!("port {id}"), "rte_eth_dev_info_get", rc));
            }
            Ok((*id, format!("port{id}")))
        }
        DpdkPort::Name(name) => {
            let c = std::ffi::CString::new(name.as_str())
                .map_err(|_| IoError::Config(format!("DPDK port name {name:?} contains NUL")))?;
            let mut id = 0u16;
            // SAFETY: valid C string and out-parameter.
            let rc = unsafe { ffi::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
            if rc != 0 {
                return Err(port_err(
                    name,
                    "rte_eth_dev_get_port_by_name (is the device in the EAL arguments?)",
                    rc,
                ));
            }
            Ok((id, name.clone()))
        }
    }
}

static POOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// mbuf data room (headroom included) for frames of `mtu`; DPDK's default
/// (2 KiB + headroom) up to a 1,500-byte MTU plus slack.
fn mbuf_data_room(mtu: Option<u16>) -> Option<u16> {
    const HEADROOM: u32 = 128; // RTE_PKTMBUF_HEADROOM
    let default = ffi::RTE_MBUF_DEFAULT_BUF_SIZE;
    let need = mtu.map_or(0, |m| m as u32 + 14 + 4 + 4 + HEADROOM);
    u16::try_from(default.max(need)).ok()
}

/// Configures and starts the port for `workers` queues.
pub fn setup(cfg: &DpdkConfig, workers: usize) -> Result<Port, IoError> {
    let (id, name) = resolve(cfg)?;
    // SAFETY: zeroed POD out-parameter.
    let mut info: ffi::baton_port_info = unsafe { std::mem::zeroed() };
    // SAFETY: live out-parameter, valid port.
    let rc = unsafe { ffi::baton_port_info(id, &mut info) };
    if rc != 0 {
        return Err(port_err(&name, "rte_eth_dev_info_get", rc));
    }
    // SAFETY: the driver name is a NUL-terminated array filled by the shim.
    let driver = unsafe { CStr::from_ptr(info.driver_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let w = workers as u16;
    let multi_ok = info.max_rx_queues >= w && info.max_tx_queues >= w;
    let steering = if workers == 1 {
        Steering::Single
    } else if !cfg.force_software_steering && multi_ok && info.flow_type_rss_offloads != 0 {
        Steering::Rss
    } else if !cfg.force_software_steering && multi_ok && driver == "net_af_packet" {
        Steering::PmdFanout
    } else {
        Steering::Software
    };
    let nb_rxq = match steering {
        Steering::Single | Steering::Software => 1,
        Steering::Rss | Steering::PmdFanout => w,
    };
    let nb_txq = w.min(info.max_tx_queues.max(1));
    let need = nb_rxq as u64 * cfg.rx_ring_size as u64
        + nb_txq as u64 * cfg.tx_ring_size as u64
        + workers as u64 * (cfg.mempool_cache as u64 * 3 / 2 + 64);
    if (cfg.mempool_size as u64) < need {
        return Err(IoError::Config(format!(
            "DPDK mempool_size {} is too small for {nb_rxq} RX × {} + {nb_txq} TX × {} descriptors and {workers} \
             worker caches of {}: need at least {need}",
            cfg.mempool_size, cfg.rx_ring_size, cfg.tx_ring_size, cfg.mempool_cache
        )));
    }
    // One frame per mbuf: the data room holds the largest frame the MTU
    // allows (Ethernet + one VLAN tag) after the 128-byte headroom, so jumbo
    // frames never arrive chained.
    let data_room = mbuf_data_room(cfg.mtu)
        .ok_or_else(|| IoError::Config(format!("DPDK mtu {:?} too large for one mbuf", cfg.mtu)))?;
    let pool_name = format!("baton_p{id}_{}\0", POOL_SEQ.fetch_add(1, Ordering::Relaxed));
    let socket = if info.socket_id < 0 {
        0
    } else {
        info.socket_id
    };
    // SAFETY: valid C string; sizes checked above.
    let pool = unsafe {
        ffi::rte_pktmbuf_pool_create(
            pool_name.as_ptr().cast(),
            cfg.mempool_size,
            cfg.mempool_cache.min(512),
            0,
            data_room,
            socket,
        )
    };
    if pool.is_null() {
        return Err(IoError::Dpdk {
            port: name,
            call: "rte_pktmbuf_pool_create".into(),
            reason: format!(
                "{} ({} mbufs; with --no-huge, -m must cover them)",
                rte_error(),
                cfg.mempool_size
            ),
        });
    }
    let conf = ffi::baton_port_conf {
        nb_rxq,
        nb_txq,
        rx_desc: cfg.rx_ring_size,
        tx_desc: cfg.tx_ring_size,
        enable_rss: (steering == Steering::Rss) as i32,
        promiscuous: cfg.promiscuous as i32,
        mtu: cfg.mtu.unwrap_or(0),
    };
    let mut stage: *const libc::c_char = std::ptr::null();
    // SAFETY: valid port, config and pool; `stage` receives a static string.
    let rc = unsafe { ffi::baton_port_setup(id, &conf, pool, &mut stage) };
    if rc != 0 {
        // SAFETY: the shim sets `stage` to a static C string before any call.
        let call = unsafe { CStr::from_ptr(stage) }
            .to_string_lossy()
            .into_owned();
        return Err(port_err(&name, &call, rc));
    }
    let tx_locks = (nb_txq < w).then(|| (0..nb_txq).map(|_| Mutex::new(())).collect());
    let steer_rings = if steering == Steering::Software {
        (0..workers)
            .map(|_| ArrayQueue::new(cfg.rx_ring_size.max(64) as usize * 2))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Port {
        id,
        name,
        driver,
        mac: info.mac,
        steering,
        nb_rxq,
        nb_txq,
        workers,
        pool,
        tx_locks,
        steer_rings,
        rx_lock: AtomicBool::new(false),
        steer_drops: AtomicU64::new(0),
        rx_chained: AtomicU64::new(0),
    })
}

impl PortMonitor for Port {
    fn name(&self) -> String {
        format!("dpdk:{}({})", self.name, self.driver)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link(&self) -> LinkStatus {
        // SAFETY: zeroed POD out-parameter.
        let mut l: ffi::baton_link = unsafe { std::mem::zeroed() };
        // SAFETY: valid port, live out-parameter; "nowait" never blocks.
        if unsafe { ffi::baton_port_link(self.id, &mut l) } != 0 {
            return LinkStatus::default();
        }
        LinkStatus {
            up: l.up != 0,
            speed_mbps: (l.speed_mbps != 0 && l.speed_mbps != u32::MAX).then_some(l.speed_mbps),
            full_duplex: Some(l.full_duplex != 0),
        }
    }

    fn stats(&self) -> PortStats {
        // SAFETY: zeroed POD out-parameter.
        let mut s: ffi::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: valid port, live out-parameter.
        if unsafe { ffi::rte_eth_stats_get(self.id, &mut s) } != 0 {
            return PortStats::default();
        }
        PortStats {
            rx_packets: s.ipackets,
            rx_bytes: s.ibytes,
            tx_packets: s.opackets,
            tx_bytes: s.obytes,
            rx_missed: s.imissed + self.steer_drops.load(Ordering::Relaxed),
            rx_errors: s.ierrors + self.rx_chained.load(Ordering::Relaxed),
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    fn xstats(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        // SAFETY: a NULL array asks for the count.
        let n = unsafe { ffi::rte_eth_xstats_get_names(self.id, std::ptr::null_mut(), 0) };
        if n > 0 {
            let n = n as usize;
            // SAFETY: zeroed POD arrays of the announced size.
            let mut names: Vec<ffi::rte_eth_xstat_name> = vec![unsafe { std::mem::zeroed() }; n];
            let mut vals: Vec<ffi::rte_eth_xstat> = vec![unsafe { std::mem::zeroed() }; n];
            // SAFETY: arrays of `n` entries.
            let got_names =
                unsafe { ffi::rte_eth_xstats_get_names(self.id, names.as_mut_ptr(), n as u32) };
            // SAFETY: as above.
            let got = unsafe { ffi::rte_eth_xstats_get(self.id, vals.as_mut_ptr(), n as u32) };
            if got_names > 0 && got > 0 {
                for v in vals.iter().take(got as usize) {
                    if let Some(nm) = names.get(v.id as usize) {
                        // SAFETY: DPDK NUL-terminates xstat names.
                        let nm = unsafe { CStr::from_ptr(nm.name.as_ptr()) }
                            .to_string_lossy()
                            .into_owned();
                        out.push((nm, v.value));
                    }
                }
            }
        }
        out.push((
            "baton_steer_ring_drops".into(),
            self.steer_drops.load(Ordering::Relaxed),
        ));
        out.push((
            "baton_rx_chained_dropped".into(),
            self.rx_chained.load(Ordering::Relaxed),
        ));
        // SAFETY: the pool lives for the process.
        out.push(("baton_mempool_available".into(), unsafe {
            ffi::rte_mempool_avail_count(self.pool)
        } as u64));
        out
    }

    fn steering(&self) -> &'static str {
        self.steering.name()
    }
}
