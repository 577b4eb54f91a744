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
use crate::decide;
use crate::detect::{Entry, EntryKind};
use crate::ingest::control::Fleet;
use crate::respond::{BrakeStatus, Change, Held, Mode, Signed};

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
    Fleet::apply(c, &s.service.allowlist.handle, &s.metrics, &signed);
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
}

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
    let entry = Entry {
        id,
        kind: n.kind,
        value: n.value,
        note: n.note,
        created_at_ms: now_ms(),
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

pub async fn model_reload(_: Admin, State(s): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    let handle = decide::lock(&s.service.detector).model().clone();
    let path = s.service.model_path.clone();
    let metrics = s.metrics.clone();
    // Reading and checking a model file is blocking work.
    let result =
        tokio::task::spawn_blocking(move || crate::model::reload(&handle, &path, &metrics))
            .await
            .map_err(|e| ApiError::unavailable(format!("reload task: {e}")))?;
    match result {
        Ok(version) => {
            audited(&s, "model_reload", serde_json::json!({"version": version})).await?;
            Ok(Json(Reloaded { version }))
        }
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "model",
            format!("{e}; the loaded model stays in use"),
        )),
    }
}

#[derive(Serialize)]
pub struct PolicyView {
    pub mode: Mode,
    pub brake: BrakeStatus,
    pub model_version: String,
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
    let model_version = decide::lock(&s.service.detector)
        .model()
        .load()
        .version()
        .to_owned();
    Json(PolicyView {
        mode: c.mode.get(),
        brake: c.brake.status(),
        model_version,
        tenant_modes: c.overrides.tenants.clone().into_iter().collect(),
        client_modes: c.overrides.clients.clone().into_iter().collect(),
        fleet: c.fleet.is_some(),
        control_version: c.version(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMode {
    pub mode: Mode,
}

pub async fn set_mode(
    _: Admin,
    State(s): State<AppState>,
    body: Result<Json<SetMode>, JsonRejection>,
) -> Result<Json<PolicyView>, ApiError> {
    let Json(m) = body?;
    let before = s.service.controls.mode.get();
    change(&s, Change::Mode { mode: m.mode }).await?;
    audited(
        &s,
        "mode_switch",
        serde_json::json!({"from": before, "to": m.mode}),
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
