//! One generation of workers (drain loop, delivery worker, job schedules) under a child token, so that a reload
//! can stop and restart them while the store, the listeners and the metrics stay.

use std::time::Duration;

use tokio_util::task::TaskTracker;

use super::Context;
use crate::channel::booking::drain::Drainer;
use crate::config::Settings;
use crate::forward::Forwarder;
use crate::jobs::JobKind;

pub(super) struct Workers {
    cx: Context,
    tracker: TaskTracker,
}

impl Workers {
    pub(super) fn start(
        settings: &Settings,
        daemon: &Context,
        senders: &crate::reply::Senders,
    ) -> anyhow::Result<Workers> {
        let cx = daemon.child();
        let tracker = TaskTracker::new();
        let drainer = match settings.pull() {
            Some(booking) => Some(Drainer::new(booking, &cx)?),
            None => None,
        };
        let forwarder = match &settings.forward {
            Some(forward) => Some(Forwarder::new(forward, &cx)?),
            None => {
                tracing::info!("[forward] is not configured: messages are stored and wait in the outbox");
                None
            }
        };
        if let Some(drainer) = drainer {
            tracker.spawn(drainer.run());
        }
        if let Some(forwarder) = forwarder {
            tracker.spawn(forwarder.run());
        }
        let replies =
            crate::reply::worker::ReplyWorker::new(&cx, senders.clone(), settings.replies, cx.wake.replies.clone());
        tracker.spawn(replies.run());
        spawn_jobs(&tracker, settings, &cx);
        tracker.close();
        Ok(Workers { cx, tracker })
    }

    /// Stops this generation. Waits for it to finish: a second drain loop must never run beside the first (two
    /// consumers confirming by count confirm each other's messages). During shutdown (the daemon's token fired)
    /// the wait is bounded by `grace`. False when shutdown began while waiting for a reload.
    pub(super) async fn stop(&self, grace: Duration, daemon: &Context) -> bool {
        let shutting_down = daemon.cancel.is_cancelled();
        self.cx.cancel.cancel();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_ok() {
            return true;
        }
        if shutting_down {
            // Safe anyway: a batch is confirmed only after it is committed, and an unconfirmed one is fetched
            // again; an unrecorded delivery is attempted again.
            tracing::warn!("workers did not stop within {grace:?}; exiting regardless");
            return false;
        }
        tracing::warn!("workers are still finishing after {grace:?}; the new configuration waits for them");
        tokio::select! {
            _ = self.tracker.wait() => !daemon.cancel.is_cancelled(),
            _ = daemon.cancel.cancelled() => false,
        }
    }
}

/// One task per scheduled job; a run in progress is waited for like the workers.
fn spawn_jobs(tracker: &TaskTracker, settings: &Settings, cx: &Context) {
    let jobs = &settings.jobs;
    for (kind, schedule) in [
        (JobKind::DuplicateFilter, &jobs.duplicate_filter),
        (JobKind::Retention, &jobs.retention),
        (JobKind::Maintenance, &jobs.maintenance),
    ] {
        match schedule {
            Some(schedule) => {
                tracker.spawn(crate::jobs::run_schedule(
                    cx.clone(),
                    kind,
                    schedule.clone(),
                    jobs.timezone,
                    settings.retention,
                ));
            }
            None => {
                tracing::info!(job = kind.name(), "job is off");
                let store = cx.store.clone();
                tracker.spawn(async move { crate::jobs::mark_scheduled(&store, kind).await });
            }
        }
    }
}

/// Long enough for a commit and one confirm in flight; the unit's TimeoutStopSec must exceed it.
pub fn shutdown_grace(settings: &Settings) -> Duration {
    let drain = settings
        .pull()
        .map_or(Duration::ZERO, |b| b.request_timeout * 2 + Duration::from_secs(5));
    let forward = settings
        .forward
        .as_ref()
        .map_or(Duration::ZERO, |f| f.request_timeout + Duration::from_secs(5));
    drain.max(forward)
}
