//! Every child process talforge starts goes through here: one place that finds the program, gives it a
//! controlled environment (C locale, UTC, `SOURCE_DATE_EPOCH`), captures its output, and turns failures into
//! errors that say which tool, with which arguments, and what it printed.
//!
//! A missing program is a missing dependency (exit 3) naming the Debian package that provides it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program talforge may run, with the Debian package that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    pub package: &'static str,
}

impl Program {
    pub const fn new(name: &'static str, package: &'static str) -> Self {
        Program { name, package }
    }
}

/// What can go wrong running a tool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    #[error("{} is not installed (Debian package {})", .program.name, .program.package)]
    Missing { program: Program },
    #[error("{} failed ({status}): {stderr}", display_argv(.argv))]
    Failed { argv: Vec<OsString>, status: String, stderr: String },
    #[error("cannot run {}", display_argv(.argv))]
    Spawn {
        argv: Vec<OsString>,
        #[source]
        source: std::io::Error,
    },
}

fn display_argv(argv: &[OsString]) -> String {
    argv.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

/// Runs tools with a fixed environment: only `PATH`, `LC_ALL=C`, `TZ=UTC` and `SOURCE_DATE_EPOCH`.
#[derive(Clone, Debug)]
pub struct ToolRunner {
    path: OsString,
    epoch: u64,
}

/// The output of a successful run.
#[derive(Clone, Debug)]
pub struct ToolOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ToolRunner {
    /// A runner that searches the caller's `PATH` (plus the sbin folders tools like `sgdisk` live in).
    pub fn new(epoch: u64) -> Self {
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        for extra in ["/usr/sbin", "/sbin"] {
            if !std::env::split_paths(&path).any(|p| p == Path::new(extra)) {
                path.push(":");
                path.push(extra);
            }
        }
        ToolRunner { path, epoch }
    }

    /// A runner that searches exactly `path` (a `PATH`-style list), e.g. to test a missing tool.
    pub fn with_path(path: impl Into<OsString>, epoch: u64) -> Self {
        ToolRunner { path: path.into(), epoch }
    }

    /// Where `program` is, if installed.
    pub fn find(&self, program: Program) -> Option<PathBuf> {
        std::env::split_paths(&self.path).map(|d| d.join(program.name)).find(|p| p.is_file())
    }

    /// Runs `program args...` in `cwd` (if given), feeding `stdin`; fails unless it exits 0.
    pub fn run<I, S>(
        &self,
        program: Program,
        args: I,
        cwd: Option<&Path>,
        stdin: Option<&[u8]>,
    ) -> Result<ToolOutput, ToolError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let exe = self.find(program).ok_or(ToolError::Missing { program })?;
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let mut argv = vec![OsString::from(program.name)];
        argv.extend(args.iter().cloned());
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env_clear()
            .env("PATH", &self.path)
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .env("SOURCE_DATE_EPOCH", self.epoch.to_string())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd.spawn().map_err(|source| ToolError::Spawn { argv: argv.clone(), source })?;
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            use std::io::Write as _;
            // A tool that exits early closes its stdin; its exit status says what went wrong.
            let _ = pipe.write_all(data);
        }
        let out = child.wait_with_output().map_err(|source| ToolError::Spawn { argv: argv.clone(), source })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(ToolError::Failed { argv, status: out.status.to_string(), stderr });
        }
        Ok(ToolOutput { stdout: out.stdout, stderr: out.stderr })
    }
}

/// For tests: reports that the calling test cannot run here (`message` says what is missing and which Debian
/// package provides it) and lets it pass, except in CI (`CI` set, as `ci/test` does), where every dependency
/// is installed and a skip would hide a broken setup: there it fails the test.
#[doc(hidden)]
pub fn skip_test(message: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set: ci/test installs every dependency, so no test may skip)");
    }
    eprintln!("{message}");
}

/// `skip_test!("SKIP: {} is missing", x)`: [`skip_test`] with a formatted message.
#[macro_export]
#[doc(hidden)]
macro_rules! skip_test {
    ($($arg:tt)*) => {
        $crate::tool::skip_test(&format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controlled_environment_and_errors() {
        let r = ToolRunner::new(1_700_000_000);
        let out =
            r.run(Program::new("sh", "dash"), ["-c", "echo $LC_ALL $TZ $SOURCE_DATE_EPOCH $HOME"], None, None).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "C UTC 1700000000\n");
        let e = r.run(Program::new("sh", "dash"), ["-c", "echo nope >&2; exit 3"], None, None).unwrap_err();
        assert_eq!(e.to_string(), "sh -c echo nope >&2; exit 3 failed (exit status: 3): nope");
        let e = r.run(Program::new("no-such-tool-talforge", "nothing"), ["x"], None, None).unwrap_err();
        assert_eq!(e.to_string(), "no-such-tool-talforge is not installed (Debian package nothing)");
        let out = r.run(Program::new("cat", "coreutils"), Vec::<&str>::new(), None, Some(b"abc")).unwrap();
        assert_eq!(out.stdout, b"abc");
    }
}
