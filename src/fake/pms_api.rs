//! A PMS calling ota-relay's Channex-compatible API over real HTTP, as a Channex client does (`user-api-key`,
//! or `Authorization: Bearer`). The demo's PMS and the tests use it.

use super::pushes::Answer;

/// The tokens the built-in configurations give the API: one for every property, one limited to a property.
pub const PMS_TOKEN: &str = "pms-token-5f1d0c9b8a7e6d4c";
pub const LIMITED_TOKEN: &str = "limited-token-0a1b2c3d4e5f";
pub const LIMITED_PROPERTY: &str = "8011855";

/// `[api]` on `listen` with more `keys` (TOML lines), and the two tokens.
pub fn api_section(listen: &str, keys: &str) -> String {
    format!(
        "[api]\nlisten = \"{listen}\"\n{keys}\n[[api.tokens]]\nname = \"pms\"\ntoken = \"{PMS_TOKEN}\"\n\
         [[api.tokens]]\nname = \"limited\"\ntoken = \"{LIMITED_TOKEN}\"\nproperty_ids = [\"{LIMITED_PROPERTY}\"]\n"
    )
}

#[derive(Clone)]
pub struct ApiClient {
    client: reqwest::Client,
    base: String,
    token: String,
    bearer: bool,
}

impl ApiClient {
    pub fn new(base: &str, token: &str) -> ApiClient {
        ApiClient {
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            bearer: false,
        }
    }

    /// The same client, presenting its key as `Authorization: Bearer`.
    pub fn bearer(mut self) -> ApiClient {
        self.bearer = true;
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.bearer {
            request.bearer_auth(&self.token)
        } else {
            request.header("user-api-key", &self.token)
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<Answer> {
        self.send(self.authorized(self.client.get(format!("{}{path}", self.base))))
            .await
    }

    /// A JSON POST; with `idempotency_key`, its header.
    pub async fn post(&self, path: &str, body: &str, idempotency_key: Option<&str>) -> reqwest::Result<Answer> {
        let mut request = self
            .authorized(self.client.post(format!("{}{path}", self.base)))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    /// A reply to `thread`, as Channex's API takes it.
    pub async fn reply(&self, thread: &str, text: &str, idempotency_key: Option<&str>) -> reqwest::Result<Answer> {
        let body = serde_json::json!({ "message": { "message": text } }).to_string();
        self.post(
            &format!("/api/v1/message_threads/{thread}/messages"),
            &body,
            idempotency_key,
        )
        .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
        Answer::of(request.send().await?).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}
