//! Admin routes: the allowlist, the model, the response policy. Each needs
//! the admin credential. A change is applied, then audited, and reported
//! done only once the audit topic has it (an unreachable audit topic makes
//! the call fail with 503 although the change stands).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::allowlist::ChangeError;
use super::auth::{Admin, Reader};
use super::error::ApiError;
use super::AppState;
use crate::clock::now_ms;
use crate::detect::{Entry, EntryKind};
use crate::ingest::control::Fleet;
use crate::respond::{BrakeStatus, Change, Held, Mode, Scope, Signed};

/// Makes a change to the policy: with a control topic it is published first
/// (a change the fleet cannot hear is refused with 503 and not made here
/// either), then applied here at once; every other instance applies it as
/// it reads the topic, within a second.
async fn change(s: &AppState, change: Change) -> Result<(), ApiError> {
    let c = &s.service.controls;
    let now = now_ms();
    let signed = match &c.fleet {
        Some(f) => f
            .publish(change, "admin", now)
            .await
            .map_err(|e| ApiError::unavailable(format!("control topic: {e}; nothing changed")))?,
        None => Signed {
            change,
            at_ms: now,
            by: "admin".into(),
        },
    };
    Fleet::apply(
        c,
        &s.service.allowlist.handle,
        &s.service.model,
        &s.metrics,
        &signed,
    );
    Ok(())
}

/// The allowlist as it now stands here, to the fleet.
async fn share_allowlist(s: &AppState) -> Result<(), ApiError> {
    let entries = s.service.allowlist.handle.load().entries().to_vec();
    change(s, Change::Allowlist { entries }).await.map_err(|e| {
        ApiError::unavailable(format!(
            "{}; the change is in force on this instance only, retry it",
            e.message
        ))
    })
}

async fn audited(s: &AppState, action: &str, detail: serde_json::Value) -> Result<u64, ApiError> {
    s.service
        .flagger
        .audit
        .record("admin", action, None, detail)
        .await
        .map(|e| e.seq)
        .map_err(|e| ApiError::unavailable(format!("audit topic: {e}")))
}

pub async fn allowlist_list(_: Admin, State(s): State<AppState>) -> Json<Vec<Entry>> {
    Json(s.service.allowlist.handle.load().entries().to_vec())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// Chosen by the server when omitted.
    #[serde(default)]
    pub id: Option<String>,
    pub kind: EntryKind,
    pub value: String,
    #[serde(default)]
    pub note: String,
    /// Only this tenant's traffic.
    #[serde(default)]
    pub tenant: Option<String>,
    /// How long the entry excuses anything ("14d", "8h"); absent: until
    /// removed.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// The longest an entry may be given: a year (longer is "until removed").
const MAX_EXPIRY: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::Invalid(crate::detect::AllowlistError::DuplicateId(id)) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("an entry with id {id:?} already exists"),
        ),
        ChangeError::Invalid(e) => ApiError::bad_request("value", e.to_string()),
        ChangeError::NotFound(id) => ApiError::not_found(format!("no allowlist entry {id:?}")),
        ChangeError::File(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("{e}; the allowlist was not changed"),
        ),
    }
}

pub async fn allowlist_add(
    _: Admin,
    State(s): State<AppState>,
    body: Result<Json<NewEntry>, JsonRejection>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let Json(n) = body?;
    let id = match n.id {
        Some(id) if id.trim().is_empty() || id.len() > 128 => {
            return Err(ApiError::bad_request(
                "id",
                "`id` must be 1 to 128 characters",
            ))
        }
        Some(id) => id,
        None => format!("al-{:016x}", rand::random::<u64>()),
    };
    if n.tenant
        .as_ref()
        .is_some_and(|t| t.trim().is_empty() || t.len() > 128)
    {
        return Err(ApiError::bad_request(
            "tenant",
            "`tenant` must be 1 to 128 characters",
        ));
    }
    let now = now_ms();
    let expires_at_ms = match n.expires_in.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(d)) if (std::time::Duration::from_secs(60)..=MAX_EXPIRY).contains(&d) => {
            Some(now + d.as_millis() as i64)
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "expires_in",
                "`expires_in` must be a duration from 1m to 365d, such as \"14d\"",
            ))
        }
    };
    let entry = Entry {
        id,
        kind: n.kind,
        value: n.value,
        note: n.note,
        created_at_ms: now,
        tenant: n.tenant,
        expires_at_ms,
    };
    let added = s.service.allowlist.add(entry).await.map_err(change_error)?;
    s.metrics
        .allowlist_entries
        .set(s.service.allowlist.handle.load().entries().len() as i64);
    share_allowlist(&s).await?;
    audited(
        &s,
        "allowlist_add",
        serde_json::to_value(&added).expect("entry"),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(added)))
}

pub async fn allowlist_remove(
    _: Admin,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let removed = s
        .service
        .allowlist
        .remove(&id)
        .await
        .map_err(change_error)?;
    s.metrics
        .allowlist_entries
        .set(s.service.allowlist.handle.load().entries().len() as i64);
    share_allowlist(&s).await?;
    audited(
        &s,
        "allowlist_remove",
        serde_json::to_value(&removed).expect("entry"),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct Reloaded {
    pub version: String,
}

/// Reads the model file again. With a control topic the fleet is then
/// pinned to the version loaded here: every instance loads it from its own
/// file, or reports that its file holds another (`/v1/policy`).
pub async fn model_reload(_: Admin, State(s): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    let (src, metrics) = (s.service.model.clone(), s.metrics.clone());
    let fleet = s.service.controls.fleet.is_some();
    // Reading and checking a model file is blocking work.
    let result = tokio::task::spawn_blocking(move || {
        if fleet {
            src.reload_and_pin(&metrics)
        } else {
            src.reload(&metrics)
        }
    })
    .await
    .map_err(|e| ApiError::unavailable(format!("reload task: {e}")))?;
    let version = result.map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model",
            format!("{e}; the loaded model stays in use"),
        )
    })?;
    if fleet {
        let pin = Change::ModelPin {
            version: Some(version.clone()),
        };
        change(&s, pin).await.map_err(|e| {
            ApiError::unavailable(format!(
                "{}; the model is in force on this instance only, retry it",
                e.message
            ))
        })?;
    }
    audited(&s, "model_reload", serde_json::json!({"version": version})).await?;
    Ok(Json(Reloaded { version }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPin {
    /// null: no pin, each instance scores with its own file's model.
    pub version: Option<String>,
}

/// Pins the fleet to a model version (or lifts the pin), for example back
/// to the previous version while a bad model file is rolled back.
pub async fn set_model_pin(
    _: Admin,
    State(s): State<AppState>,
    body: Result<Json<SetPin>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let Json(p) = body?;
    if p.version
        .as_ref()
        .is_some_and(|v| v.trim().is_empty() || v.len() > 128)
    {
        return Err(ApiError::bad_request(
            "version",
            "`version` must be 1 to 128 characters, or null",
        ));
    }
    if s.service.controls.fleet.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_fleet",
            "a pin needs the control topic (set http.admin_token); reload the model instead",
        ));
    }
    let before = s.service.model.pin();
    change(
        &s,
        Change::ModelPin {
            version: p.version.clone(),
        },
    )
    .await?;
    audited(
        &s,
        "model_pin",
        serde_json::json!({"from": before, "to": p.version}),
    )
    .await?;
    Ok(policy(Reader, State(s)).await)
}

#[derive(Serialize)]
pub struct PolicyView {
    pub mode: Mode,
    pub brake: BrakeStatus,
    pub model_version: String,
    /// The version the fleet pinned (null: none), and whether the model
    /// loaded here is it.
    pub model_pin: Option<String>,
    pub model_pin_in_force: bool,
    /// Per-tenant and per-client modes (never less cautious than `mode`).
    pub tenant_modes: std::collections::BTreeMap<String, Mode>,
    pub client_modes: std::collections::BTreeMap<String, Mode>,
    /// Changes reach every instance through the control topic.
    pub fleet: bool,
    /// Time (ms) of the latest control change applied here: equal on every
    /// instance once they agree.
    pub control_version: i64,
}

pub async fn policy(_: Reader, State(s): State<AppState>) -> Json<PolicyView> {
    let c = &s.service.controls;
    let m = &s.service.model;
    let overrides = c.overrides_in_force();
    Json(PolicyView {
        mode: c.mode.get(),
        brake: c.brake.status(),
        model_version: m.loaded_version(),
        model_pin: m.pin(),
        model_pin_in_force: m.in_force(),
        tenant_modes: overrides.tenants.into_iter().collect(),
        client_modes: overrides.clients.into_iter().collect(),
        fleet: c.fleet.is_some(),
        control_version: c.version(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMode {
    /// null only with `tenant` or `client`: lifts that override.
    pub mode: Option<Mode>,
    /// The mode of this tenant's tokens only.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The mode of this OAuth client's tokens only (before its tenant's).
    #[serde(default)]
    pub client: Option<String>,
}

pub async fn set_mode(
    _: Admin,
    State(s): State<AppState>,
    body: Result<Json<SetMode>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let Json(m) = body?;
    let scoped = match (m.tenant, m.client) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "tenant",
                "give `tenant` or `client`, not both",
            ))
        }
        (Some(t), None) => Some((Scope::Tenant, t)),
        (None, Some(c)) => Some((Scope::Client, c)),
        (None, None) => None,
    };
    let Some((scope, name)) = scoped else {
        let Some(mode) = m.mode else {
            return Err(ApiError::bad_request(
                "mode",
                "`mode` may be null only with `tenant` or `client`",
            ));
        };
        let before = s.service.controls.mode.get();
        change(&s, Change::Mode { mode }).await?;
        audited(
            &s,
            "mode_switch",
            serde_json::json!({"from": before, "to": mode}),
        )
        .await?;
        return Ok(policy(Reader, State(s)).await);
    };
    if name.trim().is_empty() || name.len() > 128 {
        return Err(ApiError::bad_request(
            scope.as_str(),
            format!("`{}` must be 1 to 128 characters", scope.as_str()),
        ));
    }
    let change_ = Change::ScopedMode {
        scope,
        name: name.clone(),
        mode: m.mode,
    };
    change(&s, change_).await?;
    audited(
        &s,
        "mode_switch",
        serde_json::json!({scope.as_str(): name, "to": m.mode}),
    )
    .await?;
    Ok(policy(Reader, State(s)).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    /// What to do with the revocations the brake held: no default, the
    /// operator says whether the flood was real.
    pub held: Held,
}

pub async fn reset_brake(
    _: Admin,
    State(s): State<AppState>,
    body: Result<Json<Reset>, JsonRejection>,
) -> Result<Json<BrakeStatus>, ApiError> {
    let Json(r) = body?;
    let before = s.service.controls.brake.status();
    change(
        &s,
        Change::Brake {
            engaged: false,
            held: Some(r.held),
        },
    )
    .await?;
    let after = s.service.controls.brake.status();
    audited(
        &s,
        "brake_reset",
        serde_json::json!({"was_engaged": before.engaged, "held": before.held, "held_decisions": r.held}),
    )
    .await?;
    Ok(Json(after))
}
