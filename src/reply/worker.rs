//! Sends due replies, at most [`IN_FLIGHT`] at a time, and records what each answer proved.
//!
//! Invariant (with `store/replies.rs`): a reply's request goes out only after `sending` is committed, and a
//! reply leaves `sending` only by what its answer proved. So a crash mid-send leaves `sending`, made `unknown`
//! at the next start, and nothing here ever sends a reply twice unless the channel showed it was not processed.

use std::time::Duration;

use tokio::task::JoinSet;

use super::Senders;
use crate::channel::ThreadChannel;
use crate::channel::reply::SendResult;
use crate::channel::staah::reply::Coordinates;
use crate::config::RepliesSettings;
use crate::daemon::{Context, Fatal};
use crate::store::replies::{self, Reply, SendOutcome};
use crate::store::threads::Thread;
use crate::store::{Millis, StoreError, messages, now_ms};

const IN_FLIGHT: usize = 8;
/// The longest the worker sleeps without looking (a reply committed by another process, an operator's resend).
const IDLE_LOOK: Duration = Duration::from_secs(30);

pub struct ReplyWorker {
    cx: Context,
    senders: Senders,
    settings: RepliesSettings,
    wake: std::sync::Arc<tokio::sync::Notify>,
    sends: JoinSet<(i64, SendOutcome)>,
    reconcile: super::reconcile::Reconciler,
}

impl ReplyWorker {
    pub fn new(
        cx: &Context,
        senders: Senders,
        settings: RepliesSettings,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> ReplyWorker {
        ReplyWorker {
            reconcile: super::reconcile::Reconciler::new(cx.clone(), senders.booking.clone(), settings),
            cx: cx.clone(),
            senders,
            settings,
            wake,
            sends: JoinSet::new(),
        }
    }

    pub async fn run(mut self) {
        match self
            .cx
            .store
            .call(|conn| Ok(replies::unknown_after_restart(conn, now_ms())?))
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    replies = n,
                    "replies were being sent when the daemon stopped: now unknown, reconciled, never re-sent by themselves"
                );
                self.cx.wake.commits.notify_one();
            }
            Err(e) => tracing::error!(error = %e, "cannot settle the replies left sending"),
        }
        let cancel = self.cx.cancel.clone();
        loop {
            let next = match self.step().await {
                Ok(next) => next,
                Err(StoreError::Replaced(p)) => {
                    self.cx.report_fatal(Fatal::StoreReplaced(StoreError::Replaced(p)));
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reply worker: the store failed; trying again shortly");
                    Some(now_ms().after(Duration::from_secs(5)))
                }
            };
            let wait = next.map_or(IDLE_LOOK, |at| now_ms().until(at)).min(IDLE_LOOK);
            let wait = wait.min(self.reconcile.next_in());
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(done) = self.sends.join_next(), if !self.sends.is_empty() => self.handle_sent(done).await,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Sends in flight finish (their answers are recorded); what is cut off is `sending`, made unknown later.
        while let Some(done) = self.sends.join_next().await {
            self.handle_sent(done).await;
        }
        tracing::info!("reply worker stopped");
    }

    /// Starts the due replies (as many as slots allow) and runs a reconciliation when it is time; when to look
    /// again.
    pub async fn step(&mut self) -> Result<Option<Millis>, StoreError> {
        self.reconcile.tick().await?;
        let free = IN_FLIGHT - self.sends.len();
        if free == 0 {
            return Ok(None);
        }
        let now = now_ms();
        let due = self
            .cx
            .store
            .read(move |conn| Ok(replies::due(conn, now, free)?))
            .await?;
        for (reply, thread) in due.due {
            self.start(reply, thread).await?;
        }
        Ok(due.next_due_at)
    }

    async fn start(&mut self, reply: Reply, thread: Thread) -> Result<(), StoreError> {
        let now = now_ms();
        if now.since(reply.created_at) > self.settings.give_up_after {
            let outcome = SendOutcome::Failed {
                reason: format!(
                    "not sent within replies.give_up_after ({}): {}",
                    humantime::format_duration(self.settings.give_up_after),
                    reply.reason.as_deref().unwrap_or("never tried")
                ),
            };
            let id = reply.id;
            self.cx
                .store
                .call(move |conn| Ok(replies::mark_sending(conn, id, now)?))
                .await?;
            return self.record(id, outcome).await;
        }
        let id = reply.id;
        let (provider, conversation) = (thread.provider.clone(), thread.conversation_id.clone());
        // The committed `sending` comes first: whatever happens from here, the reply is never sent blindly again.
        let (marked, raw) = self
            .cx
            .store
            .call(move |conn| {
                let marked = replies::mark_sending(conn, id, now)?;
                let raw = messages::latest_raw_of(conn, &provider, &conversation)?;
                Ok((marked, raw))
            })
            .await?;
        if !marked {
            return Ok(());
        }
        let senders = self.senders.clone();
        let settings = self.settings;
        self.sends.spawn(async move {
            let attempts = reply.attempts + 1;
            let result = send(&senders, &reply, &thread, raw.as_deref()).await;
            (reply.id, outcome_of(result, attempts, &settings))
        });
        Ok(())
    }

    async fn handle_sent(&mut self, done: Result<(i64, SendOutcome), tokio::task::JoinError>) {
        let Ok((id, outcome)) = done else {
            // A send that panicked stays `sending` until the next start makes it unknown: never sent again blindly.
            tracing::error!("a reply send panicked; it stays unsettled");
            return;
        };
        if let Err(e) = self.record(id, outcome).await {
            tracing::error!(reply = id, error = %e, "cannot record a reply's outcome; it stays sending (unknown at the next start)");
        }
    }

    async fn record(&mut self, id: i64, outcome: SendOutcome) -> Result<(), StoreError> {
        let now = now_ms();
        let recorded = outcome.clone();
        let changed = self
            .cx
            .store
            .call(move |conn| Ok(replies::record(conn, id, &recorded, now)?))
            .await?;
        match (&outcome, changed) {
            (_, false) => tracing::info!(reply = id, "a reply's echo settled it before its answer came"),
            (SendOutcome::Sent { channel_message_id }, true) => {
                tracing::info!(
                    reply = id,
                    channel_message_id = channel_message_id.as_deref(),
                    "reply sent"
                )
            }
            (SendOutcome::Retry { at, reason }, true) => {
                tracing::warn!(
                    reply = id,
                    reason,
                    retry_in_ms = now.until(*at).as_millis() as u64,
                    "reply not taken; trying again"
                )
            }
            (SendOutcome::Failed { reason }, true) => tracing::error!(reply = id, reason, "reply failed"),
            (SendOutcome::Unknown { reason }, true) => tracing::warn!(
                reply = id,
                reason,
                "reply outcome unknown: reconciled by its echo or the conversation, never sent again by itself"
            ),
        }
        self.cx.metrics.reply(match outcome {
            SendOutcome::Sent { .. } => "sent",
            SendOutcome::Retry { .. } => "retry",
            SendOutcome::Failed { .. } => "failed",
            SendOutcome::Unknown { .. } => "unknown",
        });
        // The new state is an event in the PMS outbox: sent as promptly as a message.
        self.cx.wake.commits.notify_one();
        self.wake.notify_one();
        Ok(())
    }
}

/// One send through the thread's channel.
async fn send(senders: &Senders, reply: &Reply, thread: &Thread, raw: Option<&str>) -> SendResult {
    let content = reply.content.as_deref().unwrap_or_default();
    let not_configured = |key: &str| SendResult::Refused {
        reason: format!("cannot send: {key} is not configured"),
    };
    match ThreadChannel::of(&thread.provider) {
        Some(ThreadChannel::Booking) => match (&senders.booking, &thread.property_id) {
            (Some(client), Some(property)) => {
                client
                    .post_reply(property, &thread.conversation_id, content, &reply.attachments)
                    .await
            }
            (None, _) => not_configured("[booking] credentials"),
            (_, None) => SendResult::Refused {
                reason: "the thread's property is not known".into(),
            },
        },
        Some(ThreadChannel::Staah) => match &senders.staah {
            Some(staah) => {
                let to = Coordinates::from_push(&thread.provider, &thread.conversation_id, raw);
                staah.send(&to, content).await
            }
            None => not_configured("[staah] reply_url"),
        },
        Some(ThreadChannel::Channex) => match &senders.channex {
            Some(channex) => channex.send(&thread.conversation_id, content, &reply.attachments).await,
            None => not_configured("[channex] api_key"),
        },
        None => SendResult::Refused {
            reason: format!("no channel sends replies for {}", thread.provider),
        },
    }
}

/// What to record for a send's result; a refusal before processing is tried again after the backoff (never
/// sooner than the channel's Retry-After).
fn outcome_of(result: SendResult, attempts: u32, settings: &RepliesSettings) -> SendOutcome {
    match result {
        SendResult::Sent { channel_message_id } => SendOutcome::Sent { channel_message_id },
        SendResult::Refused { reason } => SendOutcome::Failed { reason },
        SendResult::Unknown { reason } => SendOutcome::Unknown { reason },
        SendResult::NotProcessed { retry_after, reason } => {
            let exponent = attempts.saturating_sub(1).min(30);
            let backoff = settings
                .retry_initial
                .saturating_mul(2u32.saturating_pow(exponent))
                .min(settings.retry_max);
            let wait = retry_after.map_or(backoff, |r| r.max(backoff));
            SendOutcome::Retry {
                at: now_ms().after(wait),
                reason,
            }
        }
    }
}
