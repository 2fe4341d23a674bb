//! The single source of randomness for everything in this module, and the
//! adapters that feed it to crates that want their own RNG traits.

use rand_chacha::ChaCha20Rng;
use std::convert::Infallible;

use rand_chacha::rand_core::{Rng as _, SeedableRng as _, TryCryptoRng, TryRng};

use super::PkiError;

/// Where all secret randomness comes from. Passed in explicitly so that tests
/// (and reproducible builds of test fixtures) can use a seeded generator.
pub trait SecretRng {
    /// Fills `dst` with random bytes.
    ///
    /// Implementations that can fail should override [`SecretRng::try_fill_bytes`];
    /// this module only ever calls that one.
    fn fill_bytes(&mut self, dst: &mut [u8]);

    /// Fills `dst` with random bytes, reporting failure instead of panicking.
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), PkiError> {
        self.fill_bytes(dst);
        Ok(())
    }
}

/// The operating system's generator (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsSecretRng;

impl SecretRng for OsSecretRng {
    /// # Panics
    ///
    /// If the operating system cannot provide randomness (like `rand`'s
    /// `OsRng`). Code in this module calls [`SecretRng::try_fill_bytes`] instead,
    /// which returns [`PkiError::Rng`].
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        if let Err(err) = getrandom::fill(dst) {
            // Invariant: there is no safe way to continue without randomness,
            // and this trait method has no error channel.
            panic!("operating system random number generator failed: {err}");
        }
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), PkiError> {
        getrandom::fill(dst).map_err(|err| {
            PkiError::Rng(format!("expected random bytes from the operating system; found error: {err}"))
        })
    }
}

/// A deterministic ChaCha20 generator for tests: the same seed gives the same
/// keys, serials and tokens (and, since all signatures used here are
/// deterministic, byte-identical bundles for the same `now`).
#[derive(Debug, Clone)]
pub struct SeededSecretRng(ChaCha20Rng);

impl SeededSecretRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        SeededSecretRng(ChaCha20Rng::from_seed(seed))
    }
}

impl SecretRng for SeededSecretRng {
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

/// Reads `N` random bytes.
pub(crate) fn random_array<const N: usize>(rng: &mut dyn SecretRng) -> Result<[u8; N], PkiError> {
    let mut buf = [0u8; N];
    rng.try_fill_bytes(&mut buf)?;
    Ok(buf)
}

/// Adapter from [`SecretRng`] to the infallible `rand_core` 0.10 traits
/// that `rsa` wants for key generation.
///
/// Those traits cannot report failure, so the first failure of the inner
/// generator is remembered and the adapter switches to a fixed stream (so
/// that prime search still terminates); [`RsaRngAdapter::finish`] returns the
/// failure and the caller discards whatever was generated.
pub(crate) struct RsaRngAdapter<'a> {
    inner: &'a mut dyn SecretRng,
    failure: Option<PkiError>,
    fallback: Option<ChaCha20Rng>,
}

impl<'a> RsaRngAdapter<'a> {
    pub(crate) fn new(inner: &'a mut dyn SecretRng) -> Self {
        RsaRngAdapter { inner, failure: None, fallback: None }
    }

    /// Returns the first failure of the inner generator, if any.
    pub(crate) fn finish(self) -> Result<(), PkiError> {
        match self.failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

impl TryRng for RsaRngAdapter<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut buf = [0u8; 4];
        self.try_fill_bytes(&mut buf)?;
        Ok(u32::from_le_bytes(buf))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut buf = [0u8; 8];
        self.try_fill_bytes(&mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if let Some(fallback) = self.fallback.as_mut() {
            fallback.fill_bytes(dst);
            return Ok(());
        }
        if let Err(err) = self.inner.try_fill_bytes(dst) {
            self.failure = Some(err);
            let mut fallback = ChaCha20Rng::from_seed([0u8; 32]);
            fallback.fill_bytes(dst);
            self.fallback = Some(fallback);
        }
        Ok(())
    }
}

impl TryCryptoRng for RsaRngAdapter<'_> {}
