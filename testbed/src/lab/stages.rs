//! The stage framework: named, ordered stages, each with a named timeout and a pass condition that is
//! re-checked every time what the lab knows about the node changes (no polling loop, no sleeps), until
//! it passes, fails, times out or the run is interrupted. A failure keeps the last value the condition
//! observed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A stage of the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageDef {
    pub name: &'static str,
    pub title: &'static str,
    /// Under TCG on a loaded 2-core machine; `--timeout NAME=DURATION` overrides.
    pub timeout: Duration,
}

const fn def(name: &'static str, title: &'static str, secs: u64) -> StageDef {
    StageDef { name, title, timeout: Duration::from_secs(secs) }
}

/// The stage plan for the fixture release (DESIGN.md, "Stage plan"). Each timeout counts from the end of
/// the stage before.
pub const FIXTURE_STAGES: [StageDef; 7] = [
    def("vm-started", "VM started", 60),
    def("firmware-reached-bootloader", "Firmware reached the bootloader", 180),
    // Secure Boot key enrollment (sd-boot's 15 s countdown) and its reboot come in here.
    def("kernel-booted", "Kernel booted", 240),
    def("extensions-loaded", "Extensions loaded", 120),
    def("config-fetched", "Machine config fetched", 120),
    def("inventory-matches-profile", "Hardware inventory matches the profile", 120),
    def("powered-off", "Powered off cleanly", 120),
];

/// Stage timeouts by name, with overrides.
#[derive(Clone, Debug, Default)]
pub struct Timeouts {
    overrides: BTreeMap<String, Duration>,
}

impl Timeouts {
    /// Parses `NAME=DURATION` (`kernel-booted=90s`, `config-fetched=2m`, `vm-started=500ms`); names must be
    /// stages of `plan`.
    pub fn parse(items: &[String], plan: &[StageDef]) -> Result<Timeouts, String> {
        let mut overrides = BTreeMap::new();
        for item in items {
            let (name, value) =
                item.split_once('=').ok_or_else(|| format!("--timeout {item:?}: expected NAME=DURATION"))?;
            if !plan.iter().any(|s| s.name == name) {
                let known: Vec<&str> = plan.iter().map(|s| s.name).collect();
                return Err(format!("--timeout {item:?}: no stage {name:?} (stages: {})", known.join(", ")));
            }
            let d = parse_duration(value)
                .ok_or_else(|| format!("--timeout {item:?}: {value:?} is not a duration (like 500ms, 90s, 2m)"))?;
            overrides.insert(name.to_owned(), d);
        }
        Ok(Timeouts { overrides })
    }

    pub fn of(&self, stage: &StageDef) -> Duration {
        self.overrides.get(stage.name).copied().unwrap_or(stage.timeout)
    }
}

/// `500ms`, `90s`, `2m`, `1h`, or bare seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `1m30s`-style text of a duration, for messages.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 120_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// What a condition says about what it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Passed; the detail goes into the report.
    Pass(String),
    /// Not yet; what it saw (kept as the last observed value).
    Pending(String),
    /// Failed for good: the message, and what it saw.
    Fail(String, String),
}

/// How waiting for a condition ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waited {
    Passed(String),
    Failed { message: String, observed: String },
    TimedOut { observed: String },
    Interrupted { why: String, observed: String },
}

/// Re-checks `cond` on every change of `obs` until it passes or fails, `timeout` passes, or `cancel`
/// says why the run stops.
pub async fn wait_for<T>(
    obs: &mut watch::Receiver<T>,
    timeout: Duration,
    cancel: &mut watch::Receiver<Option<String>>,
    mut cond: impl FnMut(&T) -> Check,
) -> Waited {
    let deadline = tokio::time::Instant::from_std(Instant::now() + timeout);
    loop {
        let observed = match cond(&obs.borrow_and_update()) {
            Check::Pass(d) => return Waited::Passed(d),
            Check::Fail(message, seen) => return Waited::Failed { message, observed: seen },
            Check::Pending(seen) => seen,
        };
        if let Some(why) = cancel.borrow().clone() {
            return Waited::Interrupted { why, observed };
        }
        tokio::select! {
            changed = obs.changed() => {
                if changed.is_err() {
                    // Nobody will update it any more: one last look, then it can only time out.
                    tokio::time::sleep_until(deadline).await;
                    return Waited::TimedOut { observed };
                }
            }
            _ = cancel.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                // One last check of what is there now.
                return match cond(&obs.borrow()) {
                    Check::Pass(d) => Waited::Passed(d),
                    Check::Fail(message, seen) => Waited::Failed { message, observed: seen },
                    Check::Pending(seen) => Waited::TimedOut { observed: seen },
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_and_refuse_unknown_stages() {
        let t = Timeouts::parse(&["kernel-booted=90s".into(), "vm-started=500ms".into()], &FIXTURE_STAGES).unwrap();
        assert_eq!(t.of(&FIXTURE_STAGES[2]), Duration::from_secs(90));
        assert_eq!(t.of(&FIXTURE_STAGES[0]), Duration::from_millis(500));
        assert_eq!(t.of(&FIXTURE_STAGES[3]), FIXTURE_STAGES[3].timeout);
        let e = Timeouts::parse(&["kernel=1s".into()], &FIXTURE_STAGES).unwrap_err();
        assert!(e.contains("no stage \"kernel\"") && e.contains("kernel-booted"), "{e}");
        let e = Timeouts::parse(&["kernel-booted=soon".into()], &FIXTURE_STAGES).unwrap_err();
        assert!(e.contains("not a duration"), "{e}");
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(human(Duration::from_secs(150)), "2m30s");
    }

    #[tokio::test]
    async fn waits_for_changes_and_keeps_the_last_observed_value() {
        let (tx, mut rx) = watch::channel(0u32);
        let (_ctx, mut cancel) = watch::channel(None);
        let waiter = tokio::spawn(async move {
            wait_for(&mut rx, Duration::from_secs(30), &mut cancel, |v| {
                if *v >= 3 { Check::Pass(format!("saw {v}")) } else { Check::Pending(format!("at {v}")) }
            })
            .await
        });
        for i in 1..=3 {
            tx.send(i).unwrap();
        }
        assert_eq!(waiter.await.unwrap(), Waited::Passed("saw 3".into()));

        let (_tx, mut rx) = watch::channel(1u32);
        let (_ctx, mut cancel) = watch::channel(None);
        let w = wait_for(&mut rx, Duration::from_millis(50), &mut cancel, |v| Check::Pending(format!("at {v}"))).await;
        assert_eq!(w, Waited::TimedOut { observed: "at 1".into() });

        let (_tx, mut rx) = watch::channel(1u32);
        let (ctx, mut cancel) = watch::channel(None);
        let w = tokio::spawn(async move {
            wait_for(&mut rx, Duration::from_secs(30), &mut cancel, |_| Check::Pending("waiting".into())).await
        });
        ctx.send(Some("SIGTERM".into())).unwrap();
        assert_eq!(w.await.unwrap(), Waited::Interrupted { why: "SIGTERM".into(), observed: "waiting".into() });
    }
}
