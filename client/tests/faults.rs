//! Storage faults between the client and LocalStack (a TCP proxy): connection
//! resets mid-body, stalls, 503/500/429 and a 403. Uploads and downloads
//! complete with the right bytes.

mod common;

use common::proxy::{Fault, Kind, Proxy};
use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use upload_broker_client::{
    Checksum, Client, DownloadEvent, DownloadOptions, Event, Fingerprint, RetryPolicy, Source,
    UploadOptions,
};

fn impatient_client(broker: &Broker) -> Client {
    Client::builder(&broker.url, API_KEY)
        .stall_timeout(Duration::from_secs(2))
        .retry(RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_survives_resets_stalls_and_error_statuses() {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    let dir = Scratch::new("faults-up");
    let file = dir.path("faulty.bin");
    let len = 48 * MIB; // 10 parts of 5 MiB, the last 3 MiB
    let sha = random_file(&file, len);
    let faults = [
        (1, Fault::ResetMidBody),
        (2, Fault::StallMidBody(Duration::from_secs(20))),
        (4, Fault::Status(503)),
        (5, Fault::Status(500)),
        (6, Fault::Status(429)),
        (8, Fault::Status(403)),
        (9, Fault::ResetMidBody),
    ];
    for (n, f) in faults {
        proxy.fault(Kind::PutPart, n, f);
    }
    let retries = Arc::new(Mutex::new(Vec::new()));
    let r = retries.clone();
    let done = impatient_client(&broker)
        .upload(
            Source::from_path(&file).unwrap(),
            UploadOptions {
                concurrency: 4,
                part_size: Some(5 * MIB),
                checksum: Checksum::Crc32c,
                fingerprint: Fingerprint::Off,
                progress: Some(Arc::new(move |e| {
                    if let Event::Retry {
                        part_number,
                        error,
                        delay,
                        ..
                    } = e
                    {
                        r.lock().unwrap().push((part_number, error, delay));
                    }
                })),
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    let (object_sha, object_len) = object_sha256(&done.key).await;
    assert_eq!(object_len, len);
    assert_eq!(object_sha, sha, "the object differs from the file");

    let seen = proxy.seen();
    for (n, f) in faults {
        let hit = seen
            .iter()
            .filter(|s| s.kind == Kind::PutPart)
            .nth(n - 1)
            .unwrap();
        assert_eq!(hit.fault, Some(f), "fault {n} was not applied");
    }
    // Every fault cost one more PUT; each part was stored once.
    assert_eq!(proxy.requests(Kind::PutPart), 10 + faults.len());
    assert_eq!(proxy.count(Kind::PutPart, 200), 10);
    let retries = retries.lock().unwrap().clone();
    assert_eq!(retries.len(), faults.len(), "{retries:?}");
    let errors: Vec<&str> = retries.iter().map(|(_, e, _)| e.as_str()).collect();
    // The injected answers carry `Retry-After: 1`: honoured (it is under the 2 s cap).
    for (_, e, delay) in &retries {
        if e.contains("503") || e.contains("500") || e.contains("429") {
            assert_eq!(*delay, Duration::from_secs(1), "{e}");
        }
    }
    assert!(
        errors.iter().any(|e| e.starts_with("stalled")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("503")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("429")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("403")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("network")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_gives_up_on_a_part_storage_keeps_refusing() {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    for n in 1..=6 {
        proxy.fault(Kind::PutPart, n, Fault::Status(503));
    }
    let err = impatient_client(&broker)
        .upload(
            Source::from_bytes(vec![7u8; 6 * MIB as usize], "refused.bin"),
            UploadOptions {
                concurrency: 1,
                part_size: Some(5 * MIB),
                fingerprint: Fingerprint::Off,
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("gave up after 6 attempts"),
        "{err}"
    );
    assert_eq!(proxy.requests(Kind::PutPart), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_survives_resets_stalls_and_503() {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    let dir = Scratch::new("faults-down");
    let file = dir.path("source.bin");
    let len = 24 * MIB + 7;
    let sha = random_file(&file, len);
    let client = impatient_client(&broker);
    let up = client
        .upload(
            Source::from_path(&file).unwrap(),
            UploadOptions {
                fingerprint: Fingerprint::Off,
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    proxy.fault(Kind::GetObject, 1, Fault::ResetMidBody);
    proxy.fault(Kind::GetObject, 2, Fault::Status(503));
    proxy.fault(
        Kind::GetObject,
        3,
        Fault::StallMidBody(Duration::from_secs(20)),
    );
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let out = dir.path("copy.bin");
    let got = client
        .download_with(
            &up.resume_token,
            &out,
            DownloadOptions {
                progress: Some(Arc::new(move |e| ev.lock().unwrap().push(e))),
            },
        )
        .await
        .unwrap();
    assert_eq!(got.size, len);
    assert!(!got.restarted);
    assert_eq!(sha256_file(&out), sha);
    assert_eq!(proxy.requests(Kind::GetObject), 4);
    assert_eq!(
        proxy.count(Kind::GetObject, 206),
        1,
        "the last GET continues with a range"
    );
    let retries = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, DownloadEvent::Retry { .. }))
        .count();
    assert_eq!(retries, 3);
    // Nothing left beside the file.
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}
