//! The one outbound policy: every connection the broker makes to a URL a tenant
//! gave (webhook endpoints, storage endpoints) or a token pointed at (JWKS)
//! goes through an [`Outbound`] client. It resolves the host itself, refuses
//! the whole request when any address is not public and not in `EGRESS_ALLOW`
//! (`domain::egress`), connects to the very addresses it checked (no second
//! lookup), follows no redirect and uses no proxy.

use crate::domain::egress::{EgressAllow, NotAllowed};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Longest a lookup may take at registration.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a URL may not be reached.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Address(#[from] NotAllowed),
    #[error("not an absolute http(s) URL with a host")]
    NotAUrl,
}

/// The policy and an HTTP client that keeps to it.
#[derive(Clone)]
pub struct Outbound {
    allow: Arc<EgressAllow>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("allow", &self.allow)
            .finish()
    }
}

impl Outbound {
    /// A client keeping to `allow`; `timeout` bounds each whole request.
    pub fn new(allow: EgressAllow, timeout: Duration) -> Self {
        let allow = Arc::new(allow);
        let http = Self::builder(&allow)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("the outbound HTTP client builds");
        Self { allow, http }
    }

    fn builder(allow: &Arc<EgressAllow>) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(CheckedResolver {
                allow: allow.clone(),
            }))
            .user_agent(concat!("upload-broker/", env!("CARGO_PKG_VERSION")))
    }

    pub fn allow(&self) -> &EgressAllow {
        &self.allow
    }

    /// A request to `url`, or why it may not be made. A host written as an
    /// address is checked here (the client does not look such hosts up); a
    /// name is checked by the client's resolver, on the addresses it connects to.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, Refused> {
        let u = Url::parse(url).map_err(|_| Refused::NotAUrl)?;
        if let Some(ip) = literal(&u)? {
            self.allow.check(ip)?;
        }
        Ok(self.http.request(method, u))
    }

    /// At registration: the URL's host, written as an address or resolved now,
    /// must be allowed at every address. A name that does not resolve passes
    /// (it is checked again at every connection).
    pub async fn check_url(&self, url: &str) -> Result<(), Refused> {
        for ip in resolve_url(url).await? {
            self.allow.check(ip)?;
        }
        Ok(())
    }

    /// A client for one fetch that may only connect to addresses the operator
    /// listed in `EGRESS_ALLOW` (plain `http://` JWKS sources), pinned to the
    /// addresses checked now.
    pub async fn listed_only(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<reqwest::Client, Refused> {
        let u = Url::parse(url).map_err(|_| Refused::NotAUrl)?;
        let addrs = resolve_url(url).await?;
        if addrs.is_empty() || addrs.iter().any(|ip| !self.allow.lists(*ip)) {
            return Err(Refused::Address(NotAllowed(
                "not in EGRESS_ALLOW, and only https:// reaches other addresses",
            )));
        }
        let host = u.host_str().ok_or(Refused::NotAUrl)?.to_string();
        let port = u.port_or_known_default().unwrap_or(80);
        let pinned: Vec<SocketAddr> = addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
        Ok(Self::builder(&self.allow)
            .resolve_to_addrs(&host, &pinned)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .expect("the outbound HTTP client builds"))
    }
}

/// What went wrong with a request, without its URL.
pub fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirected"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {cause}")
    }
}

/// The host of `u` when it is written as an address.
fn literal(u: &Url) -> Result<Option<IpAddr>, Refused> {
    match u.host() {
        Some(url::Host::Ipv4(ip)) => Ok(Some(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(Some(IpAddr::V6(ip))),
        Some(url::Host::Domain(_)) => Ok(None),
        None => Err(Refused::NotAUrl),
    }
}

/// Every address the URL's host stands for (none when a name does not resolve).
async fn resolve_url(url: &str) -> Result<Vec<IpAddr>, Refused> {
    let u = Url::parse(url).map_err(|_| Refused::NotAUrl)?;
    if let Some(ip) = literal(&u)? {
        return Ok(vec![ip]);
    }
    let host = u.host_str().ok_or(Refused::NotAUrl)?.to_string();
    let found =
        tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0))).await;
    Ok(match found {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    })
}

/// Resolves names for the client and refuses any answer holding an address
/// the policy does not allow; the client connects only to what it returns.
struct CheckedResolver {
    allow: Arc<EgressAllow>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                allow.check(a.ip())?;
            }
            if addrs.is_empty() {
                return Err("the host has no address".into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(o: &Outbound, url: &str) -> bool {
        o.request(reqwest::Method::POST, url).is_err()
    }

    #[test]
    fn hosts_written_as_addresses_are_checked_before_any_connection() {
        let o = Outbound::new(EgressAllow::default(), Duration::from_secs(1));
        for url in [
            "http://127.0.0.1:9/h",
            "http://2130706433/h",
            "http://0x7f000001/h",
            "http://127.1/h",
            "http://[::ffff:127.0.0.1]/h",
            "http://0.0.0.0/h",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:8080/",
            "http://017700000001/",
        ] {
            assert!(refused(&o, url), "{url}");
        }
        assert!(!refused(&o, "https://93.184.216.34/h"));
        assert!(
            !refused(&o, "https://hooks.example.com/h"),
            "names are checked when resolved"
        );
        let loopback = Outbound::new(
            EgressAllow::parse("127.0.0.0/8").unwrap(),
            Duration::from_secs(1),
        );
        assert!(!refused(&loopback, "http://127.0.0.1:9/h"));
    }

    #[tokio::test]
    async fn names_are_resolved_and_checked() {
        let o = Outbound::new(EgressAllow::default(), Duration::from_secs(1));
        assert!(o.check_url("http://localhost:9/h").await.is_err());
        assert!(o.check_url("http://127.1/h").await.is_err());
        let allowed = Outbound::new(
            EgressAllow::parse("127.0.0.0/8,::1/128").unwrap(),
            Duration::from_secs(1),
        );
        assert!(allowed.check_url("http://localhost:9/h").await.is_ok());
        // A refused name never reaches a connection: the resolver says why.
        let err = o
            .request(reqwest::Method::GET, "http://localhost:9/h")
            .unwrap()
            .send()
            .await
            .unwrap_err();
        let mut chain = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(s) = source {
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert!(chain.contains("not allowed"), "{chain}");
    }
}
