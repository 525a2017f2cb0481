//! The whole suite for `baton-harden`: each attack on a fresh system (its own
//! profile overrides), over the chosen I/O backends, and the Markdown table
//! of the results for `docs/security.md`.

use super::{admin, blind_reset, dupack, restart, slowloris, synflood, thop, Outcome, Size};
use crate::baton::BatonIo;
use crate::error::Result;
use crate::scenario::Running;

/// Every attack, in the order the suite runs them.
pub const ATTACKS: [&str; 7] = [
    "syn_flood",
    "slowloris",
    "dup_ack_flood",
    "blind_rst_fin",
    "thop_forge_replay",
    "admin_abuse",
    "switch_restarts",
];

/// Brings a system up for `attack` and runs it; a failure to run becomes an
/// outcome with one failed check, so the suite goes on.
pub fn run_one(attack: &str, io: BatonIo, size: Size) -> Outcome {
    match try_run(attack, io, size) {
        Ok(o) => o,
        Err(e) => {
            let mut o = Outcome::new(attack, io);
            o.check("attack ran", false, e.to_string());
            o
        }
    }
}

fn try_run(attack: &str, io: BatonIo, size: Size) -> Result<Outcome> {
    match attack {
        "syn_flood" => synflood::run(&Running::up(io)?, synflood::SynFlood::new(size)),
        "slowloris" => {
            let p = slowloris::Slowloris::new(size);
            let sys =
                Running::up_with(io, |o| o.extra_yaml.push_str(&slowloris::profile_yaml(&p)))?;
            slowloris::run(&sys, p)
        }
        "dup_ack_flood" => {
            let sys = Running::up_with(io, |o| o.extra_yaml.push_str(&dupack::profile_yaml()))?;
            dupack::run(&sys, dupack::DupAckFlood::new(size))
        }
        "blind_rst_fin" => blind_reset::run(&Running::up(io)?, blind_reset::BlindReset::new(size)),
        "thop_forge_replay" => thop::run(&mut Running::up(io)?, thop::ThopForgery::new(size)),
        "admin_abuse" => admin::run(&mut Running::up(io)?, admin::AdminAbuse::new(size)),
        "switch_restarts" => {
            let mut sys =
                Running::up_with(io, |o| o.extra_yaml.push_str(&restart::profile_yaml()))?;
            restart::run(&mut sys, restart::Restarts::new(size))
        }
        other => Err(crate::error::BedError::Setup(format!(
            "unknown attack `{other}` (known: {})",
            ATTACKS.join(", ")
        ))),
    }
}

/// Marks the start of the generated block in `docs/security.md`.
pub const MD_BEGIN: &str = "<!-- BEGIN HARDEN RESULTS -->";
/// Marks its end.
pub const MD_END: &str = "<!-- END HARDEN RESULTS -->";

/// One row per attack and backend: what was sent, what legitimate clients
/// got, which checks held.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "| attack | I/O | sent | seconds | legitimate served | checks | failed checks |\n|---|---|---:|---:|---:|---:|---|\n",
    );
    for o in outcomes {
        let passed = o.checks.iter().filter(|c| c.pass).count();
        let failed: Vec<String> = o
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| format!("{} ({})", c.what, c.detail.replace('|', "/")))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {:.1} | {}/{} ({:.2}%) | {passed}/{} | {} |\n",
            o.attack,
            o.io,
            o.sent,
            o.seconds,
            o.legit.ok,
            o.legit.total(),
            o.legit.success_rate() * 100.0,
            o.checks.len(),
            if failed.is_empty() {
                "none".to_string()
            } else {
                failed.join("; ")
            }
        ));
    }
    s
}

/// The generated block: the command, the date and the table.
pub fn markdown(outcomes: &[Outcome], command: &str, when: &str) -> String {
    format!(
        "{MD_BEGIN}\nProduced by `{command}` on {when}.\n\n{}{MD_END}",
        table(outcomes)
    )
}

/// Replaces the generated block of `doc` (or appends one).
pub fn splice(doc: &str, block: &str) -> String {
    match (doc.find(MD_BEGIN), doc.find(MD_END)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}{}", &doc[..a], block, &doc[b + MD_END.len()..])
        }
        _ => format!("{}\n\n{}\n", doc.trim_end(), block),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_replaces_the_previous_one() {
        let mut o = Outcome::new("syn_flood", BatonIo::AfPacket);
        o.check("a", true, "");
        o.check("b", false, "x|y");
        let block = markdown(&[o], "make harden", "2026-01-01T00:00:00Z");
        assert!(block.contains("| syn_flood | afpacket |"));
        assert!(block.contains("b (x/y)"));
        let doc = format!("# T\n\n{MD_BEGIN}\nold\n{MD_END}\n\nafter\n");
        let new = splice(&doc, &block);
        assert!(!new.contains("old") && new.contains("after") && new.contains("syn_flood"));
        assert_eq!(splice(&new, &block), new);
    }
}
