//! THOP, the TCP handoff protocol. Specification: `docs/thop.md`.
#![forbid(unsafe_code)]
