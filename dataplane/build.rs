//! Build script: with the `dpdk` feature, compiles the C shim in `csrc/` and
//! generates Rust bindings for it and the DPDK calls the backend uses.
//!
//! DPDK is found through `pkg-config` (Debian's `libdpdk-dev`, DPDK 22.11) and
//! linked dynamically; the poll-mode drivers are loaded at `rte_eal_init` from
//! the plugin folder DPDK was built with. The same `pkg-config --cflags`
//! (`-include rte_config.h -march=...`) go to both `cc` and bindgen, or the two
//! would disagree on struct layouts. Without the feature this does nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    if std::env::var_os("CARGO_FEATURE_DPDK").is_some() {
        #[cfg(feature = "dpdk")]
        dpdk::build();
    }
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::path::PathBuf;
    use std::process::Command;

    const HINT: &str = "the `dpdk` feature needs DPDK 22.11 headers and libclang: \
                        run scripts/install-deps.sh (libdpdk-dev, libclang-dev, pkg-config)";

    /// The compiler flags of `pkg-config --cflags libdpdk`, split on spaces
    /// (DPDK's .pc file never quotes).
    fn cflags() -> Vec<String> {
        let out = Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .unwrap_or_else(|e| panic!("running pkg-config failed ({e}); {HINT}"));
        if !out.status.success() {
            panic!(
                "pkg-config --cflags libdpdk failed: {}; {HINT}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    pub fn build() {
        let lib = pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .unwrap_or_else(|e| panic!("libdpdk not found: {e}; {HINT}"));
        println!("cargo:rustc-env=BATON_DPDK_VERSION={}", lib.version);
        let flags = cflags();

        let mut build = cc::Build::new();
        build
            .file("csrc/baton_dpdk.c")
            .include("csrc")
            .warnings(true);
        // `-include rte_config.h` is two words; cc's `flag` takes them in order.
        for f in &flags {
            build.flag(f);
        }
        // DPDK's headers use experimental-API markers in inline bodies.
        build.define("ALLOW_EXPERIMENTAL_API", None);
        build.flag_if_supported("-Wno-deprecated-declarations");
        build.compile("baton_dpdk");

        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let bindings = bindgen::Builder::default()
            .header("csrc/baton_dpdk.h")
            .clang_args(&flags)
            .clang_arg("-DALLOW_EXPERIMENTAL_API")
            .clang_arg("-Icsrc")
            .allowlist_function("baton_.*")
            .allowlist_function("rte_eal_init")
            .allowlist_function("rte_eal_cleanup")
            .allowlist_function("rte_strerror")
            .allowlist_function("rte_thread_register")
            .allowlist_function("rte_thread_unregister")
            .allowlist_function("rte_socket_id")
            .allowlist_function("rte_eth_dev_count_avail")
            .allowlist_function("rte_eth_dev_get_port_by_name")
            .allowlist_function("rte_eth_dev_socket_id")
            .allowlist_function("rte_eth_stats_get")
            .allowlist_function("rte_eth_xstats_get_names")
            .allowlist_function("rte_eth_xstats_get")
            .allowlist_function("rte_pktmbuf_pool_create")
            .allowlist_function("rte_mempool_free")
            .allowlist_function("rte_mempool_avail_count")
            .allowlist_type("baton_.*")
            .allowlist_type("rte_eth_stats")
            .allowlist_type("rte_eth_xstat")
            .allowlist_type("rte_eth_xstat_name")
            .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
            .allowlist_var("RTE_MAX_ETHPORTS")
            // Fields of these are touched only in C.
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .layout_tests(false)
            .generate_comments(false)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
            .generate()
            .unwrap_or_else(|e| panic!("bindgen on csrc/baton_dpdk.h failed: {e}; {HINT}"));
        bindings
            .write_to_file(out.join("dpdk_bindings.rs"))
            .expect("writing dpdk_bindings.rs");
    }
}
