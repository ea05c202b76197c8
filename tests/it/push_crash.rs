//! A push answered 2xx is durable: SIGKILL in the middle of a storm of concurrent pushes, then a restart, and
//! every acknowledged push is stored and forwarded.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ota_relay::fake::pushes;

use crate::support::*;

#[tokio::test]
async fn every_push_answered_2xx_before_a_sigkill_is_stored_and_forwarded_after_the_restart() {
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .forward("concurrency = 8")
        .start()
        .await;
    let senders = relay.senders();
    let token = senders.booking_token().await.unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut storm = tokio::task::JoinSet::new();
    for sender in 0..64u64 {
        let (senders, token, acknowledged) = (senders.clone(), token.clone(), acknowledged.clone());
        storm.spawn(async move {
            for i in 0.. {
                let index = sender * 100_000 + i;
                let (sample, answer) = match index % 3 {
                    0 => {
                        let m = ota_relay::fake::guest_message(920, index);
                        let s = pushes::booking_notification(&m, &format!("uuid-{index}"));
                        let a = senders.notify(&token, &s.body).await;
                        (s, a)
                    }
                    1 => {
                        let s = pushes::staah_message(920, index);
                        let a = senders.staah(&s.body).await;
                        (s, a)
                    }
                    _ => {
                        let s = pushes::channex_message(920, index, "thread-920");
                        let a = senders.channex(&s.body).await;
                        (s, a)
                    }
                };
                match answer {
                    Ok(a) if a.status == 200 => acknowledged.lock().unwrap().push(sample.webhook_id),
                    // Killed: a refused connection, a reset, or an answer cut short. Nothing was acknowledged.
                    _ => return,
                }
            }
        });
    }
    let kill_after = 600;
    within(60, "pushes acknowledged", async {
        loop {
            if acknowledged.lock().unwrap().len() >= kill_after {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    relay.kill9().await;
    while storm.join_next().await.is_some() {}
    let acknowledged: HashSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert!(acknowledged.len() >= kill_after);

    relay.run();
    relay.ready(2).await;
    within(
        60,
        "every acknowledged push delivered",
        relay
            .pms
            .wait_for(|s| acknowledged.iter().all(|id| s.accepted.contains_key(id))),
    )
    .await;
    relay.stop().await;
    let integrity: String = relay
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let stored: i64 = relay.count("SELECT count(*) FROM messages");
    assert!(
        stored as usize >= acknowledged.len(),
        "{stored} stored, {} acknowledged",
        acknowledged.len()
    );
    // Pushes committed but killed before their answer are stored too (the sender would retry them).
    assert!(
        stored as usize <= acknowledged.len() + 64,
        "at most one push in flight per sender was unanswered"
    );
    eprintln!("{} acknowledged before the kill, {stored} stored", acknowledged.len());
}
