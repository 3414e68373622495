//! The `sweep` command end to end: dry run, the real run with its summary,
//! orphans, and its configuration errors.

use super::{broker, run, test_database_url};
use crate::common::*;
use serde_json::{json, Value};

fn database_url_of(name: &str) -> String {
    let mut url = reqwest::Url::parse(&test_database_url()).unwrap();
    url.set_path(name);
    url.to_string()
}

fn sweep_cmd(app: &TestApp, db: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = broker();
    c.arg("sweep")
        .args(args)
        .env("DATABASE_URL", db)
        .env("S3_BUCKET", &app.bucket)
        .env("S3_ENDPOINT", endpoint())
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_KEY_PREFIX", &app.prefix);
    run(&mut c)
}

#[sqlx::test]
async fn the_sweep_command_end_to_end(pool: sqlx::PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    let db = database_url_of(&name);
    let a = app.create_ok(json!({"filename": "a", "size": 10})).await;
    let b = app.create_ok(json!({"filename": "b", "size": 10})).await;
    let live = app.create_ok(json!({"filename": "live", "size": 10})).await;
    app.expire_now(&a).await;
    app.expire_now(&b).await;

    // Dry run: says what it would do, changes nothing.
    let (code, out, err) = sweep_cmd(&app, &db, &["--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("would abort expired upload"))
            .count(),
        2,
        "{out}"
    );
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["aborted"], 2);
    assert_eq!(app.in_progress_uploads().await.len(), 3);

    // For real, with the human summary.
    let (code, out, err) = sweep_cmd(&app, &db, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("sweep: 2 expired uploads aborted, 0 already gone"),
        "{out}"
    );
    assert_eq!(
        app.in_progress_uploads().await,
        vec![live["uploadId"].as_str().unwrap().to_string()]
    );
    for expired in [&a, &b] {
        let (s, _) = app.get_status(&token(expired)).await;
        assert_eq!(s, 410);
    }

    // Orphans under the prefix; --older-than 0s counts them as old.
    let key = format!("{}orphans/o.bin", app.prefix);
    app.s3
        .create_multipart_upload()
        .bucket(&app.bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let (code, out, err) = sweep_cmd(&app, &db, &["--orphans", "--older-than", "0s", "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (
            report["orphansFound"].as_u64(),
            report["orphansAborted"].as_u64()
        ),
        (Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(
        app.in_progress_uploads().await.len(),
        1,
        "only the live upload is left"
    );

    // Configuration errors: one line, exit 2.
    let (code, _, err) = run(broker()
        .args(["sweep", "--older-than", "soon"])
        .env("DATABASE_URL", &db)
        .env("S3_BUCKET", "b"));
    assert_eq!(code, 2, "{err}");
}
