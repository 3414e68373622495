//! Configuring the binary: a bad setting is one line naming its variable and
//! exit 2; `--help` documents every option with its variable.

use super::{broker, run};

#[test]
fn bad_configuration_is_one_line_naming_the_variable_and_exit_2() {
    let db = "postgres://postgres@127.0.0.1:5432/postgres";
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "DATABASE_URL"),
        (vec![("DATABASE_URL", db)], "S3_BUCKET"),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("UPLOAD_TTL", "forever"),
            ],
            "UPLOAD_TTL",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("PART_URL_TTL", "8d"),
            ],
            "PART_URL_TTL",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("DEFAULT_PART_SIZE", "1MiB"),
            ],
            "DEFAULT_PART_SIZE",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("MAX_UPLOAD_SIZE", "lots"),
            ],
            "MAX_UPLOAD_SIZE",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_API_KEYS", "no-colon"),
            ],
            "BROKER_API_KEYS",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_TOKEN_SECRET", "short"),
            ],
            "BROKER_TOKEN_SECRET",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_LISTEN", "nowhere"),
            ],
            "BROKER_LISTEN",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("STORAGE_PROVIDER", "gcs"),
            ],
            "STORAGE_PROVIDER",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("S3_ENDPOINT", "localhost:4566"),
            ],
            "S3_ENDPOINT",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("STORAGE_TIMEOUT", "60s"),
                ("COMPLETION_LEASE", "90s"),
            ],
            "COMPLETION_LEASE",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("METRICS_TOKEN", "short"),
            ],
            "METRICS_TOKEN",
        ),
        (
            vec![
                ("DATABASE_URL", db),
                ("S3_BUCKET", "b"),
                ("BROKER_GRANT_KEY", "too-short"),
            ],
            "BROKER_GRANT_KEY",
        ),
    ];
    for (env, variable) in cases {
        let mut c = broker();
        c.arg("serve").envs(env.iter().copied());
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 2, "{variable}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line for {variable}: {err}");
        assert!(lines[0].contains(variable), "{variable} named in: {err}");
    }
}

#[test]
fn help_documents_every_option_and_its_variable() {
    let (code, out, _) = run(broker().args(["serve", "--help"]));
    assert_eq!(code, 0);
    for var in [
        "DATABASE_URL",
        "BROKER_LISTEN",
        "BROKER_API_KEYS",
        "S3_BUCKET",
        "S3_REGION",
        "S3_ENDPOINT",
        "S3_FORCE_PATH_STYLE",
        "STORAGE_PROVIDER",
        "S3_KEY_PREFIX",
        "BROKER_CORS_ORIGINS",
        "DEFAULT_PART_SIZE",
        "UPLOAD_TTL",
        "MAX_UPLOAD_SIZE",
        "PART_URL_TTL",
        "BROKER_TOKEN_SECRET",
        "BROKER_SIGN_WINDOW",
        "STORAGE_TIMEOUT",
        "COMPLETION_LEASE",
        "BROKER_MAX_BACKGROUND_TASKS",
        "BROKER_HEADER_TIMEOUT",
        "BROKER_MAX_CONNECTIONS",
        "METRICS_TOKEN",
        "WEBHOOK_TIMEOUT",
        "WEBHOOK_RETRY_FOR",
        "WEBHOOK_POLL",
    ] {
        assert!(out.contains(&format!("env: {var}")), "--help names {var}");
    }
    let (code, out, _) = run(broker().arg("--help"));
    assert_eq!(code, 0);
    assert!(out.contains("serve") && out.contains("migrate"));
}
