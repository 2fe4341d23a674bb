//! The Secure Boot signing key of a cluster: loaded from the cluster's key folder, or created there once (RSA
//! 4096, self-signed, mode 0600) so that every later build signs with the same key and stays reproducible.

use std::path::Path;
use std::time::SystemTime;

use crate::assemble::uki::{DEFAULT_UKI_COMMON_NAME, SigningKey, UKI_SIGNING_KEY_BITS};
use crate::error::{Error, Result};
use crate::pki::OsSecretRng;

/// The file prefix Talos's `talosctl gen secureboot uki` uses.
pub const PREFIX: &str = "uki";

/// Loads `<dir>/uki-signing-{key,cert}.pem`, or generates and writes them when neither exists.
pub fn load_or_create(dir: &Path) -> Result<SigningKey> {
    let key = dir.join(format!("{PREFIX}-signing-key.pem"));
    let cert = dir.join(format!("{PREFIX}-signing-cert.pem"));
    match (key.exists(), cert.exists()) {
        (true, true) => Ok(SigningKey::load(&key, &cert)?),
        (false, false) => {
            let k = SigningKey::generate(
                &mut OsSecretRng,
                DEFAULT_UKI_COMMON_NAME,
                UKI_SIGNING_KEY_BITS,
                SystemTime::now(),
            )?;
            k.write_files(dir, PREFIX)?;
            eprintln!("created a Secure Boot signing key in {} (mode 0600)", dir.display());
            Ok(k)
        }
        (true, false) | (false, true) => Err(Error::Input(Box::new(crate::error::Diagnostic::new(
            dir,
            crate::yaml::Span::UNKNOWN,
            crate::yaml::FieldPath::root(),
            format!("expected both {PREFIX}-signing-key.pem and {PREFIX}-signing-cert.pem; found only one"),
        )))),
    }
}
