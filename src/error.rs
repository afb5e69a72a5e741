//! Every way a request can fail, and the one place each maps to a status.
//!
//! Each boundary has its own closed error enum (`LoginError`, `SessionError`,
//! `UpstreamError`); `GatewayError` gathers them and says, once, which status
//! the client gets, what to tell a person, and what to tell a program.
//! `pages` renders it as HTML or JSON.

use http::StatusCode;

use crate::limits::Limit;
use crate::oidc::{LoginError, RefreshError, UserinfoError};
use crate::proxy::UpstreamError;
use crate::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("no such endpoint of portico's")]
    UnknownEndpoint,
    #[error("the setup page is turned off")]
    SetupPageOff,
    #[error("method not allowed here")]
    MethodNotAllowed,
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    #[error("not signed in")]
    NotSignedIn,
    #[error("bearer token refused: {0}")]
    InvalidBearer(String),
    #[error("signed in but not allowed: {0}")]
    Forbidden(String),
    #[error("login failed: {0}")]
    Login(#[from] LoginError),
    #[error("session store: {0}")]
    Session(#[from] SessionError),
    #[error("the identity provider is not available yet")]
    ProviderNotReady,
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    #[error("cross-site request refused")]
    CrossSite,
    #[error("{0}")]
    Refresh(#[from] RefreshError),
    #[error("{0}")]
    TooLarge(Limit),
    /// Forward-auth was told which request to judge by a peer that is not
    /// in `[server] trusted_proxies`.
    #[error("forward-auth: the original-request headers come from a peer not in trusted_proxies")]
    UntrustedForwardAuth,
    /// Forward-auth was asked about a request no route covers.
    #[error("forward-auth: no route covers the original request")]
    NoRouteToJudge,
}

/// What a person reads on the error page.
pub struct Explanation {
    pub title: &'static str,
    pub message: String,
    pub advice: &'static str,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute | GatewayError::UnknownEndpoint | GatewayError::SetupPageOff => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::BadRequest(_) | GatewayError::UntrustedForwardAuth => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::NoRouteToJudge => StatusCode::FORBIDDEN,
            GatewayError::NotSignedIn | GatewayError::InvalidBearer(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) | GatewayError::CrossSite => StatusCode::FORBIDDEN,
            GatewayError::Login(error) => match error {
                LoginError::TokenEndpointUnreachable(_)
                | LoginError::Userinfo(UserinfoError::Unreachable(_)) => StatusCode::BAD_GATEWAY,
                LoginError::ClientRejected { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                LoginError::ProviderRefused { .. } => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            },
            GatewayError::Session(SessionError::Unavailable(_))
            | GatewayError::ProviderNotReady => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Session(SessionError::Corrupt(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::Upstream(
                UpstreamError::Timeout(_)
                | UpstreamError::ConnectTimeout(_)
                | UpstreamError::SendTimeout(_),
            ) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Upstream(UpstreamError::ClientBody(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Upstream(UpstreamError::ClientTimeout(_)) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Upstream(UpstreamError::Unreachable(_)) => StatusCode::BAD_GATEWAY,
            GatewayError::Upstream(UpstreamError::Request(_)) => StatusCode::BAD_GATEWAY,
            GatewayError::Upstream(UpstreamError::Invalid(_)) => StatusCode::BAD_GATEWAY,
            GatewayError::Upstream(UpstreamError::Certificate(_)) => StatusCode::BAD_GATEWAY,
            GatewayError::Refresh(RefreshError::Ended(_)) => StatusCode::UNAUTHORIZED,
            GatewayError::Refresh(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::TooLarge(Limit::Headers | Limit::Cookies) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            GatewayError::TooLarge(Limit::Query) => StatusCode::URI_TOO_LONG,
            GatewayError::TooLarge(Limit::Body) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// A stable machine-readable code for JSON answers.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute | GatewayError::UnknownEndpoint | GatewayError::SetupPageOff => {
                "not_found"
            }
            GatewayError::MethodNotAllowed => "method_not_allowed",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::UntrustedForwardAuth => "untrusted_forward_auth",
            GatewayError::NoRouteToJudge => "no_route",
            GatewayError::NotSignedIn => "unauthorized",
            GatewayError::InvalidBearer(_) => "invalid_token",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::CrossSite => "cross_site_request",
            GatewayError::Login(error) => error.label(),
            GatewayError::Session(SessionError::Unavailable(_)) => "session_store_unavailable",
            GatewayError::Session(SessionError::Corrupt(_)) => "session_unreadable",
            GatewayError::ProviderNotReady => "provider_unavailable",
            GatewayError::Upstream(
                UpstreamError::Timeout(_)
                | UpstreamError::ConnectTimeout(_)
                | UpstreamError::SendTimeout(_),
            ) => "upstream_timeout",
            GatewayError::Upstream(UpstreamError::ClientBody(_)) => "bad_request_body",
            GatewayError::Upstream(UpstreamError::ClientTimeout(_)) => "request_timeout",
            GatewayError::Upstream(UpstreamError::Certificate(_)) => "upstream_certificate",
            GatewayError::Upstream(_) => "upstream_unreachable",
            GatewayError::Refresh(RefreshError::Ended(_)) => "session_ended",
            GatewayError::Refresh(RefreshError::Store(_)) => "session_store_unavailable",
            GatewayError::Refresh(RefreshError::Unavailable(_)) => "refresh_unavailable",
            GatewayError::TooLarge(Limit::Headers) => "headers_too_large",
            GatewayError::TooLarge(Limit::Cookies) => "cookies_too_large",
            GatewayError::TooLarge(Limit::Query) => "query_too_long",
            GatewayError::TooLarge(Limit::Body) => "body_too_large",
        }
    }

    pub fn explain(&self) -> Explanation {
        match self {
            GatewayError::NoRoute => Explanation {
                title: "Page not found",
                message: "No application is configured for this address.".into(),
                advice: "Check the address, or ask the site's operator which URL to use.",
            },
            GatewayError::UnknownEndpoint => Explanation {
                title: "Page not found",
                message: "There is no page at this address.".into(),
                advice: "Check the address, or go to the start page.",
            },
            GatewayError::SetupPageOff => Explanation {
                title: "Page not found",
                message: "The setup page is turned off.".into(),
                advice: "An operator can turn it on with setup_page = true in the [server] \
                         section of portico's configuration while connecting a provider.",
            },
            GatewayError::MethodNotAllowed => Explanation {
                title: "Method not allowed",
                message: "This address does not accept this kind of request.".into(),
                advice: "Open the address in the browser, or use the buttons on this site's \
                         own pages.",
            },
            GatewayError::BadRequest(what) => Explanation {
                title: "Bad request",
                message: format!("The request could not be understood: {what}."),
                advice: "Check the address and try again.",
            },
            GatewayError::UntrustedForwardAuth => Explanation {
                title: "Request refused",
                message: "The proxy asking portico to check this request is not one portico \
                          trusts to say which request it is (its address is not in \
                          [server] trusted_proxies)."
                    .into(),
                advice: "If you run this site: add the proxy's address to trusted_proxies in \
                         portico's [server] section.",
            },
            GatewayError::NoRouteToJudge => Explanation {
                title: "Access denied",
                message: "No application is configured for this address, so portico cannot \
                          allow it."
                    .into(),
                advice: "Check the address, or ask the site's operator to add a route for it.",
            },
            GatewayError::NotSignedIn => Explanation {
                title: "Sign-in required",
                message: "You need to sign in to see this page.".into(),
                advice: "Sign in, then open the page again.",
            },
            GatewayError::InvalidBearer(_) => Explanation {
                title: "Invalid token",
                message: "The access token sent with this request is not valid here.".into(),
                advice: "Get a new token and try again.",
            },
            GatewayError::Forbidden(_) => Explanation {
                title: "Access denied",
                message: "You are signed in, but your account is not allowed to open this page."
                    .into(),
                advice: "If you need access, ask the application's administrator to grant it. \
                         Signing in with another account may help.",
            },
            GatewayError::CrossSite => Explanation {
                title: "Request refused",
                message: "This request came from another site, so it was not carried out.".into(),
                advice: "Use the button on this site's own page instead.",
            },
            GatewayError::Login(LoginError::ProviderRefused { error, description }) => {
                Explanation {
                    title: "Sign-in was not completed",
                    message: match description {
                        Some(description) => format!(
                            "The identity provider ended the sign-in ({error}): {description}"
                        ),
                        None => format!("The identity provider ended the sign-in ({error})."),
                    },
                    advice: "Go back to the page you wanted and sign in again. If it keeps \
                             happening, contact support with the request id below.",
                }
            }
            GatewayError::Login(LoginError::UnknownState | LoginError::Expired) => Explanation {
                title: "Sign-in link expired",
                message: "This sign-in was already used, took too long, or was started in \
                          another browser."
                    .into(),
                advice: "Open the page you wanted again; you will be asked to sign in afresh.",
            },
            GatewayError::Login(
                LoginError::TokenEndpointUnreachable(_)
                | LoginError::Userinfo(UserinfoError::Unreachable(_)),
            ) => Explanation {
                title: "Identity provider unreachable",
                message: "Your sign-in could not be completed because the identity provider \
                          did not answer."
                    .into(),
                advice: "Wait a moment and try again.",
            },
            GatewayError::Login(LoginError::ClientRejected { .. }) => Explanation {
                title: "Sign-in is not set up correctly",
                message: "The identity provider did not accept this gateway's client \
                          credentials, so the sign-in could not finish."
                    .into(),
                advice: "This is not something you did. Tell the site's operator, quoting the \
                         request id below. Operators: check oidc.client_secret (for Descope, an \
                         access key of this project) and oidc.token_auth_method.",
            },
            GatewayError::Login(_) => Explanation {
                title: "Sign-in failed",
                message: "The answer from the identity provider could not be trusted, so no \
                          session was created."
                    .into(),
                advice: "Try signing in again. If it keeps happening, contact support with \
                         the request id below.",
            },
            GatewayError::Session(SessionError::Unavailable(_)) => Explanation {
                title: "Temporarily unavailable",
                message: "Sessions cannot be checked right now.".into(),
                advice: "Wait a moment and reload the page.",
            },
            GatewayError::Session(SessionError::Corrupt(_)) => Explanation {
                title: "Session unreadable",
                message: "Your session could not be read.".into(),
                advice: "Sign out and sign in again.",
            },
            GatewayError::ProviderNotReady => Explanation {
                title: "Sign-in unavailable",
                message: "The identity provider cannot be reached yet.".into(),
                advice: "Wait a moment and reload the page.",
            },
            GatewayError::Upstream(UpstreamError::ClientBody(what)) => Explanation {
                title: "Bad request",
                message: format!("The request's body could not be read: {what}."),
                advice: "Send the request again. If a page of this site sent it, tell the \
                         application's team, quoting the request id.",
            },
            GatewayError::Upstream(UpstreamError::ClientTimeout(after)) => Explanation {
                title: "Request timed out",
                message: format!(
                    "The request's body stopped arriving: nothing came for {} seconds.",
                    after.as_secs()
                ),
                advice: "Check the connection and send the request again.",
            },
            GatewayError::Upstream(
                UpstreamError::Timeout(_)
                | UpstreamError::ConnectTimeout(_)
                | UpstreamError::SendTimeout(_),
            ) => Explanation {
                title: "The application is too slow",
                message: "The application behind this page did not answer in time.".into(),
                advice: "Reload the page in a moment. If it persists, tell the application's \
                         team, quoting the request id.",
            },
            GatewayError::Upstream(UpstreamError::Certificate(reason)) => Explanation {
                title: "The application's certificate is not trusted",
                message: format!(
                    "The application behind this page could not be reached securely: portico \
                     refused its TLS certificate because {reason}."
                ),
                advice: "Tell the site's operator, quoting the request id: the upstream's \
                         certificate or portico's upstream_ca_file needs fixing.",
            },
            GatewayError::Refresh(RefreshError::Ended(_)) => Explanation {
                title: "Session ended",
                message: "The identity provider ended your session.".into(),
                advice: "Sign in again to continue.",
            },
            GatewayError::Refresh(_) => Explanation {
                title: "Temporarily unavailable",
                message: "Your session could not be renewed right now.".into(),
                advice: "Wait a moment and reload the page.",
            },
            GatewayError::TooLarge(Limit::Cookies) => Explanation {
                title: "Request too large",
                message: "Your browser sent more cookies for this site than it accepts.".into(),
                advice: "Clear this site's cookies, then reload the page.",
            },
            GatewayError::TooLarge(limit) => Explanation {
                title: "Request too large",
                message: format!("The request was refused: {limit}."),
                advice: "Send a smaller request. If a page of this site sent it, tell the \
                         application's team, quoting the request id.",
            },
            GatewayError::Upstream(_) => Explanation {
                title: "The application is unavailable",
                message: "The application behind this page could not be reached.".into(),
                advice: "Reload the page in a moment. If it persists, tell the application's \
                         team, quoting the request id.",
            },
        }
    }
}

/// An error with its sources, for logs (callers pass errors that carry no secrets).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
