//! The QEMU and swtpm command lines of a [`VmPlan`], as pure functions (snapshot-tested per shipped profile).
//!
//! Rules (docs/testbed.md has the reasoning):
//! - Nothing implicit: `-nodefaults -no-user-config -display none`; every device is on the command line.
//! - Devices sit on q35's root bus in command-line order: NICs first, then disks and their controllers, so
//!   PCI addresses are a function of the profile. Device and drive IDs are positional (`nic0`, `disk0`); the
//!   plan maps them back to profile names.
//! - Option values are escaped QEMU's way (a comma doubled), so any path works.
//! - Disks are raw files with `cache=unsafe` (a lab VM's disks are thrown away with it; ignoring flushes
//!   makes etcd's fsyncs cheap) and `discard=unmap` (guest TRIM punches holes, so images stay sparse).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};

use talforge_builder::spec::profile::DiskDevice;

use super::Accel;
use super::plan::{AHCI_PORTS, BootMedium, DiskPlan, FirmwarePlan, RebootAction, TpmPlan, VmPlan};

/// `-accel` and `-cpu` for an accelerator. Under KVM the guest gets the host CPU (`host`), so the vmx/svm
/// flag reaches it when the host allows nested virtualization, as KubeVirt needs; under TCG `max` is every
/// feature TCG emulates. TCG runs one host thread per vCPU (`thread=multi`).
pub fn accel_args(accel: Accel) -> [&'static str; 4] {
    match accel {
        Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
        Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
    }
}

/// A QEMU option list (`driver,key=value,...`): values are escaped by doubling commas.
struct Opts(Vec<u8>);

impl Opts {
    fn new(head: &str) -> Opts {
        Opts(head.as_bytes().to_vec())
    }

    fn kv(mut self, key: &str, value: impl AsRef<OsStr>) -> Opts {
        if !self.0.is_empty() {
            self.0.push(b',');
        }
        self.0.extend_from_slice(key.as_bytes());
        self.0.push(b'=');
        for &b in value.as_ref().as_bytes() {
            self.0.push(b);
            if b == b',' {
                self.0.push(b',');
            }
        }
        self
    }

    fn kv_opt(self, key: &str, value: Option<impl AsRef<OsStr>>) -> Opts {
        match value {
            Some(v) => self.kv(key, v),
            None => self,
        }
    }

    fn done(self) -> OsString {
        OsString::from_vec(self.0)
    }
}

struct Argv(Vec<OsString>);

impl Argv {
    fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.0.push(a.into());
        self
    }

    fn opt(&mut self, flag: &str, opts: Opts) -> &mut Self {
        self.arg(flag).arg(opts.done())
    }
}

/// QEMU's arguments (without the program) for `vm` under `accel`.
pub fn qemu_args(vm: &VmPlan, accel: Accel) -> Vec<OsString> {
    let mut a = Argv(Vec::new());
    a.opt("-name", Opts::new("").kv("guest", &vm.node));
    a.arg("-nodefaults").arg("-no-user-config").arg("-display").arg("none");

    // Machine, accelerator, CPUs, memory.
    let secure_boot = matches!(vm.firmware, FirmwarePlan::Uefi { secure_boot: true, .. });
    a.opt("-machine", if secure_boot { Opts::new(&vm.machine).kv("smm", "on") } else { Opts::new(&vm.machine) });
    for s in accel_args(accel) {
        a.arg(s);
    }
    a.arg("-smp").arg(vm.cpus.to_string());
    a.arg("-m").arg(format!("{}M", vm.memory_mib));

    // Firmware: OVMF code read-only at unit 0, the VM's variable store at unit 1; Secure Boot firmware keeps
    // its variables in SMM-protected flash.
    if let FirmwarePlan::Uefi { code, vars, .. } = &vm.firmware {
        if secure_boot {
            a.opt("-global", Opts::new("").kv("driver", "cfi.pflash01").kv("property", "secure").kv("value", "on"));
        }
        a.opt(
            "-drive",
            Opts::new("").kv("if", "pflash").kv("format", "raw").kv("unit", "0").kv("readonly", "on").kv("file", code),
        );
        a.opt("-drive", Opts::new("").kv("if", "pflash").kv("format", "raw").kv("unit", "1").kv("file", vars));
    }

    // SMBIOS type 1 (and type 11 OEM strings).
    let s = &vm.smbios;
    a.opt(
        "-smbios",
        Opts::new("")
            .kv("type", "1")
            .kv_opt("manufacturer", s.manufacturer.as_ref())
            .kv_opt("product", s.product.as_ref())
            .kv_opt("version", s.version.as_ref())
            .kv("serial", &s.serial)
            .kv("uuid", s.uuid.to_string())
            .kv_opt("sku", s.sku.as_ref())
            .kv_opt("family", s.family.as_ref()),
    );
    for oem in &s.oem_strings {
        a.opt("-smbios", Opts::new("").kv("type", "11").kv("value", oem));
    }

    // Control and console: QMP and the serial port are sockets QEMU listens on; the console log records what
    // the guest writes whether or not a client is connected, and is appended to across relaunches.
    a.opt(
        "-chardev",
        Opts::new("socket").kv("id", "qmp").kv("path", &vm.qmp_socket).kv("server", "on").kv("wait", "off"),
    );
    a.opt("-mon", Opts::new("").kv("chardev", "qmp").kv("mode", "control"));
    let bios = matches!(vm.firmware, FirmwarePlan::Bios);
    let console = Opts::new("socket")
        .kv("id", "console")
        .kv("path", &vm.console.socket)
        .kv("server", "on")
        .kv("wait", "off")
        .kv("logfile", &vm.console.log)
        .kv("logappend", "on");
    a.opt("-chardev", if bios { console.kv("mux", "on") } else { console });
    a.arg("-serial").arg("chardev:console");
    if bios {
        // SeaBIOS logs to the debug port 0x402, not the serial port ("Booting from ..." included). Sharing the
        // console (a mux chardev; input still goes to the serial port) shows the firmware reaching the boot
        // loader in the console, as OVMF's BdsDxe lines do on UEFI.
        a.opt("-device", Opts::new("isa-debugcon").kv("iobase", "0x402").kv("chardev", "console"));
    }

    // A guest kernel panic raises GUEST_PANICKED (pvpanic) and pauses the VM for inspection instead of
    // letting `panic=` reboot it unseen.
    a.opt("-device", Opts::new("pvpanic"));
    a.opt("-action", Opts::new("").kv("panic", "pause"));
    if vm.reboot == RebootAction::Exit {
        a.arg("-no-reboot");
    }

    if let Some(t) = &vm.tpm {
        tpm_args(&mut a, t);
    }

    for (i, n) in vm.nics.iter().enumerate() {
        a.opt(
            "-netdev",
            Opts::new("tap").kv("id", format!("net{i}")).kv("ifname", &n.tap).kv("script", "no").kv("downscript", "no"),
        );
        a.opt(
            "-device",
            Opts::new(n.model.qemu_device())
                .kv("id", format!("nic{i}"))
                .kv("netdev", format!("net{i}"))
                .kv("mac", n.mac.to_string()),
        );
    }

    disk_args(&mut a, vm);

    match &vm.boot {
        BootMedium::InstallDisk => {}
        BootMedium::Kernel { kernel, initrd, cmdline } => {
            a.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd).arg("-append").arg(cmdline);
        }
        BootMedium::Cdrom { .. } => {} // with the AHCI disks
    }
    a.0
}

fn tpm_args(a: &mut Argv, t: &TpmPlan) {
    a.opt("-chardev", Opts::new("socket").kv("id", "tpm").kv("path", &t.socket));
    a.opt("-tpmdev", Opts::new("emulator").kv("id", "tpm0").kv("chardev", "tpm"));
    a.opt("-device", Opts::new("tpm-tis").kv("tpmdev", "tpm0"));
}

/// Drives and devices: virtio-blk and NVMe disks each on their own PCI function (one NVMe controller per
/// disk, so the serial is the disk's); SCSI disks on one virtio-scsi or megasas-gen2 controller each; SATA
/// disks (and the CD-ROM) on AHCI ports, q35's built-in controller (`ide.0`..`ide.5`) first.
fn disk_args(a: &mut Argv, vm: &VmPlan) {
    let mut scsi_controllers: Vec<DiskDevice> = Vec::new();
    let mut scsi_targets = [0u32; 2];
    let mut ahci_port = 0usize;
    let mut next_ahci_bus = |a: &mut Argv| -> String {
        let (controller, port) = (ahci_port / AHCI_PORTS, ahci_port % AHCI_PORTS);
        ahci_port += 1;
        if controller == 0 {
            format!("ide.{port}")
        } else {
            if port == 0 {
                a.opt("-device", Opts::new("ahci").kv("id", format!("ahci{controller}")));
            }
            format!("ahci{controller}.{port}")
        }
    };
    if let BootMedium::Cdrom { iso } = &vm.boot {
        a.opt(
            "-drive",
            Opts::new("")
                .kv("if", "none")
                .kv("id", "cdrom")
                .kv("media", "cdrom")
                .kv("readonly", "on")
                .kv("format", "raw")
                .kv("file", iso),
        );
        let bus = next_ahci_bus(a);
        a.opt("-device", Opts::new("ide-cd").kv("bus", bus).kv("drive", "cdrom").kv("bootindex", "0"));
    }
    for (i, d) in vm.disks.iter().enumerate() {
        let drive = format!("drive{i}");
        a.opt(
            "-drive",
            Opts::new("")
                .kv("if", "none")
                .kv("id", &drive)
                .kv("format", "raw")
                .kv("file", &d.image)
                .kv("cache", "unsafe")
                .kv("discard", "unmap"),
        );
        let dev = match d.device {
            DiskDevice::VirtioBlk => Opts::new("virtio-blk-pci"),
            DiskDevice::Nvme => Opts::new("nvme"),
            DiskDevice::VirtioScsi | DiskDevice::Megasas => {
                let (slot, controller, id) = match d.device {
                    DiskDevice::VirtioScsi => (0, "virtio-scsi-pci", "scsi0"),
                    _ => (1, "megasas-gen2", "megasas0"),
                };
                if !scsi_controllers.contains(&d.device) {
                    scsi_controllers.push(d.device);
                    a.opt("-device", Opts::new(controller).kv("id", id));
                }
                let target = scsi_targets[slot];
                scsi_targets[slot] += 1;
                Opts::new("scsi-hd")
                    .kv("bus", format!("{id}.0"))
                    .kv("channel", "0")
                    .kv("scsi-id", target.to_string())
                    .kv("lun", "0")
            }
            DiskDevice::Ahci => Opts::new("ide-hd").kv("bus", next_ahci_bus(a)),
        };
        let mut dev = dev.kv("id", format!("disk{i}")).kv("drive", &drive).kv("serial", &d.serial);
        if let Some(bs) = d.logical_block_size {
            dev = dev.kv("logical_block_size", bs.to_string()).kv("physical_block_size", bs.to_string());
        }
        if let (Some(rotational), DiskDevice::VirtioScsi | DiskDevice::Megasas | DiskDevice::Ahci) =
            (d.rotational, d.device)
        {
            // 1 = "non-rotating medium" (SCSI block device characteristics VPD / ATA IDENTIFY word 217); 0 =
            // not reported, which Linux treats as rotational.
            dev = dev.kv("rotation_rate", if rotational { "0" } else { "1" });
        }
        if d.role == talforge_builder::spec::profile::DiskRole::Install {
            dev = dev.kv("bootindex", "1");
        }
        a.opt("-device", dev);
    }
}

/// The PCI devices a plan puts on the command line, for checking them against `qemu -device help`.
pub fn required_devices(vm: &VmPlan) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = vec!["pvpanic"];
    if matches!(vm.firmware, FirmwarePlan::Bios) {
        out.push("isa-debugcon");
    }
    if vm.tpm.is_some() {
        out.push("tpm-tis");
    }
    out.extend(vm.nics.iter().map(|n| n.model.qemu_device()));
    let disk: fn(&DiskPlan) -> &'static [&'static str] = |d| match d.device {
        DiskDevice::VirtioBlk => &["virtio-blk-pci"],
        DiskDevice::Nvme => &["nvme"],
        DiskDevice::VirtioScsi => &["virtio-scsi-pci", "scsi-hd"],
        DiskDevice::Megasas => &["megasas-gen2", "scsi-hd"],
        DiskDevice::Ahci => &["ahci", "ide-hd"],
    };
    out.extend(vm.disks.iter().flat_map(disk));
    if matches!(vm.boot, BootMedium::Cdrom { .. }) {
        out.extend(["ahci", "ide-cd"]);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// swtpm's arguments (without the program) for a VM's TPM 2.0: state in `state_dir`, control socket for QEMU;
/// it exits when QEMU closes the connection (`--terminate`), so it never outlives its VM. No `--flags
/// startup-clear`: the firmware (OVMF or SeaBIOS) sends TPM2_Startup itself, and QEMU initializes the TPM
/// through the control channel.
pub fn swtpm_args(t: &TpmPlan) -> Vec<OsString> {
    let mut a = Argv(Vec::new());
    a.arg("socket").arg("--tpm2");
    a.opt("--tpmstate", Opts::new("").kv("dir", &t.state_dir).kv("mode", "0600"));
    a.opt("--ctrl", Opts::new("").kv("type", "unixio").kv("path", &t.socket).kv("mode", "0600"));
    a.opt("--log", Opts::new("").kv("file", &t.log));
    a.arg("--terminate");
    a.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_double_their_commas() {
        let o = Opts::new("socket").kv("id", "x").kv("path", "/a,b/c,,d").done();
        assert_eq!(o, "socket,id=x,path=/a,,b/c,,,,d");
        assert_eq!(Opts::new("").kv("type", "1").kv_opt("sku", None::<&str>).done(), "type=1");
    }
}
