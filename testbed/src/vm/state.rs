//! A VM's run state, driven by QMP events and the QEMU process's exit: a pure state machine (no I/O), so
//! every transition is unit-tested.

use std::fmt;

use serde::Serialize;

/// What the supervisor feeds the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmInput {
    /// QEMU started (paused with `-S`, the supervisor connected QMP and the console).
    Launched,
    /// QMP `RESUME` (after `cont`).
    Resumed,
    /// QMP `STOP`: the guest is paused (by `stop`, a watchdog or a panic with `panic=pause`).
    Stopped,
    /// QMP `RESET`; `guest` is true when the guest asked (a reboot).
    Reset { guest: bool },
    /// QMP `POWERDOWN`: the ACPI power button was pressed (`system_powerdown`).
    PowerButton,
    /// QMP `SHUTDOWN`: QEMU is about to exit (or pause, with `-action shutdown=pause`).
    Shutdown { guest: bool, reason: String },
    /// QMP `GUEST_PANICKED` (pvpanic); `action` is QEMU's (`pause`, `poweroff`, `run`).
    Panicked { action: String, info: Option<String> },
    /// QMP `WATCHDOG`: the emulated watchdog fired; `action` is what QEMU did.
    Watchdog { action: String },
    /// The QMP connection closed (QEMU exited or the socket broke).
    QmpClosed,
    /// The QEMU process ended: its exit code, or the signal that killed it.
    Exited { code: Option<i32>, signal: Option<i32> },
}

/// Where a VM is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum VmState {
    /// Not started yet.
    Created,
    /// QEMU runs, the guest is paused before its first instruction.
    Prelaunch,
    Running,
    /// Paused after start (a `stop`, a watchdog or a panic).
    Paused {
        why: String,
    },
    /// The guest panicked (pvpanic).
    Panicked {
        info: Option<String>,
    },
    /// QEMU reported SHUTDOWN and is exiting.
    ShuttingDown {
        guest: bool,
        reason: String,
    },
    /// QEMU exited.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        after: Option<String>,
    },
}

impl VmState {
    pub fn is_exited(&self) -> bool {
        matches!(self, VmState::Exited { .. })
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmState::Created => f.write_str("not started"),
            VmState::Prelaunch => f.write_str("started, paused before boot"),
            VmState::Running => f.write_str("running"),
            VmState::Paused { why } => write!(f, "paused ({why})"),
            VmState::Panicked { info: Some(i) } => write!(f, "guest panicked ({i})"),
            VmState::Panicked { info: None } => f.write_str("guest panicked"),
            VmState::ShuttingDown { guest, reason } => {
                write!(f, "shutting down ({reason}{})", if *guest { ", asked by the guest" } else { "" })
            }
            VmState::Exited { code, signal, after } => {
                match (code, signal) {
                    (Some(c), _) => write!(f, "QEMU exited with status {c}")?,
                    (None, Some(s)) => write!(f, "QEMU was killed by signal {s}{}", signal_name(*s))?,
                    (None, None) => f.write_str("QEMU exited")?,
                }
                if let Some(a) = after {
                    write!(f, " after {a}")?;
                }
                Ok(())
            }
        }
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        9 => " (SIGKILL)",
        15 => " (SIGTERM)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        11 => " (SIGSEGV)",
        _ => "",
    }
}

/// The state after `input`. Exited is final; a panic stays a panic until QEMU exits.
pub fn next_state(state: &VmState, input: &VmInput) -> VmState {
    use VmInput as I;
    use VmState as S;
    if state.is_exited() {
        return state.clone();
    }
    match input {
        I::Launched => S::Prelaunch,
        I::Resumed => match state {
            S::Panicked { .. } => state.clone(),
            _ => S::Running,
        },
        I::Stopped => match state {
            S::Panicked { .. } | S::ShuttingDown { .. } => state.clone(),
            S::Prelaunch => S::Prelaunch,
            _ => S::Paused { why: "stopped".into() },
        },
        // A reset keeps the VM running (the guest reboots in place).
        I::Reset { .. } => match state {
            S::Panicked { .. } => state.clone(),
            _ => S::Running,
        },
        I::PowerButton => state.clone(),
        I::Shutdown { guest, reason } => S::ShuttingDown { guest: *guest, reason: reason.clone() },
        I::Panicked { info, .. } => S::Panicked { info: info.clone() },
        I::Watchdog { action } => match action.as_str() {
            "pause" => S::Paused { why: "watchdog fired".into() },
            _ => state.clone(),
        },
        I::QmpClosed => state.clone(),
        I::Exited { code, signal } => S::Exited {
            code: *code,
            signal: *signal,
            after: match state {
                S::ShuttingDown { reason, .. } => Some(format!("SHUTDOWN ({reason})")),
                S::Panicked { .. } => Some("a guest panic".into()),
                _ => None,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(inputs: &[VmInput]) -> VmState {
        inputs.iter().fold(VmState::Created, |s, i| next_state(&s, i))
    }

    #[test]
    fn a_clean_boot_and_power_off() {
        let s = run(&[
            VmInput::Launched,
            VmInput::Resumed,
            VmInput::Reset { guest: true },
            VmInput::PowerButton,
            VmInput::Shutdown { guest: true, reason: "guest-shutdown".into() },
        ]);
        assert_eq!(s, VmState::ShuttingDown { guest: true, reason: "guest-shutdown".into() });
        let s = next_state(&s, &VmInput::Exited { code: Some(0), signal: None });
        assert_eq!(s.to_string(), "QEMU exited with status 0 after SHUTDOWN (guest-shutdown)");
    }

    #[test]
    fn a_kill_is_final_and_named() {
        let s = run(&[VmInput::Launched, VmInput::Resumed, VmInput::Exited { code: None, signal: Some(9) }]);
        assert_eq!(s.to_string(), "QEMU was killed by signal 9 (SIGKILL)");
        assert_eq!(next_state(&s, &VmInput::Resumed), s);
    }

    #[test]
    fn a_panic_sticks_until_exit() {
        let s = run(&[
            VmInput::Launched,
            VmInput::Resumed,
            VmInput::Panicked { action: "pause".into(), info: None },
            VmInput::Stopped,
            VmInput::Resumed,
        ]);
        assert_eq!(s, VmState::Panicked { info: None });
        assert_eq!(
            run(&[VmInput::Launched, VmInput::Resumed, VmInput::Watchdog { action: "pause".into() }]).to_string(),
            "paused (watchdog fired)"
        );
    }

    #[test]
    fn prelaunch_stays_until_resumed() {
        assert_eq!(run(&[VmInput::Launched, VmInput::Stopped]), VmState::Prelaunch);
        assert_eq!(
            run(&[VmInput::Launched, VmInput::Resumed, VmInput::Stopped]),
            VmState::Paused { why: "stopped".into() }
        );
    }
}
