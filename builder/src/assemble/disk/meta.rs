//! The Talos META partition: a 1 MiB partition holding a Talos ADV (auxiliary data vector), the key/value store
//! Talos reads at boot (installer META values, network config for metal, …). An image built with META values
//! carries them in the ADV; an image without any has an all-zero META, as a Talos imager leaves it.
//!
//! Format (go-adv v1.0.0 `adv/talos/talos.go`, talos `internal/pkg/meta/meta.go` `Flush`): a 256 KiB block,
//! big-endian: `u32 0x5a4b3c2d`, then entries `u32 tag, u32 length, value`, zero padding, 32 bytes of SHA-256 of
//! the whole block taken with that field zeroed, and `u32 0xa5b4c3d2` in the last 4 bytes. The block is written
//! twice, at offsets 0 and 256 KiB of the partition. Talos also writes its legacy syslinux ADV into the last
//! 1 KiB; for an image that copy is read from the freshly zeroed partition and written back as zeros, so it is
//! left as a hole here.
//!
//! Talos serializes entries in Go map order, which differs from run to run; talforge sorts them by tag so that
//! the same entries always give the same bytes. Readers look entries up by tag, so the order is not observable.

use sha2::{Digest as _, Sha256};

use super::DiskError;

/// One copy of the ADV.
pub const ADV_SIZE: usize = 256 * 1024;
/// Bytes available to entries (8 bytes of header each plus the value): the block minus magics and checksum.
pub const ADV_CAPACITY: usize = ADV_SIZE - 40;
/// The META partition's size in every Talos version (quirks `METASize`).
pub const META_PARTITION_SIZE: u64 = 1024 * 1024;
/// The partition label (and GPT name) Talos looks META up by.
pub const META_LABEL: &str = "META";

const MAGIC1: u32 = 0x5a4b_3c2d;
const MAGIC2: u32 = 0xa5b4_c3d2;
const CHECKSUM_AT: usize = ADV_SIZE - 36;

/// Well-known META keys (talos `pkg/machinery/meta/constants.go`).
pub mod keys {
    pub const UPGRADE: u8 = 0x06;
    pub const STAGED_UPGRADE_IMAGE_REF: u8 = 0x07;
    pub const STAGED_UPGRADE_INSTALL_OPTIONS: u8 = 0x08;
    pub const STATE_ENCRYPTION_CONFIG: u8 = 0x09;
    pub const METAL_NETWORK_PLATFORM_CONFIG: u8 = 0x0a;
    pub const DOWNLOAD_URL_CODE: u8 = 0x0b;
    pub const USER_RESERVED_1: u8 = 0x0c;
    pub const USER_RESERVED_2: u8 = 0x0d;
    pub const USER_RESERVED_3: u8 = 0x0e;
    pub const UUID_OVERRIDE: u8 = 0x0f;
    pub const UNIQUE_MACHINE_TOKEN: u8 = 0x10;
    pub const DISK_IMAGE_BOOTLOADER: u8 = 0x11;
}

/// One copy of a Talos ADV holding `entries`, sorted by tag.
pub fn talos_adv(entries: &[(u8, Vec<u8>)]) -> Result<Vec<u8>, DiskError> {
    let mut sorted: Vec<&(u8, Vec<u8>)> = entries.iter().collect();
    sorted.sort_by_key(|(tag, _)| *tag);
    for pair in sorted.windows(2) {
        if let [(a, _), (b, _)] = pair
            && a == b
        {
            let count = entries.iter().filter(|(t, _)| t == a).count();
            return Err(DiskError::DuplicateMetaTag { tag: *a, count });
        }
    }
    if sorted.first().is_some_and(|(tag, _)| *tag == 0) {
        return Err(DiskError::MetaTagZero);
    }
    let need: usize = sorted.iter().map(|(_, v)| v.len().saturating_add(8)).fold(0, usize::saturating_add);
    if need > ADV_CAPACITY {
        return Err(DiskError::MetaTooLarge { need, max: ADV_CAPACITY });
    }

    let mut block = Vec::with_capacity(ADV_SIZE);
    block.extend_from_slice(&MAGIC1.to_be_bytes());
    for (tag, value) in sorted {
        block.extend_from_slice(&u32::from(*tag).to_be_bytes());
        // `need <= ADV_CAPACITY` bounds every length well below u32::MAX.
        block.extend_from_slice(&(value.len() as u32).to_be_bytes());
        block.extend_from_slice(value);
    }
    block.resize(ADV_SIZE - 4, 0);
    block.extend_from_slice(&MAGIC2.to_be_bytes());
    let digest = Sha256::digest(&block);
    if let Some(field) = block.get_mut(CHECKSUM_AT..CHECKSUM_AT + 32) {
        field.copy_from_slice(&digest);
    }
    Ok(block)
}

/// Reads one ADV copy back: its entries in block order. Checks both magics and the checksum.
pub fn parse_adv(block: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DiskError> {
    let bad = |reason: String| DiskError::InvalidAdv { reason };
    if block.len() != ADV_SIZE {
        return Err(bad(format!("expected {ADV_SIZE} bytes, found {}", block.len())));
    }
    let magic1 = be32(block, 0);
    if magic1 != Some(MAGIC1) {
        return Err(bad(format!("expected magic {MAGIC1:#010x} at the start, found {:#010x}", magic1.unwrap_or(0))));
    }
    let magic2 = be32(block, ADV_SIZE - 4);
    if magic2 != Some(MAGIC2) {
        return Err(bad(format!("expected magic {MAGIC2:#010x} at the end, found {:#010x}", magic2.unwrap_or(0))));
    }
    let stored = block.get(CHECKSUM_AT..CHECKSUM_AT + 32).unwrap_or_default();
    let mut zeroed = block.to_vec();
    if let Some(field) = zeroed.get_mut(CHECKSUM_AT..CHECKSUM_AT + 32) {
        field.fill(0);
    }
    let actual = Sha256::digest(&zeroed);
    if stored != actual.as_slice() {
        return Err(bad(format!("checksum mismatch: stored {}, computed {}", hex(stored), hex(&actual))));
    }

    let mut entries = vec![];
    let mut at = 4;
    while at + 8 <= CHECKSUM_AT {
        let (Some(tag), Some(len)) = (be32(block, at), be32(block, at + 4)) else { break };
        if tag == 0 {
            break;
        }
        let start = at + 8;
        let end = start.checked_add(len as usize).filter(|&e| e <= CHECKSUM_AT);
        let (Some(end), Ok(tag)) = (end, u8::try_from(tag)) else {
            return Err(bad(format!("entry at offset {at} (tag {tag:#x}, {len} bytes) runs past the data area")));
        };
        entries.push((tag, block.get(start..end).unwrap_or_default().to_vec()));
        at = end;
    }
    Ok(entries)
}

/// The first 512 KiB of the META partition (two ADV copies), or `None` for no entries: the partition stays
/// zero, as a Talos imager leaves it when it has no META values.
pub fn meta_partition_head(entries: &[(u8, Vec<u8>)]) -> Result<Option<Vec<u8>>, DiskError> {
    if entries.is_empty() {
        return Ok(None);
    }
    let block = talos_adv(entries)?;
    let mut head = block.clone();
    head.extend_from_slice(&block);
    Ok(Some(head))
}

/// Reads the entries of a META partition the way Talos does: the first copy, or the second if the first is bad.
pub fn parse_meta_partition(partition: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, DiskError> {
    let first = parse_adv(partition.get(..ADV_SIZE).unwrap_or_default());
    match first {
        Ok(entries) => Ok(entries),
        Err(e) => parse_adv(partition.get(ADV_SIZE..2 * ADV_SIZE).unwrap_or_default()).map_err(|_| e),
    }
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_sorted_with_checksum() {
        let entries = vec![
            (keys::DISK_IMAGE_BOOTLOADER, b"sd-boot".to_vec()),
            (keys::METAL_NETWORK_PLATFORM_CONFIG, b"addresses: []".to_vec()),
            (keys::USER_RESERVED_1, vec![]),
        ];
        let block = talos_adv(&entries).unwrap();
        assert_eq!(block.len(), ADV_SIZE);
        assert_eq!(&block[..4], &[0x5a, 0x4b, 0x3c, 0x2d]);
        assert_eq!(&block[ADV_SIZE - 4..], &[0xa5, 0xb4, 0xc3, 0xd2]);
        // First entry is the lowest tag: 0x0a, 13 bytes.
        assert_eq!(&block[4..12], &[0, 0, 0, 0x0a, 0, 0, 0, 13]);
        let mut sorted = entries.clone();
        sorted.sort();
        assert_eq!(parse_adv(&block).unwrap(), sorted);
        // The checksum covers the whole block with its own field zeroed.
        let mut zeroed = block.clone();
        zeroed[ADV_SIZE - 36..ADV_SIZE - 4].fill(0);
        assert_eq!(&block[ADV_SIZE - 36..ADV_SIZE - 4], Sha256::digest(&zeroed).as_slice());
        // Input order does not matter.
        let mut reversed = entries.clone();
        reversed.reverse();
        assert_eq!(talos_adv(&reversed).unwrap(), block);
    }

    #[test]
    fn corruption_is_detected_and_second_copy_used() {
        let head = meta_partition_head(&[(keys::UUID_OVERRIDE, b"x".to_vec())]).unwrap().unwrap();
        assert_eq!(head.len(), 2 * ADV_SIZE);
        let mut bad = head.clone();
        bad[20] ^= 1;
        let e = parse_adv(&bad[..ADV_SIZE]).unwrap_err();
        assert!(e.to_string().starts_with("not a valid Talos ADV: checksum mismatch: stored "), "{e}");
        assert_eq!(parse_meta_partition(&bad).unwrap(), vec![(keys::UUID_OVERRIDE, b"x".to_vec())]);
        let e = parse_adv(&vec![0; ADV_SIZE]).unwrap_err();
        assert_eq!(e.to_string(), "not a valid Talos ADV: expected magic 0x5a4b3c2d at the start, found 0x00000000");
        let e = parse_adv(&[0; 10]).unwrap_err();
        assert_eq!(e.to_string(), "not a valid Talos ADV: expected 262144 bytes, found 10");
        assert!(meta_partition_head(&[]).unwrap().is_none());
    }

    #[test]
    fn limits() {
        let e = talos_adv(&[(0, vec![1])]).unwrap_err();
        assert_eq!(e.to_string(), "meta tag 0 is reserved: it marks the end of the Talos ADV (expected tags 1 to 255)");
        let e = talos_adv(&[(7, vec![1]), (6, vec![]), (7, vec![2])]).unwrap_err();
        assert_eq!(e.to_string(), "meta tag 0x7 is given 2 times: expected each tag once");
        // Exactly full is fine; one byte more is not.
        assert!(talos_adv(&[(1, vec![0xff; ADV_CAPACITY - 8])]).is_ok());
        let e = talos_adv(&[(1, vec![0xff; ADV_CAPACITY - 8]), (2, vec![])]).unwrap_err();
        assert_eq!(e.to_string(), "meta entries need 262112 bytes: the Talos ADV holds at most 262104");
        let full = talos_adv(&[(1, vec![0xff; ADV_CAPACITY - 8])]).unwrap();
        assert_eq!(parse_adv(&full).unwrap()[0].1.len(), ADV_CAPACITY - 8);
    }
}
