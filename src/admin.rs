//! Administration commands: API keys kept in Postgres (`keys`) and issuers of
//! tenant-signed grants (`issuers`). Secrets are printed once, to stdout, and
//! never logged.

use crate::auth::issuers::load_jwks;
use crate::auth::keys;
use crate::config::DatabaseArgs;
use crate::db;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use uuid::Uuid;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for a tenant; the key is printed once (only its hash is kept).
    Create {
        #[arg(long)]
        tenant: String,
        /// A name to recognise the key by in `keys list`.
        #[arg(long)]
        name: Option<String>,
        /// Print `{id, tenant, name, key}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never the keys themselves): id, tenant, name, created, last used, revoked.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id: every instance refuses it within 10 seconds.
    Revoke { id: Uuid },
}

#[derive(Debug, Args)]
pub struct IssuersArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub egress: crate::config::EgressArgs,
    #[command(subcommand)]
    pub command: IssuersCommand,
}

#[derive(Debug, Subcommand)]
pub enum IssuersCommand {
    /// Register the keys (a JWKS file or an http(s) URL) a tenant signs grants with.
    Add {
        #[arg(long)]
        tenant: String,
        /// The `iss` of the tenant's grants.
        #[arg(long)]
        issuer: String,
        /// A JWKS file, or an http(s) URL the broker fetches it from (refreshed
        /// every 5 minutes and when a grant names an unknown key).
        #[arg(long, value_name = "FILE_OR_URL")]
        jwks: String,
    },
    /// List registered issuers.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an issuer (by id or by its `iss`): its grants stop working within a minute.
    Remove { issuer: String },
}

async fn pool(database: &DatabaseArgs) -> Result<sqlx::PgPool, ExitCode> {
    let url = database.url().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let pool = db::pool(url.expose(), 2).map_err(|e| {
        eprintln!("error: DATABASE_URL is not a valid connection string ({e})");
        ExitCode::from(2)
    })?;
    if let Err(e) = db::MIGRATOR.run(&pool).await {
        eprintln!("error: the database is not reachable or not migrated: {e}");
        return Err(ExitCode::FAILURE);
    }
    Ok(pool)
}

fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

pub async fn keys_command(args: KeysArgs) -> ExitCode {
    let pool = match pool(&args.database).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    match args.command {
        KeysCommand::Create { tenant, name, json } => {
            if tenant.trim().is_empty() || tenant.len() > 128 {
                eprintln!("error: --tenant must be 1 to 128 characters");
                return ExitCode::from(2);
            }
            let (key, hash) = keys::generate();
            let id = Uuid::now_v7();
            if let Err(e) = db::insert_api_key(&pool, id, &tenant, name.as_deref(), &hash).await {
                return failed(e);
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({"id": id, "tenant": tenant, "name": name, "key": key})
                );
            } else {
                println!("{key}");
                eprintln!("created key {id} for tenant {tenant}; it is shown only now");
            }
            ExitCode::SUCCESS
        }
        KeysCommand::List { tenant, json } => {
            match db::list_api_keys(&pool, tenant.as_deref()).await {
                Ok(list) if json => {
                    println!("{}", serde_json::to_string(&list).expect("serializes"));
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    println!("id\ttenant\tname\tcreated\tlast used\trevoked");
                    let t = |d: Option<chrono::DateTime<chrono::Utc>>| {
                        d.map(|d| d.to_rfc3339()).unwrap_or_else(|| "-".into())
                    };
                    for k in list {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            k.id,
                            k.tenant,
                            k.name.as_deref().unwrap_or("-"),
                            k.created_at.to_rfc3339(),
                            t(k.last_used_at),
                            t(k.revoked_at)
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        KeysCommand::Revoke { id } => match db::revoke_api_key(&pool, id).await {
            Ok(true) => {
                eprintln!("revoked key {id}: every instance refuses it within 10 seconds");
                ExitCode::SUCCESS
            }
            Ok(false) => failed(format!("no active key {id}")),
            Err(e) => failed(e),
        },
    }
}

pub async fn issuers_command(args: IssuersArgs) -> ExitCode {
    let pool = match pool(&args.database).await {
        Ok(p) => p,
        Err(code) => return code,
    };
    match args.command {
        IssuersCommand::Add {
            tenant,
            issuer,
            jwks,
        } => {
            if issuer == crate::auth::grants::BROKER_ISSUER {
                eprintln!("error: --issuer {issuer:?} is the broker's own");
                return ExitCode::from(2);
            }
            let egress = match args.egress.check() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let http = crate::outbound::Outbound::new(egress, crate::auth::issuers::FETCH_TIMEOUT);
            let source = if jwks.starts_with("http://") || jwks.starts_with("https://") {
                jwks.clone()
            } else {
                match std::fs::canonicalize(&jwks) {
                    Ok(p) => p.display().to_string(),
                    Err(e) => return failed(format!("--jwks {jwks}: {e}")),
                }
            };
            if source.starts_with("http") {
                if let Err(e) = http.check_url(&source).await {
                    return failed(format!("--jwks: {e}"));
                }
            }
            let keys = match load_jwks(&http, &source).await {
                Ok(k) => k,
                Err(e) => return failed(format!("--jwks: {e}")),
            };
            let id = Uuid::now_v7();
            match db::insert_issuer(&pool, id, &tenant, &issuer, &source, &keys).await {
                Ok(true) => {
                    eprintln!("registered issuer {issuer} for tenant {tenant} ({id})");
                    ExitCode::SUCCESS
                }
                Ok(false) => failed(format!("issuer {issuer} is already registered")),
                Err(e) => failed(e),
            }
        }
        IssuersCommand::List { tenant, json } => {
            match db::list_issuers(&pool, tenant.as_deref()).await {
                Ok(list) => {
                    if json {
                        let v: Vec<_> = list
                        .iter()
                        .map(|i| {
                            serde_json::json!({"id": i.id, "tenant": i.tenant, "issuer": i.issuer,
                                "jwks": i.jwks_source, "keys": i.jwks.0["keys"].as_array().map_or(0, Vec::len),
                                "createdAt": i.created_at})
                        })
                        .collect();
                        println!("{}", serde_json::Value::Array(v));
                    } else {
                        println!("id\ttenant\tissuer\tjwks");
                        for i in list {
                            println!("{}\t{}\t{}\t{}", i.id, i.tenant, i.issuer, i.jwks_source);
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        IssuersCommand::Remove { issuer } => match db::delete_issuer(&pool, &issuer).await {
            Ok(true) => {
                eprintln!("removed issuer {issuer}");
                ExitCode::SUCCESS
            }
            Ok(false) => failed(format!("no issuer {issuer}")),
            Err(e) => failed(e),
        },
    }
}
