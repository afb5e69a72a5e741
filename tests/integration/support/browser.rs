//! A scripted browser: keeps cookies per host like a browser does (cookies
//! ignore ports), follows redirects on request, and records every hop.

use std::collections::BTreeMap;
use std::sync::Mutex;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};

#[derive(Debug, Clone)]
pub struct Page {
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::to_string)
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    }
}

pub struct Browser {
    client: reqwest::Client,
    /// Cookie name → value, for 127.0.0.1 (every server in the tests).
    cookies: Mutex<BTreeMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("client"),
            cookies: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.to_string(), value.to_string());
    }

    pub fn remove_cookie(&self, name: &str) {
        self.cookies.lock().unwrap().remove(name);
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.cookies.lock().unwrap().keys().cloned().collect()
    }

    /// One request; cookies from the jar are sent and Set-Cookie is applied.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        extra_headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Page {
        let mut request = self.client.request(method, url);
        let jar = self.cookies.lock().unwrap().clone();
        let mut cookie_header = jar
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("*/*"));
        for (name, value) in extra_headers {
            if name.eq_ignore_ascii_case("cookie") {
                if !cookie_header.is_empty() {
                    cookie_header.push_str("; ");
                }
                cookie_header.push_str(value);
                continue;
            }
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        if !cookie_header.is_empty() {
            headers.insert(COOKIE, HeaderValue::from_str(&cookie_header).unwrap());
        }
        request = request.headers(headers);
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{url}: {error}"));
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        let page = Page {
            url: url.to_string(),
            status,
            headers,
            body,
        };
        self.apply_set_cookies(&page);
        page
    }

    fn apply_set_cookies(&self, page: &Page) {
        let mut jar = self.cookies.lock().unwrap();
        for line in page.set_cookies() {
            let first = line.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = line.to_ascii_lowercase().contains("max-age=0");
            if expired || value.is_empty() {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }

    pub async fn get(&self, url: &str) -> Page {
        self.request(Method::GET, url, &[], None).await
    }

    pub async fn get_with(&self, url: &str, headers: &[(&str, &str)]) -> Page {
        self.request(Method::GET, url, headers, None).await
    }

    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = form
            .iter()
            .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        self.request(
            Method::POST,
            url,
            headers,
            Some(("application/x-www-form-urlencoded", body)),
        )
        .await
    }

    /// GETs `url` and follows redirects (at most 10); returns every hop, last = final page.
    pub async fn follow(&self, url: &str) -> Vec<Page> {
        self.follow_with(url, &[]).await
    }

    /// As `follow`, sending `headers` on every hop (as a browser sends
    /// `Sec-Fetch-Mode: navigate` and its `Accept` on each step of a
    /// navigation).
    pub async fn follow_with(&self, url: &str, headers: &[(&str, &str)]) -> Vec<Page> {
        let mut hops = Vec::new();
        let mut next = url.to_string();
        for _ in 0..10 {
            let page = self.get_with(&next, headers).await;
            let location = page.location();
            let base = page.url.clone();
            hops.push(page);
            match location {
                Some(location) if hops.last().unwrap().status.is_redirection() => {
                    next = url::Url::parse(&base)
                        .unwrap()
                        .join(&location)
                        .unwrap()
                        .to_string();
                }
                _ => return hops,
            }
        }
        panic!("too many redirects from {url}");
    }

    /// The final page after following redirects.
    pub async fn open(&self, url: &str) -> Page {
        self.follow(url).await.pop().unwrap()
    }
}

pub fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}
