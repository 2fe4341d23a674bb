//! Boot-image assembly: the unified kernel image (UKI) that sd-boot starts, and the Secure Boot artefacts around
//! it (signing key and certificate, Authenticode signatures for sd-boot and the UKI, and the `PK`/`KEK`/`db`
//! auto-enrollment files sd-boot installs in setup mode). Everything here is a pure function of its inputs plus
//! the build epoch and the injectable random number generator, so images are byte-reproducible.

mod authenticode;
mod der;
mod enroll;
mod image;
mod pe;
mod secureboot;

#[cfg(test)]
mod tests;

pub use authenticode::{authenticode_digest, pe_signatures, sign_pe};
pub use enroll::{
    AuthenticatedVariable, DB_AUTH, EfiTime, EnrollmentFiles, KEK_AUTH, PK_AUTH, SECURE_BOOT_VARIABLE_ATTRIBUTES,
    SignatureList, WellKnownCertificates, authenticated_variable, owner_guid, parse_authenticated_variable,
    parse_signature_database, x509_signature_database,
};
pub use image::{
    APPENDED_SECTION_CHARACTERISTICS, KERNEL_PARAM_WIPE, MAX_SECTIONS, MIN_STUB_VERSION_FOR_PROFILES, UkiError,
    UkiInputs, UkiProfile, UkiSection, build_uki, kernel_release, major_version, read_sections, section_data,
    stub_version,
};
pub use secureboot::{
    DEFAULT_UKI_COMMON_NAME, Guid, SIGNING_CERT_VALIDITY, SecureBootError, SigningKey, SigningKeyFiles,
    UKI_SIGNING_KEY_BITS,
};
