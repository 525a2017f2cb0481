//! `baton-testbed`: brings the namespace test bed up by hand (nginx on every
//! backend, and unless `--no-baton` the switch and the agents from the
//! test-bed profile) and keeps it until Ctrl-C, printing how to reach every
//! host. `--switches N` brings up the routed cluster instead (N switches
//! behind a router, each with its BIRD: docs/testbed.md). `cleanup` removes
//! beds left by processes that were killed.

use clap::{Parser, Subcommand};
use std::time::Duration;
use testbed::baton::{BatonIo, Stack, SwitchOptions};
use testbed::cluster::{Cluster, ClusterOptions};
use testbed::{addr, nginx, Bed, BedSpec};

#[derive(Parser)]
#[command(about = "Baton's namespace test bed")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the bed, start nginx and Baton, and wait for Ctrl-C.
    Up {
        /// The switch's packet I/O: afpacket, dpdk, afxdp or afxdp-nofast.
        #[arg(long, default_value = "afpacket")]
        io: String,
        /// Only the namespaces and nginx, no switch or agents.
        #[arg(long)]
        no_baton: bool,
        #[arg(long, default_value_t = 2)]
        clients: usize,
        #[arg(long, default_value_t = 3)]
        backends: usize,
        /// Also build the proxy host (198.18.0.3).
        #[arg(long)]
        proxy: bool,
        /// More than one: the routed cluster of that many switches behind a
        /// router, each announcing the VIP with BGP (2 clients, 3 backends).
        #[arg(long, default_value_t = 1)]
        switches: usize,
    },
    /// Remove namespaces left by test-bed processes that no longer exist.
    Cleanup {
        /// Also remove their working directories (logs kept after failures).
        #[arg(long)]
        logs: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Up {
            io,
            no_baton,
            clients,
            backends,
            proxy,
            switches,
        } => {
            let io = BatonIo::parse(&io);
            match io {
                Some(io) if switches > 1 => {
                    if no_baton || proxy {
                        Err(testbed::BedError::Setup(
                            "--switches runs Baton and has no proxy host".into(),
                        ))
                    } else {
                        up_cluster(io, switches)
                    }
                }
                Some(io) => up(
                    BedSpec {
                        clients,
                        backends,
                        switches: 1,
                        routed: false,
                        proxy,
                    },
                    (!no_baton).then_some(io),
                ),
                None => Err(testbed::BedError::Setup(format!(
                    "--io is {}",
                    BatonIo::NAMES
                ))),
            }
        }
        Cmd::Cleanup { logs } => {
            for ns in testbed::cleanup::sweep_stale() {
                println!("removed namespace {ns}");
            }
            if logs {
                for d in testbed::cleanup::sweep_stale_dirs() {
                    println!("removed {}", d.display());
                }
            }
            Ok(())
        }
    };
    if let Err(e) = res {
        eprintln!("baton-testbed: {e}");
        std::process::exit(1);
    }
}

fn up_cluster(io: BatonIo, switches: usize) -> testbed::Result<()> {
    let c = Cluster::up(&ClusterOptions::new(io, switches))?;
    let bed = &c.bed;
    println!(
        "routed cluster {} is up: {switches} switches over {} (Ctrl-C removes it)",
        bed.id(),
        io.as_str()
    );
    print_hosts(bed);
    let rt = bed.router()?;
    println!(
        "  routes: ip netns exec {} ip route show {}",
        rt.ns,
        addr::VIP
    );
    println!(
        "  BGP:    birdc -s {} show protocols",
        testbed::bird::socket(bed, rt).display()
    );
    for (i, sw) in bed.switches.iter().enumerate() {
        println!(
            "  {}: profile {}, metrics: ip netns exec {} curl -s http://{}/metrics",
            sw.name,
            c.switches[i].profile.display(),
            bed.hub(),
            addr::switch_metrics_of(i)
        );
    }
    println!(
        "  try: ip netns exec {} curl -si http://{}/static/1k.bin -o /dev/null",
        bed.clients[0].ns,
        addr::vip_service(),
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn up(spec: BedSpec, baton: Option<BatonIo>) -> testbed::Result<()> {
    let bed = Bed::up(&spec)?;
    let _nginx = nginx::start_all(&bed)?;
    let _stack = match baton {
        Some(io) => {
            let s = Stack::start(&bed, &SwitchOptions::testbed(io))?;
            println!(
                "baton ({}) runs {}; metrics: ip netns exec {} curl -s http://{}/metrics",
                io.as_str(),
                s.profile.display(),
                bed.hub(),
                addr::switch_metrics()
            );
            Some(s)
        }
        None => None,
    };
    println!("test bed {} is up (Ctrl-C removes it)", bed.id());
    println!(
        "  hub      {}  (198.19.0.1 on the management bridge)",
        bed.hub()
    );
    print_hosts(&bed);
    println!(
        "  VIP      {} and {} (the switch answers ARP and neighbour discovery for them and for {} and {})",
        addr::VIP,
        addr::VIP6,
        addr::SWITCH_DATA,
        addr::SWITCH_DATA6
    );
    println!(
        "  try: ip netns exec {} curl -si http://{}/static/1k.bin -o /dev/null   (through Baton)",
        bed.clients[0].ns,
        addr::vip_service(),
    );
    println!(
        "       ip netns exec {} curl -6 -si http://[{}]/static/1k.bin -o /dev/null   (through Baton over IPv6)",
        bed.clients[0].ns,
        addr::VIP6,
    );
    println!(
        "       ip netns exec {} curl -si http://{}:{}/   (a backend directly)",
        bed.clients[0].ns,
        addr::backend_data(0),
        addr::WEB_PORT
    );
    println!(
        "       ip netns exec {} curl -s --cacert {} --resolve {}:{}:{} https://{}/   (HTTPS through Baton)",
        bed.clients[0].ns,
        testbed::tls::ca_file(&bed).display(),
        testbed::tls::WWW,
        addr::VIP_TLS_PORT,
        addr::VIP,
        testbed::tls::WWW,
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// One line per host of the bed: name, namespace, addresses.
fn print_hosts(bed: &testbed::topology::Bed) {
    for h in bed
        .clients
        .iter()
        .chain(&bed.router)
        .chain(&bed.switches)
        .chain(&bed.proxy)
        .chain(&bed.backends)
    {
        let data6 = h.data_ip6.map(|i| format!(" {i}")).unwrap_or_default();
        println!(
            "  {:<4} {}  data {}{data6}  mgmt {}",
            h.name,
            h.ns,
            h.data_ip.map_or("-".into(), |i| i.to_string()),
            h.mgmt_ip.map_or("-".into(), |i| i.to_string())
        );
    }
}
