//! Bodies too large for a DynamoDB item (400 KB with its other attributes) live in S3, named by
//! their SHA-256 (`bodies/<hex>`): writing one twice is harmless, and the version item holds the
//! name in `blob` instead of the bytes in `body`. The object is written before the version is
//! staged, so a committed version never points at a missing body.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::items::{event_of, Item};
use super::DynamoEventLog;
use crate::model::Event;
use crate::{LogError, Result};

/// Bodies up to this size stay in the item.
pub const INLINE_LIMIT: usize = 300 * 1024;

fn s3_error(error: impl std::error::Error) -> LogError {
    LogError::Storage(format!("S3: {}", aws_sdk_s3::error::DisplayErrorContext(error)))
}

/// The object name of a body.
pub fn object_key(body: &[u8]) -> String {
    format!("bodies/{}", hex::encode(Sha256::digest(body)))
}

impl DynamoEventLog {
    /// Stores `body` in the bucket if it is too large for an item; returns the object name then.
    pub(super) async fn store_large_body(&self, body: &Bytes) -> Result<Option<String>> {
        if body.len() <= INLINE_LIMIT {
            return Ok(None);
        }
        let name = object_key(body);
        let request = self.s3.put_object().bucket(&self.options.bucket).key(&name).body(ByteStream::from(body.clone()));
        request.send().await.map_err(s3_error)?;
        Ok(Some(name))
    }

    /// The event a version item holds at `position`, its body fetched from S3 if it lives there.
    pub(super) async fn event_from(&self, item: &Item, position: u64) -> Result<Event> {
        let mut event = event_of(item, position)?;
        if let Some(name) = item.get("blob").and_then(|value| value.as_s().ok()) {
            let object = self.s3.get_object().bucket(&self.options.bucket).key(name).send().await.map_err(s3_error)?;
            let bytes = object.body.collect().await.map_err(|error| LogError::Storage(format!("S3: reading {name}: {error}")))?;
            event.body = bytes.into_bytes();
        }
        Ok(event)
    }
}

/// Creates the bucket for large bodies, in the client's region, if it does not exist.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    let mut request = s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region S3 wants named by no constraint.
    if let Some(region) = s3.config().region().map(|region| region.as_ref()).filter(|region| *region != "us-east-1") {
        let location = CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region)).build();
        request = request.create_bucket_configuration(location);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(error)
            if error.as_service_error().is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()) =>
        {
            Ok(())
        }
        Err(error) => Err(s3_error(error)),
    }
}
