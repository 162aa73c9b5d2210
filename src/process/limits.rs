//! Resource limits without `unsafe`: the program runs through
//! `/bin/sh -c 'ulimit …; exec "$0" "$@"' PROGRAM ARGS…`.
//!
//! Setting a limit in the child between `fork` and `exec` takes `CommandExt::pre_exec`,
//! which is `unsafe` (the closure runs in a forked copy of a multi-threaded process), and
//! this crate forbids `unsafe`; no well-kept crate wraps it for resource limits. The shell
//! is on every Unix, its `ulimit` is the same `setrlimit`, and `exec` replaces it with the
//! program, so the program keeps the pid, the process group and the pipes.
//!
//! The cost of a shell: the shell, not the program, is what `exec`s, and when that fails it
//! exits 127 (126: not executable) instead of giving the parent an error. So the program
//! is resolved here first, as `execvp` would (a name without `/` searched in the child's
//! `PATH`), and a program that cannot be found or is not an executable file is an error
//! before anything starts. What remains is a race (the file removed or changed between the
//! check and the `exec`): a wrapped run that exits 126 or 127 is checked again, and is an
//! error if the program no longer resolves. The limits are also checked against this
//! process's hard limits first, which the child inherits and cannot raise.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::process::{Resource, getrlimit};

use super::config::ProcessConfig;
use crate::error::ConfigError;

/// The shell that applies the limits: by absolute path, so the command's own `PATH`
/// (which may be cleared) does not decide which shell runs.
const SHELL: &str = "/bin/sh";

/// The limits of one configuration, in the units `ulimit` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Limits {
    open_files: Option<u64>,
    cpu_seconds: Option<u64>,
    address_space_kib: Option<u64>,
}

impl Limits {
    pub(crate) fn of(config: &ProcessConfig) -> Self {
        Self {
            open_files: config.max_open_files,
            cpu_seconds: config.cpu_seconds(),
            address_space_kib: config.address_space_kib(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Each limit with the hard limit it needs (in the kernel's unit), for the check against
    /// this process's own hard limits. The CPU limit's hard value is one second above the
    /// soft one, so the program gets `SIGXCPU` before `SIGKILL`.
    fn needs(&self) -> [(&'static str, Resource, Option<u64>); 3] {
        [
            ("max_open_files", Resource::Nofile, self.open_files),
            ("cpu_time", Resource::Cpu, self.cpu_seconds.map(|s| s + 1)),
            (
                "address_space",
                Resource::As,
                self.address_space_kib.map(|k| k.saturating_mul(1024)),
            ),
        ]
    }

    /// Checks every limit against this process's hard limits: a child cannot raise a hard
    /// limit, so a limit above it could never be set.
    pub(crate) fn check_hard(&self, bulkhead: &str) -> Result<(), ConfigError> {
        for (field, resource, need) in self.needs() {
            let (Some(need), Some(hard)) = (need, getrlimit(resource).maximum) else {
                continue;
            };
            if need > hard {
                return Err(ConfigError::new(
                    bulkhead,
                    field,
                    format!(
                        "needs a hard limit of {need}, above this process's hard limit of {hard}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The script: one `ulimit` per limit (dash takes one option per call), then `exec`.
    /// `&&` so that a failed `ulimit` never runs the program without its limit.
    fn script(&self) -> String {
        let mut steps = Vec::new();
        if let Some(n) = self.open_files {
            // No -S/-H: both soft and hard, so the program cannot raise it back.
            steps.push(format!("ulimit -n {n}"));
        }
        if let Some(s) = self.cpu_seconds {
            // Soft first (the hard limit may not go below the soft one), then the hard one
            // second later: SIGXCPU at the limit, SIGKILL after.
            steps.push(format!("ulimit -St {s}"));
            steps.push(format!("ulimit -Ht {}", s + 1));
        }
        if let Some(k) = self.address_space_kib {
            steps.push(format!("ulimit -v {k}"));
        }
        steps.push("exec \"$0\" \"$@\"".to_owned());
        steps.join(" && ")
    }

    /// The command to spawn in place of `command`: `command` itself with no limits, else the
    /// wrapper shell carrying over what `Command` lets anyone read back (program, arguments,
    /// environment changes, working directory).
    ///
    /// With the wrapper, also the program's path as checked, for [`still_runnable`].
    ///
    /// # Errors
    ///
    /// `NotFound` or `PermissionDenied` when the program cannot be run.
    pub(crate) fn wrap(&self, command: Command) -> io::Result<(Command, Option<PathBuf>)> {
        if self.is_empty() {
            return Ok((command, None));
        }
        let (program, checked) = resolve(&command)?;
        let mut wrapper = Command::new(SHELL);
        wrapper.arg("-c").arg(self.script()).arg(program);
        wrapper.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapper.env(key, value),
                None => wrapper.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            wrapper.current_dir(dir);
        }
        Ok((wrapper, Some(checked)))
    }
}

/// True when the program [`Limits::wrap`] checked is still an executable file: a wrapped
/// run that exited 126 or 127 is a program that could not be started when it is not.
pub(crate) fn still_runnable(checked: &Path) -> bool {
    runnable(checked).is_ok()
}

/// The path `execvp` would run for `command`'s program, checked to be an executable file,
/// and the path that was checked (joined to the command's working directory).
///
/// A program with a `/` is taken as it is (relative to the command's working directory);
/// the path returned is then the program itself, for the shell to resolve in the same
/// directory. A bare name is searched in the child's `PATH`.
fn resolve(command: &Command) -> io::Result<(OsString, PathBuf)> {
    let program = command.get_program();
    let dir = command.get_current_dir();
    if program.as_encoded_bytes().contains(&b'/') {
        let path = match dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        runnable(&path)?;
        return Ok((program.to_owned(), path));
    }
    let path = child_path(command);
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found in PATH", Path::new(program).display()),
    );
    for entry in std::env::split_paths(&path) {
        // An empty entry means the working directory, as for execvp.
        let base = if entry.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            entry
        };
        let candidate = base.join(program);
        let full = match dir {
            Some(dir) if candidate.is_relative() => dir.join(&candidate),
            _ => candidate.clone(),
        };
        match runnable(&full) {
            Ok(()) => return Ok((candidate.into_os_string(), full)),
            // Keep looking, as execvp does; report permission over absence, as it does.
            Err(err) if err.kind() == io::ErrorKind::PermissionDenied => last = err,
            Err(_) => {}
        }
    }
    Err(last)
}

/// The `PATH` the child will see: the command's own if it sets or removes one, else ours.
fn child_path(command: &Command) -> OsString {
    // What glibc's execvp searches when PATH is unset.
    const DEFAULT: &str = "/bin:/usr/bin";
    for (key, value) in command.get_envs() {
        if key == OsStr::new("PATH") {
            return value.map_or_else(|| DEFAULT.into(), OsStr::to_owned);
        }
    }
    std::env::var_os("PATH").unwrap_or_else(|| DEFAULT.into())
}

/// `Ok` when `path` is a file someone may execute.
fn runnable(path: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not a file", path.display()),
        ));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is not executable", path.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_sets_each_limit_then_execs() {
        let config = ProcessConfig::new(1)
            .max_open_files(32)
            .cpu_time(std::time::Duration::from_millis(1500))
            .address_space(1000);
        assert_eq!(
            Limits::of(&config).script(),
            "ulimit -n 32 && ulimit -St 2 && ulimit -Ht 3 && ulimit -v 1 && exec \"$0\" \"$@\""
        );
        assert!(Limits::of(&ProcessConfig::new(1)).is_empty());
    }

    #[test]
    fn resolve_finds_sh_and_refuses_the_missing() {
        let (found, _) = resolve(&Command::new("sh")).unwrap();
        assert!(Path::new(&found).is_absolute(), "{found:?}");
        let err = resolve(&Command::new("no-such-program-bulkheads")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let mut empty_path = Command::new("sh");
        empty_path.env("PATH", "/nonexistent");
        assert_eq!(
            resolve(&empty_path).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            resolve(&Command::new("/etc")).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
