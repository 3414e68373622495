use crate::error::{Error, Result};
use crate::retry::{parse_retry_after, RetryPolicy};
use crate::types::{DownloadInfo, PresignedPart, Upload};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// A connection to one broker with one credential (an API key). Cheap to clone.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    endpoint: String,
    credential: String,
    pub(crate) retry: RetryPolicy,
    pub(crate) stall_timeout: Duration,
    request_timeout: Duration,
}

/// Settings beyond the endpoint and credential.
pub struct ClientBuilder {
    endpoint: String,
    credential: String,
    retry: RetryPolicy,
    stall_timeout: Duration,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl ClientBuilder {
    /// Backoff and attempts for every request (broker and storage).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// A transfer that sends or receives nothing for this long is cut and
    /// retried (default 30 s).
    pub fn stall_timeout(mut self, d: Duration) -> Self {
        self.stall_timeout = d;
        self
    }

    /// Longest a broker call may take (default 90 s; `complete` may take a minute).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    pub fn build(self) -> Result<Client> {
        let endpoint = self.endpoint.trim_end_matches('/').to_string();
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::Invalid(format!(
                "the broker URL must start with http:// or https:// (got {endpoint:?})"
            )));
        }
        if self.credential.is_empty() {
            return Err(Error::Invalid("the credential (API key) is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .user_agent(concat!("upb/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoint,
                credential: self.credential,
                retry: self.retry,
                stall_timeout: self.stall_timeout,
                request_timeout: self.request_timeout,
            }),
        })
    }
}

impl Client {
    /// A client of the broker at `endpoint` (e.g. `https://uploads.example.com`)
    /// with an API key.
    pub fn new(endpoint: impl Into<String>, credential: impl Into<String>) -> Result<Self> {
        Self::builder(endpoint, credential).build()
    }

    pub fn builder(endpoint: impl Into<String>, credential: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            endpoint: endpoint.into(),
            credential: credential.into(),
            retry: RetryPolicy::default(),
            stall_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// One broker call, retried on network errors, 408, 429, 5xx.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<T> {
        let value = self.call_value(method, path, query, body).await?;
        serde_json::from_value(value).map_err(|e| {
            Error::Invalid(format!("unexpected answer from the broker to {path}: {e}"))
        })
    }

    pub(crate) async fn call_value(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{}", self.inner.endpoint, path);
        let policy = &self.inner.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.inner.credential)
                .timeout(self.inner.request_timeout);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let (err, retry_after) = match req.send().await {
                Ok(res) => {
                    let status = res.status();
                    let retry_after = parse_retry_after(res.headers());
                    match res.bytes().await {
                        Ok(bytes) if status.is_success() => {
                            if bytes.is_empty() {
                                return Ok(Value::Null);
                            }
                            return serde_json::from_slice(&bytes).map_err(|e| {
                                Error::Invalid(format!(
                                    "the broker's answer to {path} is not JSON: {e}"
                                ))
                            });
                        }
                        Ok(bytes) => (api_error(status, &bytes), retry_after),
                        Err(e) => (Error::Http(e), None),
                    }
                }
                Err(e) => (Error::Http(e), None),
            };
            if !err.is_transient() {
                return Err(err);
            }
            if attempt >= policy.max_attempts {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            tokio::time::sleep(policy.delay(attempt, retry_after)).await;
        }
    }

    fn token_path(token: &str, rest: &str) -> Result<String> {
        if token.is_empty()
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(Error::Invalid(format!("{token:?} is not a resume token")));
        }
        Ok(format!("/v1/uploads/{token}{rest}"))
    }

    /// `GET /v1/uploads/{token}`: the upload, `uploadedParts` and `progress`.
    pub async fn status(&self, token: &str) -> Result<Upload> {
        self.call(Method::GET, &Self::token_path(token, "")?, &[], None)
            .await
    }

    /// `DELETE /v1/uploads/{token}` (idempotent).
    pub async fn abort(&self, token: &str) -> Result<()> {
        self.call_value(Method::DELETE, &Self::token_path(token, "")?, &[], None)
            .await
            .map(|_| ())
    }

    /// `POST /v1/uploads/{token}/resume` without claims: what storage holds,
    /// what is missing, and URLs for the first missing parts.
    pub async fn reconcile(&self, token: &str) -> Result<Upload> {
        self.call(
            Method::POST,
            &Self::token_path(token, "/resume")?,
            &[],
            None,
        )
        .await
    }

    /// `GET /v1/uploads?fingerprint=…`: the tenant's active uploads of a
    /// fingerprint, newest first.
    pub async fn find(&self, fingerprint: &str) -> Result<Vec<Upload>> {
        #[derive(serde::Deserialize)]
        struct Found {
            uploads: Vec<Upload>,
        }
        let found: Found = self
            .call(
                Method::GET,
                "/v1/uploads",
                &[("fingerprint", fingerprint)],
                None,
            )
            .await?;
        Ok(found.uploads)
    }

    /// `GET /v1/uploads?status=active`, every page: all the caller's active
    /// uploads (an API key: the tenant's; a grant: its subject's), newest first.
    pub async fn list_active(&self) -> Result<Vec<Upload>> {
        #[derive(serde::Deserialize)]
        struct Page {
            uploads: Vec<Upload>,
            next: Option<String>,
        }
        let mut all = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let mut query = vec![("status", "active"), ("limit", "1000")];
            if let Some(b) = &before {
                query.push(("before", b.as_str()));
            }
            let page: Page = self.call(Method::GET, "/v1/uploads", &query, None).await?;
            all.extend(page.uploads);
            match page.next {
                Some(n) => before = Some(n),
                None => return Ok(all),
            }
        }
    }

    /// `POST /v1/uploads/{token}/download`: a presigned GET of a completed upload.
    pub async fn download_info(&self, token: &str) -> Result<DownloadInfo> {
        self.call(
            Method::POST,
            &Self::token_path(token, "/download")?,
            &[],
            None,
        )
        .await
    }

    pub(crate) async fn create(&self, body: &Value) -> Result<Upload> {
        self.call(Method::POST, "/v1/uploads", &[], Some(body))
            .await
    }

    pub(crate) async fn sign(&self, token: &str, body: &Value) -> Result<Vec<PresignedPart>> {
        #[derive(serde::Deserialize)]
        struct Signed {
            parts: Vec<PresignedPart>,
        }
        let s: Signed = self
            .call(
                Method::POST,
                &Self::token_path(token, "/parts")?,
                &[],
                Some(body),
            )
            .await?;
        Ok(s.parts)
    }

    pub(crate) async fn complete_raw(&self, token: &str) -> Result<Upload> {
        self.call(
            Method::POST,
            &Self::token_path(token, "/complete")?,
            &[],
            Some(&json!({})),
        )
        .await
    }
}

fn api_error(status: StatusCode, bytes: &[u8]) -> Error {
    let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    let message = body["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned());
    Error::Api {
        status: status.as_u16(),
        code: if code.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_uppercase()
                .replace(' ', "_")
        } else {
            code
        },
        message,
        body,
    }
}

/// Storage's XML error (`<Code>…</Code><Message>…</Message>`).
pub(crate) fn storage_error(status: StatusCode, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    let tag = |t: &str| {
        let open = format!("<{t}>");
        let close = format!("</{t}>");
        text.find(&open).and_then(|i| {
            text[i + open.len()..]
                .find(&close)
                .map(|j| text[i + open.len()..i + open.len() + j].to_string())
        })
    };
    Error::Storage {
        status: status.as_u16(),
        code: tag("Code").unwrap_or_else(|| status.as_u16().to_string()),
        message: tag("Message").unwrap_or_else(|| text.chars().take(200).collect()),
    }
}
