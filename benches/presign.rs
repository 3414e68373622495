//! Time to presign UploadPart URLs, the broker's hot path (no network: presigning
//! is local computation): the SDK's operation and the broker's own SigV4 presigner,
//! side by side. Run: `cargo bench --bench presign`.

use std::time::{Duration, Instant, SystemTime};
use upload_broker::config::{Provider, StorageConfig};
use upload_broker::domain::object_key::ObjectKey;
use upload_broker::domain::part_plan::PartNumber;
use upload_broker::storage::Storage;

fn main() {
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    std::env::set_var(
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let storage = Storage::connect(&StorageConfig {
            bucket: "bench-bucket".into(),
            region: "us-east-1".into(),
            endpoint: Some("https://s3.example.com".into()),
            force_path_style: true,
            provider: Provider::S3,
            key_prefix: "uploads/".into(),
            list_parts_page_size: 1000,
            operation_timeout: std::time::Duration::from_secs(30),
            complete_timeout: std::time::Duration::from_secs(240),
        })
        .await;
        let key = ObjectKey::from_stored(
            "uploads/2026/11/21/0b9c6f1e-0000-0000-0000-000000000000/movie.mp4".into(),
        );
        let upload_id = "x".repeat(128);
        let start = SystemTime::now();
        let ttl = Duration::from_secs(3600);
        // Warm-up (credential resolution, the presigner's probe, lazy statics), and
        // the two paths agree.
        for n in 1..=100 {
            let p = part(&key, &upload_id, n);
            let fast = storage.presign_upload_part(&p, start, ttl).await.unwrap();
            let sdk = storage
                .presign_upload_part_sdk(&p, start, ttl)
                .await
                .unwrap();
            assert_eq!((fast.url, fast.headers), (sdk.url, sdk.headers));
        }
        let (mut sdk_runs, mut fast_runs) = (Vec::new(), Vec::new());
        for _ in 0..21 {
            let t = Instant::now();
            for n in 1..=1000 {
                let p = storage
                    .presign_upload_part_sdk(&part(&key, &upload_id, n), start, ttl)
                    .await
                    .unwrap();
                std::hint::black_box(p);
            }
            sdk_runs.push(t.elapsed());
            let t = Instant::now();
            for n in 1..=1000 {
                let p = storage
                    .presign_upload_part(&part(&key, &upload_id, n), start, ttl)
                    .await
                    .unwrap();
                std::hint::black_box(p);
            }
            fast_runs.push(t.elapsed());
        }
        report("SDK (presign_upload_part_sdk)", sdk_runs);
        report("sigv4 (presign_upload_part)  ", fast_runs);
    });
}

fn part<'a>(
    key: &'a ObjectKey,
    upload_id: &'a str,
    n: u32,
) -> upload_broker::storage::PartToSign<'a> {
    upload_broker::storage::PartToSign {
        key,
        upload_id,
        number: PartNumber::new(n).unwrap(),
        content_length: Some(16 << 20),
        checksum: None,
    }
}

fn report(name: &str, mut runs: Vec<Duration>) {
    runs.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = runs[runs.len() / 2];
    println!(
        "presign 1000 UploadPart URLs, {name}: median {:.2} ms ({:.2} µs/URL), min {:.2} ms, max {:.2} ms over {} runs",
        ms(median),
        ms(median),
        ms(runs[0]),
        ms(runs[runs.len() - 1]),
        runs.len()
    );
}
