//! What a grant costs: verifying one per request (HS256, the broker's own, and
//! EdDSA, a tenant's Ed25519 key, cached after the first use), and the quota
//! check a create takes (advisory lock and counts, in the create's transaction)
//! beside a plain insert. Run: `scripts/bench.sh grants` (Postgres needed).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use std::time::Instant;
use upload_broker::auth::grants::Grants;
use upload_broker::auth::issuers::Issuers;
use upload_broker::db;
use upload_broker::domain::access::GrantLimits;
use upload_broker::domain::object_key::ObjectKey;
use upload_broker::domain::part_plan::PartPlan;
use upload_broker::domain::upload::{Origin, Upload, UploadStatus};

fn per_op(label: &str, n: u32, f: impl Fn()) {
    for _ in 0..n / 10 {
        f();
    }
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        runs.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{label}: median {:.2} µs per op (runs: {runs:.2?})",
        runs[2]
    );
}

fn upload(tenant: &str, i: usize) -> Upload {
    let now = chrono::Utc::now();
    let id = uuid::Uuid::now_v7();
    Upload {
        id,
        tenant: tenant.into(),
        subject: None,
        status: UploadStatus::Active,
        bucket: "bench".into(),
        key: ObjectKey::for_upload("bench/", now, id, "f.bin"),
        provider_upload_id: format!("bench-{id}-{i}"),
        filename: upload_broker::domain::request::FileName::parse("f.bin".into()).unwrap(),
        content_type: upload_broker::domain::request::ContentType::parse(None).unwrap(),
        plan: Some(PartPlan::new(10, None, Default::default()).unwrap()),
        metadata: Default::default(),
        fingerprint_mac: None,
        size_limit: None,
        origin: Origin::Native,
        checksum_algorithm: None,
        etag: None,
        checksum: None,
        object_size: None,
        completed_parts: None,
        created_at: now,
        expires_at: now + chrono::Duration::days(7),
        lease_until: None,
        claim: None,
    }
}

fn main() {
    let url =
        std::env::var("DATABASE_URL").expect("DATABASE_URL (run through scripts/bench.sh grants)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = db::pool(&url, 8).unwrap();
        db::create_database_if_missing(&url).await;
        db::MIGRATOR.run(&pool).await.unwrap();

        // HS256: the broker's own grants.
        let key = [7u8; 32];
        let grants = Grants::new(&key, Issuers::new(pool.clone(), Default::default()));
        let (hs, _) = grants.mint("bench", "user-1", 900, GrantLimits::default(), None);
        // EdDSA: a tenant's key, registered (from a file) and cached.
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap().public_key().as_ref().to_vec();
        use base64::Engine as _;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        let file = std::env::temp_dir().join(format!("bench-jwks-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&file, json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k"}]}).to_string()).unwrap();
        let iss = format!("https://bench-{}.example", uuid::Uuid::new_v4());
        let jwks = upload_broker::auth::issuers::load_jwks(&upload_broker::outbound::Outbound::new(Default::default(), std::time::Duration::from_secs(5)), file.to_str().unwrap()).await.unwrap();
        db::insert_issuer(&pool, uuid::Uuid::new_v4(), "bench", &iss, file.to_str().unwrap(), &jwks).await.unwrap();
        let now = chrono::Utc::now().timestamp();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("k".into());
        let ed = jsonwebtoken::encode(&h, &json!({"iss": iss, "aud": "upload-broker", "sub": "user-1",
            "iat": now, "exp": now + 900, "jti": "j"}), &EncodingKey::from_ed_der(pkcs8.as_ref())).unwrap();
        grants.verify(&ed, None).await.unwrap();
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            per_op("verify a broker grant (HS256)", 20_000, || {
                handle.block_on(grants.verify(&hs, None)).unwrap();
            });
            per_op("verify a tenant grant (EdDSA, key cached)", 5_000, || {
                handle.block_on(grants.verify(&ed, None)).unwrap();
            });
        });

        // The quota check: a create's record with and without it.
        let quotas = db::Quotas { tenant_max_active_uploads: 1_000_000, tenant_max_active_bytes: Some(u64::MAX / 2), subject_max_active_uploads: 100 };
        let tenant = format!("bench-{}", uuid::Uuid::new_v4());
        for _ in 0..1000 {
            db::insert_upload(&pool, &upload(&tenant, 0)).await.unwrap();
        }
        let n = 500;
        let t = Instant::now();
        for i in 0..n {
            db::insert_upload(&pool, &upload(&tenant, i)).await.unwrap();
        }
        let plain = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        let t = Instant::now();
        for i in 0..n {
            let u = upload(&tenant, i);
            let created = upload_broker::domain::event::NewEvent::of(&u, u.created_at).unwrap();
            db::insert_within_quotas(&pool, &u, &quotas, None, &created).await.unwrap().unwrap();
        }
        let quota = t.elapsed().as_secs_f64() * 1e3 / n as f64;
        println!("record a create: {plain:.3} ms plain insert, {quota:.3} ms with the quota check and its event (tenant with 2,000+ active uploads)");
        sqlx::query("delete from uploads where tenant = $1").bind(&tenant).execute(&pool).await.unwrap();
        sqlx::query("delete from events where tenant = $1").bind(&tenant).execute(&pool).await.unwrap();
        sqlx::query("delete from issuers where issuer = $1").bind(&iss).execute(&pool).await.unwrap();
        let _ = std::fs::remove_file(file);
    });
}
