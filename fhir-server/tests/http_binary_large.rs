//! A 100 MB Binary streams in and out while the memory of the process (server and client) grows
//! by a few MB. Alone in its test binary, so that no other test's memory counts.

mod common;

use common::{json_with_status, TestServer};
use futures::StreamExt;
use sha2::{Digest, Sha256};

/// The peak resident memory of this process since the last reset, in bytes (Linux).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test]
async fn a_100_mb_binary_streams_in_and_out_in_flat_memory() {
    const SIZE: usize = 100 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let server = TestServer::start().await;
    // Warm up every path once, then measure from here.
    let warm_up = server.client.post(server.url("Binary")).header("content-type", "application/octet-stream").body(vec![0u8; CHUNK]).send().await.unwrap();
    assert_eq!(warm_up.status(), 201);
    reset_peak_rss();
    let before = peak_rss();

    let mut expected = Sha256::new();
    let chunks: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    for _ in 0..SIZE / CHUNK {
        expected.update(&chunks);
    }
    let body = futures::stream::iter((0..SIZE / CHUNK).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunks.clone()))));
    let response = server
        .client
        .post(server.url("Binary"))
        .header("content-type", "application/octet-stream")
        .header("content-length", SIZE)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let id = json_with_status(response, 201).await["id"].as_str().unwrap().to_string();

    let response = server.client.get(server.url(&format!("Binary/{id}"))).send().await.unwrap();
    assert_eq!(response.headers()["content-length"], SIZE.to_string().as_str());
    let mut stream = response.bytes_stream();
    let (mut received, mut actual) = (0usize, Sha256::new());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len();
        actual.update(&chunk);
    }
    assert_eq!(received, SIZE);
    assert_eq!(actual.finalize(), expected.finalize(), "the bytes come back unchanged");
    let grown = peak_rss().saturating_sub(before);
    println!("peak memory grew by {} MB for a {} MB round trip", grown / (1024 * 1024), SIZE / (1024 * 1024));
    assert!(grown < 40 * 1024 * 1024, "memory grew by {grown} bytes: the bytes were buffered");
    server.stop().await;
}
