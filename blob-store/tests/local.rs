//! The blob store suite on a local directory, and its signed URLs.

use std::sync::Arc;
use std::time::Duration;

use blob_store::local::{LocalBlobStore, UrlSigner, UrlRefused};
use blob_store::BlobStore;

async fn fresh() -> (Arc<dyn BlobStore>, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::new(directory.path(), UrlSigner::new(&[3; 32]).unwrap(), "http://127.0.0.1:8080/fhir/_blob");
    (Arc::new(store), directory)
}

blob_store::blob_store_suite!(fresh);

#[tokio::test]
async fn urls_name_the_blob_and_are_signed_for_their_method() {
    let directory = tempfile::tempdir().unwrap();
    let signer = UrlSigner::new(&[3; 32]).unwrap();
    let store = LocalBlobStore::new(directory.path(), signer.clone(), "http://h/fhir/_blob/");
    let download = store.download_url("binary/a", Duration::from_secs(60)).await.unwrap();
    let (path, query) = download.url.split_once('?').unwrap();
    assert_eq!(path, "http://h/fhir/_blob/binary/a");
    let params: std::collections::HashMap<&str, &str> = query.split('&').filter_map(|pair| pair.split_once('=')).collect();
    let expires: u64 = params["expires"].parse().unwrap();
    assert_eq!(signer.verify("GET", "binary/a", expires, params["signature"]), Ok(()));
    assert_eq!(signer.verify("PUT", "binary/a", expires, params["signature"]), Err(UrlRefused::BadSignature), "a download link does not upload");
    let upload = store.upload_url("binary/a", "image/png", Duration::from_secs(60)).await.unwrap();
    assert_eq!(upload.headers, vec![("content-type".to_string(), "image/png".to_string())]);
    assert!(store.download_url("../x", Duration::from_secs(60)).await.is_err());
    // No temporary files are left behind by the uploads above or failed ones.
    let (store, directory) = fresh().await;
    blob_store::suite::a_failed_upload_leaves_the_old_contents(store.as_ref()).await;
    let names: Vec<String> = std::fs::read_dir(directory.path().join("binary")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["kept"]);
}
