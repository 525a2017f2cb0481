//! The AF_XDP switch's XDP program as the kernel sees it, read with
//! `bpftool`: which program is attached to an interface, and how many
//! entries its flow map holds. The switch reports its own view in
//! `baton_xdp_flows`; this is the independent one the system tests compare it
//! with (a flow left in the map after its connection ended would keep being
//! relayed by the kernel).
//!
//! The chain: `bpftool -j net show dev IFACE` (in the interface's namespace)
//! gives the XDP program's id, `bpftool -j prog show id P` its map ids,
//! `bpftool -j map show id M` each map's name, and `bpftool -j map dump id M`
//! the entries of the one named [`FLOW_MAP`]. Program and map ids are global,
//! so only the first call needs the namespace.

use crate::error::{BedError, Result};
use crate::netns;
use serde_json::Value;

/// Name of the fast path's flow map in the XDP program.
pub const FLOW_MAP: &str = "flows";

/// The XDP program attached to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// Program id.
    pub id: u32,
    /// `driver` (native), `generic`, `offload` or `hw`, as bpftool names it.
    pub mode: String,
}

/// The XDP program on `iface` in namespace `ns`; `None` when there is none.
pub fn attached(ns: &str, iface: &str) -> Result<Option<Attached>> {
    let out = bpftool(Some(ns), &["-j", "net", "show", "dev", iface])?;
    parse_net_show(&out, iface)
}

/// Entries in the flow map of the XDP program on `iface` in `ns`; `None`
/// when no XDP program is attached or it has no map of that name.
pub fn flow_count(ns: &str, iface: &str) -> Result<Option<usize>> {
    let Some(prog) = attached(ns, iface)? else {
        return Ok(None);
    };
    let Some(map) = map_named(prog.id, FLOW_MAP)? else {
        return Ok(None);
    };
    map_entries(map).map(Some)
}

/// The id of the map called `name` among program `prog`'s maps.
pub fn map_named(prog: u32, name: &str) -> Result<Option<u32>> {
    let out = bpftool(None, &["-j", "prog", "show", "id", &prog.to_string()])?;
    for id in parse_map_ids(&out)? {
        let m = bpftool(None, &["-j", "map", "show", "id", &id.to_string()])?;
        if parse_name(&m)?.as_deref() == Some(name) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Entries of map `map` now.
pub fn map_entries(map: u32) -> Result<usize> {
    let out = bpftool(None, &["-j", "map", "dump", "id", &map.to_string()])?;
    parse_dump_len(&out)
}

fn bpftool(ns: Option<&str>, args: &[&str]) -> Result<String> {
    if netns::run(None, "sh", &["-c", "command -v bpftool"]).is_err() {
        return Err(BedError::Setup(
            "`bpftool` is missing (Debian: apt-get install bpftool); the AF_XDP checks read the XDP program's maps with it".into(),
        ));
    }
    netns::run_stdout(ns, "bpftool", args)
}

fn json(what: &'static str, text: &str) -> Result<Value> {
    let v: Value = serde_json::from_str(text).map_err(|e| BedError::Parse {
        what,
        detail: format!("{e}: {text}"),
    })?;
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return Err(BedError::Parse {
            what,
            detail: e.to_string(),
        });
    }
    Ok(v)
}

fn parse_net_show(text: &str, iface: &str) -> Result<Option<Attached>> {
    let v = json("bpftool net show", text)?;
    let progs = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("xdp").and_then(Value::as_array))
        .flatten();
    for p in progs {
        if p.get("devname").and_then(Value::as_str) != Some(iface) {
            continue;
        }
        let id = p
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|i| u32::try_from(i).ok());
        if let Some(id) = id {
            let mode = p
                .get("mode")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            return Ok(Some(Attached { id, mode }));
        }
    }
    Ok(None)
}

fn parse_map_ids(text: &str) -> Result<Vec<u32>> {
    let v = json("bpftool prog show", text)?;
    Ok(v.get("map_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
        .collect())
}

fn parse_name(text: &str) -> Result<Option<String>> {
    let v = json("bpftool map show", text)?;
    Ok(v.get("name").and_then(Value::as_str).map(str::to_string))
}

fn parse_dump_len(text: &str) -> Result<usize> {
    let v = json("bpftool map dump", text)?;
    v.as_array().map(Vec::len).ok_or_else(|| BedError::Parse {
        what: "bpftool map dump",
        detail: format!("not a list: {text}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_program_attached_to_the_interface() {
        let t = r#"[{"xdp":[{"devname":"data0","ifindex":2,"mode":"driver","id":138}],"tc":[],"flow_dissector":[]}]"#;
        assert_eq!(
            parse_net_show(t, "data0").unwrap(),
            Some(Attached {
                id: 138,
                mode: "driver".into()
            })
        );
        assert_eq!(parse_net_show(t, "data1").unwrap(), None);
        let none = r#"[{"xdp":[],"tc":[],"flow_dissector":[]}]"#;
        assert_eq!(parse_net_show(none, "data0").unwrap(), None);
        assert!(parse_net_show(r#"{"error":"invalid devname data0"}"#, "data0").is_err());
    }

    #[test]
    fn reads_map_ids_names_and_entry_counts() {
        let prog = r#"{"id":138,"type":"xdp","name":"fast","tag":"16d98ae1b8eb28e0","gpl_compatible":true,"map_ids":[90,91],"btf_id":79}"#;
        assert_eq!(parse_map_ids(prog).unwrap(), vec![90, 91]);
        let map = r#"{"id":90,"type":"hash","name":"flows","flags":0,"bytes_key":4,"bytes_value":8,"max_entries":64}"#;
        assert_eq!(parse_name(map).unwrap().as_deref(), Some("flows"));
        let dump = r#"[{"key":["0x01","0x00","0x00","0x00"],"value":["0x02","0x00","0x00","0x00","0x00","0x00","0x00","0x00"],"formatted":{"key":1,"value":2}}]"#;
        assert_eq!(parse_dump_len(dump).unwrap(), 1);
        assert_eq!(parse_dump_len("[]").unwrap(), 0);
        assert!(
            parse_dump_len(r#"{"error":"get by id (90): No such file or directory"}"#).is_err()
        );
    }
}
