//! Uploads through the real broker to LocalStack, read back and compared by
//! SHA-256: 300 MiB with `upb` (CRC32C, the default), smaller files through
//! the library with SHA-256 and without checksums.

mod common;

use common::*;
use serde_json::Value;
use upload_broker_client::{Checksum, Event, Fingerprint, Source, UploadOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upb_uploads_300_mib_with_crc32c() {
    let broker = Broker::start(BrokerOptions::default());
    let dir = Scratch::new("300mib");
    let file = dir.path("big.bin");
    let sha = random_file(&file, 300 * MIB);

    let (code, out, err) = run(broker
        .upb(&dir.0)
        .args([
            "upload",
            "--json",
            "--concurrency",
            "4",
            "--part-size",
            "16MiB",
        ])
        .args([
            "--content-type",
            "application/x-test",
            "--metadata",
            "origin=upb-test",
        ])
        .arg(&file));
    assert_eq!(code, 0, "upb upload failed: {err}");
    let done: Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}): {out}"));
    assert_eq!(done["status"], "completed");
    assert_eq!(done["size"], 300 * MIB);
    assert_eq!(done["objectSize"], 300 * MIB);
    assert_eq!(done["partCount"], 19);
    assert_eq!(done["checksumAlgorithm"], "CRC32C");
    assert_eq!(done["checksumType"], "COMPOSITE");
    assert!(
        done["checksum"].as_str().unwrap().ends_with("-19"),
        "{}",
        done["checksum"]
    );
    assert_eq!(done["contentType"], "application/x-test");
    assert_eq!(done["metadata"]["origin"], "upb-test");
    // Off a terminal: plain progress lines, no bar escape codes.
    assert!(err.contains("19 parts of 16.0 MiB, CRC32C"), "{err}");
    assert!(err.contains("19 of 19 parts"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "escape codes off a terminal: {err:?}"
    );

    let (object_sha, len) = object_sha256(done["key"].as_str().unwrap()).await;
    assert_eq!(len, 300 * MIB);
    assert_eq!(object_sha, sha, "the object differs from the file");
}

async fn library_upload(checksum: Checksum, parts_expected: u32) {
    let broker = Broker::start(BrokerOptions::default());
    let dir = Scratch::new("modes");
    let file = dir.path("mode.bin");
    let len = 37 * MIB + 12345;
    let sha = random_file(&file, len);
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let done = broker
        .client()
        .upload(
            Source::from_path(&file).unwrap(),
            UploadOptions {
                concurrency: 3,
                part_size: Some(5 * MIB),
                checksum,
                fingerprint: Fingerprint::Off,
                progress: Some(std::sync::Arc::new(move |e| seen.lock().unwrap().push(e))),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(done.part_count, parts_expected);
    assert_eq!(done.object_size, Some(len));
    match checksum {
        Checksum::Sha256 => assert_eq!(done.checksum_algorithm.as_deref(), Some("SHA256")),
        Checksum::Crc32c => assert_eq!(done.checksum_algorithm.as_deref(), Some("CRC32C")),
        Checksum::None => {
            assert_eq!(done.checksum_algorithm, None);
            assert_eq!(done.checksum, None);
        }
    }
    if checksum != Checksum::None {
        assert!(done
            .checksum
            .as_deref()
            .unwrap()
            .ends_with(&format!("-{parts_expected}")));
    }
    let events = events.lock().unwrap().clone();
    assert!(
        matches!(events.first(), Some(Event::Created { .. })),
        "{:?}",
        events.first()
    );
    let last_bytes = events.iter().rev().find_map(|e| match e {
        Event::Bytes { done, total } => Some((*done, *total)),
        _ => None,
    });
    assert_eq!(last_bytes, Some((len, len)));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::PartDone { .. }))
            .count(),
        parts_expected as usize
    );
    let (object_sha, object_len) = object_sha256(&done.key).await;
    assert_eq!(object_len, len);
    assert_eq!(object_sha, sha);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_uploads_with_sha256() {
    library_upload(Checksum::Sha256, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_uploads_without_checksum() {
    library_upload(Checksum::None, 8).await;
}

/// A source that ends early (a file truncated during the upload).
struct Shrinking(bytes::Bytes, u64);

impl upload_broker_client::ReadAt for Shrinking {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if offset >= self.1 {
            return Ok(0);
        }
        let n = buf.len().min((self.1 - offset) as usize);
        upload_broker_client::ReadAt::read_at(&self.0, &mut buf[..n], offset)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_ends_early_fails_without_retries() {
    let broker = Broker::start(BrokerOptions::default());
    let len = 12 * MIB;
    let source = Source::from_reader(
        Shrinking(bytes::Bytes::from(vec![3u8; len as usize]), 7 * MIB),
        len,
        "shrinking.bin",
    );
    let retries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = retries.clone();
    let err = broker
        .client()
        .upload(
            source,
            UploadOptions {
                concurrency: 1,
                part_size: Some(5 * MIB),
                checksum: Checksum::None,
                fingerprint: Fingerprint::Off,
                progress: Some(std::sync::Arc::new(move |e| {
                    if let Event::Retry { .. } = e {
                        r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the source ended at 7340032 bytes"),
        "{err}"
    );
    assert!(!err.is_transient(), "{err}");
    assert_eq!(retries.load(std::sync::atomic::Ordering::SeqCst), 0);
}
