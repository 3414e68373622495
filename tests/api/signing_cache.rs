//! The signing cache (`src/broker/cache.rs`): part requests are answered from
//! memory, and a status change on any instance still turns them into 409s —
//! at once on the instance that made it, within milliseconds on the others.
//! Two instances share one database here, as in production.

use crate::common::*;
use crate::companion::enc;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::time::{Duration, Instant};

const LISTENER: &str = upload_broker::db::notify::LISTENER_APPLICATION_NAME;

fn id_of(created: &Value) -> uuid::Uuid {
    created["id"].as_str().unwrap().parse().unwrap()
}

/// Signs part 1 on `app` until it answers `want` (at most 5 s); how long that took.
async fn sign_until(app: &TestApp, token: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let (s, v) = app.sign(token, &[1]).await;
        if s == want {
            return start.elapsed();
        }
        assert_eq!(s, 200, "{v}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "part requests still answered 200 five seconds after the change: {v}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Signs twice on `app` so that the second answer comes from its cache.
async fn signed_from_cache(app: &TestApp, created: &Value) {
    let token = created["resumeToken"].as_str().unwrap();
    for _ in 0..2 {
        let (s, v) = app.sign(token, &[1]).await;
        assert_eq!(s, 200, "{v}");
    }
    assert!(
        app.cache.get(id_of(created)).is_some(),
        "the instance did not keep the upload in its signing cache"
    );
}

#[sqlx::test]
async fn an_abort_on_another_instance_turns_part_requests_into_409(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool).await;
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    signed_from_cache(&a, &c).await;

    assert_eq!(b.abort(token).await.0, 204);
    let took = sign_until(&a, token, 409).await;
    eprintln!("instance A answered 409 {took:?} after instance B's abort");
    let (s, v) = a.sign(token, &[1]).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));
    assert!(a.cache.get(id_of(&c)).is_none());
}

#[sqlx::test]
async fn a_completion_on_another_instance_turns_part_requests_into_409(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool).await;
    let file = data(5, 7);
    let c = a.create_ok(json!({"filename": "c.bin", "size": 5})).await;
    let token = c["resumeToken"].as_str().unwrap();
    a.put_part(&c["parts"][0], &file).await;
    signed_from_cache(&a, &c).await;

    let (s, v) = b.complete(token, None).await;
    assert_eq!(s, 200, "{v}");
    sign_until(&a, token, 409).await;
    assert_eq!(a.read_object(c["key"].as_str().unwrap()).await.0, file);
}

#[sqlx::test]
async fn an_instance_refuses_parts_at_once_after_its_own_abort_or_completion(pool: PgPool) {
    let a = TestApp::spawn(pool).await;
    // Abort: the very next request answers 409, with no wait for the notification.
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    signed_from_cache(&a, &c).await;
    assert_eq!(a.abort(token).await.0, 204);
    let (s, v) = a.sign(token, &[1]).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));

    let c = a.create_ok(json!({"filename": "c.bin", "size": 3})).await;
    let token = c["resumeToken"].as_str().unwrap();
    a.put_part(&c["parts"][0], b"abc").await;
    signed_from_cache(&a, &c).await;
    assert_eq!(a.complete(token, None).await.0, 200);
    let (s, v) = a.sign(token, &[1]).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));
}

#[sqlx::test]
async fn companion_part_requests_see_an_abort_made_elsewhere(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool).await;
    let (s, v) = a
        .call(
            Method::POST,
            "/s3/multipart",
            Some(json!({"filename": "u.bin", "type": "application/octet-stream"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (id, key) = (v["uploadId"].as_str().unwrap(), v["key"].as_str().unwrap());
    let sign = format!("/s3/multipart/{}/1?key={}", enc(id), enc(key));
    for _ in 0..2 {
        let (s, v) = a.call(Method::GET, &sign, None).await;
        assert_eq!(s, 200, "{v}");
    }
    assert!(a.cache.get_by_provider(id).is_some());

    let abort = format!("/s3/multipart/{}?key={}", enc(id), enc(key));
    assert_eq!(b.call(Method::DELETE, &abort, None).await.0, 200);
    let start = Instant::now();
    loop {
        let (s, v) = a.call(Method::GET, &sign, None).await;
        if s == 409 {
            assert_eq!(error_code(&v), "UPLOAD_NOT_ACTIVE");
            break;
        }
        assert_eq!(s, 200, "{v}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still 200 after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The key must still match: another key with the same upload id is a 404.
    let wrong = format!("/s3/multipart/{}/1?key={}", enc(id), enc("other/key.bin"));
    assert_eq!(a.call(Method::GET, &wrong, None).await.0, 404);
}

/// When the listening connection is cut, the cache is emptied and not used
/// until it listens again: a change made meanwhile (whose notification is
/// lost with the connection) is never answered from memory.
#[sqlx::test]
async fn a_cut_listening_connection_empties_the_cache_until_it_listens_again(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool.clone()).await;
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    signed_from_cache(&a, &c).await;

    // Cut every listening connection of this database (both instances').
    let cut: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity \
         where datname = current_database() and application_name = $1",
    )
    .bind(LISTENER)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        cut.len() >= 2,
        "each instance listens on a connection of its own"
    );
    for pid in &cut {
        sqlx::query("select pg_terminate_backend($1)")
            .bind(pid)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert_eq!(b.abort(token).await.0, 204);
    sign_until(&a, token, 409).await;

    // It listens again (a new connection) and keeps uploads again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = a.create_ok(json!({"filename": "b.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    loop {
        assert_eq!(a.sign(token, &[1]).await.0, 200);
        if a.cache.get(id_of(&c)).is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the cache did not come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let listening: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity \
         where datname = current_database() and application_name = $2 and not (pid = any($1))",
    )
    .bind(&cut)
    .bind(LISTENER)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(listening >= 1, "no new listening connection");
    assert_eq!(b.abort(token).await.0, 204);
    sign_until(&a, token, 409).await;
}

/// An expiry written behind the broker's back (an operator's SQL) reaches
/// the cache too: the part request answers 410.
#[sqlx::test]
async fn an_expiry_written_in_sql_reaches_the_cache(pool: PgPool) {
    let a = TestApp::spawn(pool).await;
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    signed_from_cache(&a, &c).await;
    a.expire_now(&c).await; // waits until the cache forgot it (fails after 5 s)
    let (s, v) = a.sign(token, &[1]).await;
    assert_eq!((s, error_code(&v)), (410, "UPLOAD_EXPIRED"));
}

/// Without the triggers that announce changes (a database not migrated, or
/// triggers turned off), nothing would ever be heard: the cache is not used,
/// and it starts once they are back.
#[sqlx::test]
async fn without_its_triggers_the_cache_is_not_used(pool: PgPool) {
    sqlx::query("alter table uploads disable trigger upload_changed")
        .execute(&pool)
        .await
        .unwrap();
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool.clone()).await;
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..3 {
        assert_eq!(a.sign(token, &[1]).await.0, 200);
    }
    assert!(
        a.cache.is_empty(),
        "the cache was used without its triggers"
    );
    // Unannounced, an abort elsewhere is still seen at once: every read is fresh.
    assert_eq!(b.abort(token).await.0, 204);
    let (s, v) = a.sign(token, &[1]).await;
    assert_eq!((s, error_code(&v)), (409, "UPLOAD_NOT_ACTIVE"));

    sqlx::query("alter table uploads enable trigger upload_changed")
        .execute(&pool)
        .await
        .unwrap();
    let c = a.create_ok(json!({"filename": "b.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert_eq!(a.sign(token, &[1]).await.0, 200);
        if a.cache.get(id_of(&c)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not start once the triggers were back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test]
async fn a_change_missed_while_a_trigger_was_off_is_read_within_the_age_limit(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let b = TestApp::spawn(pool.clone()).await;
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    signed_from_cache(&b, &c).await;
    // The trigger off for a moment: instance A's abort is never announced.
    sqlx::query("alter table uploads disable trigger upload_changed")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(a.abort(token).await.0, 204);
    sqlx::query("alter table uploads enable trigger upload_changed")
        .execute(&pool)
        .await
        .unwrap();
    // Instance B reads it again within the age limit of its entries (10 s).
    let limit = Duration::from_secs(10);
    assert!(upload_broker::broker::cache::MAX_ENTRY_AGE <= limit);
    let start = Instant::now();
    loop {
        let (s, v) = b.sign(token, &[1]).await;
        if s == 409 {
            assert_eq!(error_code(&v), "UPLOAD_NOT_ACTIVE");
            break;
        }
        assert_eq!(s, 200, "{v}");
        assert!(
            start.elapsed() < limit + Duration::from_secs(2),
            "instance B still signs for an aborted upload {:?} later",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "instance B refused the missed abort {:?} later",
        start.elapsed()
    );
}

#[sqlx::test]
async fn a_trigger_turned_off_while_listening_stops_the_cache(pool: PgPool) {
    let a = TestApp::spawn(pool.clone()).await;
    let c = a.create_ok(json!({"filename": "a.bin", "size": 10})).await;
    let token = c["resumeToken"].as_str().unwrap();
    signed_from_cache(&a, &c).await;
    sqlx::query("alter table uploads disable trigger upload_changed")
        .execute(&pool)
        .await
        .unwrap();
    let every = upload_broker::broker::cache::TRIGGER_CHECK_EVERY;
    let start = Instant::now();
    while !a.cache.is_empty() {
        assert!(
            start.elapsed() < every + Duration::from_secs(3),
            "the cache kept answering {:?} after its trigger was turned off",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deaf, it is not filled: every part request reads the database.
    for _ in 0..3 {
        assert_eq!(a.sign(token, &[1]).await.0, 200);
    }
    assert!(a.cache.is_empty(), "filled while its trigger was off");
    sqlx::query("alter table uploads enable trigger upload_changed")
        .execute(&pool)
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        assert_eq!(a.sign(token, &[1]).await.0, 200);
        if a.cache.get(id_of(&c)).is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the cache did not start again once its trigger was back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
