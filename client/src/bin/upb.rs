//! `upb`: upload files to, and download them from, an upload-broker.
//!
//! Exit codes: 0 done; 1 failed; 2 usage or configuration; 3 interrupted
//! (Ctrl-C, SIGTERM, or storage/network trouble outlasting the retries) and
//! resumable: run the same command again.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use upload_broker_client::{
    Checksum, Client, DownloadEvent, DownloadOptions, Error, Event, Fingerprint, RetryPolicy,
    Source, Upload, UploadOptions,
};

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_INTERRUPTED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "upb",
    version,
    about = "Resumable uploads and downloads through upload-broker",
    after_help = "Exit codes: 0 done, 1 failed, 2 usage or configuration, 3 interrupted and resumable (run the same command again)."
)]
struct Cli {
    /// The broker's URL.
    #[arg(long, env = "UPLOAD_BROKER_URL", global = true)]
    url: Option<String>,
    /// The API key (sent as `Authorization: Bearer …`).
    #[arg(
        long,
        env = "UPLOAD_BROKER_CREDENTIAL",
        global = true,
        hide_env_values = true
    )]
    credential: Option<String>,
    /// Give up on a transfer that moves no byte for this long.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    stall_timeout: Duration,
    /// Attempts per request before giving up (exit 3: resumable).
    #[arg(long, global = true, default_value_t = 10)]
    attempts: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload a file; run it again after a crash or Ctrl-C to resume.
    Upload {
        file: PathBuf,
        /// Parts sent at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrency: u16,
        /// Part size (5MiB to 5GiB); default: the broker's.
        #[arg(long, value_parser = parse_size)]
        part_size: Option<u64>,
        /// Per-part checksum storage verifies.
        #[arg(long, default_value = "crc32c", value_parser = ["crc32c", "sha256", "none"])]
        checksum: String,
        #[arg(long)]
        content_type: Option<String>,
        /// Object metadata, `key=value` (repeatable).
        #[arg(long = "metadata", value_parser = parse_kv)]
        metadata: Vec<(String, String)>,
        /// Always start a new upload (do not look for an unfinished one).
        #[arg(long)]
        no_resume: bool,
        /// Print the completed upload as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show an upload: status, stored parts, progress.
    Status {
        token: String,
        #[arg(long)]
        json: bool,
    },
    /// Abort an unfinished upload.
    Abort { token: String },
    /// Download a completed upload (continues a partial file).
    Download {
        token: String,
        /// Where to write it (default: the upload's file name, here).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Unfinished uploads: of the given files (by fingerprint); with --all,
    /// every active upload the credential may see (an API key: the tenant's);
    /// else those this machine started (kept in $XDG_STATE_HOME/upb/uploads).
    Ls {
        files: Vec<PathBuf>,
        /// Every active upload of the credential, not only this machine's.
        #[arg(long, conflicts_with = "files")]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    s.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?} is not a size (e.g. 64MiB): {e}"))
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not key=value"))?;
    Ok((k.to_string(), v.to_string()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (Some(url), Some(credential)) = (cli.url.clone(), cli.credential.clone()) else {
        eprintln!("upb: set the broker with --url or UPLOAD_BROKER_URL and the API key with --credential or UPLOAD_BROKER_CREDENTIAL");
        return ExitCode::from(EXIT_USAGE);
    };
    let client = match Client::builder(url, credential)
        .stall_timeout(cli.stall_timeout)
        .retry(RetryPolicy {
            max_attempts: cli.attempts.max(1),
            ..RetryPolicy::default()
        })
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("upb: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .expect("tokio runtime");
    ExitCode::from(rt.block_on(run(client, cli.command)))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(client: Client, command: Command) -> u8 {
    match command {
        Command::Upload {
            file,
            concurrency,
            part_size,
            checksum,
            content_type,
            metadata,
            no_resume,
            json,
        } => {
            let checksum: Checksum = checksum.parse().expect("clap checked it");
            upload(
                &client,
                &file,
                UploadOptions {
                    concurrency: concurrency as usize,
                    part_size,
                    checksum,
                    content_type,
                    metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
                    fingerprint: if no_resume {
                        Fingerprint::Off
                    } else {
                        Fingerprint::Auto
                    },
                    filename: None,
                    progress: None,
                },
                json,
            )
            .await
        }
        Command::Status { token, json } => match client.status(&token).await {
            Ok(u) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&u).unwrap());
                } else {
                    print_status(&u);
                }
                0
            }
            Err(e) => fail(&e),
        },
        Command::Abort { token } => match client.abort(&token).await {
            Ok(()) => {
                println!("aborted {token}");
                0
            }
            Err(e) => fail(&e),
        },
        Command::Download {
            token,
            output,
            json,
        } => download(&client, &token, output, json).await,
        Command::Ls { files, all, json } => ls(&client, files, all, json).await,
    }
}

fn fail(e: &Error) -> u8 {
    eprintln!("upb: {e}");
    if e.is_transient() {
        EXIT_INTERRUPTED
    } else {
        EXIT_FAILED
    }
}

/// Progress on stderr: a bar on a terminal, otherwise a line per part.
struct Reporter {
    bar: Option<ProgressBar>,
    last_line: Mutex<Instant>,
}

impl Reporter {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(bar) => bar.println(s),
            None => eprintln!("{s}"),
        }
    }

    fn bytes(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn mib(b: u64) -> String {
    bytesize::ByteSize::b(b).display().iec().to_string()
}

async fn upload(client: &Client, file: &Path, mut opts: UploadOptions, json: bool) -> u8 {
    let source = match Source::from_path(file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("upb: {e}");
            return EXIT_FAILED;
        }
    };
    let reporter = Arc::new(Reporter::new(source.len()));
    let token: Arc<Mutex<Option<String>>> = Arc::default();
    let path_for_journal = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    {
        let (reporter, token) = (reporter.clone(), token.clone());
        opts.progress = Some(Arc::new(move |e: Event| match e {
            Event::Created { upload } => {
                *token.lock().unwrap() = Some(upload.resume_token.clone());
                journal_add(&upload.resume_token, &path_for_journal);
                reporter.line(&format!(
                    "upload {}: {} parts of {}{}",
                    upload.resume_token,
                    upload.part_count,
                    mib(upload.part_size),
                    upload
                        .checksum_algorithm
                        .as_deref()
                        .map(|a| format!(", {a}"))
                        .unwrap_or_default()
                ));
            }
            Event::Resuming {
                upload,
                stored_parts,
                total_parts,
                ..
            } => {
                *token.lock().unwrap() = Some(upload.resume_token.clone());
                reporter.line(&format!(
                    "resuming: {stored_parts} of {total_parts} parts stored (upload {})",
                    upload.resume_token
                ));
            }
            Event::Bytes { done, total } => reporter.bytes(done, total),
            Event::PartDone {
                part_number,
                done_parts,
                total_parts,
            } => {
                if reporter.bar.is_none() {
                    let mut last = reporter.last_line.lock().unwrap();
                    if done_parts == total_parts || last.elapsed() > Duration::from_millis(500) {
                        *last = Instant::now();
                        eprintln!("part {part_number} stored: {done_parts} of {total_parts} parts");
                    }
                }
            }
            Event::Retry {
                part_number,
                attempt,
                delay,
                error,
            } => reporter.line(&format!(
                "part {part_number}: attempt {attempt} failed ({error}); retrying in {}",
                humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
            )),
            Event::Completing => reporter.line("completing"),
        }));
    }
    let result = tokio::select! {
        r = client.upload(source, opts) => Some(r),
        _ = interrupted() => None,
    };
    reporter.finish();
    let token = token.lock().unwrap().clone();
    match result {
        None => {
            eprintln!(
                "upb: interrupted; run the same command again to resume{}",
                token.map(|t| format!(" (upload {t})")).unwrap_or_default()
            );
            EXIT_INTERRUPTED
        }
        Some(Ok(done)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&done).unwrap());
            } else {
                println!(
                    "completed {}: {} bytes to {}/{} (etag {}{})",
                    done.resume_token,
                    done.object_size.unwrap_or(done.size),
                    done.bucket,
                    done.key,
                    done.etag.as_deref().unwrap_or("?"),
                    done.checksum
                        .as_deref()
                        .map(|c| format!(", checksum {c}"))
                        .unwrap_or_default()
                );
            }
            0
        }
        Some(Err(e)) => {
            let code = fail(&e);
            if code == EXIT_INTERRUPTED {
                eprintln!("upb: the upload is resumable: run the same command again");
            }
            code
        }
    }
}

fn print_status(u: &Upload) {
    println!("token     {}", u.resume_token);
    println!("status    {}", u.status);
    println!(
        "file      {} ({} bytes, {})",
        u.filename, u.size, u.content_type
    );
    println!("object    {}/{}", u.bucket, u.key);
    println!("parts     {} of {}", u.part_count, mib(u.part_size));
    if let Some(p) = &u.progress {
        println!(
            "progress  {} of {} parts, {} of {} bytes ({:.1}%)",
            p.uploaded_parts, p.total_parts, p.uploaded_bytes, p.total_bytes, p.percent
        );
    }
    if let Some(a) = &u.checksum_algorithm {
        println!(
            "checksum  {a}{}",
            u.checksum
                .as_deref()
                .map(|c| format!(" {c}"))
                .unwrap_or_default()
        );
    }
    if let Some(e) = &u.etag {
        println!("etag      {e}");
    }
    println!("created   {}  expires {}", u.created_at, u.expires_at);
}

async fn download(client: &Client, token: &str, output: Option<PathBuf>, json: bool) -> u8 {
    let output = match output {
        Some(o) => o,
        None => match client.status(token).await {
            Ok(u) => PathBuf::from(
                Path::new(&u.filename)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| n != "." && n != "..")
                    .unwrap_or_else(|| "download".into()),
            ),
            Err(e) => return fail(&e),
        },
    };
    let reporter = Arc::new(Reporter::new(0));
    let r = reporter.clone();
    let opts = DownloadOptions {
        progress: Some(Arc::new(move |e| match e {
            DownloadEvent::Resuming { offset, size } => {
                r.line(&format!("resuming download at {offset} of {size} bytes"))
            }
            DownloadEvent::Restarting { reason } => {
                r.line(&format!("restarting download: {reason}"))
            }
            DownloadEvent::Bytes { done, total } => r.bytes(done, total),
            DownloadEvent::Retry {
                attempt,
                delay,
                error,
            } => r.line(&format!(
                "attempt {attempt} failed ({error}); retrying in {}",
                humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
            )),
        })),
    };
    let result = tokio::select! {
        r = client.download_with(token, &output, opts) => Some(r),
        _ = interrupted() => None,
    };
    reporter.finish();
    match result {
        None => {
            eprintln!("upb: interrupted; run the same command again to continue the download");
            EXIT_INTERRUPTED
        }
        Some(Ok(d)) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&d).unwrap());
            } else {
                println!(
                    "downloaded {} bytes to {} (etag {})",
                    d.size,
                    d.path.display(),
                    d.etag
                );
            }
            0
        }
        Some(Err(e)) => fail(&e),
    }
}

fn journal_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("upb").join("uploads"))
}

/// Remembers uploads this machine started, for `upb ls` without files.
fn journal_add(token: &str, file: &Path) {
    let Some(p) = journal_path() else { return };
    let _ = std::fs::create_dir_all(p.parent().unwrap());
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
    {
        let _ = writeln!(f, "{token}\t{}", file.display());
    }
}

async fn ls(client: &Client, files: Vec<PathBuf>, all: bool, json: bool) -> u8 {
    let mut rows: Vec<(String, Upload)> = Vec::new();
    if all {
        match client.list_active().await {
            Ok(found) => rows.extend(found.into_iter().map(|u| (u.filename.clone(), u))),
            Err(e) => return fail(&e),
        }
    } else if files.is_empty() {
        let Some(p) = journal_path() else { return 0 };
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let mut keep = Vec::new();
        for line in text.lines() {
            let Some((token, file)) = line.split_once('\t') else {
                continue;
            };
            match client.status(token).await {
                Ok(u) if u.status == "active" => {
                    keep.push(line.to_string());
                    rows.push((file.to_string(), u));
                }
                Ok(_) => {}
                Err(e) if e.is_transient() => return fail(&e),
                Err(_) => {} // expired or gone: forgotten
            }
        }
        let _ = std::fs::write(
            &p,
            keep.iter().map(|l| format!("{l}\n")).collect::<String>(),
        );
    } else {
        for f in files {
            let fp = match Source::from_path(&f) {
                Ok(s) => s.fingerprint().await,
                Err(e) => Err(e),
            };
            let fp = match fp {
                Ok(fp) => fp,
                Err(e) => {
                    eprintln!("upb: {e}");
                    return EXIT_FAILED;
                }
            };
            match client.find(&fp).await {
                Ok(found) => rows.extend(found.into_iter().map(|u| (f.display().to_string(), u))),
                Err(e) => return fail(&e),
            }
        }
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(f, u)| serde_json::json!({"file": f, "upload": u}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
    } else {
        for (f, u) in &rows {
            let p = u.progress.as_ref();
            println!(
                "{}  {}  {}/{} parts  {:.1}%  created {}",
                u.resume_token,
                f,
                p.map(|p| p.uploaded_parts).unwrap_or(0),
                u.part_count,
                p.map(|p| p.percent).unwrap_or(0.0),
                u.created_at
            );
        }
    }
    0
}
