//! Shared test support: namespaces and the switch's freeze step.
#![allow(dead_code)]

pub mod freeze;
pub mod netns;
pub mod serve;
