//! The behaviour every [`BlobStore`] has, written once; `blob_store_suite!(fresh)` makes a test
//! of each function for an implementation (`fresh` is an async fn giving a new, empty store).

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::{BlobError, BlobStore, ByteStream};

/// `total` bytes of a repeating pattern, in chunks of `chunk`.
pub fn pattern(total: usize, chunk: usize) -> (ByteStream, [u8; 32]) {
    let bytes: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
    let digest = Sha256::digest(&bytes).into();
    let chunks: Vec<crate::Result<Bytes>> = bytes.chunks(chunk.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    (futures::stream::iter(chunks).boxed(), digest)
}

fn single(bytes: &'static [u8]) -> ByteStream {
    futures::stream::iter(vec![Ok(Bytes::from_static(bytes))]).boxed()
}

/// Reads a blob whole (tests only).
pub async fn read_all(store: &dyn BlobStore, key: &str) -> Option<(String, u64, Vec<u8>)> {
    let blob = store.get(key).await.unwrap()?;
    let mut bytes = Vec::new();
    let mut body = blob.body;
    while let Some(chunk) = body.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    Some((blob.content_type, blob.size, bytes))
}

pub async fn round_trip_streams_large_contents(store: &dyn BlobStore) {
    // Larger than an S3 part, in small chunks.
    let total = 20 * 1024 * 1024 + 123;
    let (body, digest) = pattern(total, 64 * 1024);
    let stored = store.put("binary/t1/large.bin", "application/dicom", body).await.unwrap();
    assert_eq!((stored.size, stored.sha256), (total as u64, digest));
    let (content_type, size, bytes) = read_all(store, "binary/t1/large.bin").await.unwrap();
    assert_eq!((content_type.as_str(), size), ("application/dicom", total as u64));
    assert_eq!(<[u8; 32]>::from(Sha256::digest(&bytes)), digest);
}

pub async fn put_replaces_get_misses_delete_is_idempotent(store: &dyn BlobStore) {
    assert!(store.get("binary/none").await.unwrap().is_none());
    store.put("binary/a", "text/plain", single(b"first")).await.unwrap();
    store.put("binary/a", "text/csv", single(b"second, longer")).await.unwrap();
    assert_eq!(read_all(store, "binary/a").await, Some(("text/csv".into(), 14, b"second, longer".to_vec())));
    let empty = store.put("binary/empty", "application/octet-stream", futures::stream::empty().boxed()).await.unwrap();
    assert_eq!(empty.size, 0);
    assert_eq!(read_all(store, "binary/empty").await.map(|(_, size, bytes)| (size, bytes)), Some((0, Vec::new())));
    store.delete("binary/a").await.unwrap();
    store.delete("binary/a").await.unwrap();
    assert!(store.get("binary/a").await.unwrap().is_none());
}

pub async fn a_failed_upload_leaves_the_old_contents(store: &dyn BlobStore) {
    store.put("binary/kept", "text/plain", single(b"old")).await.unwrap();
    for size in [10, 9 * 1024 * 1024] {
        let (good, _) = pattern(size, 1024 * 1024);
        let failing = good.chain(futures::stream::iter(vec![Err(BlobError::Upload("the client went away".into()))])).boxed();
        assert!(matches!(store.put("binary/kept", "text/plain", failing).await, Err(BlobError::Upload(_))));
        assert_eq!(read_all(store, "binary/kept").await, Some(("text/plain".into(), 3, b"old".to_vec())), "after a failed upload of {size} bytes");
    }
}

pub async fn keys_outside_the_store_are_refused(store: &dyn BlobStore) {
    for key in ["../escape", "/absolute", "a/./b"] {
        assert!(matches!(store.put(key, "text/plain", single(b"x")).await, Err(BlobError::BadKey(_))), "{key}");
        assert!(matches!(store.get(key).await, Err(BlobError::BadKey(_))), "{key}");
    }
}

#[macro_export]
macro_rules! blob_store_suite {
    ($fresh:path) => {
        $crate::blob_store_suite!(@tests $fresh;
            round_trip_streams_large_contents,
            put_replaces_get_misses_delete_is_idempotent,
            a_failed_upload_leaves_the_old_contents,
            keys_outside_the_store_are_refused);
    };
    (@tests $fresh:path; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $fresh().await;
                $crate::suite::$name(store.as_ref()).await;
            }
        )*
    };
}
