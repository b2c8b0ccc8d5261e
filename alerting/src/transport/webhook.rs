//! SMS through a generic JSON webhook gateway: `POST {url}` with
//! `{"to": "+33...", "body": "...", "idempotency_key": "..."}`, an
//! `Idempotency-Key` header, optional bearer token and optional
//! `X-Vitalwatch-Signature: sha256=<hex HMAC of the body>`.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::http::HttpClient;
use super::{DeliveryError, Outbound, Receipt, Secret, Transport, TransportConfigError, wrong_channel};
use crate::severity::Channel;

const NAME: &str = "webhook";

/// Webhook settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Endpoint URL.
    pub url: String,
    /// Bearer token, if the gateway requires one.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Secret for the body signature header, if wanted.
    #[serde(default)]
    pub signing_secret: Option<Secret>,
    /// Request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    15
}

#[derive(Serialize)]
struct Payload<'a> {
    to: &'a str,
    body: &'a str,
    idempotency_key: &'a str,
}

#[derive(Deserialize)]
struct Reply {
    id: Option<String>,
}

/// The webhook transport.
#[derive(Clone)]
pub struct WebhookTransport {
    client: HttpClient,
    url: String,
    bearer: Option<HeaderValue>,
    signing_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for WebhookTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTransport").field("url", &self.url).finish_non_exhaustive()
    }
}

impl WebhookTransport {
    /// Builds the transport.
    pub fn new(config: &WebhookConfig) -> Result<Self, TransportConfigError> {
        let err = |message: &str| TransportConfigError { transport: NAME, message: message.to_string() };
        if !(config.url.starts_with("https://") || config.url.starts_with("http://")) {
            return Err(err("url must be an http(s) URL"));
        }
        let bearer = match &config.bearer_token {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {}", t.0))
                    .map_err(|_| err("bearer token is not valid in a header"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Self {
            client: HttpClient::new(NAME, Duration::from_secs(config.timeout_secs.max(1)))?,
            url: config.url.clone(),
            bearer,
            signing_secret: config.signing_secret.as_ref().map(|s| s.0.as_bytes().to_vec()),
        })
    }
}

#[async_trait]
impl Transport for WebhookTransport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn channel(&self) -> Channel {
        Channel::Sms
    }

    async fn send(&self, message: &Outbound) -> Result<Receipt, DeliveryError> {
        let Outbound::Sms(sms) = message else {
            return Err(wrong_channel(NAME));
        };
        let body = serde_json::to_vec(&Payload { to: sms.to.as_str(), body: &sms.body, idempotency_key: &sms.key })
            .map_err(|e| DeliveryError::permanent(NAME, e.to_string()))?;
        let key = HeaderValue::from_str(&sms.key)
            .map_err(|_| DeliveryError::permanent(NAME, "idempotency key is not a valid header"))?;
        let mut headers = vec![
            (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (HeaderName::from_static("idempotency-key"), key),
        ];
        if let Some(b) = &self.bearer {
            headers.push((AUTHORIZATION, b.clone()));
        }
        if let Some(secret) = &self.signing_secret {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
                .map_err(|_| DeliveryError::permanent(NAME, "invalid signing secret"))?;
            m.update(&body);
            let sig = crate::notification::hex(&m.finalize().into_bytes());
            let v = HeaderValue::from_str(&format!("sha256={sig}"))
                .map_err(|_| DeliveryError::permanent(NAME, "signature header"))?;
            headers.push((HeaderName::from_static("x-vitalwatch-signature"), v));
        }
        let resp = self.client.post(&self.url, &headers, body).await?;
        let id = serde_json::from_slice::<Reply>(&resp.body).ok().and_then(|r| r.id);
        Ok(Receipt { transport: NAME.to_string(), provider_message_id: id })
    }
}
