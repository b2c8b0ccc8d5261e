//! SMS through Twilio's Messages API:
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded
//! `To`, `From` (or `MessagingServiceSid`), `Body`, HTTP basic auth `SID:token`.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::http::HttpClient;
use super::{DeliveryError, Outbound, Receipt, Secret, Transport, TransportConfigError, wrong_channel};
use crate::severity::Channel;
use crate::team::PhoneNumber;

const NAME: &str = "twilio";

/// Twilio settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TwilioConfig {
    /// API base URL, `https://api.twilio.com` in production.
    #[serde(default = "default_base")]
    pub base_url: String,
    /// Account SID (`AC...`).
    pub account_sid: String,
    /// Auth token.
    pub auth_token: Secret,
    /// Sender number (E.164), unless a messaging service is used.
    #[serde(default)]
    pub from: Option<PhoneNumber>,
    /// Messaging service SID (`MG...`), instead of `from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Request timeout, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_base() -> String {
    "https://api.twilio.com".to_string()
}

fn default_timeout() -> u64 {
    15
}

/// The Twilio transport.
#[derive(Clone)]
pub struct TwilioTransport {
    client: HttpClient,
    url: String,
    auth: HeaderValue,
    sender: (&'static str, String),
}

impl std::fmt::Debug for TwilioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioTransport").field("url", &self.url).finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct MessageResource {
    sid: Option<String>,
}

impl TwilioTransport {
    /// Builds the transport.
    pub fn new(config: &TwilioConfig) -> Result<Self, TransportConfigError> {
        let err = |message: &str| TransportConfigError { transport: NAME, message: message.to_string() };
        let sid = &config.account_sid;
        if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err("account_sid must be alphanumeric"));
        }
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(err("base_url must be an http(s) URL"));
        }
        let sender = match (&config.from, &config.messaging_service_sid) {
            (Some(from), None) => ("From", from.to_string()),
            (None, Some(ms)) => ("MessagingServiceSid", ms.clone()),
            _ => return Err(err("set exactly one of from and messaging_service_sid")),
        };
        let creds = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{}", config.auth_token.0));
        let mut auth =
            HeaderValue::from_str(&format!("Basic {creds}")).map_err(|_| err("auth token is not valid in a header"))?;
        auth.set_sensitive(true);
        Ok(Self {
            client: HttpClient::new(NAME, Duration::from_secs(config.timeout_secs.max(1)))?,
            url: format!("{base}/2010-04-01/Accounts/{sid}/Messages.json"),
            auth,
            sender,
        })
    }
}

#[async_trait]
impl Transport for TwilioTransport {
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
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("To", sms.to.as_str())
            .append_pair(self.sender.0, &self.sender.1)
            .append_pair("Body", &sms.body)
            .finish();
        let headers = [
            (AUTHORIZATION, self.auth.clone()),
            (CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded")),
            (HeaderName::from_static("accept"), HeaderValue::from_static("application/json")),
        ];
        let resp = self.client.post(&self.url, &headers, form.into_bytes()).await?;
        let sid = serde_json::from_slice::<MessageResource>(&resp.body).ok().and_then(|m| m.sid);
        tracing::debug!(status = resp.status.as_u16(), "twilio accepted message");
        Ok(Receipt { transport: NAME.to_string(), provider_message_id: sid })
    }
}
