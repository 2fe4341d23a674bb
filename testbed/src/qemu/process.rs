//! The one place the testbed starts QEMU and swtpm: programs found on `PATH` (a missing one is a missing
//! dependency naming its Debian package), a controlled environment, and a guard that kills the child and
//! reaps it when dropped, so no VM outlives what started it.
//!
//! [`command`] gives a `std::process::Command`; an async caller converts it with
//! `tokio::process::Command::from`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use talforge_builder::tool::{Program, ToolError, ToolRunner};

use super::QemuError;

pub const QEMU: Program = Program::new("qemu-system-x86_64", "qemu-system-x86");
pub const SWTPM: Program = Program::new("swtpm", "swtpm");

/// Where `program` is installed.
pub fn find_program(program: Program) -> Result<PathBuf, QemuError> {
    ToolRunner::new(0).find(program).ok_or(QemuError::Tool(ToolError::Missing { program }))
}

/// `program args...` with only `PATH`, `LC_ALL=C` and `TZ=UTC` in its environment and stdin from /dev/null.
pub fn command(program: &Path, args: &[OsString]) -> Command {
    let mut c = Command::new(program);
    c.args(args).env_clear().env("LC_ALL", "C").env("TZ", "UTC").stdin(Stdio::null());
    if let Some(path) = std::env::var_os("PATH") {
        c.env("PATH", path);
    }
    c
}

/// A running child that is killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    argv: Vec<OsString>,
}

impl ChildGuard {
    /// Starts `cmd`, whose program and arguments are `argv` (kept for error messages).
    pub fn spawn(mut cmd: Command, argv: Vec<OsString>) -> Result<ChildGuard, QemuError> {
        let child = cmd.spawn().map_err(|source| QemuError::Spawn { argv: argv.clone(), source })?;
        Ok(ChildGuard { child, argv })
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// Kills the child (if still running) and returns how it ended.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // It may exit between the check and the kill; waiting reaps it either way.
        let _ = self.child.kill();
        self.child.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
