//! The library with an upload grant (a browser-style credential held by a
//! backend job), and `upb ls --all`: every active upload the credential sees.

mod common;

use common::*;
use upload_broker_client::{Checksum, Client, Fingerprint, Source, UploadOptions};

async fn grant(broker: &Broker, subject: &str) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/grants", broker.url))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"subject": subject, "maxUploadSize": 64 * MIB}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["grant"].as_str().expect("a grant").to_string()
}

async fn unfinished(broker: &Broker, credential: &str, name: &str) -> String {
    let v: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/uploads", broker.url))
        .bearer_auth(credential)
        .json(&serde_json::json!({"filename": name, "size": 6 * MIB}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["resumeToken"].as_str().expect("created").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_uploads_with_the_library_and_ls_all_lists_what_each_credential_sees() {
    let broker = Broker::start(BrokerOptions::default());
    let dir = Scratch::new("grants");
    let file = dir.path("g.bin");
    let len = 11 * MIB + 7;
    let sha = random_file(&file, len);
    let g = grant(&broker, "user-7").await;
    let client = Client::new(&broker.url, &g).unwrap();
    let done = client
        .upload(
            Source::from_path(&file).unwrap(),
            UploadOptions {
                part_size: Some(5 * MIB),
                checksum: Checksum::Crc32c,
                fingerprint: Fingerprint::Off,
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(done.status, "completed");
    assert_eq!(object_sha256(&done.key).await, (sha, len));
    // The grant's limit holds for the library too: a clear refusal, no retries.
    let big = dir.path("big.bin");
    random_file(&big, 65 * MIB);
    let err = client
        .upload(Source::from_path(&big).unwrap(), UploadOptions::default())
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("413") || err.to_string().contains("TOO_LARGE"),
        "{err}"
    );

    // Unfinished uploads: two of the grant's subject, one of the API key's.
    let mine = [
        unfinished(&broker, &g, "a.bin").await,
        unfinished(&broker, &g, "b.bin").await,
    ];
    let theirs = unfinished(&broker, API_KEY, "c.bin").await;
    let (code, out, err) = run(broker.upb(&dir.0).args(["ls", "--all", "--json"]));
    assert_eq!(code, 0, "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let tokens: Vec<&str> = listed
        .iter()
        .map(|r| r["upload"]["resumeToken"].as_str().unwrap())
        .collect();
    assert_eq!(
        tokens,
        [theirs.as_str(), &mine[1], &mine[0]],
        "the tenant's, newest first"
    );
    assert_eq!(listed[0]["file"], "c.bin");
    let (code, out, err) = run(broker
        .upb(&dir.0)
        .env("UPLOAD_BROKER_CREDENTIAL", &g)
        .args(["ls", "--all"]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&mine[1]) && lines[1].starts_with(&mine[0]),
        "{out}"
    );
    assert!(!out.contains(&theirs));
    // --all takes no files.
    let (code, _, _) = run(broker.upb(&dir.0).args(["ls", "--all", "x.bin"]));
    assert_eq!(code, 2);
}
