//! Hardening: fenced claims with a provider that holds calls past their time,
//! verified objects, keyed fingerprints, aborts that cannot leak, HTTP hygiene,
//! bounded background work, and database failures at the connection level.
//!
//! The helpers the parts share are here: an uploaded upload, and a broker
//! talking to storage through a fault proxy next to one talking to it directly.

mod aborts;
mod completion;
mod fingerprints;
mod http_hygiene;
mod overload;

use crate::common::proxy::FaultProxy;
use crate::common::*;
use serde_json::{json, Value};
use sqlx::PgPool;

const PART: usize = 5 * MIB;

/// Creates an upload of `len` bytes in 5 MiB parts and PUTs every part.
async fn uploaded(app: &TestApp, len: usize, seed: u64) -> (Value, Vec<u8>) {
    let file = data(len, seed);
    let c = app
        .create_ok(json!({"filename": "h.bin", "size": len, "partSize": PART}))
        .await;
    app.put_parts(&c["parts"], &file, PART).await;
    (c, file)
}

/// A broker talking to storage through `proxy`, and one talking to it directly,
/// both on one database and one (versioned) bucket.
async fn faulty_and_direct(pool: PgPool, proxy: &FaultProxy, opts: Options) -> (TestApp, TestApp) {
    let bucket = versioned_bucket().await;
    let faulty = TestApp::spawn_with(
        pool.clone(),
        Options {
            bucket: Some(bucket.clone()),
            endpoint: Some(proxy.url.clone()),
            ..opts
        },
    )
    .await;
    let direct = TestApp::spawn_with(
        pool,
        Options {
            bucket: Some(bucket),
            ..Default::default()
        },
    )
    .await;
    (faulty, direct)
}
