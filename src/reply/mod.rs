//! The reply outbox: replies the PMS wrote (through the API) go to the guest through the channel their thread
//! came from, at most once unless the channel proves the send was not processed.
//!
//! [`worker`] sends due replies (each committed `sending` before its request) and records what the answer
//! proved; [`reconcile`] settles the ones whose answer was lost, by reading Booking.com's conversation. The
//! channels' echoes settle them too, in the write path of the messages (`store/ingest.rs`).

pub mod reconcile;
pub mod worker;

use std::sync::Arc;

use crate::channel::booking::client::BookingClient;
use crate::channel::channex::reply::ChannexReplies;
use crate::channel::staah::reply::StaahReplies;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::store::Store;

/// Every channel a reply can go through, as configured.
#[derive(Clone, Default)]
pub struct Senders {
    pub booking: Option<Arc<BookingClient>>,
    pub staah: Option<Arc<StaahReplies>>,
    pub channex: Option<Arc<ChannexReplies>>,
}

impl Senders {
    /// What the configuration allows; a channel without what it needs has no sender (its replies are refused
    /// by the API with the key to set).
    pub fn from_settings(settings: &Settings, store: &Store, metrics: &Metrics) -> anyhow::Result<Senders> {
        let timeout = settings.replies.request_timeout;
        let booking = match &settings.booking {
            Some(b) if b.credentials().is_ok() => {
                Some(Arc::new(BookingClient::new(b, store.clone(), metrics.clone())?))
            }
            _ => None,
        };
        let staah = match &settings.staah {
            Some(s) => StaahReplies::new(s, timeout)?.map(Arc::new),
            None => None,
        };
        let channex = match &settings.channex {
            Some(c) => ChannexReplies::new(c, timeout)?.map(Arc::new),
            None => None,
        };
        Ok(Senders {
            booking,
            staah,
            channex,
        })
    }

    /// What the API checks before it accepts a reply.
    pub fn routes(&self) -> crate::web::api::ReplyRoutes {
        crate::web::api::ReplyRoutes {
            booking: self.booking.clone(),
            staah: self.staah.is_some(),
            channex: self.channex.is_some(),
        }
    }
}
