//! Building and running the application.

use crate::broker::{Broker, BrokerSettings};
use crate::config::Config;
use crate::domain::token::TokenKey;
use crate::http::serve::ListenerLimits;
use crate::http::{self as api, AppState, HttpSettings};
use crate::storage::Storage;
use crate::sweep::Sweeper;
use sqlx::PgPool;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    /// A separate listener for /metrics (METRICS_LISTEN).
    metrics: Option<(TcpListener, axum::Router)>,
    shutdown_timeout: Duration,
    /// How long it goes on serving, not ready, after a shutdown signal.
    drain_delay: Duration,
    draining: Arc<std::sync::atomic::AtomicBool>,
    sweeper: Option<(Sweeper, Duration)>,
    deliverer: crate::events::deliver::Deliverer,
    limits: ListenerLimits,
    auth: Arc<crate::auth::Authenticator>,
    cache: Arc<crate::broker::cache::UploadCache>,
    pool: PgPool,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and builds the router.
    pub async fn build(config: &Config, pool: PgPool, tokens: TokenKey) -> std::io::Result<Self> {
        let storage = Storage::connect(&config.storage).await;
        let sweeper = (!config.sweep_interval.is_zero()).then(|| {
            (
                Sweeper::new(pool.clone(), storage.clone(), config.sweep.clone()),
                config.sweep_interval,
            )
        });
        let provider = match config.storage.provider {
            crate::config::Provider::S3 => crate::domain::provider::ProviderRules::S3,
            crate::config::Provider::R2 => {
                crate::domain::provider::ProviderRules::r2(config.r2_sha256_checksums)
            }
        };
        let broker = Broker::new(
            pool.clone(),
            storage,
            tokens.clone(),
            BrokerSettings {
                plan_limits: provider.plan_limits(config.plan_limits),
                upload_ttl: config.upload_ttl,
                part_url_ttl: config.part_url_ttl,
                max_part_url_ttl: config.max_part_url_ttl,
                sign_window: config.sign_window,
                key_prefix: config.storage.key_prefix.clone(),
                completion_lease: config.completion_lease,
                max_background_tasks: config.max_background_tasks,
                quotas: config.quotas,
                provider,
                upload_cache: config.upload_cache,
            },
        );
        let env_keys = crate::auth::keys::EnvKeys::new(&config.api_keys);
        if env_keys.is_empty() {
            tracing::info!("BROKER_API_KEYS is empty: only keys kept in Postgres (upload-broker keys create) and grants are accepted");
        }
        let grant_key = match &config.grant_key {
            Some(k) => k.expose().as_bytes().to_vec(),
            None => tokens.derive("grant-key").to_vec(),
        };
        let auth = crate::auth::Authenticator {
            env_keys,
            keys: crate::auth::keys::KeyStore::new(pool.clone()),
            grants: crate::auth::grants::Grants::new(
                &grant_key,
                crate::auth::issuers::Issuers::new(pool.clone(), config.egress_allow.clone()),
            ),
            rate: crate::auth::rate::RateLimits::new(
                config.rate_limit,
                config.api_key_rate_limit,
                config.auth_failure_limit,
            ),
        };
        crate::metrics::handle(); // installs the recorder
        let auth = Arc::new(auth);
        let secrets = crate::events::secret_box(&tokens);
        let deliverer = crate::events::deliver::Deliverer::new(
            pool.clone(),
            secrets.clone(),
            config.deliveries.clone(),
            config.egress_allow.clone(),
        );
        let cache = broker.upload_cache().clone();
        let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let state = AppState {
            draining: draining.clone(),
            broker,
            auth: auth.clone(),
            events: crate::events::Events::new(
                pool.clone(),
                secrets,
                crate::outbound::Outbound::new(
                    config.egress_allow.clone(),
                    crate::auth::issuers::FETCH_TIMEOUT,
                ),
            ),
            metrics_token: config.metrics_token.clone().map(Arc::new),
        };
        let metrics = match config.metrics_listen {
            Some(addr) => Some((
                TcpListener::bind(addr).await?,
                api::metrics_route::router()
                    .split_for_parts()
                    .0
                    .with_state(state.clone()),
            )),
            None => None,
        };
        let router = api::router(
            state,
            &HttpSettings {
                cors_origins: config.cors_origins.clone(),
                body_limit: config.body_limit,
                request_timeout: config.request_timeout,
                max_concurrent_requests: config.max_concurrent_requests,
                metrics_on_main_port: config.metrics_listen.is_none(),
                companion_mount: config.companion_mount.clone(),
            },
        );
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            router,
            metrics,
            shutdown_timeout: config.shutdown_timeout,
            drain_delay: config.drain_delay,
            draining,
            sweeper,
            deliverer,
            auth,
            cache,
            pool,
            limits: ListenerLimits {
                header_read_timeout: config.header_read_timeout,
                max_connections: config.max_connections,
            },
        })
    }

    /// The signing cache of this instance's broker (tests look into it).
    pub fn upload_cache(&self) -> Arc<crate::broker::cache::UploadCache> {
        self.cache.clone()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Where /metrics is served when METRICS_LISTEN is set.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains requests in flight for at
    /// most the shutdown timeout.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let serve =
            crate::http::serve::serve(self.listener, self.router, self.limits, async move {
                let _ = rx.wait_for(|stop| *stop).await;
            });
        let mut server = tokio::spawn(serve);
        let metrics_server = self
            .metrics
            .map(|(l, r)| tokio::spawn(async move { axum::serve(l, r).await }));
        // The periodic sweep; dropping it mid-batch is safe (claims are leased).
        let sweep = self
            .sweeper
            .map(|(s, every)| tokio::spawn(crate::sweep::periodic(s, every)));
        // Webhook deliveries; dropping it mid-attempt is safe (claims are leased).
        let deliver = tokio::spawn(self.deliverer.run());
        // Histogram samples folded into buckets whether or not anyone scrapes.
        let upkeep = tokio::spawn(crate::metrics::upkeep());
        // Keeps the signing cache right: until it listens, the cache is not used.
        let cache = tokio::spawn(self.cache.keep_fresh(self.pool));
        // Rate limiters forget idle subjects now and then.
        let auth = self.auth.clone();
        let shrink = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                auth.rate.shrink();
            }
        });
        tokio::select! {
            joined = &mut server => return joined.map_err(std::io::Error::other),
            _ = shutdown => {}
        }
        // Not ready from now on, still serving: the load balancer notices and
        // stops sending before the listener closes.
        self.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if !self.drain_delay.is_zero() {
            tracing::info!(delay = ?self.drain_delay, "readiness turned false; serving on until the drain delay has passed");
            tokio::select! {
                joined = &mut server => return joined.map_err(std::io::Error::other),
                _ = tokio::time::sleep(self.drain_delay) => {}
            }
        }
        let _ = tx.send(true);
        shrink.abort();
        deliver.abort();
        cache.abort();
        upkeep.abort();
        if let Some(s) = sweep {
            s.abort();
        }
        if let Some(m) = metrics_server {
            m.abort();
        }
        match tokio::time::timeout(self.shutdown_timeout, server).await {
            Ok(joined) => joined.map_err(std::io::Error::other),
            Err(_) => {
                tracing::warn!(
                    "requests still in flight after the shutdown timeout; stopping anyway"
                );
                Ok(())
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
