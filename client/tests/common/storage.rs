//! Storage helpers shared by the tests and the chaos run (client/examples/chaos.rs):
//! where LocalStack is, random files, and objects read back and hashed.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

pub const HOW_TO: &str = "run `flock /tmp/cargo.lock scripts/test.sh --test <name> -p upload-broker-client` \
(it starts Postgres and LocalStack and exports S3_ENDPOINT and S3_BUCKET), or start LocalStack with \
`scripts/localstack.sh`, create the bucket and export S3_ENDPOINT and S3_BUCKET";

pub fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").unwrap_or_else(|_| panic!("S3_ENDPOINT is not set: {HOW_TO}"))
}

pub fn bucket() -> String {
    std::env::var("S3_BUCKET").unwrap_or_else(|_| panic!("S3_BUCKET is not set: {HOW_TO}"))
}

/// A file of `len` random bytes; returns its SHA-256 (hex).
pub fn random_file(path: &Path, len: u64) -> String {
    let mut src = std::fs::File::open("/dev/urandom").unwrap();
    let mut dst = std::fs::File::create(path).unwrap();
    let copied = std::io::copy(&mut std::io::Read::take(&mut src, len), &mut dst).unwrap();
    assert_eq!(copied, len);
    dst.sync_all().unwrap();
    sha256_file(path)
}

/// SHA-256 with coreutils (this is a debug build: sha2 here would be slow).
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

pub async fn s3() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(s3_endpoint())
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                    aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                ))
                .build_https(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// SHA-256 (hex) and size of an object, read back from storage.
pub async fn object_sha256(key: &str) -> (String, u64) {
    let obj = s3()
        .await
        .get_object()
        .bucket(bucket())
        .key(key)
        .send()
        .await
        .unwrap();
    let mut body = obj.body;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut n = 0u64;
    while let Some(chunk) = body.try_next().await.unwrap() {
        n += chunk.len() as u64;
        stdin.write_all(&chunk).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string(),
        n,
    )
}
