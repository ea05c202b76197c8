//! The outbox as the delivery worker uses it: the `deliveries` table's statements ([`crate::store::deliveries`])
//! run on the store thread, with the durability each needs.

pub use crate::store::deliveries::{Claim, Decision, DueDelivery, OutboxSummary, Outcome};
use crate::store::{Millis, Store, StoreError, deliveries};

#[derive(Clone)]
pub struct Outbox {
    store: Store,
}

impl Outbox {
    pub fn new(store: Store) -> Outbox {
        Outbox { store }
    }

    /// Up to `limit` deliveries due at `now`, earliest due first, skipping `in_flight`.
    pub async fn claim_due(&self, now: Millis, limit: usize, in_flight: Vec<i64>) -> Result<Claim, StoreError> {
        self.store
            .read(move |conn| Ok(deliveries::claim_due(conn, now, limit, &in_flight)?))
            .await
    }

    /// Commits the outcomes that have arrived, in one transaction.
    ///
    /// Without an fsync of its own (`synchronous = NORMAL`): a process crash loses nothing (the WAL is in the OS's
    /// cache), and the next message batch's FULL commit syncs these frames too. Only a power cut in between can
    /// lose an outcome, and then the delivery is sent again (at least once, deduplicated by `webhook-id`), never
    /// lost. The message commits that allow a confirm upstream stay FULL (`Store::call`).
    pub async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), StoreError> {
        self.store
            .call_without_fsync(move |conn| Ok(deliveries::record(conn, &outcomes)?))
            .await
    }

    /// Makes due at `now` every pending delivery scheduled more than `horizon` after it, and returns how many.
    ///
    /// The worker never schedules further ahead than its longest retry delay or honoured `Retry-After`, so such a
    /// row was scheduled before the system clock went back; left alone it would wait for as long as the clock
    /// jumped (years, after a boot with a wrong clock). Without an fsync: a lost update is simply made again.
    pub async fn reschedule_beyond(&self, now: Millis, horizon: std::time::Duration) -> Result<usize, StoreError> {
        let latest = now.after(horizon);
        self.store
            .call_without_fsync(move |conn| Ok(deliveries::reschedule_beyond(conn, now, latest)?))
            .await
    }

    /// Makes every pending delivery scheduled after `now` due at its message's arrival time, so the backlog goes
    /// out oldest first; returns how many. For the end of a PMS outage: those retries waited for the PMS, and the
    /// oldest messages, attempted first, would otherwise go last, up to `max_interval` later.
    pub async fn due_after_outage(&self, now: Millis) -> Result<usize, StoreError> {
        self.store
            .call_without_fsync(move |conn| Ok(deliveries::retry_now(conn, now)?))
            .await
    }

    pub async fn summary(&self) -> Result<OutboxSummary, StoreError> {
        self.store.read(|conn| Ok(deliveries::summary(conn)?)).await
    }
}
