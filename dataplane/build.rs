//! Build script: with the `dpdk` feature, compiles the C shim in `csrc/` and
//! generates Rust bindings for it and the DPDK calls the backend uses; with
//! the `af_xdp` feature, compiles the XDP programs in
//! `src/io/af_xdp/bpf/*.bpf.c` to BPF objects in `OUT_DIR`, which the loader
//! embeds.
//!
//! DPDK is found through `pkg-config` (Debian's `libdpdk-dev`, DPDK 22.11) and
//! linked dynamically; the poll-mode drivers are loaded at `rte_eal_init` from
//! the plugin folder DPDK was built with. The same `pkg-config --cflags`
//! (`-include rte_config.h -march=...`) go to both `cc` and bindgen, or the two
//! would disagree on struct layouts.
//!
//! The XDP programs are compiled by the system's clang (`-target bpf`)
//! against the kernel UAPI headers and libbpf's `bpf_helpers.h` (Debian's
//! `linux-libc-dev` and `libbpf-dev`); the objects are build products, never
//! committed. Without either feature this does nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    if std::env::var_os("CARGO_FEATURE_DPDK").is_some() {
        #[cfg(feature = "dpdk")]
        dpdk::build();
    }
    if std::env::var_os("CARGO_FEATURE_AF_XDP").is_some() {
        af_xdp::build();
    }
}

mod af_xdp {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const HINT: &str = "the `af_xdp` feature compiles its XDP program with clang and the \
                        kernel and libbpf headers: run scripts/install-deps.sh (clang, libbpf-dev)";

    const SRC: &str = "src/io/af_xdp/bpf";

    /// The multiarch include folder of the kernel UAPI headers
    /// (`/usr/include/x86_64-linux-gnu`, for `asm/types.h`): clang's BPF
    /// target does not search it by itself.
    fn multiarch_include() -> PathBuf {
        let out = Command::new("gcc").arg("-print-multiarch").output();
        let triple = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => String::new(),
        };
        let triple = if triple.is_empty() {
            // No gcc: Debian's triple for the target being built.
            let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
            match arch.as_str() {
                "aarch64" => "aarch64-linux-gnu".to_string(),
                _ => format!("{arch}-linux-gnu"),
            }
        } else {
            triple
        };
        Path::new("/usr/include").join(triple)
    }

    pub fn build() {
        println!("cargo:rerun-if-changed={SRC}");
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        let inc = multiarch_include();
        if !inc.join("asm/types.h").exists() {
            panic!(
                "kernel UAPI headers not found ({}/asm/types.h); {HINT}",
                inc.display()
            );
        }
        if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
            panic!("libbpf headers not found (/usr/include/bpf/bpf_helpers.h); {HINT}");
        }
        let mut sources: Vec<PathBuf> = std::fs::read_dir(SRC)
            .unwrap_or_else(|e| panic!("reading {SRC}: {e}"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
            .collect();
        sources.sort();
        for src in sources {
            println!("cargo:rerun-if-changed={}", src.display());
            let file = src.file_name().unwrap().to_string_lossy().into_owned();
            let name = file.trim_end_matches(".c");
            let obj = out.join(format!("{name}.o"));
            let result = Command::new("clang")
                .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
                .arg(format!("-I{}", inc.display()))
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&obj)
                .output()
                .unwrap_or_else(|e| panic!("running clang failed ({e}); {HINT}"));
            if !result.status.success() {
                panic!(
                    "clang failed on {}:\n{}\n({HINT})",
                    src.display(),
                    String::from_utf8_lossy(&result.stderr)
                );
            }
        }
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
