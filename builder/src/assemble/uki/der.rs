//! Just enough DER to build and read back the PKCS#7 structures Secure Boot needs (Authenticode signatures and
//! `EFI_VARIABLE_AUTHENTICATION_2` payloads). Writing by hand keeps the byte layout explicit, which is the point:
//! the output must be identical for the same key and input, and match what firmware and `sbverify` expect.

/// ASN.1 tags used here (universal class unless noted).
pub(crate) mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const UTC_TIME: u8 = 0x17;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[n]` constructed, context-specific.
    pub const fn context(n: u8) -> u8 {
        0xa0 | n
    }
    /// `[n]` primitive, context-specific.
    pub const fn context_primitive(n: u8) -> u8 {
        0x80 | n
    }
}

/// Object identifiers, as complete DER TLVs.
pub(crate) mod oid {
    /// id-data (1.2.840.113549.1.7.1).
    pub const DATA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// id-signedData (1.2.840.113549.1.7.2).
    pub const SIGNED_DATA: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
    /// id-sha256 (2.16.840.1.101.3.4.2.1).
    pub const SHA256: &[u8] = &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    /// id-sha512 (2.16.840.1.101.3.4.2.3).
    pub const SHA512: &[u8] = &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    /// rsaEncryption (1.2.840.113549.1.1.1).
    pub const RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// contentType attribute (1.2.840.113549.1.9.3).
    pub const CONTENT_TYPE: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
    /// messageDigest attribute (1.2.840.113549.1.9.4).
    pub const MESSAGE_DIGEST: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
    /// signingTime attribute (1.2.840.113549.1.9.5).
    pub const SIGNING_TIME: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x05];
    /// SPC_INDIRECT_DATA_OBJID (1.3.6.1.4.1.311.2.1.4).
    pub const SPC_INDIRECT_DATA: &[u8] = &[0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x04];
    /// SPC_PE_IMAGE_DATAOBJ (1.3.6.1.4.1.311.2.1.15).
    pub const SPC_PE_IMAGE_DATA: &[u8] = &[0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x01, 0x0f];
}

/// One TLV: `tag`, DER length, `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        // Invariant: len < 0x80 fits in one byte.
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        // Invariant: a usize has at most 8 bytes, so the count fits in the low 7 bits.
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed TLV whose content is the concatenation of `parts`.
pub(crate) fn cons(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// `SEQUENCE { parts... }`.
pub(crate) fn seq(parts: &[&[u8]]) -> Vec<u8> {
    cons(tag::SEQUENCE, parts)
}

/// `NULL`.
pub(crate) const NULL: &[u8] = &[tag::NULL, 0x00];

/// `AlgorithmIdentifier { algorithm, NULL }`.
pub(crate) fn algorithm(oid: &[u8]) -> Vec<u8> {
    seq(&[oid, NULL])
}

/// A small non-negative `INTEGER`.
pub(crate) fn small_integer(value: u8) -> Vec<u8> {
    if value < 0x80 { vec![tag::INTEGER, 1, value] } else { vec![tag::INTEGER, 2, 0, value] }
}

/// `OCTET STRING`.
pub(crate) fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, content)
}

/// The X.509/CMS `Time` for `epoch` (seconds since 1970, UTC): `UTCTime` for 1950–2049 as RFC 5652 requires,
/// `GeneralizedTime` otherwise. `None` if the year does not fit in four digits.
pub(crate) fn time(epoch: u64) -> Option<Vec<u8>> {
    let dt = time::OffsetDateTime::from_unix_timestamp(i64::try_from(epoch).ok()?).ok()?;
    let (year, month, day) = (dt.year(), u8::from(dt.month()), dt.day());
    let (hour, minute, second) = (dt.hour(), dt.minute(), dt.second());
    if (1950..2050).contains(&year) {
        let text = format!("{:02}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z", year % 100);
        Some(tlv(tag::UTC_TIME, text.as_bytes()))
    } else if year <= 9999 {
        let text = format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}Z");
        Some(tlv(tag::GENERALIZED_TIME, text.as_bytes()))
    } else {
        None
    }
}

/// A cursor over DER: reads one TLV at a time, never panics on malformed input.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
}

/// One TLV read by [`Reader`].
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(test), allow(dead_code))] // tag and raw are read by the tests that parse signatures back
pub(crate) struct Tlv<'a> {
    pub tag: u8,
    /// The content octets.
    pub content: &'a [u8],
    /// The whole TLV (tag, length and content).
    pub raw: &'a [u8],
}

#[cfg_attr(not(test), allow(dead_code))] // the checking readers are used by tests that parse signatures back
impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Reads the next TLV (definite lengths only, as DER requires).
    pub(crate) fn read(&mut self) -> Result<Tlv<'a>, String> {
        let data = self.data;
        let (&tag, rest) = data.split_first().ok_or("expected a der element; found the end of the data")?;
        if tag & 0x1f == 0x1f {
            return Err(format!("expected a single-byte der tag; found multi-byte tag 0x{tag:02x}"));
        }
        let (&first, rest) = rest.split_first().ok_or("expected a der length; found the end of the data")?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(format!("expected a definite der length of 1-4 bytes; found length byte 0x{first:02x}"));
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(format!("expected {len} bytes of der content; found {}", rest.len()));
        }
        let header = data.len() - rest.len();
        let raw = &data[..header + len];
        self.data = &rest[len..];
        Ok(Tlv { tag, content: &rest[..len], raw })
    }

    /// Reads the next TLV and checks its tag.
    pub(crate) fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, String> {
        let t = self.read().map_err(|e| format!("{what}: {e}"))?;
        if t.tag != tag {
            return Err(format!("{what}: expected der tag 0x{tag:02x}; found 0x{:02x}", t.tag));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        assert_eq!(tlv(0x04, &[7; 3]), [0x04, 3, 7, 7, 7]);
        assert_eq!(&tlv(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(&tlv(0x04, &[0; 0x1234])[..4], [0x04, 0x82, 0x12, 0x34]);
        let mut r = Reader::new(&[0x30, 0x82, 0x00]);
        assert!(r.read().is_err(), "truncated length must be an error");
    }

    #[test]
    fn times_switch_to_generalized_time_in_2050() {
        assert_eq!(time(0).unwrap(), tlv(tag::UTC_TIME, b"700101000000Z"));
        assert_eq!(time(1_700_000_000).unwrap(), tlv(tag::UTC_TIME, b"231114221320Z"));
        assert_eq!(time(2_524_608_000).unwrap(), tlv(tag::GENERALIZED_TIME, b"20500101000000Z"));
    }

    #[test]
    fn reader_round_trips_nested_elements() {
        let inner = octet_string(b"abc");
        let outer = seq(&[&small_integer(1), &inner]);
        let mut r = Reader::new(&outer);
        let s = r.expect(tag::SEQUENCE, "outer").unwrap();
        assert!(r.is_empty());
        let mut r = Reader::new(s.content);
        assert_eq!(r.expect(tag::INTEGER, "version").unwrap().content, [1]);
        let o = r.expect(tag::OCTET_STRING, "data").unwrap();
        assert_eq!(o.content, b"abc");
        assert_eq!(o.raw, inner.as_slice());
        assert_eq!(
            Reader::new(&outer).expect(tag::SET, "outer").unwrap_err(),
            "outer: expected der tag 0x31; found 0x30"
        );
    }
}
