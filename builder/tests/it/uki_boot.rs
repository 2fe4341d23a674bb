//! The UKI boots: Debian's 6.1 kernel and a busybox initramfs in a UKI built on Debian's systemd-stub 252,
//! started by sd-boot from a FAT ESP under QEMU/OVMF (TCG only; KVM hangs on this kind of machine). Then the
//! Secure Boot path: empty OVMF variables (setup mode), sd-boot auto-enrolls our PK/KEK/db, reboots, and boots the
//! signed UKI with Secure Boot on; a UKI with one byte changed after signing is refused by the firmware.
//!
//! Skipped with a message when qemu, OVMF, systemd-boot-efi, busybox-static or the kernel package are missing.

use std::time::Duration;

use talforge_builder::assemble::uki::{
    EnrollmentFiles, SigningKey, UkiInputs, build_uki, kernel_release, read_sections, sign_pe,
};

use crate::uki_support::*;

/// TCG boots take 15–40 s here; leave room for a loaded machine.
const BOOT_DEADLINE: Duration = Duration::from_secs(240);
/// A refused UKI never powers off (the firmware keeps retrying its boot options), so this run always ends at the
/// deadline: long enough to reach sd-boot and print the refusal under load, short enough not to waste a minute.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(30);

struct Inputs {
    stub: Vec<u8>,
    sd_boot: Vec<u8>,
    kernel: Vec<u8>,
    initrd: Vec<u8>,
}

fn inputs(firmware_code: &str) -> Option<Inputs> {
    need(&[QEMU, TIMEOUT, MKFS_VFAT, MCOPY])?;
    need_file(firmware_code, "ovmf")?;
    need_file(OVMF_VARS, "ovmf")?;
    let stub = need_file(STUB, "systemd-boot-efi")?;
    let sd_boot = need_file(SD_BOOT, "systemd-boot-efi")?;
    let busybox = need_file(BUSYBOX, "busybox-static")?;
    let kernel = debian_kernel()?;
    Some(Inputs { stub, sd_boot, kernel, initrd: busybox_initramfs(&busybox) })
}

fn uki(inputs: &Inputs, cmdline: &str) -> Vec<u8> {
    build_uki(&UkiInputs {
        stub: &inputs.stub,
        kernel: &inputs.kernel,
        initrd: &inputs.initrd,
        cmdline,
        os_release: "NAME=\"talforge test\"\nID=talforge\nVERSION_ID=0\n",
        uname: None,
        splash: None,
        pcr_public_key: None,
        profiles: Some(&[]),
        epoch: EPOCH,
    })
    .unwrap()
}

fn marker_line(serial: &str) -> Option<&str> {
    serial.lines().find(|l| l.contains(MARKER))
}

#[test]
fn uki_boots_under_ovmf_with_the_exact_cmdline() {
    let Some(inputs) = inputs(OVMF_CODE) else { return };
    let cmdline = "console=ttyS0 panic=-1 talforge.test=plain";
    let image = uki(&inputs, cmdline);
    let release = kernel_release(&inputs.kernel).unwrap();
    assert!(release.starts_with("6.1.0-") && release.ends_with("-amd64"), "{release}");
    let work = tempfile::tempdir().unwrap();
    let esp = work.path().join("esp.img");
    build_esp(work.path(), &esp, &[("EFI/BOOT/BOOTX64.EFI", &inputs.sd_boot), ("EFI/Linux/test.efi", &image)]);
    let vars = work.path().join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();

    let run =
        run_qemu(work.path(), &esp, &Firmware { code: OVMF_CODE, vars: &vars, secure_boot: false }, BOOT_DEADLINE);
    eprintln!("plain boot: {:.1} s", run.elapsed.as_secs_f64());
    let line =
        marker_line(&run.serial).unwrap_or_else(|| panic!("no boot marker; serial tail:\n{}", tail(&run.serial, 40)));
    assert!(line.contains(&format!("cmdline=[{cmdline}]")), "{line}");
    assert!(run.exited, "the guest powered off");
}

/// Builds an ESP with sd-boot and `uki` (both as given), `secure-boot-enroll force` and auto-enrollment files
/// for `key`, and boots it with Secure Boot firmware and `vars`.
fn secure_boot_run(
    work: &std::path::Path,
    vars: &std::path::Path,
    sd_boot: &[u8],
    uki: &[u8],
    key: &SigningKey,
    deadline: Duration,
) -> Run {
    let enrollment = EnrollmentFiles::generate(key.cert_der(), key, None, EPOCH).unwrap();
    let esp = work.join("esp.img");
    build_esp(
        work,
        &esp,
        &[
            ("EFI/BOOT/BOOTX64.EFI", sd_boot),
            ("EFI/Linux/test.efi", uki),
            ("loader/loader.conf", b"timeout 0\nsecure-boot-enroll force\n"),
            ("loader/keys/auto/PK.auth", &enrollment.pk),
            ("loader/keys/auto/KEK.auth", &enrollment.kek),
            ("loader/keys/auto/db.auth", &enrollment.db),
        ],
    );
    run_qemu(work, &esp, &Firmware { code: OVMF_CODE_SECBOOT, vars, secure_boot: true }, deadline)
}

fn assert_secure_boot(run: &Run, cmdline: &str) {
    let line =
        marker_line(&run.serial).unwrap_or_else(|| panic!("no boot marker; serial tail:\n{}", tail(&run.serial, 60)));
    assert!(line.contains(&format!("cmdline=[{cmdline}]")), "{line}");
    assert!(run.serial.contains("secureboot: Secure boot enabled"), "serial tail:\n{}", tail(&run.serial, 60));
    // Debian kernels lock down to "integrity" when booted with Secure Boot.
    assert!(line.contains("lockdown=[none [integrity] confidentiality]"), "{line}");
}

#[test]
fn secure_boot_enrolls_our_keys_boots_the_signed_uki_and_refuses_a_changed_one() {
    let Some(inputs) = inputs(OVMF_CODE_SECBOOT) else { return };
    let key = signing_key();
    let cmdline = "console=ttyS0 talforge.test=secureboot";
    let signed_uki = sign_pe(&uki(&inputs, cmdline), key, EPOCH).unwrap();
    let signed_sd_boot = sign_pe(&inputs.sd_boot, key, EPOCH).unwrap();
    let work = tempfile::tempdir().unwrap();
    // Empty variables: setup mode.
    let vars = work.path().join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();

    let run = secure_boot_run(work.path(), &vars, &signed_sd_boot, &signed_uki, key, BOOT_DEADLINE);
    eprintln!("secure boot (enroll + reboot + boot): {:.1} s", run.elapsed.as_secs_f64());
    assert_secure_boot(&run, cmdline);

    // Same (now enrolled) variables, one byte of the signed UKI changed: the firmware refuses it.
    let linux = read_sections(&signed_uki).unwrap().into_iter().find(|s| s.name == ".linux").unwrap();
    let mut tampered = signed_uki.clone();
    tampered[linux.pointer_to_raw_data as usize + 0x1000] ^= 0x01;
    let run = secure_boot_run(work.path(), &vars, &signed_sd_boot, &tampered, key, REFUSAL_DEADLINE);
    eprintln!("secure boot, tampered uki: {:.1} s (deadline)", run.elapsed.as_secs_f64());
    let refusal: Vec<_> =
        run.serial.lines().filter(|l| l.contains("Access Denied") || l.contains("Security Violation")).collect();
    eprintln!("refusal: {refusal:?}");
    assert!(marker_line(&run.serial).is_none(), "the tampered uki booted:\n{}", tail(&run.serial, 40));
    assert!(!run.serial.contains("Linux version"), "the kernel started:\n{}", tail(&run.serial, 40));
    assert!(
        refusal.iter().any(|l| l.contains("Error loading \\EFI\\Linux\\test.efi: Access Denied")),
        "expected sd-boot to report the firmware's refusal; serial tail:\n{}",
        tail(&run.serial, 40)
    );
}

/// `talosctl gen secureboot uki` certificates carry ExtKeyUsage serverAuth+clientAuth. sbverify rejects them, the
/// firmware does not: a key made that way (here by openssl, loaded from PKCS#8 PEM files) still boots.
#[test]
fn secure_boot_accepts_a_talosctl_shaped_key_that_sbverify_rejects() {
    let Some(inputs) = inputs(OVMF_CODE_SECBOOT) else { return };
    let Some(()) = need(&[OPENSSL, SBVERIFY]) else { return };
    let work = tempfile::tempdir().unwrap();
    let config = "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n[dn]\nO = Test UKI Signing Key\n\
                  [ext]\nkeyUsage = critical, digitalSignature, keyCertSign\nextendedKeyUsage = serverAuth, clientAuth\n\
                  basicConstraints = critical, CA:TRUE\nsubjectKeyIdentifier = hash\n";
    std::fs::write(work.path().join("req.cnf"), config).unwrap();
    let args = [
        "req", "-x509", "-newkey", "rsa:4096", "-sha512", "-nodes", "-days", "3650", "-config", "req.cnf", "-keyout",
        "key.pem", "-out", "cert.pem",
    ];
    runner().run(OPENSSL, args, Some(work.path()), None).unwrap();
    let key = SigningKey::load(&work.path().join("key.pem"), &work.path().join("cert.pem")).unwrap();
    let cmdline = "console=ttyS0 talforge.test=talosctl-key";
    let signed_uki = sign_pe(&uki(&inputs, cmdline), &key, EPOCH).unwrap();
    std::fs::write(work.path().join("signed.efi"), &signed_uki).unwrap();
    let sbverify = runner().run(SBVERIFY, ["--cert", "cert.pem", "signed.efi"], Some(work.path()), None);
    assert!(sbverify.is_err(), "sbverify accepted a serverAuth/clientAuth certificate");

    let vars = work.path().join("vars.fd");
    std::fs::copy(OVMF_VARS, &vars).unwrap();
    let signed_sd_boot = sign_pe(&inputs.sd_boot, &key, EPOCH).unwrap();
    let run = secure_boot_run(work.path(), &vars, &signed_sd_boot, &signed_uki, &key, BOOT_DEADLINE);
    eprintln!("secure boot with a talosctl-shaped key: {:.1} s", run.elapsed.as_secs_f64());
    assert_secure_boot(&run, cmdline);
}
