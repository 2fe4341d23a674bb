//! A small, bounds-checked reader for the PE/COFF headers that UKI assembly and Authenticode signing need: the
//! DOS header's `e_lfanew`, the COFF file header, the optional header's size fields and data directories, and
//! the section table. Malformed input is an error naming what was expected, never a panic.
//!
//! Offsets follow the Microsoft PE/COFF specification; only what this crate touches is decoded, the rest of
//! the headers is copied byte for byte by the callers.

/// `IMAGE_NT_OPTIONAL_HDR64_MAGIC` (PE32+).
pub(crate) const PE32_PLUS_MAGIC: u16 = 0x20b;
/// `IMAGE_NT_OPTIONAL_HDR32_MAGIC` (PE32).
pub(crate) const PE32_MAGIC: u16 = 0x10b;
/// Size of the COFF file header that follows `PE\0\0`.
pub(crate) const COFF_HEADER_SIZE: usize = 20;
/// Size of one section header.
pub(crate) const SECTION_HEADER_SIZE: usize = 40;
/// Index of the certificate table in the data directories.
pub(crate) const CERTIFICATE_TABLE: usize = 4;

/// Offsets inside the COFF file header.
pub(crate) mod coff {
    pub const NUMBER_OF_SECTIONS: usize = 2;
    pub const TIME_DATE_STAMP: usize = 4;
    pub const POINTER_TO_SYMBOL_TABLE: usize = 8;
    pub const NUMBER_OF_SYMBOLS: usize = 12;
    pub const SIZE_OF_OPTIONAL_HEADER: usize = 16;
}

/// Offsets inside the optional header (the same for PE32 and PE32+ unless noted).
pub(crate) mod opt {
    pub const MAJOR_LINKER_VERSION: usize = 2;
    pub const MINOR_LINKER_VERSION: usize = 3;
    pub const SIZE_OF_CODE: usize = 4;
    pub const SIZE_OF_INITIALIZED_DATA: usize = 8;
    pub const SECTION_ALIGNMENT: usize = 32;
    pub const FILE_ALIGNMENT: usize = 36;
    pub const SIZE_OF_IMAGE: usize = 56;
    pub const SIZE_OF_HEADERS: usize = 60;
    pub const CHECKSUM: usize = 64;
    /// `NumberOfRvaAndSizes` in PE32+ (PE32: 92).
    pub const NUMBER_OF_RVA_AND_SIZES_64: usize = 108;
    pub const NUMBER_OF_RVA_AND_SIZES_32: usize = 92;
    /// First data directory in PE32+ (PE32: 96).
    pub const DATA_DIRECTORIES_64: usize = 112;
    pub const DATA_DIRECTORIES_32: usize = 96;
}

/// One section header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Section {
    /// The 8-byte name field (NUL-padded).
    pub name: [u8; 8],
    pub virtual_size: u32,
    pub virtual_address: u32,
    pub size_of_raw_data: u32,
    pub pointer_to_raw_data: u32,
    pub characteristics: u32,
}

impl Section {
    /// The name without its NUL padding (lossy for non-UTF-8 names).
    pub(crate) fn name_str(&self) -> String {
        let end = self.name.iter().position(|b| *b == 0).unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    /// The file range of the raw data.
    pub(crate) fn raw_range(&self) -> std::ops::Range<usize> {
        let start = self.pointer_to_raw_data as usize;
        start..start + self.size_of_raw_data as usize
    }
}

/// The parsed headers of a PE image, with the file offsets of the fields callers rewrite.
#[derive(Debug, Clone)]
pub(crate) struct Headers {
    /// `e_lfanew`: where `PE\0\0` is.
    pub pe_offset: usize,
    /// Where the optional header starts.
    pub opt_offset: usize,
    pub size_of_optional_header: usize,
    /// PE32 or PE32+ magic.
    pub magic: u16,
    pub number_of_rva_and_sizes: usize,
    /// File offset of the first data directory.
    pub data_directories_offset: usize,
    pub section_alignment: u32,
    pub file_alignment: u32,
    pub size_of_headers: u32,
    pub sections: Vec<Section>,
}

pub(crate) fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(offset..offset.checked_add(2)?)?.try_into().ok()?))
}

pub(crate) fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(offset..offset.checked_add(4)?)?.try_into().ok()?))
}

/// Writes `value` at `offset`; the caller has checked the range (all offsets come from [`Headers::parse`]).
pub(crate) fn put_u32(data: &mut [u8], offset: usize, value: u32) {
    if let Some(dst) = data.get_mut(offset..offset + 4) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

pub(crate) fn put_u16(data: &mut [u8], offset: usize, value: u16) {
    if let Some(dst) = data.get_mut(offset..offset + 2) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

impl Headers {
    /// Parses and sanity-checks the headers of `data`. Messages say what was expected and what was found.
    pub(crate) fn parse(data: &[u8]) -> Result<Headers, String> {
        if data.get(..2) != Some(b"MZ") {
            return Err(format!(
                "expected a pe image starting with \"MZ\"; found {}",
                describe_prefix(data.get(..2).unwrap_or(data))
            ));
        }
        let pe_offset = u32_at(data, 0x3c)
            .ok_or_else(|| format!("expected a 64-byte dos header; found {} bytes", data.len()))?
            as usize;
        if data.get(pe_offset..pe_offset.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(format!("expected the \"PE\\0\\0\" signature at offset 0x{pe_offset:x}; found something else"));
        }
        let coff_offset = pe_offset + 4;
        let number_of_sections = u16_at(data, coff_offset + coff::NUMBER_OF_SECTIONS)
            .ok_or("expected a complete coff header; found the file cut off")?;
        let size_of_optional_header = usize::from(
            u16_at(data, coff_offset + coff::SIZE_OF_OPTIONAL_HEADER)
                .ok_or("expected a complete coff header; found the file cut off")?,
        );
        let opt_offset = coff_offset + COFF_HEADER_SIZE;
        let opt_end = opt_offset + size_of_optional_header;
        if data.len() < opt_end {
            return Err(format!(
                "expected a {size_of_optional_header}-byte optional header at 0x{opt_offset:x}; found the file ending at 0x{:x}",
                data.len()
            ));
        }
        let magic = u16_at(data, opt_offset).ok_or("expected an optional header; found none")?;
        let (nrva_off, dd_off) = match magic {
            PE32_PLUS_MAGIC => (opt::NUMBER_OF_RVA_AND_SIZES_64, opt::DATA_DIRECTORIES_64),
            PE32_MAGIC => (opt::NUMBER_OF_RVA_AND_SIZES_32, opt::DATA_DIRECTORIES_32),
            other => {
                return Err(format!("expected optional header magic 0x20b (pe32+) or 0x10b (pe32); found 0x{other:x}"));
            }
        };
        if size_of_optional_header < dd_off {
            return Err(format!(
                "expected an optional header of at least {dd_off} bytes; found {size_of_optional_header} bytes"
            ));
        }
        let opt_u32 = |off: usize| u32_at(data, opt_offset + off).unwrap_or(0);
        let number_of_rva_and_sizes = opt_u32(nrva_off) as usize;
        if dd_off + number_of_rva_and_sizes.saturating_mul(8) > size_of_optional_header {
            return Err(format!(
                "expected {number_of_rva_and_sizes} data directories to fit in the {size_of_optional_header}-byte optional header; found they do not"
            ));
        }
        let section_alignment = opt_u32(opt::SECTION_ALIGNMENT);
        let file_alignment = opt_u32(opt::FILE_ALIGNMENT);
        for (what, value) in [("section", section_alignment), ("file", file_alignment)] {
            if !value.is_power_of_two() {
                return Err(format!("expected a power-of-two {what} alignment; found {value}"));
            }
        }
        let size_of_headers = opt_u32(opt::SIZE_OF_HEADERS);
        let section_table_offset = opt_end;
        let table_end = section_table_offset + usize::from(number_of_sections) * SECTION_HEADER_SIZE;
        if number_of_sections == 0 {
            return Err("expected at least one section; found none".to_owned());
        }
        if table_end > data.len() || table_end > size_of_headers as usize {
            return Err(format!(
                "expected the {number_of_sections}-entry section table to end (0x{table_end:x}) within the headers (0x{size_of_headers:x}) and the file (0x{:x}); found it does not",
                data.len()
            ));
        }
        let mut sections = Vec::with_capacity(usize::from(number_of_sections));
        for i in 0..usize::from(number_of_sections) {
            let at = section_table_offset + i * SECTION_HEADER_SIZE;
            let mut name = [0u8; 8];
            name.copy_from_slice(&data[at..at + 8]);
            let u = |off: usize| u32_at(data, at + off).unwrap_or(0);
            let section = Section {
                name,
                virtual_size: u(8),
                virtual_address: u(12),
                size_of_raw_data: u(16),
                pointer_to_raw_data: u(20),
                characteristics: u(36),
            };
            let range = section.raw_range();
            if range.end > data.len() {
                return Err(format!(
                    "expected section {} (raw data 0x{:x}..0x{:x}) inside the {}-byte file; found it runs past the end",
                    section.name_str(),
                    range.start,
                    range.end,
                    data.len()
                ));
            }
            sections.push(section);
        }
        Ok(Headers {
            pe_offset,
            opt_offset,
            size_of_optional_header,
            magic,
            number_of_rva_and_sizes,
            data_directories_offset: opt_offset + dd_off,
            section_alignment,
            file_alignment,
            size_of_headers,
            sections,
        })
    }

    /// File offset of data directory `index`, if the image has that many.
    pub(crate) fn data_directory_offset(&self, index: usize) -> Option<usize> {
        (index < self.number_of_rva_and_sizes).then(|| self.data_directories_offset + index * 8)
    }

    /// Data directory `index` as (address, size); (0, 0) if absent.
    pub(crate) fn data_directory(&self, data: &[u8], index: usize) -> (u32, u32) {
        match self.data_directory_offset(index) {
            Some(off) => (u32_at(data, off).unwrap_or(0), u32_at(data, off + 4).unwrap_or(0)),
            None => (0, 0),
        }
    }

    /// File offset of the `CheckSum` field.
    pub(crate) fn checksum_offset(&self) -> usize {
        self.opt_offset + opt::CHECKSUM
    }

    /// The section named `name`, if any (the first one: UKIs may repeat names, callers that care iterate).
    pub(crate) fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name_str() == name)
    }
}

fn describe_prefix(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        "an empty file".to_owned()
    } else {
        format!("bytes {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
    }
}

/// Rounds `value` up to a multiple of `align` (a power of two); `None` on overflow.
pub(crate) fn align_up(value: u64, align: u64) -> Option<u64> {
    let mask = align.checked_sub(1)?;
    value.checked_add(mask).map(|v| v & !mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_images_are_errors() {
        assert_eq!(Headers::parse(b"").unwrap_err(), "expected a pe image starting with \"MZ\"; found an empty file");
        assert_eq!(
            Headers::parse(b"\x7fELF").unwrap_err(),
            "expected a pe image starting with \"MZ\"; found bytes 7f 45"
        );
        assert_eq!(Headers::parse(b"MZ").unwrap_err(), "expected a 64-byte dos header; found 2 bytes");
        let mut dos = vec![0u8; 0x40];
        dos[..2].copy_from_slice(b"MZ");
        dos[0x3c] = 0x40;
        assert_eq!(
            Headers::parse(&dos).unwrap_err(),
            "expected the \"PE\\0\\0\" signature at offset 0x40; found something else"
        );
        dos.extend_from_slice(b"PE\0\0");
        assert!(Headers::parse(&dos).unwrap_err().starts_with("expected a complete coff header"));
    }

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 512), Some(0));
        assert_eq!(align_up(1, 512), Some(512));
        assert_eq!(align_up(512, 512), Some(512));
        assert_eq!(align_up(u64::MAX, 512), None);
    }
}
