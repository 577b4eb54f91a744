//! Subject logout: ends every session of the token's subject at the IdP
//! (what Entra CAE and Okta Universal Logout do), for tokens whose value
//! tokenwatch never sees. One HTTP action template — method, URL, headers,
//! body with `{sub}`, `{tenant}`, `{client_id}` — with presets for Keycloak,
//! Okta and Microsoft Graph, credentials by OAuth 2.0 client credentials or
//! a static bearer.
//!
//! An IdP that answers 404 for the subject has logged nobody out: that is a
//! permanent failure, never a success.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::http::{self, CallError, RetryPolicy};

#[derive(Clone, Debug)]
pub struct LogoutParams {
    /// Names the target in metrics, audit and configuration.
    pub name: String,
    pub method: reqwest::Method,
    /// URL template; placeholders are percent-encoded as path segments.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Body template; placeholders are JSON-string-escaped.
    pub body: Option<String>,
    pub auth: LogoutAuth,
    pub retry: RetryPolicy,
}

#[derive(Clone)]
pub enum LogoutAuth {
    None,
    Bearer(String),
    ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

impl std::fmt::Debug for LogoutAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogoutAuth::None => f.write_str("None"),
            LogoutAuth::Bearer(_) => f.write_str("Bearer(<set>)"),
            LogoutAuth::ClientCredentials {
                token_url,
                client_id,
                ..
            } => f
                .debug_struct("ClientCredentials")
                .field("token_url", token_url)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

/// The values a template may name.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub sub: &'a str,
    pub tenant: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

/// Placeholders a template may use.
pub const PLACEHOLDERS: [&str; 3] = ["{sub}", "{tenant}", "{client_id}"];

#[derive(Copy, Clone)]
enum Escape {
    PathSegment,
    JsonString,
}

/// Fills `template`; fails when it names a value the subject lacks, since a
/// call with an empty tenant or subject would log out the wrong thing or
/// nothing.
fn expand(template: &str, s: Subject<'_>, escape: Escape) -> Result<String, CallError> {
    let mut out = template.to_owned();
    for (ph, value) in [
        ("{sub}", Some(s.sub).filter(|v| !v.is_empty())),
        ("{tenant}", s.tenant),
        ("{client_id}", s.client_id),
    ] {
        if !out.contains(ph) {
            continue;
        }
        let Some(v) = value else {
            return Err(CallError::Impossible(format!(
                "the template needs {ph} and the decision has none"
            )));
        };
        let v = match escape {
            Escape::PathSegment => {
                url::form_urlencoded::byte_serialize(v.as_bytes())
                    .collect::<String>()
                    // form encoding writes spaces as '+', which a path keeps literally.
                    .replace('+', "%20")
            }
            Escape::JsonString => {
                let quoted = serde_json::to_string(v).expect("a string serialises");
                quoted[1..quoted.len() - 1].to_owned()
            }
        };
        out = out.replace(ph, &v);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

pub struct SubjectLogout {
    http: reqwest::Client,
    p: LogoutParams,
    /// The client-credentials access token and when to stop using it.
    cached: Mutex<Option<(String, Instant)>>,
}

impl SubjectLogout {
    pub fn new(p: LogoutParams) -> Result<SubjectLogout, reqwest::Error> {
        Ok(SubjectLogout {
            http: p.retry.client()?,
            p,
            cached: Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.p.name
    }

    /// Logs the subject out; returns how many attempts it took.
    /// `idempotency`: the `Idempotency-Key` header's value.
    pub async fn logout(&self, s: Subject<'_>, idempotency: &str) -> Result<u32, CallError> {
        let url = expand(&self.p.url, s, Escape::PathSegment)?;
        let body = match &self.p.body {
            Some(b) => Some(expand(b, s, Escape::JsonString)?),
            None => None,
        };
        self.p
            .retry
            .run(|| self.call_once(&url, body.as_deref(), idempotency))
            .await
    }

    async fn call_once(
        &self,
        url: &str,
        body: Option<&str>,
        idempotency: &str,
    ) -> Result<(), CallError> {
        let mut req = self
            .http
            .request(self.p.method.clone(), url)
            .header(http::IDEMPOTENCY_KEY, idempotency);
        for (k, v) in &self.p.headers {
            req = req.header(k, v);
        }
        match &self.p.auth {
            LogoutAuth::None => {}
            LogoutAuth::Bearer(t) => req = req.bearer_auth(t),
            LogoutAuth::ClientCredentials { .. } => {
                req = req.bearer_auth(self.access_token().await?)
            }
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_owned());
        }
        let result = http::send(req).await;
        let renewable = matches!(self.p.auth, LogoutAuth::ClientCredentials { .. });
        if renewable && matches!(result, Err(CallError::Permanent { status: 401, .. })) {
            // The IdP may have revoked our own token early; fetch a new one
            // on the next attempt, and let the retry policy make it.
            *self.cached.lock().await = None;
            return Err(CallError::Retryable { status: 401 });
        }
        result
    }

    async fn access_token(&self) -> Result<String, CallError> {
        let LogoutAuth::ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } = &self.p.auth
        else {
            unreachable!("only called for client credentials");
        };
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = cached.as_ref() {
            if Instant::now() < *until {
                return Ok(t.clone());
            }
        }
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let resp = self
            .http
            .post(token_url)
            .basic_auth(
                super::rfc7009::form_encode(client_id),
                Some(super::rfc7009::form_encode(client_secret)),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
            .map_err(http::transport)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(match status {
                429 | 500..=599 => CallError::Retryable { status },
                _ => CallError::Permanent {
                    status,
                    body: "token endpoint refused the client credentials".into(),
                },
            });
        }
        let t: TokenResponse = resp.json().await.map_err(http::transport)?;
        // Renew a little early so a token never expires mid-call.
        let life = Duration::from_secs(t.expires_in.unwrap_or(300).saturating_sub(30).max(1));
        *cached = Some((t.access_token.clone(), Instant::now() + life));
        Ok(t.access_token)
    }
}

/// The documented presets: what each IdP's admin API needs to end a
/// subject's sessions. `base_url` is the IdP's origin; `realm` is
/// Keycloak's realm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// `POST {base}/admin/realms/{realm}/users/{sub}/logout` — `sub` of a
    /// Keycloak access token is the user id.
    Keycloak,
    /// `DELETE {base}/api/v1/users/{sub}/sessions?oauthTokens=true` — clears
    /// sessions and revokes the user's OAuth tokens. Okta access tokens put
    /// the user id in `uid`; map it to telemetry's `sub`.
    Okta,
    /// `POST {base}/v1.0/users/{sub}/revokeSignInSessions` — the user's
    /// object id (`oid`) or UPN as `sub`.
    Graph,
}

impl Preset {
    pub fn method_and_url(
        self,
        base: &str,
        realm: Option<&str>,
    ) -> Result<(reqwest::Method, String), String> {
        let base = base.trim_end_matches('/');
        Ok(match self {
            Preset::Keycloak => {
                let realm = realm.ok_or("the keycloak preset needs `realm`")?;
                (
                    reqwest::Method::POST,
                    format!("{base}/admin/realms/{realm}/users/{{sub}}/logout"),
                )
            }
            Preset::Okta => (
                reqwest::Method::DELETE,
                format!("{base}/api/v1/users/{{sub}}/sessions?oauthTokens=true"),
            ),
            Preset::Graph => (
                reqwest::Method::POST,
                format!("{base}/v1.0/users/{{sub}}/revokeSignInSessions"),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject<'a>(sub: &'a str, tenant: Option<&'a str>) -> Subject<'a> {
        Subject {
            sub,
            tenant,
            client_id: None,
        }
    }

    #[test]
    fn placeholders_are_escaped_for_where_they_stand() {
        let url = expand(
            "https://idp/t/{tenant}/users/{sub}",
            subject("a/b c", Some("acme")),
            Escape::PathSegment,
        )
        .unwrap();
        assert_eq!(url, "https://idp/t/acme/users/a%2Fb%20c");
        let body = expand(
            r#"{"user":"{sub}"}"#,
            subject("x\"y", None),
            Escape::JsonString,
        )
        .unwrap();
        assert_eq!(body, r#"{"user":"x\"y"}"#);
        serde_json::from_str::<serde_json::Value>(&body).unwrap();
    }

    #[test]
    fn a_template_naming_a_missing_value_cannot_be_called() {
        let e = expand(
            "https://idp/{tenant}/{sub}",
            subject("alice", None),
            Escape::PathSegment,
        )
        .unwrap_err();
        assert!(matches!(e, CallError::Impossible(_)), "{e:?}");
        assert!(!e.retryable());
        let e = expand("https://idp/{sub}", subject("", None), Escape::PathSegment).unwrap_err();
        assert!(matches!(e, CallError::Impossible(_)));
    }

    #[test]
    fn presets_name_the_documented_admin_calls() {
        let (m, u) = Preset::Keycloak
            .method_and_url("https://kc.example/", Some("acme"))
            .unwrap();
        assert_eq!(
            (m, u.as_str()),
            (
                reqwest::Method::POST,
                "https://kc.example/admin/realms/acme/users/{sub}/logout"
            )
        );
        assert!(Preset::Keycloak.method_and_url("https://kc", None).is_err());
        let (m, u) = Preset::Okta
            .method_and_url("https://acme.okta.com", None)
            .unwrap();
        assert_eq!(
            (m, u.as_str()),
            (
                reqwest::Method::DELETE,
                "https://acme.okta.com/api/v1/users/{sub}/sessions?oauthTokens=true"
            )
        );
        let (m, u) = Preset::Graph
            .method_and_url("https://graph.microsoft.com", None)
            .unwrap();
        assert_eq!(
            (m, u.as_str()),
            (
                reqwest::Method::POST,
                "https://graph.microsoft.com/v1.0/users/{sub}/revokeSignInSessions"
            )
        );
    }
}
