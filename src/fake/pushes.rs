//! What the push senders send, and the senders themselves over real HTTP: Booking.com's notification service
//! (which fetches its token first), STAAH and Channex. The demo, the tests and the benchmarks share them.

use base64::Engine as _;
use serde_json::json;

use super::samples::SampleMessage;

/// STAAH's own sample request, as its documentation prints it.
pub const STAAH_SEED_SAMPLE: &str = r#"{
"message": "Hello, How are you? How acan we help you.?",
"guestid": "320338222",
"bookingid": "ABCAJKYSJ8",
"listingid": "47522522",
"bookingflag": "B",
"messageid": "9623318922",
"channel_id": "244",
"threadid": "991462322",
"user_details": {
"roles": [{
"role": "owner",
"user_ids": [
22533556
]
},
{
"role": "guest",
"user_ids": [
311357532
]
},
{
"user_ids": [],
"role": "cohost"
}
],
"users": [{
"first_name": "Joseph",
"location": "Cambridge, United Kingdom",
"preferred_locale": "en-GB",
"id": 22533556
},
{
"id": 311357532,
"first_name": "Chris",
"location": "England, United Kingdom",
"preferred_locale": "en"
}
]
},
"booking_details": {
"expected_payout_amount_accurate": "451.00",
"checkout_date": "2021-07-11",
"number_of_infants": 0,
"non_response_at": null,
"listing_name": "Modern housewith Parking",
"number_of_adults": 3,
"reservation_confirmation_code": "ABCAJKYSJ8",
"number_of_children": 0,
"nights": 4,
"listing_id": "47501536",
"checkin_date": "2021-07-07",
"listing_id_str": "47511536",
"number_of_guests": 3
},
"attachment": [],
"hotelid": "abc123"
}"#;

/// One pushed body and the `webhook-id` its message gets.
#[derive(Debug, Clone)]
pub struct PushSample {
    pub webhook_id: String,
    pub body: String,
}

/// A Booking.com notification carrying `message` (a message object in the queue's shape).
pub fn booking_notification(message: &SampleMessage, uuid: &str) -> PushSample {
    PushSample {
        webhook_id: crate::store::messages::webhook_id("booking.com", &message.message_id),
        body: format!(
            r#"{{"metadata":{{"uuid":"{uuid}","type":"MESSAGING_API_NEW_MESSAGE","payloadVersion":"1.0"}},"payload":{}}}"#,
            message.json
        ),
    }
}

/// The `index`-th STAAH message of a deterministic stream (Airbnb, Booking.com and Expedia in turn).
pub fn staah_message(seed: u64, index: u64) -> PushSample {
    let channel = ["244", "19", "9"][(index % 3) as usize];
    let message_id = format!("{seed}{index:09}");
    let guest = 311_000_000 + index / 3;
    let body = json!({
        "message": format!("Hello from a STAAH guest (#{index}) — is early check-in possible? 🙂"),
        "guestid": guest.to_string(),
        "bookingid": format!("BK{seed}-{}", index / 3),
        "listingid": "47522522",
        "bookingflag": if index.is_multiple_of(2) { "B" } else { "T" },
        "messageid": message_id,
        "channel_id": channel,
        "threadid": format!("{}", 991_000_000 + index / 3),
        "user_details": {
            "roles": [{"role": "owner", "user_ids": [22533556]}, {"role": "guest", "user_ids": [guest]}],
            "users": [
                {"first_name": "Joseph", "location": "Cambridge, United Kingdom", "preferred_locale": "en-GB", "id": 22533556},
                {"id": guest, "first_name": "Chris", "location": "England, United Kingdom", "preferred_locale": "en"}
            ]
        },
        "attachment": [],
        "hotelid": "abc123"
    });
    PushSample {
        webhook_id: crate::store::messages::webhook_id(&format!("staah:{channel}"), &message_id),
        body: body.to_string(),
    }
}

/// The `index`-th Channex `message` event of a deterministic stream, in thread `thread`.
pub fn channex_message(seed: u64, index: u64, thread: &str) -> PushSample {
    let id = format!("{:08x}-07a4-4c8c-a998-{:012x}", seed as u32, index);
    let body = json!({
        "event": "message",
        "property_id": "71d34923-a8be-4682-9625-e4a2f080df92",
        "user_id": null,
        "timestamp": "2026-11-30T10:15:00.000000",
        "payload": {
            "id": id,
            "message": format!("Can we bring our dog? (#{index})"),
            "message_thread_id": thread,
            "booking_id": "4d8240fd-d709-454b-a866-08bca2a5a909",
            "ota_message_id": format!("ota-{index}"),
            "sender": "guest",
            "attachments": [],
            "have_attachment": false,
            "property_id": "71d34923-a8be-4682-9625-e4a2f080df92"
        }
    });
    PushSample {
        webhook_id: crate::store::messages::webhook_id("channex", &id),
        body: body.to_string(),
    }
}

/// The credentials every sender is given, and the configuration that expects them.
#[derive(Debug, Clone)]
pub struct PushCredentials {
    pub notifications_client_id: String,
    pub notifications_client_secret: String,
    pub staah_username: String,
    pub staah_password: String,
    pub channex_header: String,
    pub channex_secret: String,
}

impl Default for PushCredentials {
    fn default() -> PushCredentials {
        PushCredentials {
            notifications_client_id: "cns-client".into(),
            notifications_client_secret: "cns-secret-0f3b9a7c51d24e8a".into(),
            staah_username: "staah".into(),
            staah_password: "staah-password-6c1e2f".into(),
            channex_header: "x-ota-relay-secret".into(),
            channex_secret: "channex-secret-a41d9e".into(),
        }
    }
}

impl PushCredentials {
    /// `[booking.notifications]` (to follow a `[booking]` section), `[staah]` and `[channex]`.
    pub fn notifications_section(&self) -> String {
        format!(
            "[booking.notifications]\nclient_id = \"{}\"\nclient_secret = \"{}\"\n",
            self.notifications_client_id, self.notifications_client_secret
        )
    }

    pub fn staah_section(&self) -> String {
        format!(
            "[staah]\nusername = \"{}\"\npassword = \"{}\"\n",
            self.staah_username, self.staah_password
        )
    }

    /// With `api` (base URL and key) the thread lookup is on.
    pub fn channex_section(&self, api: Option<(&str, &str)>) -> String {
        let api = api
            .map(|(url, key)| format!("base_url = \"{url}\"\napi_key = \"{key}\"\n"))
            .unwrap_or_default();
        format!(
            "[channex]\nwebhook_header = \"{}\"\nwebhook_secret = \"{}\"\n{api}",
            self.channex_header, self.channex_secret
        )
    }
}

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// A response, read whole.
    pub async fn of(response: reqwest::Response) -> reqwest::Result<Answer> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await?;
        Ok(Answer { status, body, headers })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// The three senders, pointed at one receiver.
#[derive(Clone)]
pub struct Senders {
    client: reqwest::Client,
    base: String,
    pub credentials: PushCredentials,
}

impl Senders {
    /// `base` is the receiver's URL (`http://127.0.0.1:port`).
    pub fn new(base: &str, credentials: PushCredentials) -> Senders {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("a client");
        Senders {
            client,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// As CNS does: `POST /oauth/token` with the client's credentials in HTTP Basic (RFC 6749 §2.3.1).
    pub async fn token_request(&self, client_id: &str, client_secret: &str) -> reqwest::Result<Answer> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"));
        self.post(
            self.client
                .post(self.url("/oauth/token"))
                .header("authorization", format!("Basic {basic}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials"),
        )
        .await
    }

    /// A token for the configured client.
    pub async fn booking_token(&self) -> reqwest::Result<String> {
        let c = &self.credentials;
        let answer = self
            .token_request(&c.notifications_client_id, &c.notifications_client_secret)
            .await?;
        Ok(answer.json()["access_token"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn notify(&self, token: &str, body: &str) -> reqwest::Result<Answer> {
        self.post(
            self.client
                .post(self.url("/booking/notifications"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn staah(&self, body: &str) -> reqwest::Result<Answer> {
        let c = &self.credentials;
        self.post(
            self.client
                .post(self.url("/staah/messages"))
                .basic_auth(&c.staah_username, Some(&c.staah_password))
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    pub async fn channex(&self, body: &str) -> reqwest::Result<Answer> {
        let c = &self.credentials;
        self.post(
            self.client
                .post(self.url("/channex/webhook"))
                .header(c.channex_header.as_str(), &c.channex_secret)
                .header("content-type", "application/json")
                .body(body.to_owned()),
        )
        .await
    }

    /// Any request to the receiver, answered.
    pub async fn post(&self, request: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
        Answer::of(request.send().await?).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}
