//! `s3s-compat`: test tooling for upload-broker's end-to-end suite, not a product.
//!
//! It serves [s3s-fs](https://crates.io/crates/s3s-fs) (files on disk behind the
//! `s3s` S3 server, which checks SigV4 signatures, header and presigned) with
//! the multipart behaviours AWS S3 documents and s3s-fs 0.14 lacks filled in by
//! [`compat::Compat`]: ListParts with ETags, order and paging; 404 `NoSuchUpload`
//! for an unknown upload id; a completion that checks part ETags and keeps the
//! upload when it refuses; ListMultipartUploads. Storage, object reads and
//! signature checks stay s3s-fs's and s3s's, so the suite runs against a second
//! S3 implementation besides LocalStack (see docs/s3-compatibility.md).
//!
//! Usage (the command line of the `s3s-fs` binary):
//!
//! ```text
//! s3s-compat [--host 127.0.0.1] [--port 8014] [--access-key AK --secret-key SK] DATADIR
//! ```

mod compat;
mod disk;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{Body, HttpError, HttpResponse};
use std::path::PathBuf;

struct Opt {
    host: String,
    port: u16,
    keys: Option<(String, String)>,
    root: PathBuf,
}

/// Bodies up to this size are read whole before s3s sees the request.
const READ_FIRST_LIMIT: u64 = 64 << 20;

/// Passes the request to s3s after reading its body, when it declares at most
/// [`READ_FIRST_LIMIT`] bytes. s3s refuses a bad signature (a presigned PUT of
/// another length than it signs) before it reads the body, and a connection
/// closed with bytes unread is reset: the client would see a broken pipe instead
/// of the 403, or not, by timing. Read first, as LocalStack does, and the client
/// always gets the answer. (Not an S3 behaviour: transport, for steady tests.)
async fn read_then_call(
    service: S3Service,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let mut body = Body::from(body);
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > 0 && n <= READ_FIRST_LIMIT) {
        body.store_all_limited(READ_FIRST_LIMIT as usize)
            .await
            .map_err(HttpError::new)?;
    }
    service.call(hyper::Request::from_parts(parts, body)).await
}

fn parse_args() -> Result<Opt, String> {
    let (mut host, mut port) = ("127.0.0.1".to_string(), 8014u16);
    let (mut ak, mut sk, mut root) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--host" => host = value()?,
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--access-key" => ak = Some(value()?),
            "--secret-key" => sk = Some(value()?),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            _ => root = Some(PathBuf::from(arg)),
        }
    }
    let keys = match (ak, sk) {
        (Some(a), Some(s)) => Some((a, s)),
        (None, None) => None,
        _ => return Err("--access-key and --secret-key go together".into()),
    };
    let root = root.ok_or("the data directory is missing")?;
    Ok(Opt {
        host,
        port,
        keys,
        root,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opt = parse_args().map_err(|e| {
        format!("{e}\nusage: s3s-compat [--host H] [--port P] [--access-key AK --secret-key SK] DATADIR")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_ansi(false)
        .init();

    let store = compat::Compat::new(&opt.root)?;
    let mut builder = S3ServiceBuilder::new(store);
    if let Some((ak, sk)) = opt.keys {
        // s3s checks every request's signature (header or query) against these.
        builder.set_auth(SimpleAuth::from_single(ak, sk));
    }
    let service = builder.build();

    let listener = tokio::net::TcpListener::bind((opt.host.as_str(), opt.port)).await?;
    tracing::info!("s3s-compat listening on http://{}", listener.local_addr()?);
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut stop = std::pin::pin!(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! { r = tokio::signal::ctrl_c() => r, _ = term.recv() => Ok(()) }
    });
    loop {
        let socket = tokio::select! {
            res = listener.accept() => match res {
                Ok((socket, _)) => socket,
                Err(e) => { tracing::error!("accept: {e}"); continue; }
            },
            _ = stop.as_mut() => break,
        };
        let service = service.clone();
        let handler = hyper::service::service_fn(move |req| read_then_call(service.clone(), req));
        let conn = http.serve_connection(TokioIo::new(socket), handler);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {},
    }
    Ok(())
}
