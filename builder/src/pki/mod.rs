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

pub use crate::quirks::Contract;

/// Contract gates that decide what a secrets bundle holds (Talos `config.VersionContract`).
impl Contract {
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
