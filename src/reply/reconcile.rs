//! Booking.com replies whose send's answer was lost: the conversation is read (`GET .../conversations/{id}`)
//! until the reply shows there (then it is `sent`, with Booking.com's id) or `[replies] reconcile_window` has
//! passed since it became unknown (then `failed`: Booking.com is the one channel that can prove absence). Never
//! a second send. STAAH and Channex replies wait for their echo, or an operator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::channel::ThreadChannel;
use crate::channel::booking::client::BookingClient;
use crate::config::RepliesSettings;
use crate::daemon::Context;
use crate::store::replies::{self, Reply, same_text};
use crate::store::threads::Thread;
use crate::store::{StoreError, messages, now_ms};

pub struct Reconciler {
    cx: Context,
    booking: Option<Arc<BookingClient>>,
    window: Duration,
    every: Duration,
    next: Instant,
}

impl Reconciler {
    pub fn new(cx: Context, booking: Option<Arc<BookingClient>>, settings: RepliesSettings) -> Reconciler {
        let every = (settings.reconcile_window / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        Reconciler {
            cx,
            booking,
            window: settings.reconcile_window,
            every,
            next: Instant::now(),
        }
    }

    /// How long until the next reading is due.
    pub fn next_in(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Reads the conversations of the unknown Booking.com replies, when it is time.
    pub async fn tick(&mut self) -> Result<(), StoreError> {
        if Instant::now() < self.next {
            return Ok(());
        }
        self.next = Instant::now() + self.every;
        let Some(client) = self.booking.clone() else {
            return Ok(());
        };
        let unknown = self.cx.store.read(|conn| Ok(replies::unknown(conn)?)).await?;
        for (reply, thread) in unknown {
            if ThreadChannel::of(&thread.provider) == Some(ThreadChannel::Booking) {
                self.settle(&client, reply, thread).await?;
            }
        }
        Ok(())
    }

    async fn settle(&self, client: &BookingClient, reply: Reply, thread: Thread) -> Result<(), StoreError> {
        let Some(property) = thread.property_id.as_deref() else {
            return Ok(());
        };
        let read = match client.conversation(property, &thread.conversation_id).await {
            Ok(read) => read,
            Err(e) => {
                // A failed reading proves nothing: the reply stays unknown, and the window is not applied.
                tracing::warn!(reply = %reply.uuid, error = %e, "cannot read a conversation to settle a reply");
                return Ok(());
            }
        };
        let content = reply.content.clone().unwrap_or_default();
        let provider = thread.provider.clone();
        let (id, created) = (reply.id, reply.created_at);
        // The reply's text, from the property, in a message that is not another reply's and was not stored
        // before this reply was written (an older extranet message with the same words).
        let candidates: Vec<String> = read
            .into_iter()
            .filter(|m| m.from_property && m.content.as_deref().is_some_and(|c| same_text(c, &content)))
            .map(|m| m.message_id)
            .collect();
        let now = now_ms();
        let unknown_since = reply.unknown_since.unwrap_or(reply.updated_at);
        let expired = now.since(unknown_since) >= self.window;
        let window = self.window;
        let settled = self
            .cx
            .store
            .call(move |conn| {
                let mut found = None;
                for candidate in candidates {
                    let other_reply = replies::find_by_channel_id(conn, &candidate)?.is_some_and(|r| r != id);
                    let older = messages::first_seen(conn, &provider, &candidate)?.is_some_and(|at| at < created);
                    if !other_reply && !older {
                        found = Some(candidate);
                        break;
                    }
                }
                match found {
                    Some(channel_id) => Ok(replies::settle(conn, id, Some(&channel_id), "found in the conversation", now)?),
                    None if expired => {
                        let reason = format!(
                            "not in the Booking.com conversation {} after its send's answer was lost: it did not arrive",
                            humantime::format_duration(window)
                        );
                        Ok(replies::settle(conn, id, None, &reason, now)?)
                    }
                    None => Ok(false),
                }
            })
            .await?;
        if settled {
            tracing::info!(reply = %reply.uuid, "an unknown reply was settled by reading its conversation");
            self.cx.wake.commits.notify_one();
        }
        Ok(())
    }
}
