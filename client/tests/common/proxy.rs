//! A TCP-level HTTP/1.1 fault proxy in front of LocalStack. The broker is told
//! that storage lives here, so its presigned URLs (and its own calls) come
//! through. Each connection carries one request: the request head is forwarded
//! byte for byte (the signed `Host` included) except `Connection: close`; the
//! proxy can cut a request or response body halfway with a TCP reset, stall it,
//! answer with an error status instead of storage, and throttle bodies. It
//! counts what passes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A presigned UploadPart (PUT with partNumber and uploadId).
    PutPart,
    /// A presigned GetObject (a download).
    GetObject,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward half the body (request body for PUTs, response body for GETs), then reset the client's connection.
    ResetMidBody,
    /// Forward half the body, then move nothing for this long, then close.
    StallMidBody(Duration),
    /// Answer this status (with `Retry-After: 1`) instead of storage, after reading the request.
    Status(u16),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub kind: Kind,
    pub method: String,
    pub target: String,
    pub fault: Option<Fault>,
    /// The status the client got (None: cut before an answer).
    pub status: Option<u16>,
}

#[derive(Default)]
struct State {
    upstream: Option<SocketAddr>,
    /// (kind, nth request of that kind, 1-based, fault)
    rules: Mutex<Vec<(Kind, usize, Fault)>>,
    counts: Mutex<std::collections::HashMap<&'static str, usize>>,
    seen: Mutex<Vec<Seen>>,
    /// Bytes per second per connection for request bodies of PUTs (0: no limit).
    throttle_put: AtomicU64,
    /// Bytes per second per connection for GET response bodies (0: no limit).
    throttle_get: AtomicU64,
    /// Response body bytes of successful GetObject answers sent to clients.
    get_bytes: AtomicU64,
    /// Bumped by `reset_counts`: requests of an earlier epoch no longer count.
    epoch: AtomicU64,
}

#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    state: Arc<State>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let hostport = upstream.trim_start_matches("http://").trim_end_matches('/');
        let upstream: SocketAddr = tokio::net::lookup_host(hostport)
            .await
            .unwrap()
            .next()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(State {
            upstream: Some(upstream),
            ..State::default()
        });
        let proxy = Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            state: state.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = handle(state, sock).await;
                });
            }
        });
        proxy
    }

    /// Applies `fault` to the `nth` (1-based) request of `kind` from now on counted.
    pub fn fault(&self, kind: Kind, nth: usize, fault: Fault) {
        self.state.rules.lock().unwrap().push((kind, nth, fault));
    }

    pub fn throttle_put(&self, bytes_per_sec: u64) {
        self.state
            .throttle_put
            .store(bytes_per_sec, Ordering::SeqCst);
    }

    pub fn throttle_get(&self, bytes_per_sec: u64) {
        self.state
            .throttle_get
            .store(bytes_per_sec, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests of a kind that got this status.
    pub fn count(&self, kind: Kind, status: u16) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.kind == kind && s.status == Some(status))
            .count()
    }

    /// Requests of a kind, whatever became of them.
    pub fn requests(&self, kind: Kind) -> usize {
        self.seen().iter().filter(|s| s.kind == kind).count()
    }

    pub fn get_bytes(&self) -> u64 {
        self.state.get_bytes.load(Ordering::SeqCst)
    }

    /// Forgets what was seen (counts, bytes); rules stay.
    pub fn reset_counts(&self) {
        let mut seen = self.state.seen.lock().unwrap();
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
        seen.clear();
        self.state.get_bytes.store(0, Ordering::SeqCst);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads up to the end of an HTTP head; returns (head, bytes after it).
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(8192);
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok(Some((buf, rest)));
        }
        let n = r.read(&mut tmp).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.len() > 1 << 20 {
            return Ok(None);
        }
    }
}

/// The head with `Connection: close` instead of whatever it said; and its Content-Length.
fn rewrite_head(head: &[u8]) -> (Vec<u8>, Option<u64>, bool) {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut len = None;
    let mut chunked = false;
    for (i, line) in text.trim_end_matches("\r\n").split("\r\n").enumerate() {
        if i > 0 {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
                continue;
            }
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().ok();
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    (out.into_bytes(), len, chunked)
}

/// Where a body's bytes are counted, while its epoch lasts.
struct Counter<'a> {
    bytes: &'a AtomicU64,
    epoch: &'a AtomicU64,
    at: u64,
}

/// Copies `len` bytes (after `first`) from `r` to `w`, throttled; stops at
/// `stop_at` bytes if given. Returns the bytes copied.
async fn copy_body<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    first: &[u8],
    r: &mut R,
    w: &mut W,
    len: Option<u64>,
    stop_at: Option<u64>,
    rate: u64,
    counter: Option<Counter<'_>>,
) -> std::io::Result<u64> {
    let limit = match (len, stop_at) {
        (Some(l), Some(s)) => Some(l.min(s)),
        (l, s) => l.or(s),
    };
    let mut done = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = first.to_vec();
    loop {
        if limit.is_some_and(|l| done >= l) {
            break;
        }
        let chunk: Vec<u8> = if !pending.is_empty() {
            std::mem::take(&mut pending)
        } else {
            let want = limit
                .map(|l| (l - done).min(buf.len() as u64) as usize)
                .unwrap_or(buf.len());
            let n = r.read(&mut buf[..want]).await?;
            if n == 0 {
                break;
            }
            buf[..n].to_vec()
        };
        let take = limit
            .map(|l| ((l - done) as usize).min(chunk.len()))
            .unwrap_or(chunk.len());
        w.write_all(&chunk[..take]).await?;
        done += take as u64;
        if let Some(c) = &counter {
            if c.epoch.load(Ordering::SeqCst) == c.at {
                c.bytes.fetch_add(take as u64, Ordering::SeqCst);
            }
        }
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(take as f64 / rate as f64)).await;
        }
    }
    Ok(done)
}

async fn handle(state: Arc<State>, client: TcpStream) -> std::io::Result<()> {
    let (mut cr, mut cw) = client.into_split();
    let Some((head, rest)) = read_head(&mut cr).await? else {
        return Ok(());
    };
    let first =
        String::from_utf8_lossy(&head[..find(&head, b"\r\n").unwrap_or(head.len())]).into_owned();
    let mut words = first.split(' ');
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let kind = if method == "PUT" && target.contains("partNumber=") && target.contains("uploadId=")
    {
        Kind::PutPart
    } else if method == "GET"
        && target.contains("X-Amz-Signature=")
        && !target.contains("uploadId=")
    {
        Kind::GetObject
    } else {
        Kind::Other
    };
    let fault = {
        let mut counts = state.counts.lock().unwrap();
        let key = match kind {
            Kind::PutPart => "put",
            Kind::GetObject => "get",
            Kind::Other => "other",
        };
        let n = counts.entry(key).or_default();
        *n += 1;
        let n = *n;
        let rules = state.rules.lock().unwrap();
        rules
            .iter()
            .find(|(k, nth, _)| *k == kind && *nth == n)
            .map(|r| r.2)
    };
    let (idx, epoch) = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            kind,
            method: method.clone(),
            target,
            fault,
            status: None,
        });
        (seen.len() - 1, state.epoch.load(Ordering::SeqCst))
    };
    let set_status = |s: u16| {
        let mut seen = state.seen.lock().unwrap();
        if state.epoch.load(Ordering::SeqCst) == epoch {
            seen[idx].status = Some(s);
        }
    };
    let (new_head, req_len, chunked) = rewrite_head(&head);
    // No length and not chunked: no body.
    let req_len = if chunked {
        None
    } else {
        Some(req_len.unwrap_or(0))
    };

    if let Some(Fault::Status(code)) = fault {
        // Read the body, then answer like an overloaded storage would.
        let mut sink = tokio::io::sink();
        copy_body(&rest, &mut cr, &mut sink, req_len, None, 0, None).await?;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>injected {code}</Message></Error>"
        );
        let resp = format!(
            "HTTP/1.1 {code} Injected\r\nContent-Type: application/xml\r\nRetry-After: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        cw.write_all(resp.as_bytes()).await?;
        cw.shutdown().await?;
        set_status(code);
        return Ok(());
    }

    let upstream = TcpStream::connect(state.upstream.unwrap()).await?;
    let (mut ur, mut uw) = upstream.into_split();
    uw.write_all(&new_head).await?;

    // Request body.
    let put_rate = if kind == Kind::PutPart {
        state.throttle_put.load(Ordering::SeqCst)
    } else {
        0
    };
    let half = req_len.map(|l| l / 2);
    let body_fault = if kind == Kind::PutPart { fault } else { None };
    let mut cr = Some(cr);
    if chunked {
        // Unknown length: stream it alongside (no faults on these).
        let mut r = cr.take().unwrap();
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut r, &mut uw).await;
        });
    } else {
        let cr_ref = cr.as_mut().unwrap();
        let stop = body_fault.map(|_| half.unwrap_or(0));
        let copied = copy_body(&rest, cr_ref, &mut uw, req_len, stop, put_rate, None).await;
        match body_fault {
            Some(Fault::ResetMidBody) => {
                let client = cr.take().unwrap().reunite(cw).unwrap();
                client.set_zero_linger()?;
                drop(client);
                return Ok(());
            }
            Some(Fault::StallMidBody(d)) => {
                tokio::time::sleep(d).await;
                return Ok(());
            }
            _ => {}
        }
        let copied = copied?;
        if req_len.is_some_and(|l| copied < l) {
            // The client went away mid-body: storage must not get a short part.
            drop(uw);
            return Ok(());
        }
    }

    // Response.
    let Some((rhead, rrest)) = read_head(&mut ur).await? else {
        return Ok(());
    };
    let status: u16 = String::from_utf8_lossy(&rhead)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (new_rhead, resp_len, _) = rewrite_head(&rhead);
    cw.write_all(&new_rhead).await?;
    let get = kind == Kind::GetObject;
    let get_rate = if get {
        state.throttle_get.load(Ordering::SeqCst)
    } else {
        0
    };
    let resp_fault = if get { fault } else { None };
    let stop = resp_fault.map(|_| resp_len.unwrap_or(0) / 2);
    // Object bytes only (not error documents).
    let counter = (get && (200..300).contains(&status)).then_some(Counter {
        bytes: &state.get_bytes,
        epoch: &state.epoch,
        at: epoch,
    });
    let copied = copy_body(&rrest, &mut ur, &mut cw, resp_len, stop, get_rate, counter).await;
    match resp_fault {
        Some(Fault::ResetMidBody) => {
            if let Some(r) = cr.take() {
                let client = r.reunite(cw).unwrap();
                client.set_zero_linger()?;
            }
            return Ok(());
        }
        Some(Fault::StallMidBody(d)) => {
            tokio::time::sleep(d).await;
            return Ok(());
        }
        _ => {}
    }
    copied?;
    set_status(status);
    cw.shutdown().await?;
    Ok(())
}
