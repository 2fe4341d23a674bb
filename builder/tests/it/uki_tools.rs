//! Our UKIs, signatures and enrollment files read back by independent tools: objdump and goblin (section table),
//! sbverify and sbsign (Authenticode), openssl (PKCS#7 over the variable payload), efitools (signature lists and
//! the payload `sign-efi-sig-list` would sign).

use talforge_builder::assemble::uki::{
    EnrollmentFiles, Guid, UkiInputs, authenticode_digest, build_uki, owner_guid, parse_authenticated_variable,
    read_sections, section_data, sign_pe,
};

use crate::uki_support::*;

const CMDLINE: &str = "console=ttyS0 talos.platform=metal slab_nomerge pti=on";

fn debian_uki(stub: &[u8], kernel: &[u8], initrd: &[u8]) -> Vec<u8> {
    build_uki(&UkiInputs {
        stub,
        kernel,
        initrd,
        cmdline: CMDLINE,
        os_release: "NAME=\"Talos\"\nID=talos\nVERSION_ID=v1.14.0\n",
        uname: Some("6.1.0-test-amd64"),
        splash: None,
        pcr_public_key: None,
        // Only the main profile: Debian's 252 stub takes the last .cmdline, so no profile may carry one.
        profiles: Some(&[]),
        epoch: EPOCH,
    })
    .unwrap()
}

/// One row of `objdump -h`.
#[derive(Debug)]
struct ObjdumpSection {
    name: String,
    size: u64,
    vma: u64,
    file_offset: u64,
}

fn objdump_sections(path: &std::path::Path) -> (String, Vec<ObjdumpSection>) {
    let out = runner().run(OBJDUMP, ["-h".as_ref(), path.as_os_str()], None, None).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows = text
        .lines()
        .filter_map(|l| {
            let f: Vec<_> = l.split_whitespace().collect();
            (f.len() == 7 && f[0].parse::<u32>().is_ok()).then(|| ObjdumpSection {
                name: f[1].to_owned(),
                size: u64::from_str_radix(f[2], 16).unwrap(),
                vma: u64::from_str_radix(f[3], 16).unwrap(),
                file_offset: u64::from_str_radix(f[5], 16).unwrap(),
            })
        })
        .collect();
    (text, rows)
}

#[test]
fn uki_from_debian_stub_reads_back_with_objdump_and_goblin() {
    let Some(stub) = need_file(STUB, "systemd-boot-efi") else { return };
    let Some(()) = need(&[OBJDUMP]) else { return };
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let initrd = vec![0x5a; 123_457];
    let uki = debian_uki(&stub, &kernel, &initrd);
    assert_eq!(sha256_hex(&uki), sha256_hex(&debian_uki(&stub, &kernel, &initrd)), "two builds, same bytes");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.efi");
    std::fs::write(&path, &uki).unwrap();
    let (text, rows) = objdump_sections(&path);
    eprintln!("{text}");
    let names: Vec<_> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            ".text", ".reloc", ".data", ".dynamic", ".rela", ".dynsym", ".sbat", ".sdmagic", ".osrel", ".cmdline",
            ".uname", ".linux", ".initrd", ".profile"
        ]
    );
    let ours = read_sections(&uki).unwrap();
    let stub_sections = read_sections(&stub).unwrap();
    for (i, (row, s)) in rows.iter().zip(&ours).enumerate() {
        assert_eq!(row.vma, u64::from(s.virtual_address), "{}", row.name);
        assert_eq!(row.file_offset, u64::from(s.pointer_to_raw_data), "{}", row.name);
        assert_eq!(row.file_offset % 0x200, 0, "{} raw data aligned to FileAlignment", row.name);
        match stub_sections.get(i) {
            // The stub's own sections keep their RVAs (its .sdmagic sits at 0x19100, not on a 0x200 boundary).
            Some(orig) => assert_eq!(s.virtual_address, orig.virtual_address, "{} keeps its RVA", row.name),
            None => assert_eq!(row.vma % 0x200, 0, "{} VMA aligned to SectionAlignment", row.name),
        }
    }
    let sizes: Vec<_> = rows[8..].iter().map(|r| r.size).collect();
    let osrel = "NAME=\"Talos\"\nID=talos\nVERSION_ID=v1.14.0\n".len() as u64;
    assert_eq!(sizes, [osrel, CMDLINE.len() as u64, 16, kernel.len() as u64, initrd.len() as u64, 7]);
    // The first appended section starts right after .sdmagic (0x19100 + 0x34, aligned to 0x200).
    assert_eq!(rows[8].vma, 0x19200);

    let pe = goblin::pe::PE::parse(&uki).unwrap();
    assert_eq!(u64::from(pe.header.coff_header.time_date_stamp), EPOCH);
    assert_eq!(pe.header.coff_header.number_of_symbol_table, 0);
    let opt = pe.header.optional_header.unwrap();
    assert_eq!(opt.windows_fields.check_sum, 0);
    let last = ours.last().unwrap();
    assert_eq!(opt.windows_fields.size_of_image, (last.virtual_address + last.virtual_size).next_multiple_of(0x200));
    assert_eq!(pe.sections.len(), 14);
    let cmdline = pe.sections.iter().find(|s| s.name().ok() == Some(".cmdline")).unwrap();
    let start = cmdline.pointer_to_raw_data as usize;
    assert_eq!(&uki[start..start + cmdline.virtual_size as usize], CMDLINE.as_bytes());
    assert_eq!(cmdline.characteristics, 0x4000_0040);
    assert_eq!(section_data(&uki, ".sbat").unwrap(), section_data(&stub, ".sbat").unwrap());
}

/// `objdump -x` with the fields objcopy and we legitimately differ in masked: CheckSum and linker version (we zero
/// them, like Talos) and Time/Date (objcopy stamps the wall clock).
fn objdump_x(path: &std::path::Path) -> String {
    let out = runner().run(OBJDUMP, ["-x".as_ref(), path.as_os_str()], None, None).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !["CheckSum", "MajorLinkerVersion", "MinorLinkerVersion", "Time/Date"].iter().any(|f| l.starts_with(f))
        })
        .map(|l| l.replace(&*path.to_string_lossy(), "FILE"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Talos checks its native assembler against `objcopy --add-section --change-section-vma` (pe_test.go); the same
/// comparison here, on Debian's stub with its COFF symbols stripped (objcopy cannot drop them while appending).
#[test]
fn uki_headers_match_objcopy_like_talos_checks_them() {
    let Some(()) = need(&[OBJDUMP, OBJCOPY]) else { return };
    let Some(_) = need_file(STUB, "systemd-boot-efi") else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    runner().run(OBJCOPY, ["--strip-all".as_ref(), STUB.as_ref(), p("stub.efi").as_os_str()], None, None).unwrap();
    let stub = std::fs::read(p("stub.efi")).unwrap();
    let kernel: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let initrd = vec![0x17; 3000];
    let inputs = UkiInputs {
        stub: &stub,
        kernel: &kernel,
        initrd: &initrd,
        cmdline: CMDLINE,
        os_release: "NAME=x\n",
        epoch: EPOCH,
        ..Default::default()
    };
    let ours = build_uki(&inputs).unwrap();
    std::fs::write(p("ours.efi"), &ours).unwrap();
    // Our build drops the symbol table itself: the unstripped stub gives the same bytes, except the COFF
    // Characteristics, where strip also set IMAGE_FILE_LOCAL_SYMS_STRIPPED (0x206 → 0x20e).
    let mut from_unstripped = build_uki(&UkiInputs { stub: &std::fs::read(STUB).unwrap(), ..inputs.clone() }).unwrap();
    assert_eq!((from_unstripped[0x96], ours[0x96]), (0x06, 0x0e));
    from_unstripped[0x96] = 0x0e;
    assert_eq!(sha256_hex(&from_unstripped), sha256_hex(&ours));

    let mut args: Vec<std::ffi::OsString> = Vec::new();
    for s in read_sections(&ours).unwrap().into_iter().skip(read_sections(&stub).unwrap().len()) {
        let data = section_data(&ours, &s.name).unwrap()[0];
        let file = p(&s.name[1..]);
        std::fs::write(&file, data).unwrap();
        args.extend(["--add-section".into(), format!("{}={}", s.name, file.display()).into()]);
        args.extend(["--change-section-vma".into(), format!("{}=0x{:x}", s.name, s.virtual_address).into()]);
    }
    args.extend([p("stub.efi").into(), p("objcopy.efi").into()]);
    runner().run(OBJCOPY, &args, None, None).unwrap();
    assert_eq!(objdump_x(&p("objcopy.efi")), objdump_x(&p("ours.efi")));
    assert_eq!(std::fs::metadata(p("objcopy.efi")).unwrap().len(), ours.len() as u64);
    for s in read_sections(&ours).unwrap() {
        let dump = |file: &str| {
            let out =
                runner().run(OBJDUMP, ["-s".as_ref(), "-j".as_ref(), s.name.as_ref(), p(file).as_os_str()], None, None);
            String::from_utf8_lossy(&out.unwrap().stdout).replace(&*p(file).to_string_lossy(), "FILE")
        };
        assert_eq!(dump("objcopy.efi"), dump("ours.efi"), "{}", s.name);
    }
}

#[test]
fn sbverify_accepts_signed_sdboot_and_uki_and_rejects_a_changed_byte() {
    let Some(stub) = need_file(STUB, "systemd-boot-efi") else { return };
    let Some(sd_boot) = need_file(SD_BOOT, "systemd-boot-efi") else { return };
    let Some(()) = need(&[SBVERIFY]) else { return };
    let key = signing_key();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, key.cert_pem()).unwrap();
    let uki = debian_uki(&stub, b"MZ fake kernel", b"initrd");
    let verify = |name: &str, data: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        runner().run(SBVERIFY, ["--cert".as_ref(), cert.as_os_str(), path.as_os_str()], None, None)
    };

    for (name, image) in [("uki.efi", &uki), ("systemd-bootx64.efi", &sd_boot)] {
        let signed = sign_pe(image, key, EPOCH).unwrap();
        assert_eq!(sha256_hex(&signed), sha256_hex(&sign_pe(image, key, EPOCH).unwrap()), "{name}: two signings");
        let out = verify(name, &signed).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {}", String::from_utf8_lossy(&out.stdout).trim());
        assert!(String::from_utf8_lossy(&out.stdout).contains("Signature verification OK"), "{name}");
        let listed =
            runner().run(SBVERIFY, ["--list".as_ref(), dir.path().join(name).as_os_str()], None, None).unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(listed.contains("signature 1") && !listed.contains("signature 2"), "{name}: {listed}");
        assert!(listed.contains("/O=Test UKI Signing Key"), "{name}: {listed}");
        let err = verify(&format!("unsigned-{name}"), image).unwrap_err().to_string();
        assert!(err.contains("No signature table present"), "{name}: {err}");
    }

    let signed = sign_pe(&uki, key, EPOCH).unwrap();
    let linux = read_sections(&uki).unwrap().into_iter().find(|s| s.name == ".linux").unwrap();
    let mut tampered = signed.clone();
    tampered[linux.pointer_to_raw_data as usize + 3] ^= 0x01;
    let err = verify("tampered.efi", &tampered).unwrap_err().to_string();
    assert!(err.contains("Image fails hash check"), "{err}");
}

#[test]
fn sbsign_computes_the_same_authenticode_digest() {
    let Some(stub) = need_file(STUB, "systemd-boot-efi") else { return };
    let Some(sd_boot) = need_file(SD_BOOT, "systemd-boot-efi") else { return };
    let Some(()) = need(&[SBSIGN]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = signing_key().write_files(&dir.path().join("keys"), "uki").unwrap();
    for (name, image) in [("uki.efi", debian_uki(&stub, b"MZ k", b"i")), ("sd-boot.efi", sd_boot)] {
        let input = dir.path().join(name);
        let output = dir.path().join(format!("{name}.signed"));
        std::fs::write(&input, &image).unwrap();
        let args = [
            "--key".as_ref(),
            files.key_pem.as_os_str(),
            "--cert".as_ref(),
            files.cert_pem.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
            input.as_os_str(),
        ];
        runner().run(SBSIGN, args, None, None).unwrap();
        let theirs = std::fs::read(&output).unwrap();
        assert_eq!(authenticode_digest(&theirs).unwrap(), authenticode_digest(&image).unwrap(), "{name}");
        let ours = sign_pe(&image, signing_key(), EPOCH).unwrap();
        assert_eq!(authenticode_digest(&ours).unwrap(), authenticode_digest(&image).unwrap(), "{name}");
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let b = (len as u32).to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// What `SetVariable` verifies: name (UTF-16LE) ‖ vendor GUID ‖ attributes ‖ timestamp ‖ data.
fn variable_payload(name: &str, vendor: Guid, auth_file: &[u8]) -> Vec<u8> {
    let auth = parse_authenticated_variable(auth_file).unwrap();
    let mut payload: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    payload.extend_from_slice(&vendor.to_efi_bytes());
    payload.extend_from_slice(&0x27u32.to_le_bytes());
    payload.extend_from_slice(&auth_file[..16]);
    payload.extend_from_slice(&auth.data);
    payload
}

#[test]
fn openssl_and_efitools_agree_with_the_enrollment_files() {
    let Some(()) = need(&[OPENSSL, CERT_TO_EFI_SIG_LIST, SIGN_EFI_SIG_LIST]) else { return };
    let key = signing_key();
    let dir = tempfile::tempdir().unwrap();
    let files = key.write_files(&dir.path().join("keys"), "uki").unwrap();
    let enrollment = EnrollmentFiles::generate(key.cert_der(), key, None, EPOCH).unwrap();
    enrollment.write_to(&dir.path().join("auto")).unwrap();
    let owner = owner_guid(key.cert_der()).to_string();
    let p = |name: &str| dir.path().join(name);

    // The signature list is what cert-to-efi-sig-list makes with the same owner.
    runner()
        .run(
            CERT_TO_EFI_SIG_LIST,
            ["-g".as_ref(), owner.as_ref(), files.cert_pem.as_os_str(), p("cert.esl").as_os_str()],
            None,
            None,
        )
        .unwrap();
    let esl = std::fs::read(p("cert.esl")).unwrap();

    for (name, vendor, file) in [
        ("PK", Guid::EFI_GLOBAL_VARIABLE, &enrollment.pk),
        ("KEK", Guid::EFI_GLOBAL_VARIABLE, &enrollment.kek),
        ("db", Guid::IMAGE_SECURITY_DATABASE, &enrollment.db),
    ] {
        let auth = parse_authenticated_variable(file).unwrap();
        assert_eq!(auth.data, esl, "{name}: signature list");
        assert_eq!(std::fs::read(dir.path().join("auto").join(format!("{name}.auth"))).unwrap(), *file);

        // openssl verifies our PKCS#7 over the payload.
        let payload = variable_payload(name, vendor, file);
        std::fs::write(p("payload.bin"), &payload).unwrap();
        let oid_signed_data = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
        let content_info = der(0x30, &[&oid_signed_data[..], &der(0xa0, &auth.signed_data)].concat());
        std::fs::write(p("sig.der"), &content_info).unwrap();
        let verify = |content: &str| {
            let args = [
                "cms",
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                "sig.der",
                "-content",
                content,
                "-CAfile",
                "keys/uki-signing-cert.pem",
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ];
            runner().run(OPENSSL, args, Some(dir.path()), None)
        };
        verify("payload.bin").unwrap_or_else(|e| panic!("{name}: {e}"));
        std::fs::write(p("wrong.bin"), [&payload[..payload.len() - 1], &[payload[payload.len() - 1] ^ 1]].concat())
            .unwrap();
        assert!(verify("wrong.bin").is_err(), "{name}: a changed payload must not verify");

        // sign-efi-sig-list -o prints the bundle it would sign for the same variable and timestamp: our payload.
        let timestamp = "2023-11-14 22:13:20";
        let args = ["-o", "-t", timestamp, name, "cert.esl", "bundle.bin"];
        runner().run(SIGN_EFI_SIG_LIST, args, Some(dir.path()), None).unwrap();
        assert_eq!(std::fs::read(p("bundle.bin")).unwrap(), payload, "{name}: signed payload");
        // And a signed efitools file has the same header fields and timestamp as ours.
        let args = [
            "-t",
            timestamp,
            "-k",
            "keys/uki-signing-key.pem",
            "-c",
            "keys/uki-signing-cert.pem",
            name,
            "cert.esl",
            "efitools.auth",
        ];
        runner().run(SIGN_EFI_SIG_LIST, args, Some(dir.path()), None).unwrap();
        let theirs = parse_authenticated_variable(&std::fs::read(p("efitools.auth")).unwrap()).unwrap();
        assert_eq!(
            (theirs.timestamp, theirs.cert_type, &theirs.data),
            (auth.timestamp, auth.cert_type, &auth.data),
            "{name}"
        );
    }
}
