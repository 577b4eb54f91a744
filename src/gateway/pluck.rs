//! Reads only the fields a [`FieldMap`] points at, in one pass over the
//! record, borrowing strings from the buffer and skipping everything else
//! without building it. Building a whole `serde_json::Value` tree for a
//! 1 KB access-log line cost more than the rest of normalization together
//! (benches/normalize.rs).

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// One plucked value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    /// An object or array (a logged JWT payload).
    Tree(Value),
    Other,
}

impl<'a> Scalar<'a> {
    /// Text of a string or a number.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Scalar::Str(s) => Some(Cow::Borrowed(s.as_ref())),
            Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
            Scalar::Float(f) => Some(Cow::Owned(f.to_string())),
            _ => None,
        }
    }

    /// Text of a string or a number, as long-lived as the record when it
    /// is borrowed from it.
    pub fn to_text(&self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(Cow::Borrowed(s)) => Some(Cow::Borrowed(s)),
            s => s.text().map(|t| Cow::Owned(t.into_owned())),
        }
    }

    /// Text of a string or a number, keeping a borrowed string borrowed.
    pub fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s),
            Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
            Scalar::Float(f) => Some(Cow::Owned(f.to_string())),
            _ => None,
        }
    }

    /// A number, or a string holding one (gateways often quote numbers).
    pub fn number(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
        .filter(|x: &f64| x.is_finite())
    }

    pub fn integer(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            _ => self
                .number()
                .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
                .map(|x| x as i64),
        }
    }
}

/// Which keys lead where: built once per format from its JSON pointers.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    // Keys as bytes: matching them never needs UTF-8.
    children: Vec<(Box<[u8]>, Step)>,
}

#[derive(Debug, Clone)]
enum Step {
    Leaf(usize),
    Branch(Plan),
}

/// RFC 6901 reference tokens of `pointer`, unescaped.
fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

impl Plan {
    /// A plan that fills `slot i` from `pointers[i]`. A pointer that runs
    /// through another's leaf is dropped (that field is never found).
    pub fn new(pointers: &[Option<&str>]) -> Plan {
        let mut root = Plan::default();
        for (slot, p) in pointers.iter().enumerate() {
            if let Some(p) = p {
                root.insert(&tokens(p), slot);
            }
        }
        root
    }

    fn insert(&mut self, path: &[String], slot: usize) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let at = match self
            .children
            .iter()
            .position(|(k, _)| **k == *first.as_bytes())
        {
            Some(i) => i,
            None => {
                let step = if rest.is_empty() {
                    Step::Leaf(slot)
                } else {
                    Step::Branch(Plan::default())
                };
                self.children.push((first.as_bytes().into(), step));
                self.children.len() - 1
            }
        };
        if let Step::Branch(p) = &mut self.children[at].1 {
            p.insert(rest, slot);
        }
    }

    fn step(&self, key: &[u8]) -> Option<&Step> {
        // Length and last byte first: most of a record's keys are not in
        // the plan, and this spares them a call to memcmp.
        self.children
            .iter()
            .find(|(k, _)| k.len() == key.len() && k.last() == key.last() && **k == *key)
            .map(|(_, s)| s)
    }

    /// Plucks the planned fields of the JSON object in `record` into
    /// `slots`; Err for invalid JSON or a record that is not an object.
    /// Text rather than bytes: UTF-8 checked once over the whole record
    /// costs less than serde_json checking each string it reads.
    pub fn pluck<'a>(
        &self,
        record: &'a str,
        slots: &mut [Option<Scalar<'a>>],
    ) -> Result<(), serde_json::Error> {
        let mut de = serde_json::Deserializer::from_str(record);
        let is_object = Root { plan: self, slots }.deserialize(&mut de)?;
        de.end()?;
        if is_object {
            Ok(())
        } else {
            Err(serde::de::Error::custom("not a JSON object"))
        }
    }
}

/// A key's bytes, unescaped, borrowed when it has no escapes. Read as a
/// string: the record is already known to be UTF-8, and serde_json's string
/// scan costs less on short keys than its byte scan's call to `memchr2`.
struct Key<'a>(Cow<'a, [u8]>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.as_bytes().to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
                Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Scalar::Tree)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
                Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(Scalar::Tree)
            }
        }
        d.deserialize_any(V)
    }
}

/// The record itself: true if it was an object.
struct Root<'p, 's, 'a> {
    plan: &'p Plan,
    slots: &'s mut [Option<Scalar<'a>>],
}

impl<'de, 'p, 's> DeserializeSeed<'de> for Root<'p, 's, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Walk {
            plan: self.plan,
            slots: self.slots,
        })
    }
}

/// Walks one object level; anything that is not an object is skipped.
struct Walk<'p, 's, 'a> {
    plan: &'p Plan,
    slots: &'s mut [Option<Scalar<'a>>],
}

impl<'de, 'p, 's> Visitor<'de> for Walk<'p, 's, 'de> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match self.plan.step(&k) {
                Some(Step::Leaf(slot)) => {
                    self.slots[*slot] = Some(map.next_value::<Scalar<'de>>()?);
                }
                Some(Step::Branch(p)) => {
                    map.next_value_seed(Root {
                        plan: p,
                        slots: &mut *self.slots,
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn via_value<'v>(v: &'v Value, p: &str) -> Option<&'v Value> {
        v.pointer(p)
    }

    #[test]
    fn plucks_nested_and_escaped_pointers_and_skips_the_rest() {
        let plan = Plan::new(&[
            Some("/a"),
            Some("/b/c"),
            Some("/b/d~1e"),
            Some("/missing"),
            None,
        ]);
        let rec = r#"{"z":[1,{"a":2}],"a":"x\"y","b":{"c":7,"d/e":1.5,"f":{"g":1}},"a2":null}"#;
        let mut slots = vec![None; 5];
        plan.pluck(rec, &mut slots).unwrap();
        assert_eq!(slots[0], Some(Scalar::Str(Cow::Owned("x\"y".into()))));
        assert_eq!(slots[1], Some(Scalar::Int(7)));
        assert_eq!(slots[2], Some(Scalar::Float(1.5)));
        assert_eq!(slots[3], None);
        let mut slots = vec![None; 5];
        assert!(plan.pluck("[1,2]", &mut slots).is_err());
        assert!(plan.pluck("{\"a\":1} trailing", &mut slots).is_err());
    }

    proptest! {
        /// On any JSON object, plucking finds what `Value::pointer` finds.
        #[test]
        fn agrees_with_value_pointer(
            a in prop_oneof![any::<i64>().prop_map(Value::from), ".{0,12}".prop_map(Value::from), Just(Value::Null)],
            c in prop_oneof![any::<i32>().prop_map(Value::from), "[a-z/~]{0,8}".prop_map(Value::from)],
            nest in any::<bool>(),
        ) {
            let rec = if nest {
                serde_json::json!({"a": a, "b": {"c": c, "x": [1, 2]}, "y": {"b": 1}})
            } else {
                serde_json::json!({"b": [c], "a": {"deep": a}})
            };
            let text = serde_json::to_string(&rec).unwrap();
            let plan = Plan::new(&[Some("/a"), Some("/b/c")]);
            let mut slots = vec![None; 2];
            plan.pluck(&text, &mut slots).unwrap();
            for (i, p) in ["/a", "/b/c"].iter().enumerate() {
                let want = via_value(&rec, p).filter(|v| !v.is_null());
                match (want, &slots[i]) {
                    (None, None) | (None, Some(Scalar::Other)) => {}
                    (Some(Value::String(s)), Some(Scalar::Str(got))) => prop_assert_eq!(s, got.as_ref()),
                    (Some(Value::Number(n)), Some(Scalar::Int(got))) => prop_assert_eq!(n.as_i64(), Some(*got)),
                    (Some(v @ (Value::Object(_) | Value::Array(_))), Some(Scalar::Tree(t))) => prop_assert_eq!(v, t),
                    (w, g) => prop_assert!(false, "{p}: want {w:?}, got {g:?}"),
                }
            }
        }
    }
}
