//! The blob store of each mode: a directory in the data directory whose signed URLs the server
//! serves itself (embedded), or the S3 bucket `aws.blobs_bucket` with presigned URLs (AWS).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use blob_store::local::{LocalBlobStore, UrlSigner};
use blob_store::s3::S3BlobStore;
use command_api::state::Blobs;

use crate::config::Config;

const BLOB_DIR: &str = "blobs";
const SECRET_FILE: &str = "blob-url.key";

pub fn embedded(config: &Config) -> anyhow::Result<Blobs> {
    let signer = UrlSigner::new(&secret(config)?).context("blob_url_secret")?;
    // The store's own URLs are not used: the API signs them with each request's base URL.
    let store = LocalBlobStore::new(config.data_dir.join(BLOB_DIR), signer.clone(), "");
    Ok(Blobs { store: Arc::new(store), signer: Some(signer) })
}

pub fn aws(config: &Config, s3: aws_sdk_s3::Client) -> Blobs {
    Blobs { store: Arc::new(S3BlobStore::new(s3, &config.aws.blobs_bucket)), signer: None }
}

/// The configured secret, or the data directory's own (made on first use).
fn secret(config: &Config) -> anyhow::Result<Vec<u8>> {
    if let Some(secret) = &config.blob_url_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = config.data_dir.join(SECRET_FILE);
    match std::fs::read(&path) {
        Ok(secret) => return Ok(secret),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("no randomness for the blob URL key: {error}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret.to_vec())
}
