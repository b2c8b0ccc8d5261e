//! A small HTTPS client (hyper + rustls) shared by the HTTP SMS providers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{DeliveryError, FailureKind, TransportConfigError, classify_http_status};

/// Most response body bytes read.
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    transport: &'static str,
}

pub(crate) struct HttpResponse {
    pub status: StatusCode,
    pub body: Bytes,
}

impl HttpClient {
    pub(crate) fn new(transport: &'static str, timeout: Duration) -> Result<Self, TransportConfigError> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| TransportConfigError { transport, message: format!("TLS setup failed: {e}") })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Self { client, timeout, transport })
    }

    /// POSTs `body`; maps non-2xx statuses to classified errors.
    pub(crate) async fn post(
        &self,
        uri: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<HttpResponse, DeliveryError> {
        let t = self.transport;
        let mut req = Request::builder().method(Method::POST).uri(uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| DeliveryError::permanent(t, format!("invalid request: {e}")))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| DeliveryError::transient(t, format!("request failed: {e}")))?;
            let status = resp.status();
            let retry_after = retry_after(resp.headers());
            let body = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok::<_, DeliveryError>((status, retry_after, body))
        };
        let (status, retry_after, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DeliveryError::transient(t, format!("no response within {:?}", self.timeout)))??;
        match classify_http_status(status.as_u16()) {
            None => Ok(HttpResponse { status, body }),
            Some(kind) => {
                let detail = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
                let message = format!("HTTP {status}: {detail}");
                let mut err = match kind {
                    FailureKind::Transient => DeliveryError::transient(t, message),
                    FailureKind::Permanent => DeliveryError::permanent(t, message),
                };
                err.retry_after = retry_after;
                Err(err)
            }
        }
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(hyper::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s.min(3600)))
}
