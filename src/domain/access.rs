//! Who is calling, and what that lets them do: a tenant's API key sees every
//! upload of the tenant; an upload grant sees only its subject's uploads and is
//! held to its limits. Pure rules, no I/O.

use super::request::{ContentType, FieldError, Metadata};
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

/// Clock leeway of grants: a grant is accepted this long past its `exp`, so
/// what is counted against it (`maxUploads`) is kept at least as long.
pub const GRANT_LEEWAY_SECONDS: u64 = 30;

/// Longest subject and grant id, in characters.
pub const MAX_SUBJECT_CHARS: usize = 128;

/// A grant's subject: 1 to 128 characters, none of them a control character.
/// The rule of `POST /v1/grants`, and of every grant a tenant signs.
pub fn check_subject(subject: &str) -> Result<(), FieldError> {
    check_name("subject", subject)
}

/// A grant's id (`jti`): the same rule as a subject.
pub fn check_grant_id(id: &str) -> Result<(), FieldError> {
    check_name("jti", id)
}

fn check_name(field: &'static str, s: &str) -> Result<(), FieldError> {
    if s.is_empty() || s.chars().count() > MAX_SUBJECT_CHARS || s.chars().any(char::is_control) {
        return Err(FieldError {
            field,
            reason: format!("must be 1 to {MAX_SUBJECT_CHARS} printable characters"),
        });
    }
    Ok(())
}

impl GrantLimits {
    /// The limits as a grant may carry them, whoever signed it: sizes and counts
    /// at least 1, content types that are MIME types or whole types, metadata
    /// under the rules of any upload's (keys, 2 KiB in all).
    pub fn checked(mut self) -> Result<Self, FieldError> {
        let bad = |field: &'static str, reason: String| FieldError { field, reason };
        if self.max_upload_size == Some(0) {
            return Err(bad("maxUploadSize", "must be at least 1".into()));
        }
        if self.max_uploads == Some(0) {
            return Err(bad("maxUploads", "must be at least 1".into()));
        }
        if let Some(types) = &self.content_types {
            if types.is_empty() {
                return Err(bad(
                    "contentTypes",
                    "list at least one, or leave it out".into(),
                ));
            }
            for t in types {
                let ok = t == "*/*"
                    || match t.strip_suffix("/*") {
                        Some(kind) => ContentType::parse(Some(format!("{kind}/x"))).is_ok(),
                        None => ContentType::parse(Some(t.clone())).is_ok(),
                    };
                if !ok {
                    return Err(bad("contentTypes", format!(
                        "{t:?} is not a MIME type (such as video/mp4) or a whole type (such as image/*)"
                    )));
                }
            }
        }
        self.metadata = Metadata::parse(Some(std::mem::take(&mut self.metadata)))?
            .as_map()
            .clone();
        Ok(self)
    }
}

/// A verified grant: whose, which, until when, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    /// The grant's id (`jti`), which `maxUploads` is counted against.
    pub id: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub limits: GrantLimits,
    /// The API key kept in Postgres that minted it (a broker grant's `key`
    /// claim): the grant is refused once that key is revoked.
    pub minted_by: Option<uuid::Uuid>,
}

/// The caller: a tenant, through an API key or through a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub tenant: String,
    /// The API key kept in Postgres the caller presented (`None` for a
    /// configured key and for a grant).
    pub key: Option<uuid::Uuid>,
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
            key: None,
            grant: None,
        }
    }

    /// A caller with the key `id` kept in Postgres.
    pub fn stored_key(tenant: impl Into<String>, id: uuid::Uuid) -> Self {
        Self {
            key: Some(id),
            ..Self::api_key(tenant)
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
            key: None,
            grant: Some(Grant {
                subject: "user-42".into(),
                id: "g1".into(),
                expires_at: chrono::Utc::now(),
                limits,
                minted_by: None,
            }),
        }
    }

    fn ct(s: &str) -> ContentType {
        ContentType::parse(Some(s.into())).unwrap()
    }

    #[test]
    fn grant_claims_keep_the_rules_of_minting() {
        assert!(check_subject("user-42").is_ok());
        for bad in ["", "a\0b", "tab\there", &"x".repeat(129)] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
            assert!(check_grant_id(bad).is_err(), "{bad:?}");
        }
        let ok = GrantLimits {
            content_types: Some(vec!["image/*".into(), "video/mp4".into()]),
            metadata: [("user-id".to_string(), "42".to_string())].into(),
            ..Default::default()
        };
        assert_eq!(ok.clone().checked().unwrap(), ok);
        for bad in [
            GrantLimits {
                max_upload_size: Some(0),
                ..Default::default()
            },
            GrantLimits {
                max_uploads: Some(0),
                ..Default::default()
            },
            GrantLimits {
                content_types: Some(vec![]),
                ..Default::default()
            },
            GrantLimits {
                content_types: Some(vec!["not a type".into()]),
                ..Default::default()
            },
            GrantLimits {
                metadata: [("Bad Key".to_string(), "v".to_string())].into(),
                ..Default::default()
            },
            GrantLimits {
                metadata: [("k".to_string(), "v".repeat(5000))].into(),
                ..Default::default()
            },
        ] {
            assert!(bad.clone().checked().is_err(), "{bad:?}");
        }
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
