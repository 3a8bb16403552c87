//! Blobs as files in a directory (embedded mode). A file holds its content type on the first
//! line, then the bytes; a `put` writes a temporary file and renames it over the old one, so a
//! reader sees either whole. URLs are the server's own (`{base}/{key}?expires=&signature=`),
//! signed with HMAC-SHA256 over the method, the key and the expiry; the server checks them with
//! [`UrlSigner::verify`] before serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{check_key, Blob, BlobError, BlobStore, ByteStream, Result, SignedUrl, Stored};

/// Largest content type kept (the first line of a file).
const MAX_CONTENT_TYPE: usize = 255;

fn io(error: std::io::Error) -> BlobError {
    BlobError::Storage(error.to_string())
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Signs and checks the server's expiring blob URLs.
#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

/// Why a signed URL was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("the link has expired")]
    Expired,
    #[error("the link's signature does not match")]
    BadSignature,
}

impl UrlSigner {
    /// `secret` comes from the configuration or the environment; at least 32 bytes.
    pub fn new(secret: &[u8]) -> Result<Self> {
        if secret.len() < 32 {
            return Err(BlobError::Storage("the URL signing secret must be at least 32 bytes".into()));
        }
        Ok(Self { secret: secret.to_vec() })
    }

    fn mac(&self, method: &str, key: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{method}\n{key}\n{expires}").as_bytes());
        mac
    }

    /// The signature of `method` on `key` until `expires` (Unix seconds), in hex.
    pub fn sign(&self, method: &str, key: &str, expires: u64) -> String {
        hex::encode(self.mac(method, key, expires).finalize().into_bytes())
    }

    /// Checks a signature (in constant time) and the expiry.
    pub fn verify(&self, method: &str, key: &str, expires: u64, signature: &str) -> Result<(), UrlRefused> {
        let signature = hex::decode(signature).map_err(|_| UrlRefused::BadSignature)?;
        self.mac(method, key, expires).verify_slice(&signature).map_err(|_| UrlRefused::BadSignature)?;
        if now_unix() > expires {
            return Err(UrlRefused::Expired);
        }
        Ok(())
    }

    /// `{base}/{key}?expires=..&signature=..` for `method`.
    pub fn url(&self, base: &str, method: &str, key: &str, expires_in: Duration) -> String {
        let expires = now_unix() + expires_in.as_secs();
        format!("{}/{key}?expires={expires}&signature={}", base.trim_end_matches('/'), self.sign(method, key, expires))
    }
}

pub struct LocalBlobStore {
    directory: PathBuf,
    signer: UrlSigner,
    /// Where the server serves blobs, e.g. `http://127.0.0.1:8080/fhir/_blob`.
    base_url: String,
    counter: AtomicU64,
}

impl LocalBlobStore {
    pub fn new(directory: impl Into<PathBuf>, signer: UrlSigner, base_url: impl Into<String>) -> Self {
        Self { directory: directory.into(), signer, base_url: base_url.into(), counter: AtomicU64::new(0) }
    }

    pub fn signer(&self) -> &UrlSigner {
        &self.signer
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.directory.join(key))
    }

    /// Writes the blob to `temporary`, then renames it to `path`.
    async fn write(&self, temporary: &Path, path: &Path, content_type: &str, mut body: ByteStream) -> Result<Stored> {
        let mut file = tokio::fs::File::create(temporary).await.map_err(io)?;
        file.write_all(format!("{content_type}\n").as_bytes()).await.map_err(io)?;
        let (mut size, mut hasher) = (0u64, Sha256::new());
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.sync_all().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(temporary, path).await.map_err(io)?;
        Ok(Stored { size, sha256: hasher.finalize().into() })
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, key: &str, content_type: &str, body: ByteStream) -> Result<Stored> {
        let path = self.path(key)?;
        if content_type.len() > MAX_CONTENT_TYPE || content_type.contains(['\n', '\r']) {
            return Err(BlobError::Storage("the content type is not valid".into()));
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}-{}", std::process::id(), self.counter.fetch_add(1, Ordering::Relaxed)));
        let temporary = path.with_file_name(name);
        let written = self.write(&temporary, &path, content_type, body).await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        written
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>> {
        let path = self.path(key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io(error)),
        };
        let length = file.metadata().await.map_err(io)?.len();
        let mut reader = BufReader::new(file);
        let mut first_line = Vec::new();
        (&mut reader).take(MAX_CONTENT_TYPE as u64 + 1).read_until(b'\n', &mut first_line).await.map_err(io)?;
        let content_type = String::from_utf8_lossy(first_line.strip_suffix(b"\n").unwrap_or(&first_line)).to_string();
        let size = length - first_line.len() as u64;
        let body = tokio_util::io::ReaderStream::new(reader).map(|chunk| chunk.map_err(io)).boxed();
        Ok(Some(Blob { content_type, size, body }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io(error)),
        }
    }

    async fn download_url(&self, key: &str, expires_in: Duration) -> Result<SignedUrl> {
        check_key(key)?;
        Ok(SignedUrl { url: self.signer.url(&self.base_url, "GET", key, expires_in), headers: Vec::new() })
    }

    async fn upload_url(&self, key: &str, content_type: &str, expires_in: Duration) -> Result<SignedUrl> {
        check_key(key)?;
        let url = self.signer.url(&self.base_url, "PUT", key, expires_in);
        Ok(SignedUrl { url, headers: vec![("content-type".into(), content_type.into())] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_urls_are_checked_for_tampering_and_expiry() {
        let signer = UrlSigner::new(&[7; 32]).unwrap();
        let expires = now_unix() + 60;
        let signature = signer.sign("GET", "binary/a", expires);
        assert_eq!(signer.verify("GET", "binary/a", expires, &signature), Ok(()));
        assert_eq!(signer.verify("GET", "binary/b", expires, &signature), Err(UrlRefused::BadSignature), "another key");
        assert_eq!(signer.verify("PUT", "binary/a", expires, &signature), Err(UrlRefused::BadSignature), "another method");
        assert_eq!(signer.verify("GET", "binary/a", expires + 1, &signature), Err(UrlRefused::BadSignature), "a later expiry");
        assert_eq!(signer.verify("GET", "binary/a", expires, "zz"), Err(UrlRefused::BadSignature));
        let past = now_unix() - 1;
        assert_eq!(signer.verify("GET", "binary/a", past, &signer.sign("GET", "binary/a", past)), Err(UrlRefused::Expired));
        let other = UrlSigner::new(&[8; 32]).unwrap();
        assert_eq!(other.verify("GET", "binary/a", expires, &signature), Err(UrlRefused::BadSignature), "another secret");
        assert!(UrlSigner::new(b"short").is_err());
    }
}
