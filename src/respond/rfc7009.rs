//! OAuth 2.0 Token Revocation (RFC 7009) client.
//!
//! A form POST of `token` and `token_type_hint` with client authentication
//! (`client_secret_basic` or `client_secret_post`). 200 is success (§2.2 —
//! note a server also answers 200 for a token it does not know, which is why
//! only a real token value, opened from a sealed handle, is ever sent).
//! Retries follow `http::RetryPolicy`.

use serde::Deserialize;

use super::http::{self, CallError, RetryPolicy};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    ClientSecretBasic,
    ClientSecretPost,
}

#[derive(Clone, Debug)]
pub struct Rfc7009Params {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth: ClientAuth,
    pub retry: RetryPolicy,
}

#[derive(Clone)]
pub struct Rfc7009Client {
    http: reqwest::Client,
    p: Rfc7009Params,
}

impl Rfc7009Client {
    pub fn new(p: Rfc7009Params) -> Result<Rfc7009Client, reqwest::Error> {
        Ok(Rfc7009Client {
            http: p.retry.client()?,
            p,
        })
    }

    /// Revokes `token`; returns how many attempts it took. `idempotency` is
    /// the `Idempotency-Key` header's value ([`http::idempotency_value`]).
    pub async fn revoke(
        &self,
        token: &str,
        hint: &str,
        idempotency: &str,
    ) -> Result<u32, CallError> {
        self.p
            .retry
            .run(|| self.call_once(token, hint, idempotency))
            .await
    }

    async fn call_once(&self, token: &str, hint: &str, idempotency: &str) -> Result<(), CallError> {
        let mut form: Vec<(&str, &str)> = vec![("token", token), ("token_type_hint", hint)];
        let mut req = self
            .http
            .post(&self.p.url)
            .header(http::IDEMPOTENCY_KEY, idempotency);
        match self.p.auth {
            ClientAuth::ClientSecretBasic => {
                req = req.basic_auth(
                    form_encode(&self.p.client_id),
                    Some(form_encode(&self.p.client_secret)),
                );
            }
            ClientAuth::ClientSecretPost => {
                form.push(("client_id", &self.p.client_id));
                form.push(("client_secret", &self.p.client_secret));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        http::send(
            req.header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body),
        )
        .await
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded before Basic auth.
pub(crate) fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
