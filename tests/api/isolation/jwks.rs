//! JWKS sources keep to the outbound policy: read as they arrive and never
//! past 1 MiB, `https://` only outside `EGRESS_ALLOW`, never the broker's own
//! network by default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use upload_broker::auth::issuers::load_jwks;
use upload_broker::domain::egress::EgressAllow;
use upload_broker::outbound::Outbound;

fn outbound(allow: &str) -> Outbound {
    Outbound::new(EgressAllow::parse(allow).unwrap(), Duration::from_secs(5))
}

/// A source that answers 256 MiB (chunked, no length given); counts what it
/// managed to send before the reader hung up.
async fn huge_source() -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if c.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let framed = [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk,
                    b"\r\n".to_vec(),
                ]
                .concat();
                for _ in 0..(256 * 16) {
                    if c.write_all(&framed).await.is_err() {
                        return;
                    }
                    counter.fetch_add(64 * 1024, Ordering::SeqCst);
                }
            });
        }
    });
    (url, sent)
}

#[tokio::test]
async fn a_jwks_over_1_mib_is_refused_without_reading_it_all() {
    let (url, sent) = huge_source().await;
    let err = load_jwks(&outbound("127.0.0.0/8"), &url).await.unwrap_err();
    assert!(err.contains("over 1 MiB"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = sent.load(Ordering::SeqCst);
    assert!(
        sent < 16 << 20,
        "the reader took {} MiB of a 256 MiB answer before stopping",
        sent >> 20
    );
}

#[tokio::test]
async fn jwks_sources_keep_to_the_outbound_policy() {
    let (url, sent) = huge_source().await;
    // Loopback, not listed: refused before any connection, http or https.
    let https = url.replacen("http://", "https://", 1);
    for source in [&url, &https] {
        let err = load_jwks(&outbound(""), source).await.unwrap_err();
        assert!(err.contains("not allowed"), "{source}: {err}");
    }
    // Plain http to a public address: only https may go there.
    let err = load_jwks(&outbound(""), "http://93.184.216.34/jwks.json")
        .await
        .unwrap_err();
    assert!(err.contains("https"), "{err}");
    // A name that resolves to loopback is no way around it.
    let named = url.replacen("127.0.0.1", "localhost", 1);
    let err = load_jwks(&outbound(""), &named).await.unwrap_err();
    assert!(err.contains("not allowed"), "{err}");
    assert_eq!(sent.load(Ordering::SeqCst), 0, "no connection was made");
}
