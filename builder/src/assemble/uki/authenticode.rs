//! Authenticode signing of PE images (sd-boot and the UKI), in Rust rather than through `sbsign`: the signature is
//! then a pure function of key, image and signing time, no external tool is needed at build time, and the layout
//! follows what Talos's imager produces (go-uefi `authenticode`): a PKCS#7 `SignedData` over an
//! `SpcIndirectDataContent` holding the SHA-256 Authenticode digest, stored as one `WIN_CERTIFICATE`
//! (revision 2.0, type `PKCS_SIGNED_DATA`) in the certificate table appended after the image, which is first
//! zero-padded to 8 bytes. `CheckSum` is left as it is (it is not covered by the digest; Talos leaves it too).
//! `sbverify` and OVMF are the independent checks (see the tests).

use sha2::{Digest as _, Sha256};

use super::der::{self, oid, tag};
use super::pe::{self, Headers};
use super::secureboot::{SecureBootError, SigningKey};

/// `WIN_CERT_REVISION_2_0`.
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
/// `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

fn image_error(message: String) -> SecureBootError {
    SecureBootError::Image(message)
}

/// The Authenticode SHA-256 digest of `image` (PE/COFF spec, "Calculating the PE Image Hash"): the headers
/// without `CheckSum` and the certificate-table entry, the sections in file order, the data after them up to the
/// certificate table, and zero padding to a multiple of 8 bytes.
pub fn authenticode_digest(image: &[u8]) -> Result<[u8; 32], SecureBootError> {
    let h = Headers::parse(image).map_err(image_error)?;
    let cert_entry = h.data_directory_offset(pe::CERTIFICATE_TABLE).ok_or_else(|| {
        image_error(format!(
            "expected a certificate table entry in the data directories; found only {} entries",
            h.number_of_rva_and_sizes
        ))
    })?;
    let checksum = h.checksum_offset();
    let headers_end = h.size_of_headers as usize;
    if headers_end > image.len() || headers_end < cert_entry + 8 {
        return Err(image_error(format!(
            "expected SizeOfHeaders (0x{headers_end:x}) to cover the optional header and fit the {}-byte file; found it does not",
            image.len()
        )));
    }
    let (cert_addr, cert_size) = h.data_directory(image, pe::CERTIFICATE_TABLE);
    let hashed_end = if cert_size == 0 {
        image.len()
    } else if cert_addr as usize + cert_size as usize == image.len() {
        cert_addr as usize
    } else {
        return Err(image_error(format!(
            "expected the certificate table (0x{cert_addr:x}, {cert_size} bytes) at the end of the {}-byte file; found it elsewhere",
            image.len()
        )));
    };

    let mut hasher = Sha256::new();
    hasher.update(&image[..checksum]);
    hasher.update(&image[checksum + 4..cert_entry]);
    hasher.update(&image[cert_entry + 8..headers_end]);
    let mut sections: Vec<_> = h.sections.iter().filter(|s| s.size_of_raw_data != 0).collect();
    sections.sort_by_key(|s| s.pointer_to_raw_data);
    let mut sum = headers_end;
    for s in sections {
        hasher.update(&image[s.raw_range()]);
        sum += s.size_of_raw_data as usize;
    }
    if sum > hashed_end {
        return Err(image_error(format!(
            "expected the sections ({sum} bytes with the headers) to fit before offset 0x{hashed_end:x}; found them overlapping the end"
        )));
    }
    hasher.update(&image[sum..hashed_end]);
    let padding = (8 - hashed_end % 8) % 8;
    hasher.update(&[0u8; 8][..padding]);
    Ok(hasher.finalize().into())
}

/// `SpcIndirectDataContent` for a PE image digest, as go-uefi writes it: `SpcPeImageData` with empty flags and
/// the file link `<<<Obsolete>>>`, then `DigestInfo` (SHA-256).
fn spc_indirect_data_content(digest: &[u8]) -> Vec<u8> {
    let obsolete: Vec<u8> = "<<<Obsolete>>>".encode_utf16().flat_map(u16::to_be_bytes).collect();
    let file_link =
        der::cons(tag::context(0), &[&der::cons(tag::context(2), &[&der::tlv(tag::context_primitive(0), &obsolete)])]);
    let pe_image_data = der::seq(&[&[tag::BIT_STRING, 0x01, 0x00], &file_link]);
    der::seq(&[
        &der::seq(&[oid::SPC_PE_IMAGE_DATA, &pe_image_data]),
        &der::seq(&[&der::algorithm(oid::SHA256), &der::octet_string(digest)]),
    ])
}

/// Signs an unsigned PE image: returns the image, zero-padded to 8 bytes, with a certificate table holding one
/// Authenticode signature by `key` (signing time = `signing_time`, seconds since 1970). Deterministic.
pub fn sign_pe(image: &[u8], key: &SigningKey, signing_time: u64) -> Result<Vec<u8>, SecureBootError> {
    let h = Headers::parse(image).map_err(image_error)?;
    let (_, existing) = h.data_directory(image, pe::CERTIFICATE_TABLE);
    if existing != 0 {
        return Err(image_error(format!("expected an unsigned image; found a certificate table of {existing} bytes")));
    }
    let entry = h.data_directory_offset(pe::CERTIFICATE_TABLE).ok_or_else(|| {
        image_error("expected a certificate table entry in the data directories; found none".to_owned())
    })?;
    let digest = authenticode_digest(image)?;
    let spc = spc_indirect_data_content(&digest);
    // The message digest covers the content octets of SpcIndirectDataContent, without its tag and length.
    let spc_content = der::Reader::new(&spc).read().map_err(image_error)?.content;
    let signed_data =
        key.signed_data(oid::SPC_INDIRECT_DATA, Some(&spc), &Sha256::digest(spc_content), signing_time)?;
    let content_info = der::seq(&[oid::SIGNED_DATA, &der::cons(tag::context(0), &[&signed_data])]);

    let mut out = image.to_vec();
    out.resize(image.len().next_multiple_of(8), 0);
    let table_offset = out.len();
    let too_big = || image_error("expected the signed image to stay below 4 GiB; found it larger".to_owned());
    let length = u32::try_from(8 + content_info.len()).map_err(|_| too_big())?;
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    out.extend_from_slice(&content_info);
    out.resize(out.len().next_multiple_of(8), 0);
    let table_size = u32::try_from(out.len() - table_offset).map_err(|_| too_big())?;
    pe::put_u32(&mut out, entry, u32::try_from(table_offset).map_err(|_| too_big())?);
    pe::put_u32(&mut out, entry + 4, table_size);
    Ok(out)
}

/// The PKCS#7 blobs (`bCertificate` of each `WIN_CERTIFICATE`) in a signed image's certificate table.
pub fn pe_signatures(image: &[u8]) -> Result<Vec<Vec<u8>>, SecureBootError> {
    let h = Headers::parse(image).map_err(image_error)?;
    let (addr, size) = h.data_directory(image, pe::CERTIFICATE_TABLE);
    let table = image.get(addr as usize..addr as usize + size as usize).ok_or_else(|| {
        image_error(format!(
            "expected the certificate table (0x{addr:x}, {size} bytes) inside the file; found it outside"
        ))
    })?;
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= table.len() {
        let length = pe::u32_at(table, at).unwrap_or(0) as usize;
        let revision = pe::u16_at(table, at + 4).unwrap_or(0);
        let kind = pe::u16_at(table, at + 6).unwrap_or(0);
        if length < 8 || at + length > table.len() {
            return Err(image_error(format!(
                "expected a win_certificate of 8..{} bytes at table offset {at}; found dwLength {length}",
                table.len() - at
            )));
        }
        if revision != WIN_CERT_REVISION_2_0 || kind != WIN_CERT_TYPE_PKCS_SIGNED_DATA {
            return Err(image_error(format!(
                "expected win_certificate revision 0x0200 type 0x0002; found revision 0x{revision:04x} type 0x{kind:04x}"
            )));
        }
        out.push(table[at + 8..at + length].to_vec());
        at += length.next_multiple_of(8);
    }
    Ok(out)
}
