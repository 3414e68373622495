use clap::{Parser, Subcommand};
use std::process::ExitCode;
use upload_broker::config::{ConfigError, DatabaseArgs, ServeArgs, SweepArgs};
use upload_broker::domain::token::TokenKey;
use upload_broker::storage::Storage;
use upload_broker::sweep::{RunOptions, Sweeper};
use upload_broker::{db, secret_file, startup, telemetry};

/// Resumable, direct-to-storage multipart uploads to S3 and Cloudflare R2.
///
/// Every option can be given as a flag or as the environment variable named
/// beside it.
#[derive(Parser)]
#[command(name = "upload-broker", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (applies pending migrations first unless --no-migrate).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Abort expired uploads at the provider, delete old finished records, and
    /// with --orphans abort provider uploads the database does not know. Prints a
    /// summary; exits 1 if anything failed (safe to re-run: it finishes what a
    /// crashed run left).
    Sweep(Box<SweepArgs>),
    /// Manage API keys kept in Postgres (create, list, revoke).
    Keys(upload_broker::admin::KeysArgs),
    /// Manage issuers of tenant-signed grants (add, list, remove).
    Issuers(upload_broker::admin::IssuersArgs),
    /// Print the OpenAPI 3.1 document of the API (as served at /openapi.json).
    Openapi,
    /// Exit 0 if the broker at BROKER_LISTEN answers /healthz (for container
    /// health checks; the image has no curl).
    Healthcheck {
        /// Address of the broker.
        #[arg(
            long,
            env = "BROKER_LISTEN",
            value_name = "BROKER_LISTEN",
            default_value = "127.0.0.1:8080"
        )]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // One line naming what is wrong.
            let rendered = e.render().to_string();
            let line = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    telemetry::init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => rt.block_on(serve(*args)),
        Command::Migrate(args) => rt.block_on(migrate(args)),
        Command::Sweep(args) => rt.block_on(sweep(*args)),
        Command::Healthcheck { listen } => rt.block_on(healthcheck(listen)),
        Command::Keys(args) => rt.block_on(upload_broker::admin::keys_command(args)),
        Command::Issuers(args) => rt.block_on(upload_broker::admin::issuers_command(args)),
        Command::Openapi => {
            let doc = upload_broker::http::openapi::document();
            println!("{}", doc.to_pretty_json().expect("the document serializes"));
            ExitCode::SUCCESS
        }
    }
}

fn config_error(e: ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

async fn migrate(args: DatabaseArgs) -> ExitCode {
    let url = match args.url() {
        Ok(u) => u,
        Err(e) => return config_error(e),
    };
    let pool = match db::pool(url.expose(), 2) {
        Ok(p) => p,
        Err(e) => {
            return config_error(ConfigError {
                variable: "DATABASE_URL",
                message: format!("is not a valid connection string ({e})"),
            })
        }
    };
    db::create_database_if_missing(url.expose()).await;
    match db::MIGRATOR.run(&pool).await {
        Ok(()) => {
            tracing::info!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: migrations failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.check() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let tokens = match &config.token_secret {
        Some(s) => TokenKey::new(s.expose().as_bytes()).expect("length checked"),
        None => {
            let Some(path) = config
                .token_secret_file
                .clone()
                .or_else(secret_file::default_path)
            else {
                return config_error(ConfigError {
                    variable: "BROKER_TOKEN_SECRET",
                    message: "is not set and no key file location is known (set BROKER_TOKEN_SECRET or BROKER_TOKEN_SECRET_FILE)".into(),
                });
            };
            match secret_file::load_or_create(&path) {
                Ok(k) => {
                    tracing::warn!(path = %path.display(), "BROKER_TOKEN_SECRET is not set; using the key file (set BROKER_TOKEN_SECRET when running several instances)");
                    k
                }
                Err(msg) => {
                    return config_error(ConfigError {
                        variable: "BROKER_TOKEN_SECRET_FILE",
                        message: msg,
                    })
                }
            }
        }
    };
    let pool = match db::pool(
        config.database_url.expose(),
        config.database_max_connections,
    ) {
        Ok(p) => p,
        Err(e) => {
            return config_error(ConfigError {
                variable: "DATABASE_URL",
                message: format!("is not a valid connection string ({e})"),
            })
        }
    };
    if config.migrate {
        // A database that is restarting or not up yet is waited for (30 s), so
        // that an instance started during a blip comes up instead of exiting.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            db::create_database_if_missing(config.database_url.expose()).await;
            match db::MIGRATOR.run(&pool).await {
                Ok(()) => break,
                Err(sqlx::migrate::MigrateError::Execute(e))
                    if db::is_connection_failure(&e) && std::time::Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, "the database is not reachable yet; retrying the migrations");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    eprintln!(
                        "error: database migrations failed (is DATABASE_URL reachable?): {e}"
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let app = match startup::Application::build(&config, pool, tokens).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!(
                "error: cannot listen on {} (BROKER_LISTEN): {e}",
                config.listen
            );
            return ExitCode::from(2);
        }
    };
    if let Ok(addr) = app.local_addr() {
        tracing::info!(%addr, bucket = %config.storage.bucket, "upload-broker listening")
    }
    match app.run_until(startup::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn sweep(args: SweepArgs) -> ExitCode {
    let url = match args.database.url() {
        Ok(u) => u,
        Err(e) => return config_error(e),
    };
    let storage_cfg = match args.storage.check() {
        Ok(c) => c,
        Err(e) => return config_error(e),
    };
    let pool = match db::pool(url.expose(), 4) {
        Ok(p) => p,
        Err(e) => {
            return config_error(ConfigError {
                variable: "DATABASE_URL",
                message: format!("is not a valid connection string ({e})"),
            })
        }
    };
    let storage = Storage::connect(&storage_cfg).await;
    let sweeper = Sweeper::new(pool, storage, args.tuning.settings(&storage_cfg.key_prefix));
    let opts = RunOptions {
        dry_run: args.dry_run,
        orphans_older_than: args.orphans.then_some(args.older_than),
    };
    match sweeper.run(chrono::Utc::now, &opts).await {
        Ok(report) => {
            for line in &report.planned {
                println!("{line}");
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serializes")
                );
            } else {
                println!("{}", report.summary());
            }
            if report.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: sweep failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A plain HTTP/1.0 GET of /healthz: enough for a liveness probe.
async fn healthcheck(mut addr: std::net::SocketAddr) -> ExitCode {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), probe).await {
        Ok(Ok(buf)) if buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200") => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(Ok(buf)) => {
            let line = String::from_utf8_lossy(&buf)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            eprintln!("unhealthy: {line}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("unhealthy: {addr}: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: {addr}: timed out");
            ExitCode::FAILURE
        }
    }
}
