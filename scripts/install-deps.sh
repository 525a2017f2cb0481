#!/usr/bin/env bash
# Installs every system package and cargo tool the build, the suite, the demo
# and the benchmarks need, on a fresh Debian 12 machine with Rust. Idempotent:
# installs only what is missing. Needs root (CI and the test bed run as root).
set -euo pipefail

PKGS=(
  # build: DPDK bindings (bindgen needs libclang), C shim
  pkg-config clang libclang-dev libdpdk-dev dpdk
  # build: the AF_XDP backend's XDP program (clang -target bpf needs libbpf's
  # bpf_helpers.h); bpftool to inspect the attached program and its maps
  libbpf-dev bpftool
  # test bed: namespaces, veths, loss injection, offload switches
  iproute2 iptables ethtool procps
  # reads the switch's packet captures (pcapng) in a test
  tcpdump
  # the routed cluster bed: BGP between the switches and the router
  bird2
  # real servers, proxies and clients
  nginx-light lighttpd haproxy wrk curl python3 chromium
  # the bed's throw-away CA and certificates, TLS session-ticket keys
  openssl
  # promtool (the metrics exposition format, the alert rules and their unit
  # tests) and prometheus (the test bed scrapes the switch and the agents)
  prometheus
  # systemd-analyze, to verify the shipped systemd units
  systemd
  # benchmarks
  valgrind hyperfine
  # Debian packages (make deb) and their test: dpkg-shlibdeps, strip, lintian, man
  dpkg-dev binutils lintian man-db
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged daemons; the test bed runs its own instances.
  for svc in nginx haproxy prometheus prometheus-node-exporter bird; do
    systemctl disable --now "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
  done
fi

command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
