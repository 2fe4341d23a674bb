//! The acceleration probe's guest: a 64 KiB firmware image, generated here so the probe needs no files, that
//! QEMU loads with `-bios`. From the reset vector it does what every OS loader does before a kernel runs:
//!
//! 1. real mode: prints `R` on COM1 (port 0x3f8), loads a GDT, sets CR0.PE;
//! 2. 32-bit protected mode: prints `P`, builds page tables identity-mapping the first GiB with 2 MiB pages,
//!    enables PAE, EFER.LME and paging;
//! 3. 64-bit long mode: prints `L`, writes a pattern over 32 MiB of RAM and reads it back (a kernel
//!    decompressing itself touches tens of MiB; on hosts where KVM opens but guests "hang", they crawl
//!    through exactly such page faults: this host's KVM took 23 s for 16 MiB, TCG 0.1 s);
//! 4. prints [`PROBE_OK`] (or [`PROBE_BAD_MEMORY`] when a read differs) and halts.
//!
//! The GDT descriptors have their accessed bits set: the image is ROM, and a CPU setting the bit itself
//! writes to ROM, which this host's KVM never completes (the far jump into protected mode hung with CR0.PE
//! set; SeaBIOS sets the bits for the same reason).
//!
//! The image is mapped at 4 GiB − 64 KiB and aliased below 1 MiB at 0xF0000 (QEMU's isa-bios region); the
//! reset vector jumps to F000:0000, so everything runs from the alias and one identity map covers it.

/// The line the probe prints when it ran to the end with memory intact.
pub const PROBE_OK: &str = "TALFORGE-ACCEL-PROBE ok";
/// The line it prints when memory read back differs from what it wrote.
pub const PROBE_BAD_MEMORY: &str = "TALFORGE-ACCEL-PROBE bad-memory";
/// Stage letters, in order: real mode, protected mode, long mode.
pub const PROBE_STAGES: [u8; 3] = *b"RPL";
/// RAM the probe writes and verifies, from 2 MiB up (the guest needs 2 MiB + this).
pub const PROBE_MEMORY_BYTES: u32 = 32 << 20;
/// Guest RAM for the probe VM, in MiB.
pub const PROBE_GUEST_MIB: u32 = 64;

/// Where the image appears below 1 MiB.
const BASE: u32 = 0xF_0000;
const SIZE: usize = 0x1_0000;
const RESET_VECTOR: usize = 0xFFF0;
/// Page tables: PML4 at 0x1000, PDPT at 0x2000, one PD at 0x3000.
const PML4: u32 = 0x1000;
const PDPT: u32 = 0x2000;
const PD: u32 = 0x3000;
const FILL_START: u32 = 0x20_0000;
const PATTERN_STEP: u64 = 0x9E37_79B9_7F4A_7C15;
const COM1: u16 = 0x3f8;

#[derive(Clone, Copy)]
enum Label {
    Start,
    Pm32,
    Lm64,
    PdLoop,
    Fill,
    Verify,
    Bad,
    Print,
    Halt,
    Gdt,
    Gdtr,
    OkMsg,
    BadMsg,
}
const LABELS: usize = 13;

enum Fix {
    /// A rel8 displacement ending at the fixup's position + 1.
    Rel8(Label),
    /// The label's offset in the image (a real-mode offset from CS = F000).
    Off16(Label),
    /// The label's linear address.
    Abs32(Label),
}

struct Asm {
    code: Vec<u8>,
    labels: [usize; LABELS],
    fixes: Vec<(usize, Fix)>,
}

impl Asm {
    fn b(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.b(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.b(&v.to_le_bytes())
    }

    fn label(&mut self, l: Label) -> &mut Self {
        self.labels[l as usize] = self.code.len();
        self
    }

    fn fix(&mut self, f: Fix, width: usize) -> &mut Self {
        self.fixes.push((self.code.len(), f));
        self.code.extend(std::iter::repeat_n(0, width));
        self
    }

    /// A short jump (`opcode` rel8) to `l`.
    fn jump8(&mut self, opcode: u8, l: Label) -> &mut Self {
        self.b(&[opcode]).fix(Fix::Rel8(l), 1)
    }

    fn finish(mut self) -> Vec<u8> {
        for (at, f) in std::mem::take(&mut self.fixes) {
            match f {
                Fix::Rel8(l) => {
                    let rel = self.labels[l as usize] as isize - (at as isize + 1);
                    self.code[at] = rel as i8 as u8;
                }
                Fix::Off16(l) => {
                    let v = self.labels[l as usize] as u16;
                    self.code[at..at + 2].copy_from_slice(&v.to_le_bytes());
                }
                Fix::Abs32(l) => {
                    let v = BASE + self.labels[l as usize] as u32;
                    self.code[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        self.code
    }
}

/// The 64 KiB probe firmware.
pub fn probe_firmware() -> Vec<u8> {
    use Label::*;
    let mut a = Asm { code: Vec::with_capacity(SIZE), labels: [0; LABELS], fixes: Vec::new() };
    let com1 = COM1.to_le_bytes();
    let [r, p, l] = PROBE_STAGES;

    // Real mode (16-bit code), CS = F000.
    a.label(Start);
    a.b(&[0xfa]); // cli
    a.b(&[0xfc]); // cld
    a.b(&[0xba]).b(&com1); // mov $0x3f8, %dx
    a.b(&[0xb0, r, 0xee]); // mov $'R', %al; out %al, (%dx)
    a.b(&[0x2e, 0x66, 0x0f, 0x01, 0x16]).fix(Fix::Off16(Gdtr), 2); // lgdtl %cs:gdtr
    a.b(&[0x0f, 0x20, 0xc0]); // mov %cr0, %eax
    a.b(&[0x66, 0x83, 0xc8, 0x01]); // or $1, %eax (PE)
    a.b(&[0x0f, 0x22, 0xc0]); // mov %eax, %cr0
    a.b(&[0x66, 0xea]).fix(Fix::Abs32(Pm32), 4).u16(0x08); // ljmpl $0x08, $pm32

    // 32-bit protected mode.
    a.label(Pm32);
    a.b(&[0x66, 0xb8]).u16(0x10); // mov $0x10, %ax
    a.b(&[0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0]); // mov %ax, %ds; %es; %ss
    a.b(&[0xb0, p, 0xee]); // 'P'
    a.b(&[0xbf]).u32(PML4); // mov $PML4, %edi
    a.b(&[0x31, 0xc0]); // xor %eax, %eax
    a.b(&[0xb9]).u32(3 * 4096 / 4); // mov $(3 pages in dwords), %ecx
    a.b(&[0xf3, 0xab]); // rep stosl
    a.b(&[0xc7, 0x05]).u32(PML4).u32(PDPT | 3); // movl $(PDPT|P|W), PML4
    a.b(&[0xc7, 0x05]).u32(PDPT).u32(PD | 3); // movl $(PD|P|W), PDPT
    a.b(&[0xbf]).u32(PD); // mov $PD, %edi
    a.b(&[0xb8]).u32(0x83); // mov $(P|W|PS), %eax
    a.b(&[0xb9]).u32(512); // mov $512, %ecx
    a.label(PdLoop);
    a.b(&[0x89, 0x07]); // mov %eax, (%edi)
    a.b(&[0x05]).u32(0x20_0000); // add $2MiB, %eax
    a.b(&[0x83, 0xc7, 0x08]); // add $8, %edi
    a.b(&[0x49]); // dec %ecx
    a.jump8(0x75, PdLoop); // jnz
    a.b(&[0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0]); // cr4 |= PAE
    a.b(&[0xb8]).u32(PML4).b(&[0x0f, 0x22, 0xd8]); // mov $PML4, %eax; mov %eax, %cr3
    a.b(&[0xb9]).u32(0xC000_0080); // mov $EFER, %ecx
    a.b(&[0x0f, 0x32]); // rdmsr
    a.b(&[0x0d]).u32(0x100); // or $LME, %eax
    a.b(&[0x0f, 0x30]); // wrmsr
    a.b(&[0x0f, 0x20, 0xc0]); // mov %cr0, %eax
    a.b(&[0x0d]).u32(0x8000_0000); // or $PG, %eax
    a.b(&[0x0f, 0x22, 0xc0]); // mov %eax, %cr0
    a.b(&[0xea]).fix(Fix::Abs32(Lm64), 4).u16(0x18); // ljmp $0x18, $lm64

    // 64-bit long mode (rdmsr clobbered %edx).
    a.label(Lm64);
    a.b(&[0x66, 0xba]).b(&com1); // mov $0x3f8, %dx
    a.b(&[0xb0, l, 0xee]); // 'L'
    a.b(&[0xbf]).u32(FILL_START); // mov $FILL_START, %edi
    a.b(&[0xb9]).u32(PROBE_MEMORY_BYTES / 8); // mov $qwords, %ecx
    a.b(&[0x48, 0xbb]).b(&PATTERN_STEP.to_le_bytes()); // movabs $STEP, %rbx
    a.b(&[0x48, 0x89, 0xd8]); // mov %rbx, %rax
    a.label(Fill);
    a.b(&[0x48, 0x89, 0x07]); // mov %rax, (%rdi)
    a.b(&[0x48, 0x83, 0xc7, 0x08]); // add $8, %rdi
    a.b(&[0x48, 0x01, 0xd8]); // add %rbx, %rax
    a.b(&[0xff, 0xc9]); // dec %ecx
    a.jump8(0x75, Fill); // jnz
    a.b(&[0xbf]).u32(FILL_START);
    a.b(&[0xb9]).u32(PROBE_MEMORY_BYTES / 8);
    a.b(&[0x48, 0x89, 0xd8]); // mov %rbx, %rax
    a.label(Verify);
    a.b(&[0x48, 0x39, 0x07]); // cmp %rax, (%rdi)
    a.jump8(0x75, Bad); // jne
    a.b(&[0x48, 0x83, 0xc7, 0x08]); // add $8, %rdi
    a.b(&[0x48, 0x01, 0xd8]); // add %rbx, %rax
    a.b(&[0xff, 0xc9]); // dec %ecx
    a.jump8(0x75, Verify); // jnz
    a.b(&[0xbe]).fix(Fix::Abs32(OkMsg), 4); // mov $okmsg, %esi
    a.jump8(0xeb, Print); // jmp
    a.label(Bad);
    a.b(&[0xbe]).fix(Fix::Abs32(BadMsg), 4); // mov $badmsg, %esi
    a.label(Print);
    a.b(&[0xac]); // lodsb
    a.b(&[0x84, 0xc0]); // test %al, %al
    a.jump8(0x74, Halt); // jz
    a.b(&[0xee]); // out %al, (%dx)
    a.jump8(0xeb, Print); // jmp
    a.label(Halt);
    a.b(&[0xfa, 0xf4]); // cli; hlt
    a.jump8(0xeb, Halt); // jmp

    // Data: the GDT (null, 32-bit code 0x08, data 0x10, 64-bit code 0x18; accessed bits set), its pointer,
    // the messages.
    while !a.code.len().is_multiple_of(8) {
        a.b(&[0x90]);
    }
    a.label(Gdt);
    for d in [0u64, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF, 0x00AF_9B00_0000_FFFF] {
        a.b(&d.to_le_bytes());
    }
    a.label(Gdtr);
    a.u16(4 * 8 - 1).fix(Fix::Abs32(Gdt), 4);
    a.label(OkMsg);
    a.b(format!("\n{PROBE_OK}\n\0").as_bytes());
    a.label(BadMsg);
    a.b(format!("\n{PROBE_BAD_MEMORY}\n\0").as_bytes());

    // The reset vector (F000:FFF0): ljmp $0xf000, $start.
    a.code.resize(RESET_VECTOR, 0);
    a.b(&[0xea]).fix(Fix::Off16(Start), 2).u16(0xf000);
    a.code.resize(SIZE, 0);
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The code as a hex listing. It was checked against GNU as 2.40 assembling the same program (identical but
    /// for one alignment byte: `nop` here, `66 90` there); it runs under TCG (`tests/it/accel.rs`) and, on the
    /// development host, under KVM with `-cpu kvm64`. Any change to the generator shows here as a listing diff.
    #[test]
    fn image_layout() {
        let img = probe_firmware();
        assert_eq!(img.len(), SIZE);
        assert_eq!(&img[RESET_VECTOR..RESET_VECTOR + 5], &[0xea, 0x00, 0x00, 0x00, 0xf0]);
        let code_end = img[..RESET_VECTOR].iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        let listing: String = img[..code_end]
            .chunks(16)
            .enumerate()
            .map(|(i, c)| {
                let hex: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
                format!("{:04x}: {}\n", i * 16, hex.join(" "))
            })
            .collect();
        insta::assert_snapshot!(listing);
    }
}
