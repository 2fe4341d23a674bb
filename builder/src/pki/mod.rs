//! Secrets bundle and PKI, compatible with `talosctl gen secrets`.
//!
//! A Talos cluster is defined by a handful of secrets: the cluster identity,
//! Kubernetes' bootstrap token and etcd encryption key, trustd's token, and
//! five CAs/keys (etcd, Kubernetes, the aggregator front-proxy, the
//! service-account key and the Talos API "OS" CA). talforge must generate
//! them exactly as `talosctl gen secrets` does, read bundles talosctl wrote
//! (and write them back byte for byte), refuse broken ones with an error that
//! names the offending field, and issue the admin client certificate that goes
//! into a talosconfig. This module does all of that with one injectable source
//! of randomness ([`SecretRng`]) so that tests are reproducible.
//!
//! Facts about Talos's behaviour come from reading siderolabs/talos
//! (`pkg/machinery/config/generate/secrets`, `pkg/machinery/client/config`)
//! and siderolabs/crypto (`x509`), both MPL-2.0; no code was copied.

mod bundle;
mod cert;
mod error;
mod keys;
mod rng;
mod talosconfig;
mod yaml;

#[cfg(test)]
mod tests;

pub use bundle::{CertAndKey, Certs, ClusterSecrets, EncryptionSecret, PemKey, Secrets, SecretsBundle, TrustdInfo};
pub use cert::{ADMIN_ROLE, CA_VALIDITY, CLIENT_CERT_VALIDITY, generate_admin_cert, generate_client_cert};
pub use error::PkiError;
pub use rng::{OsSecretRng, SecretRng, SeededSecretRng};
pub use talosconfig::{TalosAuth, TalosConfig, TalosContext};

/// A Talos version contract: the Talos release the secrets are generated for
/// (`talosctl gen secrets --talos-version`). Only major.minor matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Contract {
    pub major: u32,
    pub minor: u32,
}

impl Contract {
    /// Talos 1.14, the newest contract this module knows.
    pub const V1_14: Contract = Contract::new(1, 14);
    /// The contract used when none is given.
    pub const CURRENT: Contract = Contract::V1_14;

    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        Contract { major, minor }
    }

    /// Parses `v1.14`, `1.14`, `v1.14.0`, `v1.14.0-rc.1`...
    pub fn parse(version: &str) -> Result<Self, PkiError> {
        let fail = || {
            PkiError::invalid("contract", format!("expected a Talos version like v1.14 or 1.14.0; found {version:?}"))
        };
        let trimmed = version.strip_prefix('v').unwrap_or(version);
        let mut parts = trimmed.splitn(3, '.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(fail)?;
        let minor_text = parts.next().ok_or_else(fail)?;
        let minor = minor_text.parse().map_err(|_| fail())?;
        Ok(Contract::new(major, minor))
    }

    /// RSA-4096 service-account key instead of ECDSA P-256 (Talos: contract > 1.6).
    pub fn uses_rsa_service_account_key(self) -> bool {
        self > Contract::new(1, 6)
    }

    /// `secretboxencryptionsecret` instead of `aescbcencryptionsecret` (contract > 1.2).
    pub fn uses_secretbox(self) -> bool {
        self > Contract::new(1, 2)
    }

    /// Cluster id in the standard base64 alphabet (talosctl ≥ 1.14) rather
    /// than the URL-safe one older talosctl used.
    pub fn uses_standard_cluster_id_encoding(self) -> bool {
        self >= Contract::new(1, 14)
    }
}

impl Default for Contract {
    fn default() -> Self {
        Contract::CURRENT
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}
