//! A member of staff using the inbox without JavaScript, over real HTTP: forms posted with the page's CSRF token,
//! redirects and the session cookie handled as a browser handles them, and the live stream read frame by frame.
//! The tests and the benchmark use it; the browser tests drive a real browser instead.

use reqwest::header::{self, HeaderMap};
use reqwest::redirect::Policy;

/// One answer of the inbox.
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok())
    }

    pub fn set_cookie(&self) -> Option<&str> {
        self.headers.get(header::SET_COOKIE).and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The id of the last change the page reflects (`<body data-last-change>`).
    pub fn last_change(&self) -> i64 {
        attribute(&self.body, "data-last-change=\"")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The list's threads, in order, and whether each is marked unread.
    pub fn threads(&self) -> Vec<(String, bool)> {
        self.body
            .split("<li class=\"thread")
            .skip(1)
            .filter_map(|item| {
                let unread = item.starts_with(" unread");
                attribute(item, "data-thread=\"").map(|id| (id, unread))
            })
            .collect()
    }

    pub fn thread_ids(&self) -> Vec<String> {
        self.threads().into_iter().map(|(id, _)| id).collect()
    }

    fn csrf(&self) -> Option<String> {
        attribute(&self.body, "name=\"csrf\" value=\"")
    }
}

fn attribute(html: &str, prefix: &str) -> Option<String> {
    let start = html.find(prefix)? + prefix.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_owned())
}

pub struct StaffClient {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl StaffClient {
    /// The inbox at `base` (the API listener, `http://host:port`), with `client`'s TLS settings; redirects are
    /// not followed, so that each answer can be looked at.
    pub fn new(base: &str, client: reqwest::ClientBuilder) -> StaffClient {
        StaffClient {
            client: client.redirect(Policy::none()).build().expect("an HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            cookie: None,
            csrf: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn signed_in(&self) -> bool {
        self.cookie.is_some()
    }

    /// The session cookie as sent (`name=value`).
    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    /// `request` with the session cookie, as the browser sends it with every request to the inbox.
    fn with_cookie(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(cookie) => request.header(header::COOKIE, cookie),
            None => request,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> reqwest::Result<Page> {
        let response = self.with_cookie(request).send().await?;
        let page = Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await?,
        };
        if let Some(set) = page.set_cookie() {
            let pair = set.split(';').next().unwrap_or_default().to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        if let Some(csrf) = page.csrf() {
            self.csrf = Some(csrf);
        }
        Ok(page)
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Result<Page> {
        let request = self.client.get(self.url(path));
        self.send(request).await
    }

    /// A form, as a browser posts it: with the CSRF token of the last page seen.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Result<Page> {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone().unwrap_or_default();
        all.push(("csrf", &csrf));
        self.post_form(path, &all).await
    }

    /// A form with exactly `fields` (no CSRF token added).
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> reqwest::Result<Page> {
        let body = serde_urlencoded::to_string(fields).expect("a form");
        let request = self
            .client
            .post(self.url(path))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// The sign-in form, with an API token and the name replies are signed with.
    pub async fn sign_in(&mut self, token: &str, user: &str) -> reqwest::Result<Page> {
        self.post_form("/inbox/login", &[("token", token), ("user", user)])
            .await
    }

    /// The live stream of the changes after `after` (`?after=`), or of those after `last_event_id` as a
    /// reconnecting browser asks (`Last-Event-ID`).
    pub async fn events(&self, query: &str, last_event_id: Option<i64>) -> reqwest::Result<Events> {
        let mut request = self.with_cookie(
            self.client
                .get(self.url(&format!("/inbox/events{query}")))
                .header(header::ACCEPT, "text/event-stream"),
        );
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await?;
        Ok(Events {
            status: response.status().as_u16(),
            response,
            buffer: String::new(),
        })
    }
}

/// One `change` event: its id, the thread and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: i64,
    pub thread: String,
    pub kind: String,
}

pub struct Events {
    pub status: u16,
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next event; `None` when the stream ended. Keep-alive comments are skipped.
    pub async fn next(&mut self) -> reqwest::Result<Option<Change>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = serde_json::from_str::<serde_json::Value>(v.trim()).ok();
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Ok(Some(Change {
                        id,
                        thread: data["thread"].as_str().unwrap_or_default().to_owned(),
                        kind: data["kind"].as_str().unwrap_or_default().to_owned(),
                    }));
                }
                continue;
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => return Ok(None),
            }
        }
    }
}
