//! Man pages rendered from the binaries' own clap definitions
//! (`controlplane::cli::command()`, `agent::cli::command()`), so a new flag
//! or subcommand reaches its page without anyone writing roff: one page for
//! the command and one per subcommand (`baton-check-config(1)`), each ending
//! with the files it reads and where the full documentation is.

use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use crate::util::Result;

/// One rendered page: its file name (`baton-run.1`) and roff source.
pub struct Page {
    pub file: String,
    pub roff: Vec<u8>,
}

/// What a page set says beyond the command line.
pub struct Extra<'a> {
    /// `(path, what it is)`, listed under FILES on the command's page.
    pub files: &'a [(&'a str, &'a str)],
    /// Where the package's documentation is installed.
    pub docs: &'a str,
    /// `YYYY-MM-DD` of the build's source.
    pub date: &'a str,
}

/// The pages of `cmd` and of each of its visible subcommands.
pub fn pages(cmd: clap::Command, extra: &Extra) -> Result<Vec<Page>> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let name = cmd.get_name().to_owned();
    // Every page's footer names the program and its version (a subcommand
    // has none of its own).
    let source = format!("{name} {}", cmd.get_version().unwrap_or_default());
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let sub_names: Vec<String> = subs
        .iter()
        .map(|s| s.get_display_name().unwrap_or(s.get_name()).to_owned())
        .collect();

    let mut out = vec![page(cmd, &source, extra.files, &sub_names, extra)?];
    for s in subs {
        out.push(page(s, &source, &[], std::slice::from_ref(&name), extra)?);
    }
    Ok(out)
}

fn page(
    cmd: clap::Command,
    source: &str,
    files: &[(&str, &str)],
    see: &[String],
    extra: &Extra,
) -> Result<Page> {
    let man = Man::new(cmd)
        .date(extra.date)
        .source(source)
        .manual("Baton");
    let file = man.get_filename();
    let mut roff = Vec::new();
    man.render(&mut roff)
        .map_err(|e| format!("rendering {file}: {e}"))?;

    let mut tail = Roff::new();
    if !files.is_empty() {
        tail.control("SH", ["FILES"]);
        for (path, what) in files {
            tail.control("TP", [])
                .text([bold(*path)])
                .text([roman(*what)]);
        }
    }
    tail.control("SH", ["SEE ALSO"]);
    let mut refs = Vec::new();
    for (i, s) in see.iter().enumerate() {
        if i > 0 {
            refs.push(roman(", "));
        }
        refs.push(bold(s.as_str()));
        refs.push(roman("(1)"));
    }
    tail.text(refs);
    tail.control("PP", []).text([
        roman("The full documentation, with the deployment procedure, is in "),
        bold(extra.docs),
        roman("."),
    ]);
    roff.extend_from_slice(tail.to_roff().as_bytes());
    Ok(Page { file, roff })
}
