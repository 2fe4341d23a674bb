//! Unified kernel image (UKI) assembly: the systemd stub PE with the kernel, initrd, command line, os-release and
//! friends appended as extra sections, laid out the way Talos's imager does it (talos
//! `internal/pkg/uki/internal/pe/native.go` `AssembleNative`, section order from `internal/pkg/uki/uki.go` and
//! `generate.go`), so that the same inputs give the same bytes as Talos would produce with a fixed
//! `SOURCE_DATE_EPOCH`.
//!
//! The stub's headers are rewritten directly instead of going through `object::write::pe`: that writer builds an
//! image from scratch (its own header sizes, DOS stub and section placement) and cannot keep an existing image's
//! sections, RVAs and relocations verbatim, which is exactly what appending to a stub needs. The layout rules are
//! few: the DOS header's first 64 bytes are kept with `e_lfanew = 0x80` (the DOS program is dropped), new sections
//! get RVAs from the end of the stub's last section rounded up to `SectionAlignment`, raw data is packed from
//! `SizeOfHeaders` in section-table order with each `SizeOfRawData` rounded up to `FileAlignment`, and
//! `TimeDateStamp` = epoch, `CheckSum` = 0, linker version 0.0, `SizeOfCode`/`SizeOfInitializedData`/
//! `SizeOfImage`/`SizeOfHeaders` recomputed.

use std::borrow::Cow;

use super::pe::{self, Headers, SECTION_HEADER_SIZE, Section};

/// Section characteristics of every appended section: `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`.
pub const APPENDED_SECTION_CHARACTERISTICS: u32 = 0x0000_0040 | 0x4000_0000;

/// Where the PE signature goes in the output (Talos: 64-byte DOS header + 64 bytes of zero padding).
const PE_OFFSET: usize = 0x80;

/// The most sections systemd-stub accepts (`MAX_SECTIONS` in systemd's `src/boot/efi/pe.c`).
pub const MAX_SECTIONS: usize = 96;

/// The systemd version that introduced UKI profiles (`.profile` sections, systemd v257). Older stubs treat
/// repeated `.cmdline` sections as "last one wins", so a profile's command line would replace the main one.
pub const MIN_STUB_VERSION_FOR_PROFILES: u32 = 257;

/// Kernel argument Talos adds to the reset profiles.
pub const KERNEL_PARAM_WIPE: &str = "talos.experimental.wipe";

/// Everything a UKI is made of. `Default` gives empty inputs and no profiles, for struct-update syntax.
#[derive(Debug, Clone, Default)]
pub struct UkiInputs<'a> {
    /// The systemd stub (`linuxx64.efi.stub` / Talos's `systemd-stub.efi`), PE32+.
    pub stub: &'a [u8],
    /// The kernel image (`vmlinuz`, an EFI-stub PE) → `.linux`.
    pub kernel: &'a [u8],
    /// The initramfs → `.initrd`.
    pub initrd: &'a [u8],
    /// The kernel command line → `.cmdline` (written as is: no trailing NUL or newline).
    pub cmdline: &'a str,
    /// os-release text → `.osrel`.
    pub os_release: &'a str,
    /// Kernel release (`uname -r`) → `.uname`; Talos leaves it out when it cannot tell the kernel version.
    pub uname: Option<&'a str>,
    /// Boot splash (BMP) → `.splash`; Talos always adds its logo.
    pub splash: Option<&'a [u8]>,
    /// PCR signing public key (PEM) → `.pcrpkey`; Talos adds it to Secure Boot UKIs.
    pub pcr_public_key: Option<&'a [u8]>,
    /// `None`: no `.profile` sections (Talos < 1.10). `Some(extra)`: the `ID=main` profile, then `extra` in order
    /// (Talos ≥ 1.10; image/installer add [`UkiProfile::reset_maintenance`], ISO adds [`UkiProfile::reset`]).
    pub profiles: Option<&'a [UkiProfile]>,
    /// `SOURCE_DATE_EPOCH`: the PE `TimeDateStamp` (must fit in 32 bits).
    pub epoch: u64,
}

/// An extra UKI profile (systemd ≥ 257): a `.profile` section, followed by a `.cmdline` section if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiProfile {
    /// `ID=` value; `main` is reserved for the default profile.
    pub id: String,
    /// `TITLE=` value (left out when empty).
    pub title: Option<String>,
    /// Command line for this profile (no `.cmdline` section when empty).
    pub cmdline: Option<String>,
}

impl UkiProfile {
    /// Talos's disk-image and installer profile: wipe STATE and EPHEMERAL and boot into maintenance mode.
    pub fn reset_maintenance(cmdline: &str) -> Self {
        UkiProfile {
            id: "reset-maintenance".to_owned(),
            title: Some("Reset to maintenance mode".to_owned()),
            cmdline: Some(format!("{cmdline} {KERNEL_PARAM_WIPE}=system:EPHEMERAL,STATE")),
        }
    }

    /// Talos's ISO profile: wipe the whole system disk.
    pub fn reset(cmdline: &str) -> Self {
        UkiProfile {
            id: "reset".to_owned(),
            title: Some("Reset system disk".to_owned()),
            cmdline: Some(format!("{cmdline} {KERNEL_PARAM_WIPE}=system")),
        }
    }

    /// The `.profile` section text: `ID=<id>` and, with a title, `\nTITLE=<title>` (no trailing newline).
    pub fn section_text(&self) -> String {
        match self.title.as_deref().filter(|t| !t.is_empty()) {
            Some(title) => format!("ID={}\nTITLE={title}", self.id),
            None => format!("ID={}", self.id),
        }
    }

    fn cmdline(&self) -> Option<&str> {
        self.cmdline.as_deref().filter(|c| !c.is_empty())
    }
}

/// What can go wrong assembling a UKI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UkiError {
    /// The stub is not a PE image this builder can extend.
    #[error("systemd stub: {0}")]
    Stub(String),
    /// The epoch does not fit the 32-bit PE timestamp.
    #[error("source date epoch: expected at most 4294967295 (the pe timestamp is 32 bits); found {0}")]
    Epoch(u64),
    /// A profile is invalid, or the stub cannot boot it correctly.
    #[error("uki profile {id:?}: {message}")]
    Profile { id: String, message: String },
    /// The image would not fit the PE format's 32-bit fields or systemd-stub's limits.
    #[error("uki layout: {0}")]
    Layout(String),
}

/// One section of a built UKI, as read back from its section table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiSection {
    pub name: String,
    pub virtual_address: u32,
    pub virtual_size: u32,
    pub pointer_to_raw_data: u32,
    pub size_of_raw_data: u32,
    pub characteristics: u32,
}

/// A section to append: name and contents.
type NewSection<'a> = (&'static str, Cow<'a, [u8]>);

/// The sections to append, in Talos's order: `.osrel`, `.cmdline`, `.uname`, `.splash`, `.pcrpkey`, `.linux`,
/// `.initrd`, then per profile `.profile` (+ `.cmdline`). (`.sbat` stays where the stub has it; `.pcrsig` is not
/// produced here.)
fn appended_sections<'a>(inputs: &'a UkiInputs<'a>) -> Result<Vec<NewSection<'a>>, UkiError> {
    let mut out: Vec<NewSection<'a>> = vec![
        (".osrel", Cow::Borrowed(inputs.os_release.as_bytes())),
        (".cmdline", Cow::Borrowed(inputs.cmdline.as_bytes())),
    ];
    if let Some(uname) = inputs.uname {
        out.push((".uname", Cow::Borrowed(uname.as_bytes())));
    }
    if let Some(splash) = inputs.splash {
        out.push((".splash", Cow::Borrowed(splash)));
    }
    if let Some(key) = inputs.pcr_public_key {
        out.push((".pcrpkey", Cow::Borrowed(key)));
    }
    out.push((".linux", Cow::Borrowed(inputs.kernel)));
    out.push((".initrd", Cow::Borrowed(inputs.initrd)));
    if let Some(extra) = inputs.profiles {
        let main = UkiProfile { id: "main".to_owned(), title: None, cmdline: None };
        let mut seen = vec![main.id.as_str()];
        for p in extra {
            let err = |message: String| UkiError::Profile { id: p.id.clone(), message };
            if p.id == "main" {
                return Err(err(
                    "expected an id other than \"main\" (reserved for the default profile); found \"main\"".into(),
                ));
            }
            if p.id.is_empty() || p.id.contains('\n') || p.title.as_deref().is_some_and(|t| t.contains('\n')) {
                return Err(err(
                    "expected a non-empty id without newlines and a one-line title; found otherwise".into()
                ));
            }
            if seen.contains(&p.id.as_str()) {
                return Err(err("expected unique profile ids; found this id twice".into()));
            }
            seen.push(&p.id);
        }
        for p in std::iter::once(&main).chain(extra) {
            out.push((".profile", Cow::Owned(p.section_text().into_bytes())));
            if let Some(cmdline) = p.cmdline() {
                out.push((".cmdline", Cow::Owned(cmdline.as_bytes().to_vec())));
            }
        }
    }
    Ok(out)
}

/// The systemd version recorded in the stub's `.sdmagic` section (`#### LoaderInfo: systemd-stub 252.39-1~deb12u2
/// ####` → `"252.39-1~deb12u2"`), if it has one.
pub fn stub_version(stub: &[u8]) -> Result<Option<String>, UkiError> {
    let headers = Headers::parse(stub).map_err(UkiError::Stub)?;
    Ok(headers.section(".sdmagic").and_then(|s| {
        let raw = &stub[s.raw_range()];
        let text = &raw[..raw.len().min(s.virtual_size as usize)];
        let text = String::from_utf8_lossy(text);
        let rest = text.split("systemd-stub ").nth(1)?;
        let version = rest.split_whitespace().next()?;
        Some(version.to_owned())
    }))
}

/// The kernel release (`uname -r`) recorded in an x86 bzImage's setup header, as Talos's `DiscoverKernelVersion`
/// reads it: the NUL-terminated string at `kernel_version + 0x200` (boot protocol field at 0x20e), up to the first
/// space. `None` for images without the `HdrS` header (arm64 `Image`) or without a version string.
pub fn kernel_release(kernel: &[u8]) -> Option<String> {
    if kernel.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let setup_sects = usize::from(*kernel.get(0x1f1)?);
    let offset = usize::from(pe::u16_at(kernel, 0x20e)?);
    if offset == 0 || offset > setup_sects * 0x200 {
        return None;
    }
    let text = kernel.get(offset + 0x200..)?;
    let text = &text[..text.len().min(256)];
    let end = text.iter().position(|b| *b == 0)?;
    let version = std::str::from_utf8(&text[..end]).ok()?;
    version.split(' ').next().map(str::to_owned)
}

/// The major number of a systemd version string (`"252.39-1~deb12u2"` → 252).
pub fn major_version(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Builds the unsigned UKI. The same inputs always give the same bytes.
pub fn build_uki(inputs: &UkiInputs<'_>) -> Result<Vec<u8>, UkiError> {
    let stub = inputs.stub;
    let headers = Headers::parse(stub).map_err(UkiError::Stub)?;
    if headers.magic != pe::PE32_PLUS_MAGIC {
        return Err(UkiError::Stub(format!("expected a pe32+ image (magic 0x20b); found magic 0x{:x}", headers.magic)));
    }
    if headers.size_of_optional_header != 240 || headers.number_of_rva_and_sizes != 16 {
        return Err(UkiError::Stub(format!(
            "expected a 240-byte optional header with 16 data directories; found {} bytes with {} directories",
            headers.size_of_optional_header, headers.number_of_rva_and_sizes
        )));
    }
    if headers.pe_offset < 0x40 {
        return Err(UkiError::Stub(format!(
            "expected the pe header after the 64-byte dos header; found it at 0x{:x}",
            headers.pe_offset
        )));
    }
    let timestamp = u32::try_from(inputs.epoch).map_err(|_| UkiError::Epoch(inputs.epoch))?;
    if inputs.kernel.is_empty() {
        return Err(UkiError::Layout("expected a kernel image for .linux; found 0 bytes".to_owned()));
    }

    let appended = appended_sections(inputs)?;
    if let Some(p) = inputs.profiles.and_then(|extra| extra.iter().find(|p| p.cmdline().is_some())) {
        // Old stubs take the last `.cmdline` section, which would be this profile's: refuse rather than build an
        // image whose default entry wipes the disk.
        if let Some(version) = stub_version(stub)?
            && major_version(&version).is_some_and(|v| v < MIN_STUB_VERSION_FOR_PROFILES)
        {
            return Err(UkiError::Profile {
                id: p.id.clone(),
                message: format!(
                    "expected a systemd-stub >= {MIN_STUB_VERSION_FOR_PROFILES} for profiles with a command line; found systemd-stub {version}"
                ),
            });
        }
    }

    let total = headers.sections.len() + appended.len();
    if total > MAX_SECTIONS {
        return Err(UkiError::Layout(format!("expected at most {MAX_SECTIONS} sections; found {total}")));
    }
    let section_alignment = u64::from(headers.section_alignment);
    let file_alignment = u64::from(headers.file_alignment);
    let overflow =
        || UkiError::Layout("expected the image to fit the 32-bit pe address space; found it does not".into());
    let to_u32 = |v: u64| u32::try_from(v).map_err(|_| overflow());

    // Section table: the stub's sections as they are, then the new ones.
    let mut table: Vec<Section> = headers.sections.clone();
    // Talos starts after the last section in table order; taking the highest end is the same for real stubs and
    // cannot overlap a stub whose table is not sorted by address. A zero VirtualSize means SizeOfRawData.
    let stub_end = headers
        .sections
        .iter()
        .map(|s| {
            let size = if s.virtual_size == 0 { s.size_of_raw_data } else { s.virtual_size };
            u64::from(s.virtual_address) + u64::from(size)
        })
        .max()
        .unwrap_or(0);
    let mut next_va = pe::align_up(stub_end, section_alignment).ok_or_else(overflow)?;
    for (name, data) in &appended {
        let mut raw_name = [0u8; 8];
        raw_name[..name.len()].copy_from_slice(name.as_bytes());
        let size = data.len() as u64;
        table.push(Section {
            name: raw_name,
            virtual_size: to_u32(size)?,
            virtual_address: to_u32(next_va)?,
            size_of_raw_data: to_u32(pe::align_up(size, file_alignment).ok_or_else(overflow)?)?,
            pointer_to_raw_data: 0,
            characteristics: APPENDED_SECTION_CHARACTERISTICS,
        });
        next_va = pe::align_up(next_va + size, section_alignment).ok_or_else(overflow)?;
    }
    let headers_end = (PE_OFFSET + 4 + pe::COFF_HEADER_SIZE + 240 + table.len() * SECTION_HEADER_SIZE) as u64;
    let size_of_headers = to_u32(pe::align_up(headers_end, file_alignment).ok_or_else(overflow)?)?;
    let mut offset = u64::from(size_of_headers);
    let (mut size_of_code, mut size_of_initialized_data) = (0u64, 0u64);
    for s in &mut table {
        s.pointer_to_raw_data = to_u32(offset)?;
        offset += u64::from(s.size_of_raw_data);
        if s.characteristics & 0x40 != 0 {
            size_of_initialized_data += u64::from(s.size_of_raw_data);
        } else {
            size_of_code += u64::from(s.size_of_raw_data);
        }
    }
    let file_size = usize::try_from(offset).map_err(|_| overflow())?;
    let last_new = table.last().ok_or_else(overflow)?;
    let size_of_image = to_u32(
        pe::align_up(u64::from(last_new.virtual_address) + u64::from(last_new.virtual_size), section_alignment)
            .ok_or_else(overflow)?,
    )?;

    let mut out = vec![0u8; file_size];
    // DOS header (first 64 bytes, e_lfanew = 0x80), zero padding, PE signature.
    out[..0x40].copy_from_slice(&stub[..0x40]);
    pe::put_u32(&mut out, 0x3c, PE_OFFSET as u32);
    out[PE_OFFSET..PE_OFFSET + 4].copy_from_slice(b"PE\0\0");
    // COFF header: copied, with the section count, the epoch, and no COFF symbol table (systemd's Debian builds
    // carry one after the last section; it is not loaded, and it would not survive the re-layout anyway).
    let coff_in = headers.pe_offset + 4;
    let coff_out = PE_OFFSET + 4;
    out[coff_out..coff_out + pe::COFF_HEADER_SIZE].copy_from_slice(&stub[coff_in..coff_in + pe::COFF_HEADER_SIZE]);
    pe::put_u16(&mut out, coff_out + pe::coff::NUMBER_OF_SECTIONS, table.len() as u16);
    pe::put_u32(&mut out, coff_out + pe::coff::TIME_DATE_STAMP, timestamp);
    pe::put_u32(&mut out, coff_out + pe::coff::POINTER_TO_SYMBOL_TABLE, 0);
    pe::put_u32(&mut out, coff_out + pe::coff::NUMBER_OF_SYMBOLS, 0);
    // Optional header: copied, with the recomputed sizes, CheckSum 0 and linker version 0.0.
    let opt_out = coff_out + pe::COFF_HEADER_SIZE;
    out[opt_out..opt_out + 240].copy_from_slice(&stub[headers.opt_offset..headers.opt_offset + 240]);
    out[opt_out + pe::opt::MAJOR_LINKER_VERSION] = 0;
    out[opt_out + pe::opt::MINOR_LINKER_VERSION] = 0;
    pe::put_u32(&mut out, opt_out + pe::opt::SIZE_OF_CODE, to_u32(size_of_code)?);
    pe::put_u32(&mut out, opt_out + pe::opt::SIZE_OF_INITIALIZED_DATA, to_u32(size_of_initialized_data)?);
    pe::put_u32(&mut out, opt_out + pe::opt::SIZE_OF_IMAGE, size_of_image);
    pe::put_u32(&mut out, opt_out + pe::opt::SIZE_OF_HEADERS, size_of_headers);
    pe::put_u32(&mut out, opt_out + pe::opt::CHECKSUM, 0);
    // A signed stub's certificate table is not carried over (its bytes are dropped), so its directory entry goes.
    let cert_dir = opt_out + pe::opt::DATA_DIRECTORIES_64 + pe::CERTIFICATE_TABLE * 8;
    out[cert_dir..cert_dir + 8].fill(0);
    // Section table: name, sizes, addresses, characteristics; relocation/line-number fields zero.
    let table_out = opt_out + 240;
    for (i, s) in table.iter().enumerate() {
        let at = table_out + i * SECTION_HEADER_SIZE;
        out[at..at + 8].copy_from_slice(&s.name);
        pe::put_u32(&mut out, at + 8, s.virtual_size);
        pe::put_u32(&mut out, at + 12, s.virtual_address);
        pe::put_u32(&mut out, at + 16, s.size_of_raw_data);
        pe::put_u32(&mut out, at + 20, s.pointer_to_raw_data);
        pe::put_u32(&mut out, at + 36, s.characteristics);
    }
    // Section data, zero-padded to SizeOfRawData (the buffer is already zeroed).
    let stub_count = headers.sections.len();
    for (i, s) in table.iter().enumerate() {
        let data: &[u8] = match i.checked_sub(stub_count) {
            None => &stub[headers.sections[i].raw_range()],
            Some(j) => &appended[j].1,
        };
        let start = s.pointer_to_raw_data as usize;
        out[start..start + data.len()].copy_from_slice(data);
    }
    Ok(out)
}

/// The section table of a PE image (a built UKI, or any PE), for inspection and tests.
pub fn read_sections(image: &[u8]) -> Result<Vec<UkiSection>, UkiError> {
    let headers = Headers::parse(image).map_err(UkiError::Stub)?;
    Ok(headers
        .sections
        .iter()
        .map(|s| UkiSection {
            name: s.name_str(),
            virtual_address: s.virtual_address,
            virtual_size: s.virtual_size,
            pointer_to_raw_data: s.pointer_to_raw_data,
            size_of_raw_data: s.size_of_raw_data,
            characteristics: s.characteristics,
        })
        .collect())
}

/// The contents (`VirtualSize` bytes) of every section named `name`, in table order.
pub fn section_data<'a>(image: &'a [u8], name: &str) -> Result<Vec<&'a [u8]>, UkiError> {
    let headers = Headers::parse(image).map_err(UkiError::Stub)?;
    Ok(headers
        .sections
        .iter()
        .filter(|s| s.name_str() == name)
        .map(|s| {
            let raw = &image[s.raw_range()];
            &raw[..raw.len().min(s.virtual_size as usize)]
        })
        .collect())
}
