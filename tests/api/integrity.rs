//! Integrity end to end: checksum-bound part URLs, verified objects, fingerprint
//! lookup, resumable downloads, and parts that disagree with the client.

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

const PART: usize = 5 * MIB;

fn sha256_b64(b: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(b))
}

fn crc32c_b64(b: &[u8]) -> String {
    STANDARD.encode(crc32c::crc32c(b).to_be_bytes())
}

/// S3's composite checksum: the digest of the concatenated raw part digests, "-N".
fn composite(part_checksums: &[String], sha: bool) -> String {
    let raw: Vec<u8> = part_checksums
        .iter()
        .flat_map(|c| STANDARD.decode(c).unwrap())
        .collect();
    let digest = if sha {
        sha256_b64(&raw)
    } else {
        crc32c_b64(&raw)
    };
    format!("{digest}-{}", part_checksums.len())
}

async fn checksum_round_trip(app: &TestApp, alg: &str, sum: fn(&[u8]) -> String) {
    let file = data(PART + 4321, 21);
    let c = app.create_ok(json!({"filename": "sum.bin", "size": file.len(), "partSize": PART, "checksumAlgorithm": alg})).await;
    assert_eq!(c["checksumAlgorithm"], alg);
    assert_eq!(
        c["parts"],
        json!([]),
        "checksum-bound parts are signed with their checksums"
    );
    let t = token(&c);
    let sums: Vec<String> = (1..=2).map(|n| sum(slice(&file, PART, n))).collect();
    let (s, signed) = app
        .call(
            Method::POST,
            &format!("/v1/uploads/{t}/parts"),
            Some(json!({"parts": [
            {"partNumber": 1, "checksum": sums[0]}, {"partNumber": 2, "checksum": sums[1]}]})),
        )
        .await;
    assert_eq!(s, 200, "{signed}");
    let header = format!("x-amz-checksum-{}", alg.to_ascii_lowercase());
    for (i, p) in signed["parts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            p["headers"][&header],
            sums[i].as_str(),
            "the part tells the client what to send: {p}"
        );
        let url = reqwest::Url::parse(p["url"].as_str().unwrap()).unwrap();
        let signed_headers = url
            .query_pairs()
            .find(|(k, _)| k == "X-Amz-SignedHeaders")
            .unwrap()
            .1
            .to_string();
        assert!(
            signed_headers.contains(&header),
            "the checksum header is signed: {signed_headers}"
        );
    }
    let parts = signed["parts"].as_array().unwrap().clone();

    // Corrupted bytes under the right header: storage refuses them.
    let mut bad = slice(&file, PART, 1).to_vec();
    bad[1000] ^= 0xff;
    let res = app.put_raw(&parts[0], bad).await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("BadDigest") || body.contains("InvalidRequest"),
        "{body}"
    );
    // Without the header: refused too (the header is part of the signature).
    let res = app
        .http
        .put(parts[0]["url"].as_str().unwrap())
        .body(slice(&file, PART, 1).to_vec())
        .send()
        .await
        .unwrap();
    assert!(
        res.status().is_client_error(),
        "a PUT without its checksum header must fail: {}",
        res.status()
    );
    let (_, st) = app.get_status(&t).await;
    assert_eq!(st["uploadedParts"], json!([]), "nothing was stored: {st}");

    // The right bytes pass; the upload completes with the composite checksum.
    for (i, p) in parts.iter().enumerate() {
        app.put_part(p, slice(&file, PART, i as u64 + 1)).await;
    }
    let (_, st) = app.get_status(&t).await;
    assert_eq!(st["uploadedParts"][0]["checksum"], sums[0].as_str());
    let (s, done) = app.complete(&t, None).await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(
        done["checksum"],
        composite(&sums, alg == "SHA256"),
        "{done}"
    );
    assert_eq!(done["checksumType"], "COMPOSITE");
    assert_eq!(done["objectSize"], file.len());
    let (bytes, _, _) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

#[sqlx::test]
async fn sha256_bound_parts(pool: PgPool) {
    checksum_round_trip(&TestApp::spawn(pool).await, "SHA256", sha256_b64).await;
}

#[sqlx::test]
async fn crc32c_bound_parts(pool: PgPool) {
    checksum_round_trip(&TestApp::spawn(pool).await, "CRC32C", crc32c_b64).await;
}

#[sqlx::test]
async fn checksum_requests_are_validated(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (s, v) = app
        .call(
            Method::POST,
            "/v1/uploads",
            Some(json!({"filename": "a", "size": 10, "checksumAlgorithm": "MD5"})),
        )
        .await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"));
    let summed = app
        .create_ok(json!({"filename": "a", "size": 10, "checksumAlgorithm": "SHA256"}))
        .await;
    let plain = app.create_ok(json!({"filename": "b", "size": 10})).await;
    let good = sha256_b64(b"0123456789");
    for (t, body) in [
        (token(&summed), json!({"partNumbers": [1]})),
        (
            token(&summed),
            json!({"parts": [{"partNumber": 1, "checksum": "bm90IGEgc2hhMjU2"}]}),
        ),
        (
            token(&summed),
            json!({"parts": [{"partNumber": 1, "checksum": "***"}]}),
        ),
        (token(&summed), json!({"parts": [{"partNumber": 1}]})),
        (
            token(&summed),
            json!({"parts": [{"partNumber": 2, "checksum": good}]}),
        ),
        (
            token(&summed),
            json!({"partNumbers": [1], "parts": [{"partNumber": 1, "checksum": good}]}),
        ),
        (
            token(&plain),
            json!({"parts": [{"partNumber": 1, "checksum": good}]}),
        ),
    ] {
        let (s, v) = app
            .call(
                Method::POST,
                &format!("/v1/uploads/{t}/parts"),
                Some(body.clone()),
            )
            .await;
        assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"), "{body}");
    }
    // Resume of a checksum-bound upload lists what is missing but signs nothing.
    let (s, r) = app.resume(&token(&summed)).await;
    assert_eq!(s, 200);
    assert_eq!(
        (r["missingParts"].clone(), r["parts"].clone()),
        (json!([1]), json!([]))
    );
}

#[sqlx::test]
async fn fingerprint_lookup_finds_the_tenants_active_uploads_newest_first(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let fp = "movie.mp4:2147483648:abc123";
    let older = app
        .create_ok(json!({"filename": "m", "size": 12 * MIB, "partSize": PART, "fingerprint": fp}))
        .await;
    app.put_part(&older["parts"][0], &data(PART, 1)).await;
    let newer = app
        .create_ok(json!({"filename": "m", "size": 10, "fingerprint": fp}))
        .await;
    let done = app
        .create_ok(json!({"filename": "m", "size": 10, "fingerprint": fp}))
        .await;
    app.put_part(&done["parts"][0], &data(10, 2)).await;
    assert_eq!(app.complete(&token(&done), None).await.0, 200);
    let aborted = app
        .create_ok(json!({"filename": "m", "size": 10, "fingerprint": fp}))
        .await;
    assert_eq!(app.abort(&token(&aborted)).await.0, 204);
    let expired = app
        .create_ok(json!({"filename": "m", "size": 10, "fingerprint": fp}))
        .await;
    app.expire_now(&expired).await;
    app.create_ok(json!({"filename": "m", "size": 10, "fingerprint": "another"}))
        .await;
    // Tenant B, same fingerprint.
    let res = app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth(KEY_B)
        .json(&json!({"filename": "m", "size": 10, "fingerprint": fp}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let theirs: Value = res.json().await.unwrap();

    let path = format!("/v1/uploads?fingerprint={}", fp.replace(':', "%3A"));
    let (s, v) = app.call(Method::GET, &path, None).await;
    assert_eq!(s, 200, "{v}");
    let found = v["uploads"].as_array().unwrap();
    assert_eq!(found.len(), 2, "{v}");
    assert_eq!(found[0]["id"], newer["id"]);
    assert_eq!(found[1]["id"], older["id"]);
    assert_eq!(
        found[1]["resumeToken"], older["resumeToken"],
        "the same token as at create"
    );
    assert_eq!(found[1]["progress"]["uploadedParts"], 1);
    assert_eq!(found[1]["progress"]["uploadedBytes"], PART);
    assert_eq!(found[0]["progress"]["uploadedBytes"], 0);

    let res = app
        .http
        .get(app.url(&path))
        .bearer_auth(KEY_B)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    let ids: Vec<&Value> = v["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["id"])
        .collect();
    assert_eq!(ids, vec![&theirs["id"]], "never another tenant's");

    let (s, v) = app
        .call(Method::GET, "/v1/uploads?fingerprint=nothing-like-it", None)
        .await;
    assert_eq!((s, v), (200, json!({"uploads": []})));
    let (s, v) = app.call(Method::GET, "/v1/uploads", None).await;
    assert_eq!((s, error_code(&v)), (400, "INVALID_REQUEST"));
    let (s, _) = app
        .call(
            Method::GET,
            &format!("/v1/uploads?fingerprint={}", "x".repeat(257)),
            None,
        )
        .await;
    assert_eq!(s, 400);
}

#[sqlx::test]
async fn download_urls_serve_ranges_and_honour_if_match(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = data(PART + 777, 31);
    let c = app.create_ok(json!({"filename": "résumé final.pdf", "size": file.len(), "partSize": PART, "contentType": "application/pdf"})).await;
    let t = token(&c);
    let (s, v) = app
        .call(Method::POST, &format!("/v1/uploads/{t}/download"), None)
        .await;
    assert_eq!(
        (s, error_code(&v)),
        (409, "UPLOAD_NOT_ACTIVE"),
        "only completed uploads download"
    );
    app.put_parts(&c["parts"], &file, PART).await;
    let (_, done) = app.complete(&t, None).await;

    let (s, d) = app
        .call(Method::POST, &format!("/v1/uploads/{t}/download"), None)
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["method"], "GET");
    assert_eq!(d["etag"], done["etag"]);
    assert_eq!(d["size"], file.len());
    let url = d["url"].as_str().unwrap();
    let res = app.http.get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let cd = res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.starts_with("attachment;")
            && cd.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20final.pdf"),
        "{cd}"
    );
    assert_eq!(sha256(&res.bytes().await.unwrap()), sha256(&file));

    // A resumed download: a range, revalidated with the ETag.
    let etag = done["etag"].as_str().unwrap();
    let res = app
        .http
        .get(url)
        .header("range", "bytes=1000-1999")
        .header("if-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &file[1000..2000]);
    let res = app
        .http
        .get(url)
        .header("range", "bytes=1000-1999")
        .header("if-match", "\"0123456789abcdef0123456789abcdef\"")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 412, "a stale ETag fails");

    let (s, d) = app
        .call(
            Method::POST,
            &format!("/v1/uploads/{t}/download"),
            Some(json!({"disposition": "inline", "filename": "x.pdf"})),
        )
        .await;
    assert_eq!(s, 200);
    let res = app
        .http
        .get(d["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("inline; filename=\"x.pdf\""));
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/v1/uploads/{t}/download"),
            Some(json!({"disposition": "sideways"})),
        )
        .await;
    assert_eq!(s, 400);
}

#[sqlx::test]
async fn resume_reports_parts_that_disagree_with_the_client(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let file = data(2 * PART, 41);
    let c = app
        .create_ok(json!({"filename": "d.bin", "size": file.len(), "partSize": PART}))
        .await;
    let t = token(&c);
    let parts = c["parts"].as_array().unwrap().clone();
    let good1 = app.put_part(&parts[0], slice(&file, PART, 1)).await;
    // Part 2 re-uploaded by something else with other bytes of the same size.
    let client2 = app.put_part(&parts[1], slice(&file, PART, 2)).await;
    app.put_part(&parts[1], &data(PART, 99)).await;

    let (s, r) = app
        .call(
            Method::POST,
            &format!("/v1/uploads/{t}/resume"),
            Some(json!({"parts": [
            {"partNumber": 1, "etag": good1, "size": PART}, {"partNumber": 2, "etag": client2}]})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["conflictingParts"][0]["partNumber"], 2, "{r}");
    assert_eq!(r["conflictingParts"][0]["field"], "etag");
    assert_eq!(r["missingParts"], json!([2]));
    assert_eq!(
        r["parts"][0]["partNumber"], 2,
        "the conflicting part is signed again"
    );
    assert_eq!(r["progress"]["uploadedParts"], 1);
    app.put_part(&r["parts"][0], slice(&file, PART, 2)).await;
    let (s, done) = app.complete(&t, None).await;
    assert_eq!(s, 200, "{done}");
    let (bytes, _, _) = app.read_object(c["key"].as_str().unwrap()).await;
    assert_eq!(sha256(&bytes), sha256(&file));
}

/// Storage checks the broker's own signatures (src/storage/sigv4.rs): the URL
/// as signed is accepted, and any change to what it signs is refused.
#[sqlx::test]
async fn bent_part_urls_are_refused_by_storage(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let c = app
        .create_ok(json!({"filename": "b.bin", "size": 10 * MIB, "partSize": 5 * MIB}))
        .await;
    let part = &c["parts"][0];
    let url = part["url"].as_str().unwrap().to_string();
    let body = data(5 * MIB, 3);
    let signature = url.split("X-Amz-Signature=").nth(1).unwrap().to_string();
    let flipped = format!(
        "{}{}",
        &signature[..signature.len() - 1],
        if signature.ends_with('0') { '1' } else { '0' }
    );
    let bent = [
        ("the signature", url.replace(&signature, &flipped)),
        (
            "the part number",
            url.replace("partNumber=1", "partNumber=2"),
        ),
        (
            "the expiry",
            url.replace("X-Amz-Expires=", "X-Amz-Expires=9"),
        ),
        ("the key", url.replace("/b.bin?", "/c.bin?")),
    ];
    for (what, bent_url) in bent {
        assert_ne!(bent_url, url, "the test did not change {what}");
        let mut p = part.clone();
        p["url"] = json!(bent_url);
        let res = app.put_raw(&p, body.clone()).await;
        assert_eq!(res.status(), 403, "a URL with another {what} was accepted");
    }
    let res = app.put_raw(part, body.clone()).await;
    assert!(res.status().is_success(), "{}", res.status());
}
