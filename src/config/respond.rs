//! `[respond]`: the response policy and every target the revoker may call.

use std::time::Duration;

use base64::Engine;

use super::raw_respond::{RawAlertFormat, RawLogout, RawRespond};
use super::{invalid, non_empty, ConfigError};
use crate::respond::{
    AlertFormat, BrakeLimits, LogoutAuth, LogoutParams, Mode, Overrides, Persistence, RetryPolicy,
    Rfc7009Params, WebhookParams, PLACEHOLDERS, RESERVED,
};
use crate::seal::{SealError, Sealer};

#[derive(Debug, Clone)]
pub struct RespondConfig {
    pub mode: Mode,
    pub sealer: Option<Sealer>,
    pub rfc7009: Option<Rfc7009Params>,
    pub logouts: Vec<LogoutParams>,
    /// `Some(max_ttl)` when the denylist is on.
    pub denylist: Option<Duration>,
    pub alerts: Option<AlertFormat>,
    pub webhooks: Vec<WebhookParams>,
    pub brake: BrakeLimits,
    pub retry: Persistence,
    pub overrides: Overrides,
}

impl std::fmt::Debug for AlertFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AlertFormat::Json => f.write_str("Json"),
            AlertFormat::Set { issuer, .. } => {
                write!(f, "Set {{ issuer: {issuer:?}, key: <set> }}")
            }
        }
    }
}

fn http_url(key: &str, v: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(v).map_err(|e| invalid(key, e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(key, "must be an http(s) URL"));
    }
    Ok(v.to_owned())
}

fn retry(
    key: &str,
    timeout: Option<Duration>,
    max_retries: Option<usize>,
) -> Result<RetryPolicy, ConfigError> {
    let d = RetryPolicy::default();
    let timeout = timeout.unwrap_or(d.timeout);
    if timeout.is_zero() {
        return Err(invalid(
            format!("{key}.timeout"),
            "must be greater than zero",
        ));
    }
    Ok(RetryPolicy {
        timeout,
        max_retries: max_retries.unwrap_or(d.max_retries),
        ..d
    })
}

impl RawLogout {
    fn validate(&self, i: usize, names: &mut Vec<String>) -> Result<LogoutParams, ConfigError> {
        let key = |k: &str| format!("respond.subject_logout[{i}].{k}");
        let name = non_empty(&key("name"), &self.name)?;
        if names.contains(&name) || RESERVED.contains(&name.as_str()) {
            return Err(invalid(
                key("name"),
                format!("{name:?} is already the name of another target"),
            ));
        }
        names.push(name.clone());
        let (method, url) = match (self.preset, &self.url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key("url"),
                    "give either `preset` with `base_url`, or `url`, not both",
                ))
            }
            (Some(p), None) => {
                http_url(&key("base_url"), &self.base_url)?;
                p.method_and_url(&self.base_url, self.realm.as_deref())
                    .map_err(|e| invalid(key("realm"), e))?
            }
            (None, Some(url)) => {
                let method = self.method.as_deref().unwrap_or("POST");
                let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| {
                        invalid(key("method"), format!("{method:?} is not an HTTP method"))
                    })?;
                // The template must parse as a URL once its placeholders are filled.
                let probe = PLACEHOLDERS
                    .iter()
                    .fold(url.clone(), |u, ph| u.replace(ph, "x"));
                http_url(&key("url"), &probe)?;
                (method, url.clone())
            }
            (None, None) => {
                return Err(invalid(
                    key("url"),
                    "give `preset` with `base_url`, or `url`",
                ))
            }
        };
        if !url.contains("{sub}") && !self.body.as_deref().unwrap_or("").contains("{sub}") {
            return Err(invalid(
                key("url"),
                "the action must name the subject with {sub}",
            ));
        }
        let auth = match (&self.bearer_token, &self.client_credentials) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key("bearer_token"),
                    "give bearer_token or client_credentials, not both",
                ))
            }
            (Some(t), None) => LogoutAuth::Bearer(non_empty(&key("bearer_token"), t)?),
            (None, Some(c)) => LogoutAuth::ClientCredentials {
                token_url: http_url(&key("client_credentials.token_url"), &c.token_url)?,
                client_id: non_empty(&key("client_credentials.client_id"), &c.client_id)?,
                client_secret: non_empty(
                    &key("client_credentials.client_secret"),
                    &c.client_secret,
                )?,
                scope: c.scope.clone(),
            },
            (None, None) => LogoutAuth::None,
        };
        Ok(LogoutParams {
            name,
            method,
            url,
            headers: self.headers.clone().into_iter().collect(),
            body: self.body.clone(),
            auth,
            retry: retry(
                &format!("respond.subject_logout[{i}]"),
                self.timeout,
                self.max_retries,
            )?,
        })
    }
}

impl RawRespond {
    pub(super) fn validate(&self) -> Result<RespondConfig, ConfigError> {
        let r = self;
        let sealer = if r.seal_keys.is_empty() {
            None
        } else {
            let mut order: Vec<&str> = r.seal_key_order.iter().map(String::as_str).collect();
            for kid in r.seal_keys.keys() {
                if !order.contains(&kid.as_str()) {
                    order.push(kid);
                }
            }
            if let Some(missing) = order.iter().find(|kid| !r.seal_keys.contains_key(**kid)) {
                return Err(invalid(
                    "respond.seal_key_order",
                    format!("key id {missing:?} is not in respond.seal_keys"),
                ));
            }
            let keys = order.iter().map(|kid| (*kid, r.seal_keys[*kid].as_str()));
            Some(
                Sealer::new(keys)
                    .map_err(|e: SealError| invalid("respond.seal_keys", e.to_string()))?,
            )
        };
        let rfc7009 = match &r.rfc7009 {
            None => None,
            Some(x) => Some(Rfc7009Params {
                url: http_url("respond.rfc7009.url", &x.url)?,
                client_id: non_empty("respond.rfc7009.client_id", &x.client_id)?,
                client_secret: x.client_secret.clone(),
                auth: x.auth,
                retry: retry("respond.rfc7009", Some(x.timeout), Some(x.max_retries))?,
            }),
        };
        if r.mode == Mode::Revoke && rfc7009.is_some() && sealer.is_none() {
            return Err(invalid(
                "respond.seal_keys",
                "revoke mode with an RFC 7009 endpoint needs seal keys to open token handles",
            ));
        }
        let mut names = Vec::new();
        let logouts = r
            .subject_logout
            .iter()
            .enumerate()
            .map(|(i, l)| l.validate(i, &mut names))
            .collect::<Result<Vec<_>, _>>()?;
        let webhooks = r
            .webhook
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let key = |k: &str| format!("respond.webhook[{i}].{k}");
                let name = non_empty(&key("name"), &w.name)?;
                if names.contains(&name) || RESERVED.contains(&name.as_str()) {
                    return Err(invalid(
                        key("name"),
                        format!("{name:?} is already the name of another target"),
                    ));
                }
                names.push(name.clone());
                if w.secret.len() < 16 {
                    return Err(invalid(key("secret"), "must be at least 16 bytes"));
                }
                Ok(WebhookParams {
                    name,
                    url: http_url(&key("url"), &w.url)?,
                    secret: w.secret.as_bytes().to_vec(),
                    retry: retry(&format!("respond.webhook[{i}]"), w.timeout, w.max_retries)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let denylist = if r.denylist.enabled {
            if r.denylist.max_ttl < Duration::from_secs(60) {
                return Err(invalid("respond.denylist.max_ttl", "must be at least 1m"));
            }
            Some(r.denylist.max_ttl)
        } else {
            None
        };
        let a = &r.alerts;
        let alerts = match (a.enabled, &a.format) {
            (false, _) => None,
            (true, RawAlertFormat::Json) => Some(AlertFormat::Json),
            (true, RawAlertFormat::Set) => {
                let key = base64::engine::general_purpose::STANDARD
                    .decode(a.set_key.trim())
                    .map_err(|e| invalid("respond.alerts.set_key", format!("not base64: {e}")))?;
                if key.len() < 32 {
                    return Err(invalid(
                        "respond.alerts.set_key",
                        "must be at least 32 bytes",
                    ));
                }
                Some(AlertFormat::Set {
                    issuer: non_empty("respond.alerts.set_issuer", &a.set_issuer)?,
                    audience: a.set_audience.clone(),
                    key,
                })
            }
        };
        let b = &r.brake;
        if b.max_revocations == 0 {
            return Err(invalid(
                "respond.brake.max_revocations",
                "must be at least 1 (use mode = \"alert\" to revoke nothing)",
            ));
        }
        if b.window.is_zero() {
            return Err(invalid("respond.brake.window", "must be greater than zero"));
        }
        if !(b.max_active_fraction.is_finite() && (0.0..=1.0).contains(&b.max_active_fraction)) {
            return Err(invalid(
                "respond.brake.max_active_fraction",
                "must be between 0 and 1",
            ));
        }
        if r.retry.max_backoff.is_zero() {
            return Err(invalid(
                "respond.retry.max_backoff",
                "must be greater than zero",
            ));
        }
        if r.retry.budget > Duration::from_secs(7 * 24 * 3600) {
            return Err(invalid(
                "respond.retry.budget",
                "must be at most a week (the decision log keeps the rest waiting)",
            ));
        }
        Ok(RespondConfig {
            mode: r.mode,
            sealer,
            rfc7009,
            logouts,
            denylist,
            alerts,
            webhooks,
            brake: BrakeLimits {
                max_revocations: b.max_revocations,
                window: b.window,
                per_tenant: (b.per_tenant > 0).then_some(b.per_tenant),
                max_active_fraction: (b.max_active_fraction > 0.0).then_some(b.max_active_fraction),
            },
            retry: Persistence {
                budget: r.retry.budget,
                max_backoff: r.retry.max_backoff,
            },
            overrides: Overrides {
                tenants: r.tenant_modes.clone().into_iter().collect(),
                clients: r.client_modes.clone().into_iter().collect(),
            },
        })
    }
}
