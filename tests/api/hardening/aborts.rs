//! Aborts that cannot leak: one the provider refuses is left `aborting`,
//! finished by the sweep or by the client's retried DELETE.

use super::faulty_and_direct;
use crate::common::proxy::{Call, FaultProxy};
use crate::common::*;
use serde_json::json;
use sqlx::PgPool;
use std::sync::atomic::Ordering;

#[sqlx::test]
async fn an_abort_the_provider_refuses_is_retried_and_finished_by_the_sweep(pool: PgPool) {
    let proxy = FaultProxy::start().await;
    proxy.faults.fail_abort.store(true, Ordering::SeqCst);
    let (faulty, direct) = faulty_and_direct(pool, &proxy, Options::default()).await;
    let c = direct
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let t = token(&c);
    let (s, v) = faulty.abort(&t).await;
    assert_eq!((s, error_code(&v)), (502, "STORAGE_ERROR"), "{v}");
    assert!(
        proxy.count(Call::AbortMultipartUpload) >= 1,
        "the fault was injected"
    );
    assert_eq!(
        direct.row_status(&c).await,
        "aborting",
        "the row says what happened"
    );
    assert_eq!(
        direct.in_progress_uploads().await.len(),
        1,
        "still at the provider"
    );
    // Clients see it aborted; nothing can make it active again.
    let (s, v) = direct.get_status(&t).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("aborted")));
    let (s, v) = direct.complete(&t, None).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));
    let (s, v) = direct.sign(&t, &[1]).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));

    // The sweep finishes it once the claim's lease has run out.
    let sweeper = direct.sweeper(100).await;
    let report = sweeper
        .run(
            || chrono::Utc::now() + chrono::Duration::hours(1),
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.aborts_finished, 1, "{report:?}");
    assert_eq!(direct.row_status(&c).await, "aborted");
    assert!(
        direct.in_progress_uploads().await.is_empty(),
        "nothing left at the provider"
    );
    // A client's retry is also fine: 204.
    let (s, _) = direct.abort(&t).await;
    assert_eq!(s, 204);
}

#[sqlx::test]
async fn a_retried_delete_finishes_an_abort_the_provider_refused(pool: PgPool) {
    let proxy = FaultProxy::start().await;
    proxy.faults.fail_abort.store(true, Ordering::SeqCst);
    let (faulty, direct) = faulty_and_direct(pool, &proxy, Options::default()).await;
    let c = direct
        .create_ok(json!({"filename": "a.bin", "size": 10}))
        .await;
    let t = token(&c);
    assert_eq!(faulty.abort(&t).await.0, 502);
    proxy.faults.fail_abort.store(false, Ordering::SeqCst);
    let (s, _) = faulty.abort(&t).await;
    assert_eq!(s, 204);
    assert_eq!(direct.row_status(&c).await, "aborted");
    assert!(direct.in_progress_uploads().await.is_empty());
}
