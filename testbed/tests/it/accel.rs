//! The acceleration probe on this machine: under TCG the probe guest always reaches its marker (so the
//! probe works); `--accel auto` picks KVM exactly when a direct KVM probe reaches it, and says why not
//! otherwise. Probe times are printed (run with `--nocapture` to see them).

use std::path::Path;
use std::time::{Duration, Instant};

use talforge_testbed::qemu::accel::{KVM_DEVICE, PROBE_DEADLINE, probe_args};
use talforge_testbed::qemu::{Accel, AccelReason, AccelRequest, ProbeOutcome, ProbeStage, probe_accel, run_probe};

use crate::support::{argv_text, qemu};

/// TCG on a loaded CI machine may be slow to start QEMU; the probe itself takes well under a second.
const TCG_DEADLINE: Duration = Duration::from_secs(30);

fn assert_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "the probe left files behind: {left:?}");
}

#[test]
fn probe_argv() {
    insta::assert_snapshot!(argv_text(&probe_args(Path::new("/tmp/probe/probe.fd"), Accel::Kvm)), @r"
    -nodefaults
    -no-user-config
    -display none
    -machine q35
    -accel kvm
    -cpu host
    -smp 1
    -m 64M
    -bios /tmp/probe/probe.fd
    -serial stdio
    -no-reboot
    ");
}

#[test]
fn the_probe_guest_reaches_its_marker_under_tcg() {
    let Some(qemu) = qemu() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let run = run_probe(&qemu, Accel::Tcg, scratch.path(), TCG_DEADLINE).unwrap();
    eprintln!("TCG probe: {run}");
    assert_eq!(run.outcome, ProbeOutcome::Marker, "{run}");
    assert_eq!(run.stage, Some(ProbeStage::LongMode), "it printed R, P and L before the marker");
    assert_empty(scratch.path());
}

#[test]
fn a_deadline_too_short_for_the_guest_ends_the_probe() {
    let Some(qemu) = qemu() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let run = run_probe(&qemu, Accel::Tcg, scratch.path(), Duration::from_millis(1)).unwrap();
    assert_eq!(run.outcome, ProbeOutcome::Deadline { deadline: Duration::from_millis(1) });
    assert!(t.elapsed() < Duration::from_secs(10), "QEMU was killed at the deadline");
    assert_empty(scratch.path());
}

#[test]
fn auto_picks_kvm_exactly_when_a_kvm_guest_reaches_the_marker() {
    let Some(qemu) = qemu() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let decision = probe_accel(AccelRequest::Auto, &qemu, scratch.path()).unwrap();
    let auto_time = t.elapsed();
    eprintln!("auto: {decision} (decided in {:.2} s)", auto_time.as_secs_f64());
    assert_empty(scratch.path());
    assert!(auto_time < PROBE_DEADLINE * 2 + Duration::from_secs(5), "the probe is bounded: {auto_time:?}");

    let kvm_opens = std::fs::OpenOptions::new().read(true).write(true).open(KVM_DEVICE).is_ok();
    if !kvm_opens {
        assert_eq!(decision.accel, Accel::Tcg);
        assert!(matches!(decision.reason, AccelReason::KvmUnavailable { .. }), "{decision}");
        assert!(decision.to_string().starts_with("tcg: /dev/kvm cannot be opened ("), "{decision}");
        return;
    }
    // A direct probe under KVM, as the lab would run it.
    let direct = run_probe(&qemu, Accel::Kvm, scratch.path(), PROBE_DEADLINE).unwrap();
    eprintln!("direct KVM probe: {direct}");
    assert_empty(scratch.path());
    if direct.reached_marker() {
        assert_eq!(decision.accel, Accel::Kvm, "{decision}");
        assert!(matches!(decision.reason, AccelReason::KvmBooted { .. }));
    } else {
        assert_eq!(decision.accel, Accel::Tcg, "{decision}");
        let AccelReason::KvmProbeFailed { probe, tcg } = &decision.reason else {
            panic!("expected a failed KVM probe as the reason: {decision}")
        };
        assert!(!probe.reached_marker());
        assert!(tcg.reached_marker(), "the same probe works under TCG: {decision}");
        assert!(decision.to_string().starts_with("tcg: the KVM probe guest did not reach its marker: "), "{decision}");
    }
}

#[test]
fn forced_choices_do_not_probe() {
    // No QEMU needed: nothing runs.
    let missing = Path::new("/nonexistent/qemu-system-x86_64");
    let scratch = tempfile::tempdir().unwrap();
    for (req, accel) in [(AccelRequest::Kvm, Accel::Kvm), (AccelRequest::Tcg, Accel::Tcg)] {
        let d = probe_accel(req, missing, scratch.path()).unwrap();
        assert_eq!((d.accel, &d.reason), (accel, &AccelReason::Requested));
        assert_eq!(d.to_string(), format!("{accel}: requested"));
    }
}
