//! The fleet's control plane: the operator's changes (mode, brake, allowlist)
//! as records on one compacted topic, so every instance applies the same
//! policy whichever pod the Service picked, and a restart keeps it.
//!
//! Each record is keyed by what it controls (`mode`, `brake`, `allowlist`,
//! `model-pin`;
//! compaction keeps the latest of each) and signed with HMAC-SHA256 under a
//! key derived from the admin credential: anyone who can change the policy
//! through the API can sign, and a record written to the topic by anyone
//! else (a leaked producer credential, a misrouted tool) is refused,
//! counted and logged, never applied. A forged "shadow" would otherwise
//! stop every revocation.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::brake::Held;
use super::policy::{Mode, Scope};
use crate::detect::Entry;
use crate::kafka::TopicWriter;

/// One change an operator (or a brake trip) made to the fleet's policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    Mode {
        mode: Mode,
    },
    /// `engaged`: a trip somewhere in the fleet holds revocations
    /// everywhere; false: an operator's reset, which acts on or drops the
    /// held revocations as `held` says (absent: dropped).
    Brake {
        engaged: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held: Option<Held>,
    },
    /// The whole list (small; a snapshot needs no ordering of edits).
    Allowlist {
        entries: Vec<Entry>,
    },
    /// The times (ms) of the revocations `instance` admitted in the brake's
    /// window, so the fleet counts against one limit (`respond/brake.rs`).
    BrakeCount {
        instance: String,
        admitted: Vec<i64>,
    },
    /// The mode of one tenant or client (None: lifted, the configuration's
    /// applies again).
    ScopedMode {
        scope: Scope,
        name: String,
        mode: Option<Mode>,
    },
    /// The model version every instance scores with (None: each its own
    /// file's); see `model/reload.rs`.
    ModelPin {
        version: Option<String>,
    },
}

impl Change {
    /// The record key: compaction keeps the latest change of each kind
    /// (and each instance's latest brake count).
    pub fn key(&self) -> String {
        match self {
            Change::Mode { .. } => "mode".into(),
            Change::Brake { .. } => "brake".into(),
            Change::Allowlist { .. } => "allowlist".into(),
            Change::BrakeCount { instance, .. } => format!("brake-count/{instance}"),
            Change::ModelPin { .. } => "model-pin".into(),
            Change::ScopedMode { scope, name, .. } => format!("mode/{}/{name}", scope.as_str()),
        }
    }
}

/// A change with when and by whom; `at_ms` orders changes and is the
/// version an instance reports once it applies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signed {
    #[serde(flatten)]
    pub change: Change,
    pub at_ms: i64,
    pub by: String,
}

/// The record as the topic carries it: the body's exact bytes and its MAC.
#[derive(Serialize, Deserialize)]
struct Envelope {
    body: String,
    mac: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ControlError {
    #[error("not a control record: {0}")]
    Malformed(String),
    #[error("the signature does not verify (not written by this fleet)")]
    BadSignature,
    #[error("the key says {key:?} but the change is a {kind:?}")]
    WrongKey { key: String, kind: String },
}

/// Signs and checks control records.
#[derive(Clone)]
pub struct ControlKey([u8; 32]);

impl std::fmt::Debug for ControlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlKey(<set>)")
    }
}

impl ControlKey {
    /// Derived from the admin credential, which every instance of a fleet
    /// shares (it is what authorises the same changes through the API).
    pub fn from_admin_token(token: &str) -> ControlKey {
        let mut h = Sha256::new();
        h.update(b"tokenwatch control plane v1\0");
        h.update(token.as_bytes());
        ControlKey(h.finalize().into())
    }

    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        m.update(body);
        m
    }

    pub fn seal(&self, s: &Signed) -> Vec<u8> {
        let body = serde_json::to_string(s).expect("a change serialises");
        let mac = B64.encode(self.mac(body.as_bytes()).finalize().into_bytes());
        serde_json::to_vec(&Envelope { body, mac }).expect("an envelope serialises")
    }

    /// The change in `payload` under `key`, if this fleet signed it.
    pub fn open(&self, key: &str, payload: &[u8]) -> Result<Signed, ControlError> {
        let env: Envelope =
            serde_json::from_slice(payload).map_err(|e| ControlError::Malformed(e.to_string()))?;
        let mac = B64
            .decode(&env.mac)
            .map_err(|_| ControlError::BadSignature)?;
        self.mac(env.body.as_bytes())
            .verify_slice(&mac)
            .map_err(|_| ControlError::BadSignature)?;
        let s: Signed =
            serde_json::from_str(&env.body).map_err(|e| ControlError::Malformed(e.to_string()))?;
        if s.change.key() != key {
            // A signed mode record replayed under another key would be
            // applied as that key's latest and outlive compaction.
            return Err(ControlError::WrongKey {
                key: key.to_owned(),
                kind: s.change.key(),
            });
        }
        Ok(s)
    }
}

/// Publishes changes to the control topic.
#[derive(Clone)]
pub struct ControlWriter {
    writer: TopicWriter,
    key: ControlKey,
}

impl ControlWriter {
    pub fn new(writer: TopicWriter, key: ControlKey) -> ControlWriter {
        ControlWriter { writer, key }
    }

    /// Waits for the broker's acknowledgement; returns what was written.
    pub async fn publish(
        &self,
        change: Change,
        by: &str,
        at_ms: i64,
    ) -> Result<Signed, rdkafka::error::KafkaError> {
        let s = Signed {
            change,
            at_ms,
            by: by.to_owned(),
        };
        let payload = self.key.seal(&s);
        self.writer
            .send(Some(s.change.key().as_bytes()), &payload)
            .await?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(m: Mode) -> Signed {
        Signed {
            change: Change::Mode { mode: m },
            at_ms: 5,
            by: "admin".into(),
        }
    }

    #[test]
    fn a_record_signed_by_the_fleet_opens_and_a_forged_one_does_not() {
        let k = ControlKey::from_admin_token("admin-secret");
        let rec = k.seal(&mode(Mode::Alert));
        assert_eq!(k.open("mode", &rec).unwrap(), mode(Mode::Alert));

        let other = ControlKey::from_admin_token("guess");
        let forged = other.seal(&mode(Mode::Shadow));
        assert_eq!(k.open("mode", &forged), Err(ControlError::BadSignature));

        // Tampering with the body breaks the MAC.
        let tampered = String::from_utf8(rec.clone())
            .unwrap()
            .replace("alert", "shadow");
        assert_eq!(
            k.open("mode", tampered.as_bytes()),
            Err(ControlError::BadSignature)
        );
        assert!(matches!(
            k.open("mode", b"{\"mode\":\"shadow\"}"),
            Err(ControlError::Malformed(_))
        ));
        assert!(matches!(
            k.open("brake", &rec),
            Err(ControlError::WrongKey { .. })
        ));
    }
}
