//! A `serde` deserializer over the located tree, so that every schema error (unknown field,
//! wrong type, bad enum value) carries the dotted field path and the line and column of the
//! offending node.
//!
//! Scalars follow YAML 1.2's core schema as Go's yaml.v3 reads it: a plain `1` is an integer,
//! `true`/`false` are booleans (yaml.v3 also accepts `yes`/`no`/`on`/`off` for boolean
//! fields), `~`/`null`/empty is null, and quoted scalars are always strings. A null where a
//! section or list is expected means "use the defaults", as in the reference.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::located::{FieldPath, Mark, Node, Value};

/// A schema error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    pub path: FieldPath,
    pub mark: Option<Mark>,
    pub message: String,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: FieldPath::default(),
            mark: None,
            message: msg.to_string(),
        }
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::custom(format_args!("expected {expected}, found {unexpected}"))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "invalid value {unexpected}, expected {expected}"
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let hint = closest(field, expected)
            .map(|best| format!(" (did you mean {best:?}?)"))
            .unwrap_or_default();
        Self::custom(format_args!("unknown field {field:?}{hint}"))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!(
            "unknown value {variant:?}, expected one of: {}",
            expected.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing required field {field:?}"))
    }
}

impl DeError {
    /// Fills in the position of `node` at `path` unless an inner node already did.
    fn at(mut self, node: &Node, path: &FieldPath) -> Self {
        if self.mark.is_none() {
            self.mark = Some(node.mark);
            self.path = path.clone();
        }
        self
    }
}

/// The known name closest to `field`, if it is close enough to be a likely typo.
fn closest<'k>(field: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(field, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(cur)
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Deserializes one node.
pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: FieldPath,
}

impl<'a> NodeDeserializer<'a> {
    #[must_use]
    pub fn new(node: &'a Node, path: FieldPath) -> Self {
        Self { node, path }
    }

    fn fail(&self, message: String) -> DeError {
        DeError {
            path: self.path.clone(),
            mark: Some(self.node.mark),
            message,
        }
    }

    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.value {
            Value::Scalar { text, plain } => Some((text.as_str(), *plain)),
            _ => None,
        }
    }

    fn found(&self) -> String {
        match &self.node.value {
            Value::Scalar { plain: true, .. } if self.node.is_null() => "null".to_string(),
            Value::Scalar { text, plain: true } => match classify(text) {
                Plain::Int(_) | Plain::Float(_) => format!("number {text}"),
                Plain::Bool(_) => format!("boolean {text}"),
                _ => format!("string {text:?}"),
            },
            Value::Scalar { text, .. } => format!("string {text:?}"),
            Value::Sequence(_) => "a list".to_string(),
            Value::Mapping(_) => "a mapping".to_string(),
        }
    }

    fn expected(&self, what: &str) -> DeError {
        self.fail(format!("expected {what}, found {}", self.found()))
    }

    fn integer(&self) -> Result<i128, DeError> {
        match self.scalar() {
            Some((text, true)) => match classify(text) {
                Plain::Int(value) => Ok(value),
                _ => Err(self.expected("an integer")),
            },
            _ => Err(self.expected("an integer")),
        }
    }
}

/// How a plain scalar reads under the core schema.
enum Plain {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str,
}

fn classify(text: &str) -> Plain {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let parsed = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i128::from_str_radix(oct, 8).ok()
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        digits.replace('_', "").parse::<i128>().ok()
    } else {
        None
    };
    if let Some(value) = parsed {
        return Plain::Int(sign * value);
    }
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        ".inf" | "+.inf" => return Plain::Float(f64::INFINITY),
        "-.inf" => return Plain::Float(f64::NEG_INFINITY),
        ".nan" => return Plain::Float(f64::NAN),
        _ => {}
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric {
        if let Ok(value) = text.parse::<f64>() {
            return Plain::Float(value);
        }
    }
    Plain::Str
}

macro_rules! integer_method {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let value = self.integer()?;
            let narrowed = <$ty>::try_from(value).map_err(|_| {
                self.fail(format!(
                    "{value} is out of range (expected {} to {})",
                    <$ty>::MIN,
                    <$ty>::MAX
                ))
            })?;
            let (node, path) = (self.node, self.path.clone());
            visitor
                .$visit(narrowed)
                .map_err(|e: DeError| e.at(node, &path))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        let result = match &self.node.value {
            Value::Scalar { text, plain: false } => visitor.visit_str(text),
            Value::Scalar { text, plain: true } => match classify(text) {
                Plain::Null => visitor.visit_unit(),
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::Int(i) => match i64::try_from(i) {
                    Ok(i) => visitor.visit_i64(i),
                    Err(_) => visitor.visit_str(text),
                },
                Plain::Float(f) => visitor.visit_f64(f),
                Plain::Str => visitor.visit_str(text),
            },
            Value::Sequence(_) => return self.deserialize_seq(visitor),
            Value::Mapping(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|e: DeError| e.at(node, &path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let value = match self.scalar() {
            Some((text, true)) => match text {
                "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => true,
                "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => false,
                _ => return Err(self.expected("true or false")),
            },
            _ => return Err(self.expected("true or false")),
        };
        let (node, path) = (self.node, self.path.clone());
        visitor
            .visit_bool(value)
            .map_err(|e: DeError| e.at(node, &path))
    }

    integer_method!(deserialize_i8, visit_i8, i8);
    integer_method!(deserialize_i16, visit_i16, i16);
    integer_method!(deserialize_i32, visit_i32, i32);
    integer_method!(deserialize_i64, visit_i64, i64);
    integer_method!(deserialize_u8, visit_u8, u8);
    integer_method!(deserialize_u16, visit_u16, u16);
    integer_method!(deserialize_u32, visit_u32, u32);
    integer_method!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        #[allow(clippy::cast_precision_loss)] // config numbers are small
        let value = match self.scalar() {
            Some((text, true)) => match classify(text) {
                Plain::Int(i) => i as f64,
                Plain::Float(f) => f,
                _ => return Err(self.expected("a number")),
            },
            _ => return Err(self.expected("a number")),
        };
        let (node, path) = (self.node, self.path.clone());
        visitor
            .visit_f64(value)
            .map_err(|e: DeError| e.at(node, &path))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(_) if self.node.is_null() => Err(self.expected("a string")),
            Some((text, _)) => {
                let (node, path) = (self.node, self.path.clone());
                visitor
                    .visit_str(text)
                    .map_err(|e: DeError| e.at(node, &path))
            }
            None => Err(self.expected("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.expected("null"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        let empty = Vec::new();
        let items = match &self.node.value {
            Value::Sequence(items) => items,
            _ if self.node.is_null() => &empty,
            _ => return Err(self.expected("a list")),
        };
        visitor
            .visit_seq(SeqAccess {
                items: items.iter(),
                index: 0,
                path: self.path.clone(),
            })
            .map_err(|e: DeError| e.at(node, &path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (node, path) = (self.node, self.path.clone());
        let empty = Vec::new();
        let entries = match &self.node.value {
            Value::Mapping(entries) => entries,
            _ if self.node.is_null() => &empty,
            _ => return Err(self.expected("a mapping")),
        };
        visitor
            .visit_map(MapAccess {
                entries: entries.iter(),
                pending: None,
                path: self.path.clone(),
            })
            .map_err(|e: DeError| e.at(node, &path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some((text, _)) if !self.node.is_null() => {
                let (node, path) = (self.node, self.path.clone());
                visitor
                    .visit_enum(text.into_deserializer())
                    .map_err(|e: DeError| e.at(node, &path))
            }
            _ => Err(self.expected("one of the listed values")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'a> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: FieldPath,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(self.index);
        self.index += 1;
        seed.deserialize(NodeDeserializer::new(item, path.clone()))
            .map(Some)
            .map_err(|e: DeError| e.at(item, &path))
    }
}

struct MapAccess<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    pending: Option<(&'a Node, FieldPath)>,
    path: FieldPath,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let name = match &key.value {
            Value::Scalar { text, .. } => text.clone(),
            _ => String::new(),
        };
        let path = self.path.key(&name);
        self.pending = Some((value, path.clone()));
        seed.deserialize(NodeDeserializer::new(key, path.clone()))
            .map(Some)
            .map_err(|e: DeError| e.at(key, &path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((value, path)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        seed.deserialize(NodeDeserializer::new(value, path.clone()))
            .map_err(|e: DeError| e.at(value, &path))
    }
}
