//! The token-exchange log behind Booking.com's quota (30 tokens per account per rolling hour).

use rusqlite::{TransactionBehavior, params};

use super::{Millis, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// An exchange may be made now; it is already recorded.
    Granted,
    /// The quota is used up; the next exchange may be made at `until`.
    Exhausted { until: Millis, used: usize },
}

impl Store {
    /// Records an exchange *before* it is attempted, if the rolling window has room.
    ///
    /// Invariant: at most `limit` exchanges are recorded within any `window`, and every exchange made was
    /// recorded first, so neither a crash loop nor a restart can exceed the account's quota.
    pub async fn reserve_token_exchange(
        &self,
        now: Millis,
        window: std::time::Duration,
        limit: usize,
    ) -> Result<Reservation, StoreError> {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // An exchange recorded after `now` was made before the system clock went back: it counts as made now
            // (the quota is never exceeded, and it blocks for an hour at most, not for the size of the jump).
            tx.execute("UPDATE token_exchanges SET at = ?1 WHERE at > ?1", params![now])?;
            tx.execute(
                "DELETE FROM token_exchanges WHERE at <= ?1",
                params![now.before(window)],
            )?;
            let recent: Vec<Millis> = tx
                .prepare("SELECT at FROM token_exchanges ORDER BY at DESC LIMIT ?1")?
                .query_map(params![limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let outcome = if recent.len() >= limit {
                // The oldest of the `limit` most recent leaves the window first.
                let oldest = recent.last().copied().unwrap_or(now);
                Reservation::Exhausted {
                    until: oldest.after(window),
                    used: recent.len(),
                }
            } else {
                tx.execute("INSERT INTO token_exchanges (at) VALUES (?1)", params![now])?;
                Reservation::Granted
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }
}
