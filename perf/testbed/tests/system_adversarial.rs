//! Attacks on the running system, short versions (seconds each, small
//! counts): each runs beside legitimate traffic from the other client and
//! asserts what must hold when the switch is right (`testbed::attack`).
//! `make harden` runs the same attacks at full size.

use testbed::attack::{self, Size};
use testbed::baton::BatonIo;
use testbed::scenario::Running;

testbed::both_backends!(
    spoofed_syn_flood_legit_served_memory_flat,
    slowloris_reaped_with_408_gauges_back_to_zero,
    dup_ack_flood_on_pending_handoffs_pool_holds,
    blind_rst_fin_spray_cuts_no_download,
    forged_and_replayed_thop_never_accepted,
    admin_endpoint_abuse_changes_nothing,
    switch_restarts_under_load_no_request_hangs,
);

fn spoofed_syn_flood_legit_served_memory_flat(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    attack::synflood::run(&sys, attack::synflood::SynFlood::new(Size::Short))
        .expect("SYN flood ran")
        .assert_passed();
}

fn slowloris_reaped_with_408_gauges_back_to_zero(io: BatonIo) {
    let p = attack::slowloris::Slowloris::new(Size::Short);
    let sys = Running::up_with(io, |o| {
        o.extra_yaml.push_str(&attack::slowloris::profile_yaml(&p))
    })
    .expect("system up");
    attack::slowloris::run(&sys, p)
        .expect("slowloris ran")
        .assert_passed();
}

fn dup_ack_flood_on_pending_handoffs_pool_holds(io: BatonIo) {
    let sys = Running::up_with(io, |o| {
        o.extra_yaml.push_str(&attack::dupack::profile_yaml())
    })
    .expect("system up");
    attack::dupack::run(&sys, attack::dupack::DupAckFlood::new(Size::Short))
        .expect("dup-ACK flood ran")
        .assert_passed();
}

fn blind_rst_fin_spray_cuts_no_download(io: BatonIo) {
    let sys = Running::up(io).expect("system up");
    attack::blind_reset::run(&sys, attack::blind_reset::BlindReset::new(Size::Short))
        .expect("spray ran")
        .assert_passed();
}

fn forged_and_replayed_thop_never_accepted(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    attack::thop::run(&mut sys, attack::thop::ThopForgery::new(Size::Short))
        .expect("THOP forgery ran")
        .assert_passed();
}

fn admin_endpoint_abuse_changes_nothing(io: BatonIo) {
    let mut sys = Running::up(io).expect("system up");
    attack::admin::run(&mut sys, attack::admin::AdminAbuse::new(Size::Short))
        .expect("admin abuse ran")
        .assert_passed();
}

fn switch_restarts_under_load_no_request_hangs(io: BatonIo) {
    let mut sys = Running::up_with(io, |o| {
        o.extra_yaml.push_str(&attack::restart::profile_yaml())
    })
    .expect("system up");
    attack::restart::run(&mut sys, attack::restart::Restarts::new(Size::Short))
        .expect("restarts ran")
        .assert_passed();
}
