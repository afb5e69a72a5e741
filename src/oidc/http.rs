//! How portico talks HTTP to the provider through openidconnect.
//!
//! One change to the plain reqwest client: a 5xx answer is an outage, so it
//! surfaces as a request error (the sign-in page says the provider could
//! not be reached, 502) instead of a token response that failed to parse
//! (which would read as an untrustworthy answer, 400).

use openidconnect::{AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};

#[derive(Debug, thiserror::Error)]
pub enum ProviderCallError {
    #[error("{0}")]
    Transport(#[from] HttpClientError<reqwest::Error>),
    #[error("the provider answered {0}")]
    Unavailable(http::StatusCode),
}

/// Sends `request` with `client`; a 5xx answer becomes an error.
pub async fn provider_call(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, ProviderCallError> {
    let response = client.call(request).await?;
    if response.status().is_server_error() {
        return Err(ProviderCallError::Unavailable(response.status()));
    }
    Ok(response)
}

/// The provider client for openidconnect's `request_async`.
pub struct ProviderHttp<'client>(pub &'client reqwest::Client);

type CallFuture<'c> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, ProviderCallError>> + Send + 'c>,
>;

impl<'c> AsyncHttpClient<'c> for ProviderHttp<'_> {
    type Error = ProviderCallError;
    type Future = CallFuture<'c>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(provider_call(self.0, request))
    }
}
