//! The command line and the configuration contract, through the real binary.

use std::path::Path;

use crate::support::*;

async fn check_config(dir: &Path, text: &str, envs: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    let mut daemon = Daemon::spawn(&["check-config", "--config", path.to_str().unwrap()], envs);
    let stdout = daemon.stdout().await;
    let (status, stderr) = daemon.exit().await;
    (status.code(), stdout, stderr)
}

const VALID: &str = r#"
[store]
path = "/tmp/x/relay.db"
[booking]
username = "relay"
password = "s3cret-Pa55word"
"#;

#[tokio::test]
async fn bad_configurations_exit_78_naming_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "x\n").unwrap();
    type Case<'a> = (String, &'a [(&'a str, &'a str)], Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            VALID.replace("username", "user_name"),
            &[],
            vec!["booking", "user_name"],
        ),
        (format!("{VALID}\n[extra]\nkey = 1\n"), &[], vec!["extra"]),
        (
            format!("{VALID}poll_interval = \"soon\"\n"),
            &[],
            vec!["booking.poll_interval"],
        ),
        (
            format!("{VALID}request_timeout = \"0s\"\n"),
            &[],
            vec!["booking.request_timeout", "longer than zero"],
        ),
        (
            format!("{VALID}password_file = \"{}\"\n", pw_file.display()),
            &[],
            vec!["booking.password", "booking.password_file"],
        ),
        (
            VALID.to_owned(),
            &[("OTA_RELAY_BOOKING_PASSWORD", "other")],
            vec!["booking.password", "OTA_RELAY_BOOKING_PASSWORD"],
        ),
        (
            VALID.replace("username = \"relay\"", ""),
            &[],
            vec!["booking.username", "required"],
        ),
        (
            VALID.replace("password = \"s3cret-Pa55word\"", ""),
            &[],
            vec!["booking.password", "OTA_RELAY_BOOKING_PASSWORD"],
        ),
        (format!("{VALID}auth = \"oauth\"\n"), &[], vec!["booking.auth"]),
        (
            format!("{VALID}base_url = \"ftp://x\"\n"),
            &[],
            vec!["booking.base_url"],
        ),
        (
            format!("{VALID}client_id = \"c\"\n"),
            &[],
            vec!["booking.client_id", "auth = \"basic\""],
        ),
        (format!("{VALID}[log]\nlevel = \"info,,=\"\n"), &[], vec!["log.level"]),
        (format!("{VALID}[log]\nformat = \"xml\"\n"), &[], vec!["log.format"]),
        (
            "[store]\npath = \"x\"\n".to_owned(),
            &[],
            vec!["[booking]", "no source of messages", "[staah]", "[channex]"],
        ),
        ("[booking\n".to_owned(), &[], vec!["line 1"]),
        (
            format!("{VALID}poll_interval = \"30y\"\n"),
            &[],
            vec!["booking.poll_interval", "must be at most 1day"],
        ),
        (
            format!("{VALID}\n[retention]\ncontent = \"500years\"\n"),
            &[],
            vec!["retention.content", "at most 36500days", "\"forever\""],
        ),
        (
            format!(
                "{VALID}\n[forward]\nurl = \"https://pms.example/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
                 request_timeout = \"1h\"\n"
            ),
            &[],
            vec!["forward.request_timeout", "must be at most 10m"],
        ),
        (
            format!(
                "{VALID}\n[forward]\nurl = \"https://pms example/hook?token=s3cret-Pa55word\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
            ),
            &[],
            vec![
                "forward.url",
                "\"https://pms example/hook\" (query not shown) is not a URL",
            ],
        ),
        (
            format!(
                "{VALID}\n[forward]\nurl = \"https://pms:s3cret-Pa55word@pms example/hook\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n"
            ),
            &[],
            vec!["forward.url", "the value is not a URL"],
        ),
        (
            VALID.replace("password = \"s3cret-Pa55word\"", "password_file = \"/dev/zero\""),
            &[],
            vec!["booking.password_file", "larger than 64 KiB"],
        ),
    ];
    for (text, envs, needles) in cases {
        let (code, stdout, stderr) = check_config(dir.path(), &text, envs).await;
        assert_eq!(code, Some(78), "config:\n{text}\nstderr: {stderr}");
        assert!(stdout.is_empty(), "nothing on stdout for a bad config");
        assert!(stderr.contains("check.toml"), "names the file: {stderr}");
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "error for\n{text}\nshould mention {needle:?}: {stderr}"
            );
        }
        assert!(!stderr.contains("s3cret-Pa55word"), "secret in error: {stderr}");
    }
}

#[tokio::test]
async fn run_refuses_a_bad_config_with_78_before_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = \"{}/relay.db\"\n[booking]\nusername = 1\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let (status, stderr) = Daemon::run(&path).exit().await;
    assert_eq!(status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("booking.username"), "{stderr}");
    assert!(!dir.path().join("relay.db").exists());
    let (status, stderr) = Daemon::run(&dir.path().join("missing.toml")).exit().await;
    assert_eq!(status.code(), Some(78));
    assert!(stderr.contains("missing.toml"), "{stderr}");
}

#[tokio::test]
async fn check_config_prints_effective_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("password");
    std::fs::write(&secret_file, "from-a-file-secret\n").unwrap();
    let text = format!(
        "[booking]\nusername = \"relay\"\npassword_file = \"{}\"\npoll_interval = \"250ms\"\n",
        secret_file.display()
    );
    let (code, stdout, stderr) = check_config(dir.path(), &text, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("password = \"********\""), "{stdout}");
    assert!(
        stdout.contains(&format!("from file {}", secret_file.display())),
        "{stdout}"
    );
    assert!(!stdout.contains("from-a-file-secret") && !stderr.contains("from-a-file-secret"));
    for default in [
        "path = \"/var/lib/ota-relay/relay.db\"",
        "base_url = \"https://supply-xml.booking.com/\"",
        "poll_interval = \"250ms\"",
        "request_timeout = \"30s\"",
        "format = \"pretty\"",
    ] {
        assert!(stdout.contains(default), "missing {default:?} in\n{stdout}");
    }
    // The output is itself a valid configuration (apart from the masked secret).
    assert!(stdout.parse::<toml::Table>().is_ok(), "{stdout}");

    let token = "[booking]\nauth = \"token\"\nclient_id = \"cid\"\n";
    let (code, stdout, _) = check_config(
        dir.path(),
        token,
        &[("OTA_RELAY_BOOKING_CLIENT_SECRET", "env-secret-value")],
    )
    .await;
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("environment variable OTA_RELAY_BOOKING_CLIENT_SECRET"),
        "{stdout}"
    );
    assert!(
        stdout.contains("token_url = \"https://connectivity-authentication.booking.com/"),
        "{stdout}"
    );
    assert!(!stdout.contains("env-secret-value"));
}

#[test]
fn a_secret_file_has_its_trailing_newline_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "line-secret\n").unwrap();
    let text = format!("[booking]\nusername = \"u\"\npassword_file = \"{}\"\n", file.display());
    let settings = ota_relay::config::parse(Path::new("t.toml"), &text, &|_| None).unwrap();
    match settings.booking.unwrap().auth {
        Some(ota_relay::config::BookingAuth::Basic { password, .. }) => {
            assert_eq!(password.expose(), "line-secret")
        }
        _ => panic!("basic expected"),
    }
    let debug = format!(
        "{:?}",
        ota_relay::config::parse(Path::new("t.toml"), &text, &|_| None).unwrap()
    );
    assert!(!debug.contains("line-secret"), "Debug output shows the secret");
}

#[tokio::test]
async fn the_example_configuration_is_valid_and_documents_every_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ota-relay.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = check_config(dir.path(), &text, &[("OTA_RELAY_BOOKING_PASSWORD", "pw")]).await;
    assert_eq!(code, Some(0), "{stderr}");
    // Every key the effective settings print appears (commented or not) in the example.
    for line in stdout.lines().filter(|l| l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap().trim();
        assert!(
            text.contains(&format!("{key} =")),
            "the example does not document {key}"
        );
    }
    // The commented-out optional sections are valid too, once uncommented.
    let (required, optional) = text.split_once("#[forward]").expect("a [forward] example");
    let uncommented: String = optional
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("# ") && l.len() > 1)
        .filter(|l| !l.starts_with("#secret_file")) // one secret source at a time
        .map(|l| format!("{}\n", &l[1..]))
        .collect::<String>()
        .replace("whsec_...", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    let full = format!("{required}\n[forward]\n{uncommented}");
    let (code, stdout, stderr) = check_config(dir.path(), &full, &[("OTA_RELAY_BOOKING_PASSWORD", "pw")]).await;
    assert_eq!(code, Some(0), "{full}\n{stderr}");
    for line in stdout.lines().filter(|l| l.contains(" = ")) {
        let key = line.split(" = ").next().unwrap().trim();
        assert!(
            text.contains(&format!("{key} =")),
            "the example does not document {key}"
        );
    }
    assert!(stdout.contains("give_up_after = \"3days\""), "{stdout}");
    assert!(
        stdout.contains("tombstones = \"400days\""),
        "as written, not in humantime's years: {stdout}"
    );
}

#[tokio::test]
async fn relative_paths_are_taken_from_the_configuration_files_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/pw"), "s3cret-Pa55word\n").unwrap();
    let text = "[store]\npath = \"state/relay.db\"\n[booking]\nusername = \"relay\"\npassword_file = \"secrets/pw\"\n";
    // The test runs in the crate's directory, where neither path exists.
    let (code, stdout, stderr) = check_config(dir.path(), text, &[]).await;
    assert_eq!(code, Some(0), "{stderr}");
    let store = dir.path().join("state/relay.db");
    assert!(stdout.contains(&format!("path = \"{}\"", store.display())), "{stdout}");
    assert!(
        stdout.contains(&dir.path().join("secrets/pw").display().to_string()),
        "{stdout}"
    );
}

#[tokio::test]
async fn config_path_comes_from_the_environment_when_not_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.toml");
    std::fs::write(&path, VALID).unwrap();
    let mut daemon = Daemon::spawn(&["check-config"], &[("OTA_RELAY_CONFIG", path.to_str().unwrap())]);
    let stdout = daemon.stdout().await;
    assert!(daemon.exit().await.0.success());
    assert!(stdout.contains(&path.display().to_string()), "{stdout}");
}

#[tokio::test]
async fn version_and_help() {
    let mut daemon = Daemon::spawn(&["--version"], &[]);
    let out = daemon.stdout().await;
    assert!(
        out.starts_with(&format!("ota-relay {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let mut daemon = Daemon::spawn(&["--help"], &[]);
    let out = daemon.stdout().await;
    for command in ["run", "check-config", "demo", "--config"] {
        assert!(out.contains(command), "--help lacks {command}: {out}");
    }
}

#[tokio::test]
async fn the_demo_drains_the_builtin_fake_and_reports() {
    let mut daemon = Daemon::spawn(&["demo", "--messages", "300"], &[]);
    let report = daemon.stdout().await;
    let (status, stderr) = daemon.exit().await;
    assert!(status.success(), "{stderr}");
    // 300 pulled, 12 that only the pushes brought (a notification carried one of the 300), and the echoes of
    // the PMS's 2 replies, which are not forwarded as guest messages.
    assert!(report.contains("314 messages stored once each"), "{report}");
    assert!(report.contains("(2 the echoes of replies)"), "{report}");
    assert!(
        report.contains("312 messages and 2 reply outcomes delivered"),
        "{report}"
    );
    assert!(report.contains("2 reached the fake Booking.com in 2 sends"), "{report}");
    assert!(
        report.contains("CNS fetched a token and sent 5 notifications"),
        "{report}"
    );
    assert!(report.contains("nothing lost, nothing stored twice"), "{report}");
    assert!(stderr.contains("batch drained"), "logs go to stderr");
}

/// Key paths of a TOML document ("booking.poll_interval"), a `_file` key counted as the secret it holds.
fn key_paths(table: &toml::Table, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    for (key, value) in table {
        let key = key.strip_suffix("_file").unwrap_or(key);
        let path = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => key_paths(inner, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

#[test]
fn check_config_shows_every_key_it_accepts_and_reads_back_as_the_same_settings() {
    let everything_else = r#"
poll_interval = "45s"
request_timeout = "20s"
backoff_initial = "2s"
backoff_max = "2m"
[store]
path = "/srv/relay/relay.db"
[log]
format = "json"
level = "debug"
[forward]
url = "https://pms.example/hook"
secret = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk="]
request_timeout = "5s"
concurrency = 4
[forward.retry]
initial_interval = "1s"
max_interval = "10m"
give_up_after = "1day"
[jobs]
duplicate_filter = "off"
retention = "0 0 1 * * *"
maintenance = "0 0 2 * * 1"
timezone = "Europe/Amsterdam"
[retention]
content = "7days"
tombstones = "forever"
[http]
listen = "127.0.0.1:9999"
"#;
    // Every key there is, none at its default: once with each authentication mode.
    for auth in [
        "[booking]\nbase_url = \"https://booking.example\"\nauth = \"basic\"\nusername = \"u\"\npassword_file = \"pw\"\n",
        "[booking]\nauth = \"token\"\nclient_id = \"c\"\nclient_secret = \"s\"\ntoken_url = \"https://auth.example/x\"\n",
    ] {
        let text = format!("{auth}{everything_else}");
        let path = Path::new("/srv/relay/full.toml");
        let settings = ota_relay::config::parse_for_tools(path, &text).unwrap();
        let rendered = settings.render_masked();
        let (mut written, mut shown) = Default::default();
        key_paths(&text.parse().unwrap(), "", &mut written);
        key_paths(&rendered.parse().unwrap(), "", &mut shown);
        let missing: Vec<&String> = written.difference(&shown).collect();
        assert!(missing.is_empty(), "check-config leaves out {missing:?}:\n{rendered}");
        // Nothing is left out or changed on the way: read back, the rendering is the same settings (secrets are
        // not read by parse_for_tools, on either side).
        let again = ota_relay::config::parse_for_tools(path, &rendered).unwrap();
        assert_eq!(again, settings, "{rendered}");
    }
}
