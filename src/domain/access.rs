//! Who is calling, and what that lets them do: a tenant's API key sees every
//! upload of the tenant; an upload grant sees only its subject's uploads and is
//! held to its limits. Pure rules, no I/O.

use super::request::{ContentType, Metadata};
use super::upload::Upload;
use std::collections::BTreeMap;

/// The limits an upload grant carries (its `upload` claim).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantLimits {
    /// Largest `size` the grant may create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_size: Option<u64>,
    /// Most uploads the grant may create in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uploads: Option<u32>,
    /// Allowed content types: exact (`video/mp4`) or a whole type (`image/*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_types: Option<Vec<String>>,
    /// Forced onto every upload; wins over the client's metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Whether the grant may ask for download URLs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_download: bool,
}

/// A verified grant: whose, which, until when, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    /// The grant's id (`jti`), which `maxUploads` is counted against.
    pub id: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub limits: GrantLimits,
}

/// The caller: a tenant, through an API key or through a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub tenant: String,
    pub grant: Option<Grant>,
}

/// Something a grant may not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The credential is valid but may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// `size` over the grant's `maxUploadSize` (413).
    #[error("size {size} is over this grant's maximum upload size of {max} bytes")]
    TooLarge { size: u64, max: u64 },
}

impl Access {
    pub fn api_key(tenant: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            grant: None,
        }
    }

    /// The subject uploads created by this caller belong to (`None` for an API key).
    pub fn subject(&self) -> Option<&str> {
        self.grant.as_ref().map(|g| g.subject.as_str())
    }

    /// Whether the caller may act on `upload`: its tenant's, and for a grant its
    /// subject's. Anything else is answered exactly as an unknown upload.
    pub fn sees(&self, upload: &Upload) -> bool {
        upload.tenant == self.tenant
            && match &self.grant {
                None => true,
                Some(g) => upload.subject.as_deref() == Some(g.subject.as_str()),
            }
    }

    /// Only API keys may manage credentials, issuers and webhooks.
    pub fn require_api_key(&self, what: &str) -> Result<(), Refusal> {
        match self.grant {
            None => Ok(()),
            Some(_) => Err(Refusal::Forbidden(format!(
                "an upload grant cannot {what}; use an API key"
            ))),
        }
    }

    /// Checks a create against the grant's limits, and returns the metadata the
    /// upload gets: the client's, with the grant's forced keys winning.
    pub fn admit(
        &self,
        size: Option<u64>,
        content_type: &ContentType,
        metadata: Metadata,
    ) -> Result<Metadata, Refusal> {
        let Some(g) = &self.grant else {
            return Ok(metadata);
        };
        if let (Some(size), Some(max)) = (size, g.limits.max_upload_size) {
            if size > max {
                return Err(Refusal::TooLarge { size, max });
            }
        }
        if let Some(allowed) = &g.limits.content_types {
            if !allowed
                .iter()
                .any(|a| content_type_matches(a, content_type.as_str()))
            {
                return Err(Refusal::Forbidden(format!(
                    "contentType {:?} is not allowed by this grant (allowed: {})",
                    content_type.as_str(),
                    allowed.join(", ")
                )));
            }
        }
        Ok(metadata.with_forced(&g.limits.metadata))
    }

    /// Downloads need an API key or a grant that allows them.
    pub fn may_download(&self) -> Result<(), Refusal> {
        match &self.grant {
            Some(g) if !g.limits.allow_download => Err(Refusal::Forbidden(
                "this grant does not allow downloads".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// `video/mp4` matches `video/mp4` (parameters and case ignored); `image/*`
/// matches every `image/…`; `*/*` matches everything.
pub fn content_type_matches(allowed: &str, content_type: &str) -> bool {
    let essence = |s: &str| {
        s.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let (allowed, given) = (essence(allowed), essence(content_type));
    match allowed.strip_suffix("/*") {
        Some("*") => true,
        Some(kind) => given.split_once('/').is_some_and(|(t, _)| t == kind),
        None => allowed == given,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(limits: GrantLimits) -> Access {
        Access {
            tenant: "t".into(),
            grant: Some(Grant {
                subject: "user-42".into(),
                id: "g1".into(),
                expires_at: chrono::Utc::now(),
                limits,
            }),
        }
    }

    fn ct(s: &str) -> ContentType {
        ContentType::parse(Some(s.into())).unwrap()
    }

    #[test]
    fn content_types_match_exactly_or_by_type() {
        assert!(content_type_matches("video/mp4", "video/mp4"));
        assert!(content_type_matches("video/mp4", "Video/MP4; codecs=avc1"));
        assert!(!content_type_matches("video/mp4", "video/webm"));
        assert!(content_type_matches("image/*", "image/png"));
        assert!(!content_type_matches("image/*", "imagex/png"));
        assert!(!content_type_matches("image/*", "video/png"));
        assert!(content_type_matches("*/*", "application/octet-stream"));
    }

    #[test]
    fn a_grant_is_held_to_its_limits() {
        let a = grant(GrantLimits {
            max_upload_size: Some(100),
            content_types: Some(vec!["image/*".into()]),
            metadata: [("user-id".to_string(), "42".to_string())].into(),
            ..Default::default()
        });
        let client_meta =
            Metadata::parse(Some([("user-id".to_string(), "666".to_string())].into())).unwrap();
        let m = a
            .admit(Some(100), &ct("image/png"), client_meta.clone())
            .unwrap();
        assert_eq!(m.as_map()["user-id"], "42", "the grant's value wins");
        assert!(matches!(
            a.admit(Some(101), &ct("image/png"), client_meta.clone()),
            Err(Refusal::TooLarge {
                size: 101,
                max: 100
            })
        ));
        assert!(matches!(
            a.admit(
                Some(1),
                &ct("application/octet-stream"),
                client_meta.clone()
            ),
            Err(Refusal::Forbidden(_))
        ));
        assert!(a.may_download().is_err());
        assert!(a.require_api_key("mint grants").is_err());
        // An API key is held to nothing here.
        let k = Access::api_key("t");
        assert_eq!(
            k.admit(Some(u64::MAX), &ct("x/y"), client_meta.clone())
                .unwrap(),
            client_meta
        );
        assert!(k.may_download().is_ok() && k.require_api_key("x").is_ok());
    }
}
