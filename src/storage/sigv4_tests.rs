//! The presigner's proof: byte-for-byte the SDK's URLs (property test), and
//! signatures that break when anything signed changes.
use super::*;
use crate::config::{Provider, StorageConfig};
use crate::storage::StorageError;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEP//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+abc/d=e~f";

fn creds(akid: &str, token: Option<&str>, expiry: Option<SystemTime>) -> Credentials {
    Credentials::new(akid, SECRET, token.map(str::to_string), expiry, "test")
}

/// A `Storage` whose SDK client and presigner both use `creds`.
async fn storage(
    endpoint: Option<&str>,
    path_style: bool,
    region: &str,
    c: Credentials,
) -> Storage {
    storage_of("upload-bucket", endpoint, path_style, region, c).await
}

async fn storage_of(
    bucket: &str,
    endpoint: Option<&str>,
    path_style: bool,
    region: &str,
    c: Credentials,
) -> Storage {
    let mut s = Storage::connect(&StorageConfig {
        bucket: bucket.into(),
        region: region.into(),
        endpoint: endpoint.map(str::to_string),
        force_path_style: path_style,
        provider: Provider::S3,
        key_prefix: "uploads/".into(),
        list_parts_page_size: 1000,
        operation_timeout: Duration::from_secs(30),
        complete_timeout: Duration::from_secs(240),
    })
    .await;
    set_credentials(&mut s, c);
    s
}

fn set_credentials(s: &mut Storage, c: Credentials) {
    s.client = aws_sdk_s3::Client::from_conf(
        s.client
            .config()
            .to_builder()
            .credentials_provider(c.clone())
            .build(),
    );
    s.credentials = Some(SharedCredentialsProvider::new(c));
}

async fn storages() -> Vec<Storage> {
    let endpoints = [
        (Some("http://127.0.0.1:4566"), true),
        (Some("https://s3.example.com"), true),
        // Virtual-host style; an IP endpoint stays path style.
        (Some("https://s3.example.com"), false),
        (Some("http://127.0.0.1:4566"), false),
        (Some("https://minio.example.com:9000/s3/"), true),
        // A default port is in the URL, not in the signed host.
        (Some("https://s3.example.com:443"), false),
        (Some("http://localhost:4566"), false),
        (None, false),
    ];
    let regions = ["us-east-1", "eu-west-3", "ap-southeast-2", "cn-north-1"];
    let mut out = Vec::new();
    for (endpoint, path_style) in endpoints {
        for region in regions {
            for token in [None, Some(TOKEN)] {
                let c = creds("AKIDEXAMPLE", token, None);
                out.push(storage(endpoint, path_style, region, c).await);
            }
        }
    }
    // A bucket with dots (no virtual host over TLS), and an access key id
    // with characters to escape.
    for endpoint in [Some("https://s3.example.com"), None] {
        let c = creds("AKID+/=EXAMPLE", Some(TOKEN), None);
        out.push(storage_of("dotted.bucket.name", endpoint, false, "us-west-2", c).await);
    }
    out
}

/// The signature the SDK's own signer (`aws_sigv4`, not this module) gives the
/// request in a presigned URL: a tampered URL signs differently.
fn signature_for(
    url: &str,
    headers: &BTreeMap<String, String>,
    c: &Credentials,
    time: SystemTime,
    expires_in: Duration,
) -> String {
    let (before, query) = url.split_once('?').unwrap();
    let credential = query
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Credential="))
        .unwrap();
    // `{access key id}/{date}/{region}/{service}/aws4_request`, read from the end.
    let credential = percent_decode_str(credential).decode_utf8().unwrap();
    let scope: Vec<&str> = credential.rsplitn(4, '/').collect();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("X-Amz-"))
        .collect();
    let unsigned = format!("{before}?{}", kept.join("&"));
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    let identity = c.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(scope[2])
        .name(scope[1])
        .time(time)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        "PUT",
        unsigned,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::UnsignedPayload,
    )
    .unwrap();
    let (_, signature) = aws_sigv4::http_request::sign(request, &params)
        .unwrap()
        .into_parts();
    signature
}

fn signature_in(url: &str) -> &str {
    url.split('&')
        .find_map(|p| p.strip_prefix("X-Amz-Signature="))
        .unwrap()
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => r"(uploads/2026/01/02/[0-9a-f\-]{36}/)?[a-zA-Z0-9 +%~/._\-]{1,40}",
        4 => r"[a-z0-9é😀ü中 +%~/._\-?#&=:@!$'()*,;\[\]{}|^`<>\\\x00-\x1f\x7f]{1,40}",
        1 => r"/{0,2}[a-z/]{0,5}/{0,2}",
        // White space only: the SDK refuses such a key.
        1 => r"[ \t\n\r\x0b\x0c\u{85}\u{a0}\u{3000}]{0,3}",
        1 => any::<String>(),
    ]
}

fn upload_id_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => r"[A-Za-z0-9/=+._~\-]{1,160}",
        1 => any::<String>(),
    ]
}

fn start_strategy() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        // Around now.
        3 => (1_700_000_000u64..1_900_000_000, 0u32..1_000_000_000)
            .prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n)),
        // Any time to the end of 9999.
        3 => (0u64..253_402_300_800, 0u32..1_000_000_000)
            .prop_map(|(s, n)| UNIX_EPOCH + Duration::new(s, n)),
        // Before 1970: the SDK's.
        1 => (1u64..2_208_988_800).prop_map(|s| UNIX_EPOCH - Duration::from_secs(s)),
    ]
}

fn checksum_strategy() -> impl Strategy<Value = Option<(ChecksumAlgorithm, PartChecksum)>> {
    proptest::option::of((any::<bool>(), proptest::collection::vec(any::<u8>(), 32))).prop_map(
        |c| {
            c.map(|(sha, bytes)| {
                let alg = if sha {
                    ChecksumAlgorithm::Sha256
                } else {
                    ChecksumAlgorithm::Crc32c
                };
                let b64 =
                    base64::engine::general_purpose::STANDARD.encode(&bytes[..alg.digest_len()]);
                (alg, PartChecksum::parse(alg, &b64).unwrap())
            })
        },
    )
}

#[allow(clippy::too_many_arguments)]
async fn check(
    s: &Storage,
    key: &str,
    upload_id: &str,
    number: u32,
    content_length: Option<u64>,
    checksum: &Option<(ChecksumAlgorithm, PartChecksum)>,
    start: SystemTime,
    expires_in: Duration,
) -> Result<(), TestCaseError> {
    let key = ObjectKey::from_stored(key.to_string());
    let part = PartToSign {
        key: &key,
        upload_id,
        number: PartNumber::new(number).unwrap(),
        content_length,
        checksum: checksum.as_ref().map(|(a, c)| (*a, c)),
    };
    let sdk = s.presign_upload_part_sdk(&part, start, expires_in).await;
    let fast = s.presigner.presign(s, &part, start, expires_in).await;
    let public = s.presign_upload_part(&part, start, expires_in).await;
    let signable = start >= UNIX_EPOCH && !key.as_str().trim().is_empty() && !upload_id.is_empty();
    let sdk = match sdk {
        Ok(sdk) => sdk,
        Err(e) => {
            prop_assert!(fast.is_none(), "signed what the SDK refuses: {e}");
            let public: StorageError = public.err().unwrap();
            prop_assert_eq!(public.to_string(), e.to_string());
            return Ok(());
        }
    };
    let public = public.unwrap();
    prop_assert_eq!(&public.url, &sdk.url);
    prop_assert_eq!(&public.headers, &sdk.headers);
    if !signable {
        prop_assert!(fast.is_none());
        return Ok(());
    }
    let fast = fast.ok_or_else(|| TestCaseError::fail("left to the SDK"))?;
    prop_assert_eq!(&fast.url, &sdk.url);
    prop_assert_eq!(&fast.headers, &sdk.headers);

    // The URL verifies, and a tampered one does not.
    let c = s.presigner.current().unwrap().creds.clone();
    let verify = |url: &str, headers: &BTreeMap<String, String>| {
        signature_for(url, headers, &c, start, expires_in) == signature_in(url)
    };
    prop_assert!(verify(&fast.url, &fast.headers));
    let other = number % 10_000 + 1;
    let tampered = fast.url.replacen(
        &format!("&partNumber={number}&"),
        &format!("&partNumber={other}&"),
        1,
    );
    prop_assert!(!verify(&tampered, &fast.headers), "{}", tampered);
    let tampered = fast.url.replacen("&uploadId=", "&uploadId=x", 1);
    prop_assert!(!verify(&tampered, &fast.headers));
    let at = fast.url.find('?').unwrap();
    let tampered = format!("{}x{}", &fast.url[..at], &fast.url[at..]);
    prop_assert!(!verify(&tampered, &fast.headers));
    if let Some(n) = content_length {
        let mut headers = fast.headers.clone();
        headers.insert("content-length".into(), (n + 1).to_string());
        prop_assert!(!verify(&fast.url, &headers));
    }
    if let Some((alg, _)) = checksum {
        let mut headers = fast.headers.clone();
        headers.remove(alg.header());
        prop_assert!(!verify(&fast.url, &headers));
    }
    Ok(())
}

/// The fast presigner's URL and headers are the SDK's, byte for byte.
#[test]
fn presigned_parts_are_the_sdks() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let storages = rt.block_on(storages());
    let strategy = (
        0..storages.len(),
        key_strategy(),
        upload_id_strategy(),
        prop_oneof![1u32..=10_000, Just(1u32), Just(10_000u32)],
        proptest::option::of(prop_oneof![0u64..=5 << 30, Just(0), Just(i64::MAX as u64)]),
        checksum_strategy(),
        start_strategy(),
        prop_oneof![1_000u64..=604_800_000, Just(604_800_000)].prop_map(Duration::from_millis),
    );
    let mut runner = TestRunner::new(Config {
        cases: 1024,
        ..Config::default()
    });
    runner
        .run(
            &strategy,
            |(i, key, id, n, len, checksum, start, expires)| {
                rt.block_on(check(
                    &storages[i],
                    &key,
                    &id,
                    n,
                    len,
                    &checksum,
                    start,
                    expires,
                ))
            },
        )
        .unwrap();
}

/// What the SDK refuses or this module does not sign goes to the SDK.
#[tokio::test]
async fn the_rest_is_the_sdks() {
    let s = storage(
        Some("https://s3.example.com"),
        true,
        "us-east-1",
        creds("AKID", None, None),
    )
    .await;
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let week = Duration::from_secs(7 * 24 * 3600);
    for (key, id, expires) in [
        ("k", "u", week + Duration::from_secs(1)),
        ("", "u", week),
        (" \u{a0}\t", "u", week),
        ("k", "", week),
    ] {
        let no_checksum = None;
        check(&s, key, id, 1, None, &no_checksum, start, expires)
            .await
            .unwrap();
    }
    let key = ObjectKey::from_stored("k".into());
    let part = PartToSign {
        key: &key,
        upload_id: "u",
        number: PartNumber::new(1).unwrap(),
        content_length: Some(u64::MAX),
        checksum: None,
    };
    assert!(s.presigner.presign(&s, &part, start, week).await.is_none());
    // The longest URL `http::Uri` takes is the SDK's; a longer one is left to it.
    let part = PartToSign {
        content_length: None,
        ..part
    };
    let short = s.presigner.presign(&s, &part, start, week).await.unwrap();
    let id = "x".repeat(1 + MAX_URL_LEN - short.url.len());
    let longest = PartToSign {
        upload_id: &id,
        ..part
    };
    let fast = s
        .presigner
        .presign(&s, &longest, start, week)
        .await
        .unwrap();
    let sdk = s
        .presign_upload_part_sdk(&longest, start, week)
        .await
        .unwrap();
    assert_eq!((fast.url.len(), &fast.url), (MAX_URL_LEN, &sdk.url));
    let id = "x".repeat(2 + MAX_URL_LEN - short.url.len());
    let too_long = PartToSign {
        upload_id: &id,
        ..part
    };
    assert!(s
        .presigner
        .presign(&s, &too_long, start, week)
        .await
        .is_none());
    // Past year 9999 (the SDK's signer does not format such times either).
    let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
    assert!(s.presigner.presign(&s, &part, far, week).await.is_none());
}

/// Credentials are cached, fetched again before they expire, and never used
/// once expired; the signing key goes with them.
#[tokio::test]
async fn credentials_are_refreshed_before_they_expire() {
    let now = SystemTime::now();
    let soon = now + Duration::from_secs(4 * 60);
    let later = now + Duration::from_secs(3600);
    let mut s = storage(
        None,
        false,
        "eu-west-3",
        creds("AKIDONE", Some("t1"), Some(soon)),
    )
    .await;
    let key = ObjectKey::from_stored("a/b".into());
    let part = PartToSign {
        key: &key,
        upload_id: "u",
        number: PartNumber::new(3).unwrap(),
        content_length: Some(10),
        checksum: None,
    };
    let ttl = Duration::from_secs(600);
    let sign = |s: &Storage| {
        let s = s.clone();
        let key = key.clone();
        async move {
            let part = PartToSign { key: &key, ..part };
            s.presigner
                .presign(&s, &part, now, ttl)
                .await
                .map(|p| p.url)
        }
    };
    assert!(sign(&s).await.unwrap().contains("AKIDONE%2F"));

    // Due for a refresh (within 5 minutes of expiry), but just fetched: kept.
    let presigner = s.presigner.clone();
    set_credentials(&mut s, creds("AKIDTWO", Some("t2"), Some(later)));
    assert!(s
        .presigner
        .presign(&s, &part, now, ttl)
        .await
        .unwrap()
        .url
        .contains("AKIDONE%2F"));

    // Fetched a while ago: fetched again, and the new key signs.
    let old = presigner.current().unwrap();
    let mut aged = Signer::new(old.creds.clone());
    aged.fetched = Instant::now() - REFRESH_RETRY - Duration::from_secs(1);
    *write(&presigner.signer) = Some(Arc::new(aged));
    let p = s.presigner.presign(&s, &part, now, ttl).await.unwrap();
    assert!(p.url.contains("AKIDTWO%2F") && p.url.ends_with("&X-Amz-Security-Token=t2"));
    let sdk = s.presign_upload_part_sdk(&part, now, ttl).await.unwrap();
    assert_eq!(p.url, sdk.url);

    // Good for an hour: cached, whatever the provider now says.
    set_credentials(&mut s, creds("AKIDTHREE", None, Some(later)));
    assert!(s
        .presigner
        .presign(&s, &part, now, ttl)
        .await
        .unwrap()
        .url
        .contains("AKIDTWO%2F"));

    // Expired credentials are never used.
    let s = storage(
        None,
        false,
        "eu-west-3",
        creds("AKIDOLD", None, Some(now - Duration::from_secs(1))),
    )
    .await;
    assert!(s.presigner.presign(&s, &part, now, ttl).await.is_none());
}

proptest! {
    #[test]
    fn stamps_are_utc(secs in 0u64..253_402_300_800) {
        let t = UNIX_EPOCH + Duration::from_secs(secs);
        let stamp = Stamp::new(t).unwrap();
        let chrono: chrono::DateTime<chrono::Utc> = t.into();
        prop_assert_eq!(stamp.date_time(), chrono.format("%Y%m%dT%H%M%SZ").to_string());
        prop_assert_eq!(stamp.day, secs / 86_400);
    }
}
