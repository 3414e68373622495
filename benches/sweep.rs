//! Time to sweep 10,000 expired uploads: real multipart uploads in LocalStack,
//! real rows in Postgres. Needs the services: run `scripts/bench.sh sweep`.
//! SWEEP_BENCH_UPLOADS changes the count.

use chrono::Utc;
use std::time::{Duration, Instant};
use upload_broker::config::{Provider, StorageConfig};
use upload_broker::db;
use upload_broker::domain::object_key::ObjectKey;
use upload_broker::domain::part_plan::{PartPlan, PlanLimits};
use upload_broker::domain::request::{ContentType, Metadata};
use upload_broker::domain::upload::{Upload, UploadStatus};
use upload_broker::storage::Storage;
use upload_broker::sweep::{RunOptions, SweepSettings, Sweeper};

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run this benchmark with scripts/bench.sh sweep")
    })
}

fn main() {
    let n: usize = std::env::var("SWEEP_BENCH_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let pool = db::pool(&need("DATABASE_URL"), 20).unwrap();
        db::MIGRATOR.run(&pool).await.unwrap();
        let prefix = format!("bench-{}/", uuid::Uuid::new_v4());
        let storage = Storage::connect(&StorageConfig {
            bucket: need("S3_BUCKET"),
            region: "us-east-1".into(),
            endpoint: Some(need("S3_ENDPOINT")),
            force_path_style: true,
            provider: Provider::S3,
            key_prefix: prefix.clone(),
            list_parts_page_size: 1000,
            operation_timeout: std::time::Duration::from_secs(30),
            complete_timeout: std::time::Duration::from_secs(240),
        })
        .await;

        // Set up n expired uploads, 32 at a time.
        let t = Instant::now();
        let plan = PartPlan::new(10, None, PlanLimits::default()).unwrap();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            if set.len() >= 32 {
                set.join_next().await.unwrap().unwrap();
            }
            let (pool, storage, prefix) = (pool.clone(), storage.clone(), prefix.clone());
            set.spawn(async move {
                let id = uuid::Uuid::now_v7();
                let now = Utc::now();
                let key = ObjectKey::for_upload(&prefix, now, id, &format!("f{i}.bin"));
                let upload_id = storage
                    .create_multipart_upload(
                        &key,
                        &ContentType::parse(None).unwrap(),
                        &Metadata::default(),
                        None,
                    )
                    .await
                    .unwrap();
                let u = Upload {
                    id,
                    tenant: "bench".into(),
                    subject: None,
                    status: UploadStatus::Active,
                    bucket: storage.bucket().to_string(),
                    key,
                    provider_upload_id: upload_id,
                    filename: upload_broker::domain::request::FileName::parse(format!("f{i}.bin"))
                        .unwrap(),
                    content_type: upload_broker::domain::request::ContentType::parse(None).unwrap(),
                    plan: Some(plan),
                    metadata: Default::default(),
                    fingerprint_mac: None,
                    size_limit: None,
                    origin: upload_broker::domain::upload::Origin::Native,
                    checksum_algorithm: None,
                    etag: None,
                    checksum: None,
                    object_size: None,
                    completed_parts: None,
                    created_at: now - chrono::Duration::days(8),
                    expires_at: now - chrono::Duration::days(1),
                    lease_until: None,
                    claim: None,
                };
                db::insert_upload(&pool, &u).await.unwrap();
            });
        }
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
        println!(
            "set-up: {n} expired uploads in {:.1} s",
            t.elapsed().as_secs_f64()
        );

        let sweeper = Sweeper::new(
            pool.clone(),
            storage.clone(),
            SweepSettings {
                batch_size: 100,
                lease: Duration::from_secs(600),
                retention: Duration::from_secs(30 * 86400),
                key_prefix: prefix.clone(),
            },
        );
        let t = Instant::now();
        let report = sweeper.run(Utc::now, &RunOptions::default()).await.unwrap();
        let took = t.elapsed();
        assert_eq!(report.aborted as usize, n, "{report:?}");
        assert!(storage
            .list_multipart_uploads(&prefix)
            .await
            .unwrap()
            .is_empty());
        println!(
            "sweep: {n} expired uploads aborted in {:.2} s ({:.0} uploads/s, {:.2} ms each); {}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / n as f64,
            report.summary()
        );
    });
}
