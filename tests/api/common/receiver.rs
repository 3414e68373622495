//! A webhook receiver for the tests: a real HTTP/1.1 server on a TCP port that
//! records every request and answers each as its script says (a status, a
//! stall past the sender's timeout, a connection reset), 200 once the script
//! is spent.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// Read the request, then say nothing for this long.
    Stall(Duration),
    /// Read the request, then reset the connection.
    Reset,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The status it was answered with (`None`: stalled or reset).
    pub answered: Option<u16>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// Answer once the script is spent (200 unless changed).
    pub otherwise: Arc<Mutex<Answer>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/upload", listener.local_addr().unwrap());
        let r = Self {
            url,
            got: Default::default(),
            script: Default::default(),
            otherwise: Arc::new(Mutex::new(Answer::Status(200))),
        };
        let this = r.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let this = this.clone();
                tokio::spawn(async move { this.serve(conn).await });
            }
        });
        r
    }

    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.script.lock().unwrap().extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come (panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the receiver got {} requests, expected {n}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Requests it answered with a 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }

    async fn serve(&self, mut conn: TcpStream) {
        // Keep-alive: one request after another on the connection.
        let mut buf = Vec::new();
        loop {
            let Some((headers, body)) = read_request(&mut conn, &mut buf).await else {
                return;
            };
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| self.otherwise.lock().unwrap().clone());
            let status = match &answer {
                Answer::Status(s) => Some(*s),
                _ => None,
            };
            self.got.lock().unwrap().push(Received {
                headers,
                body,
                answered: status,
            });
            match answer {
                Answer::Status(s) => {
                    let res = format!(
                        "HTTP/1.1 {s} X\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok"
                    );
                    if conn.write_all(res.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Answer::Stall(d) => {
                    tokio::time::sleep(d).await;
                    return;
                }
                Answer::Reset => {
                    let _ = conn.set_zero_linger();
                    return;
                }
            }
        }
    }
}

async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(BTreeMap<String, String>, String)> {
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = head_end + 4;
    while buf.len() < start + len {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[start..start + len]).into_owned();
    buf.drain(..start + len);
    Some((headers, body))
}

/// Checks deliveries with the Standard Webhooks reference library (npm
/// `standardwebhooks`, installed by scripts/test.sh): the event id each one
/// verifies as, or `invalid: …`.
pub fn verify_with_reference_library(secret: &str, got: &[Received]) -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhook-verify");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/standardwebhooks")
            .exists(),
        "the Standard Webhooks reference library is not installed: run the suite with \
         scripts/test.sh, or `npm ci` in tests/webhook-verify"
    );
    let input: Vec<serde_json::Value> = got
        .iter()
        .map(|r| {
            serde_json::json!({
                "secret": secret,
                "headers": {
                    "webhook-id": r.header("webhook-id"),
                    "webhook-timestamp": r.header("webhook-timestamp"),
                    "webhook-signature": r.header("webhook-signature"),
                },
                "body": r.body,
            })
        })
        .collect();
    let mut child = std::process::Command::new("node")
        .arg("verify.mjs")
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (Node.js is needed for the webhook tests)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "verify.mjs failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}
