//! An OCI registry as a release source, through the cache: oci-client on a private tokio runtime, anonymous
//! pulls, bounded waits, every blob verified before it gets its final name in the cache.
//!
//! Registries on loopback addresses (`localhost`, `127.0.0.0/8`, `[::1]`; unless
//! [`super::FetchOptions::https_on_loopback`]) and those listed in [`super::FetchOptions::plain_http`] are
//! spoken to over plain HTTP (Docker's default for loopback); everything else over HTTPS, verified against
//! the system's CA certificates (rustls-platform-verifier: Debian's `ca-certificates`) plus
//! [`super::FetchOptions::extra_ca_certs`], with ring installed as rustls's process-wide crypto provider when
//! none is installed yet. Each request's connect and read phases are bounded by the
//! timeout, and a whole manifest request (token dance included) is bounded by it too, so a registry that is
//! down or hangs fails in bounded time. Offline, the store never builds a client: every digest must already
//! be in the cache.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::Client;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};

use super::cache::Cache;
use super::error::{ReleaseError, Result};
use super::oci::{ACCEPTED_MANIFEST_TYPES, MAX_MANIFEST_BYTES, Store};
use super::reference::{Digest, ImageRef};
use super::{FetchOptions, FetchStats};

/// Installs ring as rustls's default crypto provider unless one is installed already.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may win the race; either way a provider is installed afterwards.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Whether `host` (`name[:port]`) is a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Registry access through the cache.
pub(crate) struct RegistryStore<'c> {
    cache: &'c Cache,
    opts: &'c FetchOptions,
    offline: bool,
    timeout: Duration,
    rt: Option<tokio::runtime::Runtime>,
    clients: HashMap<String, Client>,
    pub(crate) stats: FetchStats,
}

impl std::fmt::Debug for RegistryStore<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryStore").field("cache", &self.cache).field("offline", &self.offline).finish()
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

impl<'c> RegistryStore<'c> {
    pub(crate) fn new(opts: &'c FetchOptions) -> Self {
        RegistryStore {
            cache: &opts.cache,
            opts,
            offline: opts.offline,
            timeout: opts.timeout,
            rt: None,
            clients: HashMap::new(),
            stats: FetchStats::default(),
        }
    }

    fn offline_error(&self, image: &ImageRef, digest: &Digest) -> ReleaseError {
        ReleaseError::OfflineNotCached {
            reference: image.tagged(),
            digest: digest.to_string(),
            path: self.cache.blob_path(digest),
        }
    }

    /// The runtime and the client for the image's registry (built on first use).
    fn client(&mut self, image: &ImageRef) -> Result<(&tokio::runtime::Runtime, Client)> {
        if self.rt.is_none() {
            ensure_crypto_provider();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| {
                ReleaseError::Registry {
                    reference: image.tagged(),
                    message: format!("cannot start the async runtime: {e}"),
                }
            })?;
            self.rt = Some(rt);
        }
        let host = image.registry.clone();
        if !self.clients.contains_key(&host) {
            let plain = (is_loopback(&host) && !self.opts.https_on_loopback) || self.opts.plain_http.contains(&host);
            let mut extra_root_certificates = Vec::new();
            for p in &self.opts.extra_ca_certs {
                let data = std::fs::read(p).map_err(|e| ReleaseError::read(p, e))?;
                extra_root_certificates.push(Certificate { encoding: CertificateEncoding::Pem, data });
            }
            let config = ClientConfig {
                protocol: if plain { ClientProtocol::Http } else { ClientProtocol::Https },
                extra_root_certificates,
                connect_timeout: Some(self.timeout),
                read_timeout: Some(self.timeout),
                platform_resolver: None,
                user_agent: concat!("talforge/", env!("CARGO_PKG_VERSION")),
                ..ClientConfig::default()
            };
            let client = Client::try_from(config).map_err(|e| ReleaseError::Registry {
                reference: image.tagged(),
                message: format!("cannot set up the registry client: {}", chain(&e)),
            })?;
            self.clients.insert(host.clone(), client);
        }
        let client = self.clients.get(&host).cloned().ok_or_else(|| ReleaseError::Registry {
            reference: image.tagged(),
            message: "registry client missing".into(),
        })?;
        let rt = self.rt.as_ref().ok_or_else(|| ReleaseError::Registry {
            reference: image.tagged(),
            message: "async runtime missing".into(),
        })?;
        Ok((rt, client))
    }

    fn map_error(&self, image: &ImageRef, e: OciDistributionError) -> ReleaseError {
        let reference = image.tagged();
        match e {
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected,
                actual,
            }) => ReleaseError::DigestMismatch { reference, expected, found: actual, from: None },
            OciDistributionError::ImageManifestNotFoundError(_)
            | OciDistributionError::ServerError { code: 404, .. } => {
                ReleaseError::ImageNotFound { reference, place: format!("registry {}", image.registry) }
            }
            OciDistributionError::RegistryError { ref envelope, .. }
                if envelope.errors.iter().any(|x| {
                    matches!(
                        x.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NotFound
                    )
                }) =>
            {
                ReleaseError::ImageNotFound { reference, place: format!("registry {}", image.registry) }
            }
            OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
                ReleaseError::Registry {
                    reference,
                    message: format!("access denied; talforge pulls anonymously ({})", chain(&e)),
                }
            }
            OciDistributionError::RequestError(ref r) if r.is_timeout() => {
                ReleaseError::Timeout { reference, after: self.timeout }
            }
            OciDistributionError::RequestError(ref r) if r.is_connect() => ReleaseError::Registry {
                reference,
                message: format!("cannot connect to {}: {}", image.registry, chain(&e)),
            },
            other => ReleaseError::Registry { reference, message: chain(&other) },
        }
    }

    fn get_manifest(&mut self, image: &ImageRef, digest: Option<&Digest>) -> Result<(Vec<u8>, Digest)> {
        let timeout = self.timeout;
        let reference = image.to_oci(digest);
        let (rt, client) = self.client(image)?;
        let res = rt.block_on(async {
            tokio::time::timeout(
                timeout,
                client.pull_manifest_raw(&reference, &RegistryAuth::Anonymous, &ACCEPTED_MANIFEST_TYPES),
            )
            .await
        });
        let (bytes, served) = match res {
            Err(_) => return Err(ReleaseError::Timeout { reference: image.tagged(), after: timeout }),
            Ok(Err(e)) => return Err(self.map_error(image, e)),
            Ok(Ok(x)) => x,
        };
        self.stats.manifests_fetched += 1;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ReleaseError::BadImage {
                reference: image.tagged(),
                digest: served,
                message: format!("expected a manifest of at most 4 MiB; found {} bytes", bytes.len()),
            });
        }
        let found = Digest::of(&bytes);
        if let Some(d) = digest
            && &found != d
        {
            return Err(ReleaseError::DigestMismatch {
                reference: image.tagged(),
                expected: d.to_string(),
                found: found.to_string(),
                from: None,
            });
        }
        if served != found.as_str() {
            return Err(ReleaseError::DigestMismatch {
                reference: image.tagged(),
                expected: served,
                found: found.to_string(),
                from: None,
            });
        }
        self.cache.put_blob(&found, &bytes)?;
        Ok((bytes.to_vec(), found))
    }

    /// Streams a blob into a temporary file of the cache, verifying size and digest, then commits it.
    fn download(&mut self, image: &ImageRef, digest: &Digest, size: u64) -> Result<PathBuf> {
        let timeout = self.timeout;
        let (tmp, mut file) = self.cache.temp_file("download")?;
        let reference = image.to_oci(Some(digest));
        let tmp_path = tmp.path.clone();
        let (rt, client) = self.client(image)?;
        enum Failure {
            Oci(OciDistributionError),
            Stream(std::io::Error),
            Timeout,
            TooLarge,
            Write(std::io::Error),
        }
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let res: std::result::Result<(), Failure> = rt.block_on(async {
            // Blob requests do not register credentials themselves (manifest requests do); without this a
            // registry that hands out anonymous tokens (ghcr.io) would refuse a blob whose manifest came
            // from the cache.
            client.store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous).await;
            let mut stream =
                match tokio::time::timeout(timeout, client.pull_blob_stream(&reference, digest.as_str())).await {
                    Err(_) => return Err(Failure::Timeout),
                    Ok(Err(e)) => return Err(Failure::Oci(e)),
                    Ok(Ok(s)) => s,
                };
            loop {
                let chunk = match tokio::time::timeout(timeout, stream.next()).await {
                    Err(_) => return Err(Failure::Timeout),
                    Ok(None) => return Ok(()),
                    Ok(Some(Err(e))) => return Err(Failure::Stream(e)),
                    Ok(Some(Ok(c))) => c,
                };
                len += chunk.len() as u64;
                if len > size {
                    return Err(Failure::TooLarge);
                }
                hasher.update(&chunk);
                file.write_all(&chunk).map_err(Failure::Write)?;
            }
        });
        let found = Digest::from_hasher(hasher);
        let mismatch = |found: String| ReleaseError::DigestMismatch {
            reference: image.tagged(),
            expected: digest.to_string(),
            found,
            from: None,
        };
        match res {
            Ok(()) => {}
            Err(Failure::TooLarge) => {
                return Err(mismatch(format!("more than the {size} bytes the manifest declares")));
            }
            // oci-client reports its own digest check as a stream error after the last byte.
            Err(Failure::Stream(_)) if len == size && found != *digest => return Err(mismatch(found.to_string())),
            Err(Failure::Stream(e)) => {
                return Err(ReleaseError::Registry {
                    reference: image.tagged(),
                    message: format!("download of {digest} broke off after {len} of {size} bytes: {}", chain(&e)),
                });
            }
            Err(Failure::Oci(e)) => return Err(self.map_error(image, e)),
            Err(Failure::Timeout) => return Err(ReleaseError::Timeout { reference: image.tagged(), after: timeout }),
            Err(Failure::Write(e)) => return Err(ReleaseError::write(&tmp_path, e)),
        }
        if found != *digest {
            return Err(mismatch(found.to_string()));
        }
        if len != size {
            return Err(ReleaseError::BadImage {
                reference: image.tagged(),
                digest: digest.to_string(),
                message: format!("expected {size} bytes as the manifest says; found {len}"),
            });
        }
        self.stats.blobs_downloaded += 1;
        self.stats.bytes_downloaded += len;
        self.cache.commit_blob(tmp, file, digest)
    }
}

impl Store for RegistryStore<'_> {
    fn place(&self, image: &ImageRef) -> String {
        format!("registry {}", image.registry)
    }

    fn resolve_tag(&mut self, image: &ImageRef) -> Result<Digest> {
        if self.offline {
            return Err(ReleaseError::Registry {
                reference: image.tagged(),
                message: "offline: the tag cannot be resolved without the network".into(),
            });
        }
        Ok(self.get_manifest(image, None)?.1)
    }

    fn manifest_bytes(&mut self, image: &ImageRef, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.cache.blob_path(digest);
        match std::fs::read(&path) {
            Ok(bytes) if Digest::of(&bytes) == *digest => {
                self.stats.from_cache += 1;
                return Ok(bytes);
            }
            Ok(bytes) if self.offline => {
                return Err(ReleaseError::DigestMismatch {
                    reference: image.tagged(),
                    expected: digest.to_string(),
                    found: Digest::of(&bytes).to_string(),
                    from: Some(path),
                });
            }
            Ok(_) => {
                // A damaged cache entry: fetch it again.
                let _ = std::fs::remove_file(&path);
            }
            Err(_) if self.offline => return Err(self.offline_error(image, digest)),
            Err(_) => {}
        }
        Ok(self.get_manifest(image, Some(digest))?.0)
    }

    fn blob_file(&mut self, image: &ImageRef, digest: &Digest, size: u64) -> Result<PathBuf> {
        let path = self.cache.blob_path(digest);
        if path.is_file() {
            self.stats.from_cache += 1;
            return Ok(path);
        }
        if self.offline {
            return Err(self.offline_error(image, digest));
        }
        self.download(image, digest, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.3.2.1", "[::1]:5000"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["ghcr.io", "10.0.0.1:5000", "[fe80::1]:5000", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
