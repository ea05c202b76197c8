//! Operable on bad days: a full disk leaves status, /healthz, /metrics and backup working and saying so; a
//! schedule that never fires is refused, and a job that stopped degrades health.

use crate::support::*;

/// Runs `script` in a private mount namespace (nothing it mounts is seen outside), or None where that is not
/// possible here (no `unshare`, or not allowed to mount).
fn in_mount_namespace(script: &str) -> Option<std::process::Output> {
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script])
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unshare failed") || stderr.contains("mount: ") && stderr.contains("permission denied") {
        return None;
    }
    Some(out)
}

#[tokio::test]
async fn on_a_full_disk_status_health_metrics_and_backup_work_and_say_so() {
    let relay = TestRelay::with().queued(501, 0..50).ops_listener().drained().await;

    // The store moves onto a small file system of its own, which the daemon then runs on and which fills up.
    let full = relay.dir().join("full");
    let out = relay.dir().join("out");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let config = std::fs::read_to_string(relay.config()).unwrap().replace(
        &relay.path().display().to_string(),
        &full.join("relay.db").display().to_string(),
    );
    let full_config = out.join("full.toml");
    std::fs::write(&full_config, config).unwrap();
    let url = relay.ops_url();
    let fetch = |path: &str, file: &str| {
        format!(
            "python3 -c 'import sys,urllib.request as u\ntry:\n r=u.urlopen(\"{url}{path}\")\nexcept Exception as e:\n r=e\nsys.stdout.write(str(r.status)+\"\\n\"+r.read().decode())' > {}",
            out.join(file).display()
        )
    };
    let script = format!(
        r#"set -u
mount -t tmpfs -o size=8m tmpfs {full}
cp {store} {full}/relay.db
{bin} run --config {config} 2> {out}/daemon.log &
pid=$!
for i in $(seq 1 100); do {bin} status --config {config} > /dev/null 2>&1 && break; sleep 0.1; done
dd if=/dev/zero of={full}/fill bs=64k > /dev/null 2>&1
{bin} status --json --config {config} > {out}/status.json 2> {out}/status.err; echo $? > {out}/status.code
{bin} backup {out}/backup.db --config {config} > {out}/backup.out 2>&1; echo $? > {out}/backup.code
{healthz}
{metrics}
kill -TERM $pid; wait $pid
"#,
        full = full.display(),
        store = relay.path().display(),
        bin = BIN,
        config = full_config.display(),
        out = out.display(),
        healthz = fetch("/healthz", "healthz"),
        metrics = fetch("/metrics", "metrics"),
    );
    let Some(ran) = in_mount_namespace(&script) else {
        eprintln!("no private mount namespace here; the full-disk case was not run");
        return;
    };
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    assert!(
        ran.status.success() || !read("status.code").is_empty(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    let status: serde_json::Value = serde_json::from_str(&read("status.json")).unwrap_or_else(|e| {
        panic!(
            "status --json on a full disk: {e}: {} {}",
            read("status.json"),
            read("status.err")
        )
    });
    assert_eq!(read("status.code").trim(), "1", "degraded, not unreadable: {status}");
    assert_eq!(status["messages_stored"], 50, "the store was read: {status}");
    assert!(
        status["problems"]
            .to_string()
            .contains("disk holding the store is full"),
        "{status}"
    );

    assert_eq!(
        read("backup.code").trim(),
        "0",
        "backup to another file system: {}",
        read("backup.out")
    );
    assert_eq!(count(&out.join("backup.db"), "SELECT count(*) FROM messages"), 50);

    let healthz = read("healthz");
    assert!(
        healthz.starts_with("503") && healthz.contains("disk holding the store is full"),
        "{healthz}"
    );
    let metrics = read("metrics");
    assert!(
        metrics.starts_with("200") && metrics.contains("ota_relay_deliveries_pending"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_schedule_that_never_fires_is_refused_and_a_stopped_job_degrades_health() {
    let mut relay = TestRelay::with()
        .config("[jobs]\nretention = \"0 0 0 31 2 *\"\n")
        .prepare()
        .await;
    let out = relay.command(&["check-config"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("jobs.retention") && stderr.contains("never fires"),
        "{stderr}"
    );

    relay.write_config("[jobs]\nretention = \"0 30 3 * * *\"\n");
    relay.run();
    relay.ready(1).await;
    relay.stop().await;
    assert_eq!(relay.status(&[]).await.0, Some(0));
    // What the daemon records when a job's schedule runs out at run time (a time zone's rules can do it).
    relay
        .db()
        .execute(
            "INSERT INTO job_runs (job, started_at, stopped) VALUES ('retention', 0, 'the schedule has no next occurrence')",
            [],
        )
        .unwrap();
    let (code, status) = relay.status(&[]).await;
    assert_eq!(code, Some(1), "{status}");
    assert!(
        status["problems"].to_string().contains("job retention stopped"),
        "{status}"
    );
    // The next start schedules it again, and health is back.
    relay.run();
    relay.ready(2).await;
    relay.stop().await;
    assert_eq!(relay.status(&[]).await.0, Some(0));
}
