//! Configuration: the YAML format of the reference Pipelock, loaded strictly.
//!
//! Loading is three steps over one parse: `located` turns the text into a tree whose nodes
//! know their line and column; `de` deserializes the `schema` structs from that tree (unknown
//! fields, wrong types and bad values fail there); `validate` checks what needs the whole
//! config (regexes, redirect profiles, addresses). Every failure becomes one `ConfigError`
//! naming file, line, column and field. `presets` holds the commented files that
//! `pipelock generate config` prints; the balanced one is the embedded default.

mod de;
mod error;
mod located;
mod presets;
mod schema;
mod summary;
mod validate;

use std::path::Path;

use serde::Deserialize;

pub use error::{ConfigError, Located};
pub use presets::{preset_yaml, Preset};
pub use schema::*;
pub use validate::{mcp_upstream_url, parse_go_duration};

use located::{FieldPath, Mark, Node};

/// Loads and validates the config file at `path`.
///
/// # Errors
/// The file cannot be read, or is not a valid config (see [`load_str`]).
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: file.clone(),
        source,
    })?;
    load_str(&source, &file)
}

/// Loads and validates a config from `source`; `origin` names it in errors (a file name, or
/// `<stdin>`). An empty document means every default.
///
/// # Errors
/// YAML syntax errors, a second document, duplicate keys, unknown fields, wrong types, bad
/// values, and every check of `validate`, each as `origin:line:column: field: message`.
pub fn load_str(source: &str, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |mark: Mark, path: &FieldPath, message: String| {
        ConfigError::Invalid(Located {
            file: origin.to_string(),
            line: mark.line,
            column: mark.column,
            path: path.to_string(),
            message,
        })
    };
    let tree = located::parse(source).map_err(|e| invalid(e.mark, &e.path, e.message))?;
    let Some(root) = tree else {
        return Ok(Config::default());
    };
    if !matches!(root.value, located::Value::Mapping(_)) && !root.is_null() {
        return Err(invalid(
            root.mark,
            &FieldPath::default(),
            "the config must be a mapping of sections (such as `mode: balanced`)".to_string(),
        ));
    }
    let config = Config::deserialize(de::NodeDeserializer::new(&root, FieldPath::default()))
        .map_err(|e| invalid(e.mark.unwrap_or(root.mark), &e.path, e.message))?;
    validate::validate(&config).map_err(|problem| {
        let mark = position(&root, &problem.path);
        invalid(mark, &problem.path, problem.message)
    })?;
    Ok(config)
}

/// Where a validation problem points: the value at `path`, or, when the field is absent from
/// the file, the nearest enclosing node that is present.
fn position(root: &Node, path: &FieldPath) -> Mark {
    root.find(path).mark
}

/// The embedded default: the balanced preset.
#[must_use]
pub fn default_config() -> Config {
    // The preset is compiled in and a unit test proves it loads; should that ever break, fall
    // back to the same documented defaults rather than panic.
    load_str(preset_yaml(Preset::Balanced), "<embedded balanced preset>").unwrap_or_default()
}

#[cfg(test)]
mod tests;
