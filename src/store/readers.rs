//! Connections that only read, beside the store thread: the API's queries run on them (WAL lets readers and the
//! writer proceed together), so a list of threads never waits behind a batch's commit or a housekeeping job.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::StoreError;

/// Readers kept open; more requests at once open more, and the extra ones are closed after use.
const KEPT: usize = 4;

#[derive(Clone)]
pub struct Readers {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Readers {
    pub fn new(path: &Path) -> Readers {
        Readers {
            path: path.to_owned(),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Runs `f` on a reader, off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.idle.lock().expect("readers lock").pop() {
                Some(conn) => conn,
                None => {
                    let conn = super::connect_existing(&readers.path)?;
                    conn.set_prepared_statement_cache_capacity(64);
                    conn
                }
            };
            let result = f(&conn);
            let mut idle = readers.idle.lock().expect("readers lock");
            if idle.len() < KEPT {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}
