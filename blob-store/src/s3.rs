//! Blobs as objects in an S3 bucket (AWS mode). An upload that fits in one part is one
//! PutObject; a longer one is a multipart upload in parts of [`PART`], aborted if anything fails,
//! so an object is replaced whole or not at all. URLs are S3's presigned ones.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::{check_key, Blob, BlobError, BlobStore, ByteStream, Result, SignedUrl, Stored};

/// Size of each part of a multipart upload (S3 wants at least 5 MiB for all but the last).
pub const PART: usize = 8 * 1024 * 1024;

fn s3(error: impl std::error::Error) -> BlobError {
    BlobError::Storage(format!("S3: {}", aws_sdk_s3::error::DisplayErrorContext(error)))
}

pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    /// The first part, then the rest of the body part by part; returns what completes the upload.
    async fn upload_parts(&self, key: &str, upload: &str, first: Bytes, body: &mut ByteStream, hasher: &mut Sha256, size: &mut u64) -> Result<Vec<CompletedPart>> {
        let mut parts = Vec::new();
        self.put_part(key, upload, 1, first, &mut parts).await?;
        let mut buffer = BytesMut::new();
        loop {
            let finished = fill(body, &mut buffer, hasher, size).await?;
            if !buffer.is_empty() {
                self.put_part(key, upload, parts.len() as i32 + 1, buffer.split().freeze(), &mut parts).await?;
            }
            if finished {
                return Ok(parts);
            }
        }
    }

    async fn put_part(&self, key: &str, upload: &str, number: i32, part: Bytes, parts: &mut Vec<CompletedPart>) -> Result<()> {
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .part_number(number)
            .body(S3Body::from(part))
            .send()
            .await
            .map_err(s3)?;
        parts.push(CompletedPart::builder().part_number(number).set_e_tag(output.e_tag).build());
        Ok(())
    }
}

/// Reads from `body` into `buffer` until it holds a part or the body ends; true when it ended.
async fn fill(body: &mut ByteStream, buffer: &mut BytesMut, hasher: &mut Sha256, size: &mut u64) -> Result<bool> {
    while buffer.len() < PART {
        match body.next().await {
            Some(chunk) => {
                let chunk = chunk?;
                hasher.update(&chunk);
                *size += chunk.len() as u64;
                buffer.extend_from_slice(&chunk);
            }
            None => return Ok(true),
        }
    }
    Ok(false)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, content_type: &str, mut body: ByteStream) -> Result<Stored> {
        check_key(key)?;
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        let mut buffer = BytesMut::new();
        let finished = fill(&mut body, &mut buffer, &mut hasher, &mut size).await?;
        if finished {
            let request = self.client.put_object().bucket(&self.bucket).key(key).content_type(content_type).body(S3Body::from(buffer.freeze()));
            request.send().await.map_err(s3)?;
            return Ok(Stored { size, sha256: hasher.finalize().into() });
        }
        let created = self.client.create_multipart_upload().bucket(&self.bucket).key(key).content_type(content_type).send().await.map_err(s3)?;
        let upload = created.upload_id.ok_or_else(|| BlobError::Storage("S3 gave no upload id".into()))?;
        match self.upload_parts(key, &upload, buffer.freeze(), &mut body, &mut hasher, &mut size).await {
            Ok(parts) => {
                let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
                self.client.complete_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload).multipart_upload(completed).send().await.map_err(s3)?;
                Ok(Stored { size, sha256: hasher.finalize().into() })
            }
            Err(error) => {
                let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload).send().await;
                Err(error)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>> {
        check_key(key)?;
        let output = match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(error) => return Err(s3(error)),
        };
        let content_type = output.content_type.clone().unwrap_or_else(|| "application/octet-stream".into());
        let size = output.content_length.unwrap_or(0).max(0) as u64;
        let body = futures::stream::unfold(output.body, |mut body| async move {
            match body.next().await {
                Some(Ok(chunk)) => Some((Ok(chunk), body)),
                Some(Err(error)) => Some((Err(BlobError::Storage(format!("S3: {error}"))), body)),
                None => None,
            }
        })
        .boxed();
        Ok(Some(Blob { content_type, size, body }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.client.delete_object().bucket(&self.bucket).key(key).send().await.map_err(s3)?;
        Ok(())
    }

    async fn download_url(&self, key: &str, expires_in: Duration) -> Result<SignedUrl> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(expires_in).map_err(|error| BlobError::Storage(error.to_string()))?;
        let request = self.client.get_object().bucket(&self.bucket).key(key).presigned(config).await.map_err(s3)?;
        Ok(SignedUrl { url: request.uri().to_string(), headers: Vec::new() })
    }

    async fn upload_url(&self, key: &str, content_type: &str, expires_in: Duration) -> Result<SignedUrl> {
        check_key(key)?;
        let config = PresigningConfig::expires_in(expires_in).map_err(|error| BlobError::Storage(error.to_string()))?;
        let request = self.client.put_object().bucket(&self.bucket).key(key).content_type(content_type).presigned(config).await.map_err(s3)?;
        let headers = request.headers().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        Ok(SignedUrl { url: request.uri().to_string(), headers })
    }
}
