//! Bytes that do not belong in the log (Binary contents, export files), behind one trait:
//!
//! - [`local::LocalBlobStore`]: files in a directory (embedded mode), with URLs the server
//!   serves, signed with HMAC-SHA256 and expiring ([`local::UrlSigner`]);
//! - [`s3::S3BlobStore`]: objects in an S3 bucket (AWS mode), with presigned URLs.
//!
//! Contents stream in and out in chunks: nothing holds a whole file in memory. A `put` reports
//! the size and SHA-256 of what it stored (what an event records about a Binary), and is atomic:
//! a reader sees the old contents or the new, never part of them. [`suite`] is the behaviour
//! both implementations pass.

pub mod local;
pub mod s3;
pub mod suite;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob key {0:?} is not valid: use letters, digits, '-', '_', '.' and '/' (not at the start, no '..')")]
    BadKey(String),
    #[error("blob storage: {0}")]
    Storage(String),
    #[error("reading the upload failed: {0}")]
    Upload(String),
}

pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// A stream of chunks, from a request body or to a response.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// What was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// A stored blob being read.
pub struct Blob {
    pub content_type: String,
    pub size: u64,
    pub body: ByteStream,
}

/// A URL that grants one operation on one blob until it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    /// Headers the request must carry (`content-type` for an upload to S3).
    pub headers: Vec<(String, String)>,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `body` under `key` (replacing what was there), streaming.
    async fn put(&self, key: &str, content_type: &str, body: ByteStream) -> Result<Stored>;
    /// The blob under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Blob>>;
    /// Removes the blob (nothing if there is none).
    async fn delete(&self, key: &str) -> Result<()>;
    /// A URL to download the blob until `expires_in` has passed.
    async fn download_url(&self, key: &str, expires_in: Duration) -> Result<SignedUrl>;
    /// A URL to upload the blob (PUT, with the given content type) until `expires_in` has passed.
    async fn upload_url(&self, key: &str, content_type: &str, expires_in: Duration) -> Result<SignedUrl>;
}

/// Keys are relative paths of plain segments, so that no key can name a file outside the store.
pub fn check_key(key: &str) -> Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 512
        && !key.starts_with('/')
        && key.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != "..")
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if valid {
        Ok(())
    } else {
        Err(BlobError::BadKey(key.chars().take(100).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys_cannot_leave_the_store() {
        for bad in ["", "/etc/passwd", "a/../b", "..", "a//b", "a b", "a\\b", "./a"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "binary/t1/abc.bin", "export/job-1/Patient.1.ndjson"] {
            assert!(check_key(good).is_ok(), "{good:?}");
        }
    }
}
