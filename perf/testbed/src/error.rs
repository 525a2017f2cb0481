//! The one error type of the test bed: every failure names the command or the
//! file it came from, so a failing system test reads like an operator's log.

use std::path::PathBuf;

/// What went wrong while building, driving or measuring the test bed.
#[derive(Debug, thiserror::Error)]
pub enum BedError {
    /// A command exited unsuccessfully.
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    /// A command could not be started at all (missing binary, permissions).
    #[error("cannot start `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a file of the bed (configs, logs, content).
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Some other I/O error (sockets, namespace switching).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A tool's output could not be understood.
    #[error("cannot parse {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    /// Something did not become ready in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A precondition of the bed is not met (not root, a tool missing, ...).
    #[error("{0}")]
    Setup(String),
}

/// Result alias for the test bed.
pub type Result<T, E = BedError> = std::result::Result<T, E>;

impl BedError {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        BedError::Io {
            what: what.into(),
            source,
        }
    }

    /// Wraps a file error with its path.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BedError::File {
            path: path.into(),
            source,
        }
    }
}

impl From<testkit::netns::CmdError> for BedError {
    fn from(e: testkit::netns::CmdError) -> Self {
        use testkit::netns::CmdError;
        match e {
            CmdError::Spawn { cmd, source } => BedError::Spawn { cmd, source },
            CmdError::Failed {
                cmd,
                status,
                stderr,
            } => BedError::Command {
                cmd,
                status,
                stderr,
            },
        }
    }
}

impl From<testkit::process::ProcError> for BedError {
    fn from(e: testkit::process::ProcError) -> Self {
        use testkit::process::ProcError;
        match e {
            ProcError::Log { path, source } => BedError::File { path, source },
            ProcError::Spawn { cmd, source } => BedError::Spawn { cmd, source },
            ProcError::Exited(m) => BedError::Setup(m),
            ProcError::Timeout(m) => BedError::Timeout(m),
            ProcError::Netns { ns, source } => BedError::io(format!("setns into {ns}"), source),
        }
    }
}
