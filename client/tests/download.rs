//! `upb download` killed halfway and run again continues the partial file
//! (Range + If-Match); when the object was replaced in between, it starts
//! over instead of splicing two versions.

mod common;

use common::proxy::{Kind, Proxy};
use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};
use upload_broker_client::{Fingerprint, Source, UploadOptions};

const LEN: u64 = 40 * MIB;

struct Setup {
    proxy: Proxy,
    broker: Broker,
    dir: Scratch,
    token: String,
    key: String,
    sha: String,
}

async fn setup(name: &str) -> Setup {
    let proxy = Proxy::start(&s3_endpoint()).await;
    let broker = Broker::start(BrokerOptions {
        s3_endpoint: Some(proxy.url.clone()),
        ..Default::default()
    });
    let dir = Scratch::new(name);
    let file = dir.path("original.bin");
    let sha = random_file(&file, LEN);
    let up = broker
        .client()
        .upload(
            Source::from_path(&file).unwrap(),
            UploadOptions {
                fingerprint: Fingerprint::Off,
                ..UploadOptions::default()
            },
        )
        .await
        .unwrap();
    Setup {
        proxy,
        broker,
        dir,
        token: up.resume_token,
        key: up.key,
        sha,
    }
}

/// Starts `upb download` throttled; SIGKILLs it once half the file is there.
fn kill_at_half(s: &Setup, out: &std::path::Path) -> u64 {
    s.proxy.throttle_get(8 * MIB);
    let partial = {
        let mut p = out.as_os_str().to_owned();
        p.push(".upb-partial");
        std::path::PathBuf::from(p)
    };
    let mut child = s
        .broker
        .upb(&s.dir.0)
        .args(["download", &s.token, "-o"])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have >= LEN / 2 {
            break;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("upb download ended ({st}) before half the file was there");
        }
        assert!(
            Instant::now() < deadline,
            "half the file did not arrive within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !out.exists(),
        "a killed download must not leave the final file"
    );
    let have = std::fs::metadata(&partial).unwrap().len();
    assert!((LEN / 2..LEN).contains(&have), "{have}");
    s.proxy.throttle_get(0);
    s.proxy.reset_counts();
    have
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upb_download_killed_at_half_continues() {
    let s = setup("dl-resume").await;
    let out = s.dir.path("copy.bin");
    let have = kill_at_half(&s, &out);

    let (code, stdout, err) = run(s
        .broker
        .upb(&s.dir.0)
        .args(["download", "--json", &s.token, "-o"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!("resuming download at {have} of {LEN} bytes")),
        "{err}"
    );
    assert_eq!(sha256_file(&out), s.sha, "the downloaded file differs");
    // Only the rest was fetched, with one ranged GET.
    assert_eq!(s.proxy.get_bytes(), LEN - have);
    assert_eq!(s.proxy.count(Kind::GetObject, 206), 1);
    let outcome: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(outcome["resumedFrom"], have);
    assert_eq!(outcome["restarted"], false);
    // The partial file and its note are gone.
    let names: Vec<_> = std::fs::read_dir(&s.dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("upb-partial")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upb_download_of_a_replaced_object_restarts() {
    let s = setup("dl-replaced").await;
    let out = s.dir.path("copy.bin");
    kill_at_half(&s, &out);

    // The object is replaced behind the broker's back (same size, other bytes).
    let other = s.dir.path("other.bin");
    let other_sha = random_file(&other, LEN);
    put_object(&s.key, &other).await;

    let (code, _, err) = run(s
        .broker
        .upb(&s.dir.0)
        .args(["download", &s.token, "-o"])
        .arg(&out));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("restarting download: the object changed"),
        "{err}"
    );
    let got = sha256_file(&out);
    assert_ne!(got, s.sha, "still the old version");
    assert_eq!(got, other_sha, "not the new object as a whole (spliced?)");
    // The If-Match GET got 412; then the whole object came again.
    assert_eq!(s.proxy.count(Kind::GetObject, 412), 1);
    assert_eq!(s.proxy.count(Kind::GetObject, 200), 1);
    assert_eq!(s.proxy.get_bytes(), LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upb_status_abort_and_exit_codes() {
    let broker = Broker::start(BrokerOptions::default());
    let dir = Scratch::new("cli");
    // No configuration: usage error, exit 2.
    let (code, _, err) = run(std::process::Command::new(upb_bin())
        .env_remove("UPLOAD_BROKER_URL")
        .env_remove("UPLOAD_BROKER_CREDENTIAL")
        .args(["status", "x"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("UPLOAD_BROKER_URL"), "{err}");
    let (code, _, _) = run(broker
        .upb(&dir.0)
        .args(["upload", "--checksum", "md5", "f"]));
    assert_eq!(code, 2);
    // An upload created and left unfinished.
    let res: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/uploads", broker.url))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({"filename": "half.bin", "size": 6 * MIB}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let created = res["resumeToken"].as_str().unwrap().to_string();
    let (code, out, err) = run(broker.upb(&dir.0).args(["status", "--json", &created]));
    assert_eq!(code, 0, "{err}");
    let st: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["status"], "active");
    assert_eq!(st["progress"]["uploadedParts"], 0);
    let (code, out, err) = run(broker.upb(&dir.0).args(["abort", &created]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("aborted"));
    let (code, out, _) = run(broker.upb(&dir.0).args(["status", &created]));
    assert_eq!(code, 0);
    assert!(out.contains("status    aborted"), "{out}");
    // Downloading an unfinished upload fails (1), naming the broker's code.
    let (code, _, err) = run(broker
        .upb(&dir.0)
        .args(["download", &created, "-o"])
        .arg(dir.path("x")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("UPLOAD_NOT_ACTIVE"), "{err}");
    // An unknown token: 404, exit 1.
    let (code, _, err) = run(broker.upb(&dir.0).args([
        "status",
        "AQGiKQABkXO0ot_N-PnfVulm-LPq8Kl1yWhVc4GcLjH08o_upchJj2jKB2LpiGlCiQ",
    ]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NOT_FOUND"), "{err}");
}
