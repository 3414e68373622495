//! Retention: only finished rows older than the retention period are
//! deleted, and a dry run only counts them.

use crate::common::*;
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;
use upload_broker::sweep::RunOptions;

#[sqlx::test]
async fn retention_deletes_only_old_finished_rows(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut made = Vec::new();
    for name in [
        "old-completed",
        "old-aborted",
        "new-completed",
        "old-active",
    ] {
        let c = app.create_ok(json!({"filename": name, "size": 10})).await;
        app.put_part(&c["parts"][0], &data(10, 3)).await;
        made.push(c);
    }
    assert_eq!(app.complete(&token(&made[0]), None).await.0, 200);
    assert_eq!(app.abort(&token(&made[1])).await.0, 204);
    assert_eq!(app.complete(&token(&made[2]), None).await.0, 200);
    for c in [&made[0], &made[1], &made[3]] {
        let id: uuid::Uuid = c["id"].as_str().unwrap().parse().unwrap();
        sqlx::query("update uploads set updated_at = now() - interval '31 days' where id = $1")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let dry = app
        .sweeper(100)
        .await
        .run(
            Utc::now,
            &RunOptions {
                dry_run: true,
                orphans_older_than: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(dry.deleted, 2);
    let r = app
        .sweeper(1)
        .await
        .run(Utc::now, &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(r.deleted, 2, "{r:?}");
    for (c, status) in made.iter().zip([404, 404, 200, 200]) {
        assert_eq!(
            app.get_status(&token(c)).await.0,
            status,
            "{}",
            c["filename"]
        );
    }
}
