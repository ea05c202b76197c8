//! The receiver speaking TLS itself: its certificate re-read on SIGHUP without closing the socket, and a
//! renewal that went wrong keeps the running certificate.

use ota_relay::fake::pushes;

use crate::support::*;

struct Certificate {
    pem: String,
    key: String,
}

fn certificate() -> Certificate {
    let signed = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    Certificate {
        pem: signed.cert.pem(),
        key: signed.signing_key.serialize_pem(),
    }
}

/// A client that trusts only `cert`.
fn client_trusting(cert: &Certificate) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap()])
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn push(client: &reqwest::Client, url: &str, body: &str) -> reqwest::Result<u16> {
    let c = ota_relay::fake::PushCredentials::default();
    let response = client
        .post(format!("{url}/staah/messages"))
        .basic_auth(&c.staah_username, Some(&c.staah_password))
        .body(body.to_owned())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test]
async fn tls_is_served_and_a_new_certificate_applies_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let first = certificate();
    std::fs::write(&cert_path, &first.pem).unwrap();
    std::fs::write(&key_path, &first.key).unwrap();
    let mut relay = TestRelay::with()
        .receiving()
        .without_pull()
        .receive_keys(&format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
            cert_path.display(),
            key_path.display()
        ))
        .start()
        .await;
    let url = relay.receive_url().replace("http://", "https://");

    assert_eq!(
        push(&client_trusting(&first), &url, &pushes::staah_message(940, 1).body)
            .await
            .unwrap(),
        200
    );
    let plain = push(
        &reqwest::Client::new(),
        &relay.receive_url(),
        &pushes::staah_message(940, 2).body,
    )
    .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|s| s != 200),
        "plain HTTP is not served on a TLS listener"
    );

    let second = certificate();
    std::fs::write(&cert_path, &second.pem).unwrap();
    std::fs::write(&key_path, &second.key).unwrap();
    assert_eq!(relay.reload().await, "configuration reloaded");
    assert_eq!(
        push(&client_trusting(&second), &url, &pushes::staah_message(940, 3).body)
            .await
            .unwrap(),
        200
    );
    assert!(
        push(&client_trusting(&first), &url, &pushes::staah_message(940, 4).body)
            .await
            .is_err(),
        "new connections get the new certificate"
    );

    // A renewal gone wrong (a truncated key): the running certificate stays.
    std::fs::write(&key_path, "-----BEGIN PRIVATE KEY-----\nAAAA\n").unwrap();
    relay.reload().await;
    assert_eq!(
        push(&client_trusting(&second), &url, &pushes::staah_message(940, 5).body)
            .await
            .unwrap(),
        200
    );
    let log = relay.stop().await;
    assert!(
        log.contains("cannot read the TLS files; serving the running certificate"),
        "{log}"
    );
    assert_eq!(relay.count("SELECT count(*) FROM messages"), 3);
}
