//! Baton control plane.
