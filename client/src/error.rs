use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong. [`Error::is_transient`] tells whether trying
/// again later may help (the upload is then resumable).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker answered with an error (`{"error": {"code", "message"}}`).
    #[error("broker: {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: serde_json::Value,
    },
    /// Storage answered a presigned request with an error.
    #[error("storage: {status} {code}: {message}")]
    Storage {
        status: u16,
        code: String,
        message: String,
    },
    /// Connection refused or reset, timeout, a broken body.
    #[error("network: {0}")]
    Http(#[from] reqwest::Error),
    /// A transfer ended before all its bytes arrived.
    #[error("incomplete: {0}")]
    Incomplete(String),
    /// A request made no progress (nothing sent or received) for this long.
    #[error("stalled: no progress for {0:?}")]
    Stalled(Duration),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A broker answer that does not fit the API, or a source that does not fit the upload.
    #[error("{0}")]
    Invalid(String),
    /// Retries were used up; `last` is the last failure.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: Box<Error> },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// True when the failure is one a retry (now or by resuming later) may
    /// overcome: network trouble, stalls, 5xx, 408, 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api { status, .. } | Error::Storage { status, .. } => {
                matches!(status, 408 | 429 | 500..=599)
            }
            Error::Http(_) | Error::Stalled(_) | Error::Incomplete(_) => true,
            Error::RetriesExhausted { last, .. } => last.is_transient(),
            Error::Io { .. } | Error::Invalid(_) => false,
        }
    }

    /// The broker's error code, if this is a broker error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::RetriesExhausted { last, .. } => last.code(),
            _ => None,
        }
    }
}
