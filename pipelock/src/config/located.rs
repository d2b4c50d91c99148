//! A YAML document as a tree of nodes that remember where they stand in the file.
//!
//! Every config error must name file, line and column, so the file is parsed once into this
//! tree (with `yaml-rust2`'s event parser) and both deserialization (`de`) and semantic
//! validation (`validate`) report positions from it. The tree also enforces what YAML alone
//! allows but a security config must not: a second document, duplicate keys, merge keys, and
//! unbounded alias expansion.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most nodes a document may expand to (aliases included): a guard against "billion laughs".
const MAX_NODES: usize = 100_000;
/// Deepest nesting accepted.
const MAX_DEPTH: usize = 64;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn of_scalar(marker: Marker) -> Self {
        // yaml-rust2 reports scalar columns 0-based.
        Self {
            line: marker.line(),
            column: marker.col() + 1,
        }
    }
}

/// One segment of a dotted field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A dotted field path such as `mcp_tool_policy.rules[1].redirect_profile`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    #[must_use]
    pub fn key(&self, key: &str) -> Self {
        let mut path = self.0.clone();
        path.push(Segment::Key(key.to_string()));
        Self(path)
    }

    #[must_use]
    pub fn index(&self, index: usize) -> Self {
        let mut path = self.0.clone();
        path.push(Segment::Index(index));
        Self(path)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
}

/// What a node holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Sequence(Vec<Node>),
    /// Entries in file order: (key node, value node).
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// True for a plain scalar that YAML reads as null (`~`, `null`, or nothing).
    #[must_use]
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The node at `path`, or the deepest existing ancestor's node (for positions of fields
    /// that are absent from the file).
    #[must_use]
    pub fn find(&self, path: &FieldPath) -> &Node {
        let mut node = self;
        for segment in &path.0 {
            let next = match (&node.value, segment) {
                (Value::Mapping(entries), Segment::Key(key)) => entries
                    .iter()
                    .find(|(k, _)| matches!(&k.value, Value::Scalar { text, .. } if text == key))
                    .map(|(_, v)| v),
                (Value::Sequence(items), Segment::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }
}

/// A problem found while building the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeError {
    pub mark: Mark,
    pub path: FieldPath,
    pub message: String,
}

/// Parses `source` into one document's tree. An empty document is `None`.
///
/// # Errors
/// YAML syntax errors, a second document, duplicate keys, merge keys, unknown tags, undefined
/// aliases, and documents that are too large or too deep.
pub fn parse(source: &str) -> Result<Option<Node>, TreeError> {
    let mut builder = Builder {
        parser: Parser::new_from_str(source),
        anchors: HashMap::new(),
        nodes: 0,
    };
    builder.document()
}

struct Builder<'a> {
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), TreeError> {
        self.parser.next_token().map_err(|e| TreeError {
            mark: Mark {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            path: FieldPath::default(),
            message: format!("YAML syntax error: {}", e.info()),
        })
    }

    fn document(&mut self) -> Result<Option<Node>, TreeError> {
        let mut root = None;
        loop {
            let (event, marker) = self.next()?;
            match event {
                Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
                Event::StreamEnd => return Ok(root),
                Event::DocumentStart if root.is_some() => {
                    return Err(TreeError {
                        mark: Mark::of_scalar(marker),
                        path: FieldPath::default(),
                        message:
                            "a second YAML document is not allowed: a config file holds exactly one"
                                .to_string(),
                    });
                }
                Event::DocumentStart => {
                    let (event, marker) = self.next()?;
                    if event == Event::DocumentEnd {
                        continue;
                    }
                    root = Some(self.node(event, marker, &FieldPath::default(), 0)?);
                }
                other => {
                    return Err(TreeError {
                        mark: Mark::of_scalar(marker),
                        path: FieldPath::default(),
                        message: format!("unexpected YAML event {other:?}"),
                    })
                }
            }
        }
    }

    fn node(
        &mut self,
        event: Event,
        marker: Marker,
        path: &FieldPath,
        depth: usize,
    ) -> Result<Node, TreeError> {
        let error = |message: String| TreeError {
            mark: Mark::of_scalar(marker),
            path: path.clone(),
            message,
        };
        if depth > MAX_DEPTH {
            return Err(error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(error(format!(
                "the document expands to more than {MAX_NODES} nodes"
            )));
        }
        let (node, anchor) = match event {
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| error("alias to an undefined anchor".to_string()))?;
                self.nodes += count(&node);
                if self.nodes > MAX_NODES {
                    return Err(error(format!(
                        "the document expands to more than {MAX_NODES} nodes"
                    )));
                }
                return Ok(node);
            }
            Event::Scalar(text, style, anchor, tag) => {
                check_tag(tag.as_ref()).map_err(&error)?;
                // `!!str` forces a string; other core tags leave the plain reading.
                let plain =
                    style == TScalarStyle::Plain && tag.as_ref().is_none_or(|t| t.suffix != "str");
                let node = Node {
                    value: Value::Scalar { text, plain },
                    mark: Mark::of_scalar(marker),
                };
                (node, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_ref()).map_err(&error)?;
                let mut items = Vec::new();
                loop {
                    let (event, marker) = self.next()?;
                    if event == Event::SequenceEnd {
                        break;
                    }
                    items.push(self.node(event, marker, &path.index(items.len()), depth + 1)?);
                }
                let mark = items.first().map_or(Mark::of_scalar(marker), |n| n.mark);
                (
                    Node {
                        value: Value::Sequence(items),
                        mark,
                    },
                    anchor,
                )
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_ref()).map_err(&error)?;
                let mut entries: Vec<(Node, Node)> = Vec::new();
                loop {
                    let (event, key_marker) = self.next()?;
                    if event == Event::MappingEnd {
                        break;
                    }
                    let key = self.node(event, key_marker, path, depth + 1)?;
                    let key_text = match &key.value {
                        Value::Scalar { text, .. } => text.clone(),
                        _ => {
                            return Err(TreeError {
                                mark: key.mark,
                                path: path.clone(),
                                message: "mapping keys must be plain strings".to_string(),
                            })
                        }
                    };
                    let child_path = path.key(&key_text);
                    if key_text == "<<" {
                        return Err(TreeError {
                            mark: key.mark,
                            path: child_path,
                            message: "YAML merge keys (<<) are not supported: write the fields out"
                                .to_string(),
                        });
                    }
                    if entries.iter().any(|(k, _)| {
                        matches!(&k.value, Value::Scalar { text, .. } if *text == key_text)
                    }) {
                        return Err(TreeError {
                            mark: key.mark,
                            path: child_path,
                            message: format!("duplicate key {key_text:?}"),
                        });
                    }
                    let (event, marker) = self.next()?;
                    let value = self.node(event, marker, &child_path, depth + 1)?;
                    entries.push((key, value));
                }
                let mark = entries
                    .first()
                    .map_or(Mark::of_scalar(marker), |(k, _)| k.mark);
                (
                    Node {
                        value: Value::Mapping(entries),
                        mark,
                    },
                    anchor,
                )
            }
            other => return Err(error(format!("unexpected YAML event {other:?}"))),
        };
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }
}

fn count(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 1,
        Value::Sequence(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Mapping(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| count(k) + count(v))
                .sum::<usize>()
        }
    }
}

/// Only the core schema's own tags (`!!str`, `!!int`, …) are accepted.
fn check_tag(tag: Option<&yaml_rust2::parser::Tag>) -> Result<(), String> {
    match tag {
        None => Ok(()),
        Some(tag)
            if tag.handle == "tag:yaml.org,2002:"
                && matches!(
                    tag.suffix.as_str(),
                    "str" | "int" | "float" | "bool" | "null" | "map" | "seq"
                ) =>
        {
            Ok(())
        }
        Some(tag) => Err(format!("unsupported YAML tag {}{}", tag.handle, tag.suffix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let root = parse("a: 1\nbb:\n  c: \"x\"\n")
            .ok()
            .flatten()
            .expect("tree");
        let c = root.find(&FieldPath::default().key("bb").key("c"));
        assert_eq!(c.mark, Mark { line: 3, column: 6 });
    }

    #[test]
    fn rejects_second_document_duplicates_and_merge_keys() {
        let e = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(e.mark.line, 2);
        let e = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!((e.mark.line, e.mark.column), (2, 1));
        assert!(e.message.contains("duplicate key"));
        assert!(parse("x: &a {b: 1}\ny:\n  <<: *a\n").is_err());
    }

    #[test]
    fn aliases_expand_and_bombs_are_refused() {
        let root = parse("x: &a [1, 2]\ny: *a\n").ok().flatten().expect("tree");
        assert!(
            matches!(&root.find(&FieldPath::default().key("y")).value, Value::Sequence(v) if v.len() == 2)
        );
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            bomb.push_str(&format!(
                "b{i}: &b{i} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n",
                p = if i == 1 {
                    "a".to_string()
                } else {
                    format!("b{}", i - 1)
                }
            ));
        }
        let e = parse(&bomb).expect_err("bomb");
        assert!(e.message.contains("more than"), "{}", e.message);
    }

    #[test]
    fn empty_and_garbage_input_do_not_panic() {
        assert_eq!(parse("").ok(), Some(None));
        assert_eq!(parse("# only a comment\n").ok(), Some(None));
        for bad in [
            "a: [1\nb: 2",
            "\t- x",
            "a: \"unterminated",
            "{{{{",
            "a: !custom 1",
            "- : :",
        ] {
            let _ = parse(bad);
        }
        let deep = "[".repeat(500);
        assert!(parse(&deep).is_err());
    }
}
