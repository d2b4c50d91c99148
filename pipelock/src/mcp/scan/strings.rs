//! Every string in a JSON value, keys included, with the path where it was found
//! (`arguments.files[2].path`). The walk is iterative, so no nesting depth can overflow the
//! stack, and numbers and booleans are skipped (they cannot carry an instruction or a secret
//! that a string would not).

use serde_json::Value;

/// One string of a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf<'a> {
    /// Where it was found, from the value's root.
    pub path: String,
    pub text: &'a str,
    /// True when the string is an object key.
    pub is_key: bool,
}

/// Every string of `value`, keys included, depth first in document order; `root` prefixes
/// the paths.
#[must_use]
pub fn leaves<'a>(value: &'a Value, root: &str) -> Vec<Leaf<'a>> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &'a Value)> = vec![(root.to_string(), value)];
    while let Some((path, value)) = stack.pop() {
        match value {
            Value::String(text) => out.push(Leaf {
                path,
                text,
                is_key: false,
            }),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((format!("{path}[{i}]"), item));
                }
            }
            Value::Object(map) => {
                let mut children = Vec::with_capacity(map.len());
                for (key, item) in map {
                    let child = join(&path, key);
                    out.push(Leaf {
                        path: child.clone(),
                        text: key,
                        is_key: true,
                    });
                    children.push((child, item));
                }
                stack.extend(children.into_iter().rev());
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    out
}

/// `parent.key`, or `key` at the root.
#[must_use]
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_and_keys_with_paths() {
        let value = json!({"a": ["x", {"b": "y"}], "n": 1});
        let found: Vec<(String, &str, bool)> = leaves(&value, "args")
            .into_iter()
            .map(|l| (l.path, l.text, l.is_key))
            .collect();
        assert!(found.contains(&("args.a".into(), "a", true)));
        assert!(found.contains(&("args.a[0]".into(), "x", false)));
        assert!(found.contains(&("args.a[1].b".into(), "b", true)));
        assert!(found.contains(&("args.a[1].b".into(), "y", false)));
        assert!(!found.iter().any(|(_, t, _)| *t == "1"));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let mut value = json!("leaf");
        for _ in 0..2_000 {
            value = Value::Array(vec![value]);
        }
        assert_eq!(leaves(&value, "").len(), 1);
        // Dropping a deeply nested Value recurses in serde_json; leak it instead.
        std::mem::forget(value);
    }
}
