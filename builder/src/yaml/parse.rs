//! Reads YAML text into [`Node`] trees with positions, using serde-saphyr's parser (granit-parser) events.
//!
//! Scalars resolve with go-yaml's rules ([`super::resolve`]) so a value means here what it means to Talos.
//! Duplicate keys, unknown tags and non-scalar keys are errors with a position, never silently merged.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, ScalarStyle, Span as PSpan, Tag};

use super::node::{Key, Mapping, Node, Span, Value};
use super::resolve::{Resolved, resolve_plain};

/// A YAML syntax or structure error at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

fn span_of(m: &Marker) -> Span {
    Span::new(m.line() as u32, m.col() as u32 + 1)
}

fn pspan(s: &PSpan) -> Span {
    span_of(&s.start)
}

/// Parses every document of a YAML stream. An empty stream gives no documents; an empty document gives
/// [`Value::Null`].
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut b = Builder { events: Parser::new_from_str(text), anchors: HashMap::new(), last: Span::new(1, 1) };
    let mut docs = Vec::new();
    loop {
        let (ev, sp) = b.next()?;
        match ev {
            Event::StreamStart => {}
            Event::StreamEnd => break,
            Event::DocumentStart(..) => {
                b.anchors.clear();
                let (ev, sp) = b.next()?;
                let doc = if matches!(ev, Event::DocumentEnd) {
                    Node::at(Value::Null, pspan(&sp))
                } else {
                    let node = b.node(ev, sp)?;
                    let (end, sp) = b.next()?;
                    if !matches!(end, Event::DocumentEnd) {
                        return Err(SyntaxError {
                            span: pspan(&sp),
                            message: "expected the end of the document".into(),
                        });
                    }
                    node
                };
                docs.push(doc);
            }
            _ => return Err(SyntaxError { span: pspan(&sp), message: "unexpected YAML event at top level".into() }),
        }
    }
    Ok(docs)
}

/// Parses a stream that must hold at most one document (none reads as null).
pub fn parse_document(text: &str) -> Result<Node, SyntaxError> {
    let mut docs = parse_documents(text)?;
    match docs.len() {
        0 => Ok(Node::at(Value::Null, Span::new(1, 1))),
        1 => Ok(docs.remove(0)),
        _ => Err(SyntaxError {
            span: docs[1].span,
            message: format!("expected one YAML document; found {}", docs.len()),
        }),
    }
}

struct Builder<'a> {
    events: Parser<'a, serde_saphyr::granit_parser::StrInput<'a>>,
    anchors: HashMap<usize, Node>,
    last: Span,
}

impl<'a> Builder<'a> {
    fn next(&mut self) -> Result<(Event<'a>, PSpan), SyntaxError> {
        loop {
            match self.events.next_event() {
                // Comments are presentation only.
                Some(Ok((Event::Comment(..), _))) => continue,
                other => return self.take(other),
            }
        }
    }

    fn take(
        &mut self,
        ev: Option<serde_saphyr::granit_parser::ParseResult<'a>>,
    ) -> Result<(Event<'a>, PSpan), SyntaxError> {
        match ev {
            Some(Ok((ev, sp))) => {
                self.last = pspan(&sp);
                Ok((ev, sp))
            }
            Some(Err(e)) => Err(SyntaxError { span: span_of(e.marker()), message: e.info() }),
            None => Err(SyntaxError { span: self.last, message: "unexpected end of YAML input".into() }),
        }
    }

    fn node(&mut self, ev: Event<'a>, sp: PSpan) -> Result<Node, SyntaxError> {
        let span = pspan(&sp);
        let (node, anchor) = match ev {
            Event::Scalar(text, style, anchor, tag) => {
                (Node::at(scalar(&text, style, tag.as_deref(), span)?, span), anchor)
            }
            Event::SequenceStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "seq", span)?;
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.next()?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    items.push(self.node(ev, sp)?);
                }
                (Node::at(Value::Seq(items), span), anchor)
            }
            Event::MappingStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), "map", span)?;
                (Node::at(Value::Map(self.mapping()?), span), anchor)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(n) => return Ok(Node::at(n.value.clone(), span)),
                None => return Err(SyntaxError { span, message: "alias refers to an unknown anchor".into() }),
            },
            _ => return Err(SyntaxError { span, message: "unexpected YAML event".into() }),
        };
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        Ok(node)
    }

    fn mapping(&mut self) -> Result<Mapping, SyntaxError> {
        let mut map = Mapping::new();
        // Keys that came from a `<<` merge may be overridden by explicit keys; explicit duplicates may not.
        let mut merged: Vec<String> = Vec::new();
        loop {
            let (ev, sp) = self.next()?;
            if matches!(ev, Event::MappingEnd) {
                break;
            }
            let key_span = pspan(&sp);
            let is_merge = matches!(&ev, Event::Scalar(t, ScalarStyle::Plain, _, None) if t == "<<");
            let key_node = self.node(ev, sp)?;
            let (vev, vsp) = self.next()?;
            let value = self.node(vev, vsp)?;
            if is_merge {
                let sources: Vec<&Node> = match &value.value {
                    Value::Map(_) => vec![&value],
                    Value::Seq(items) => items.iter().collect(),
                    _ => {
                        return Err(SyntaxError {
                            span: value.span,
                            message: format!(
                                "merge key `<<` expects a mapping or a list of mappings; found {}",
                                value.kind_name()
                            ),
                        });
                    }
                };
                for src in sources {
                    let Some(m) = src.as_map() else {
                        return Err(SyntaxError {
                            span: src.span,
                            message: "merge key `<<` list items must be mappings".into(),
                        });
                    };
                    for (k, v) in m.iter() {
                        if !map.contains_key(&k.name) {
                            map.push(k.clone(), v.clone());
                            merged.push(k.name.clone());
                        }
                    }
                }
                continue;
            }
            let name = key_string(&key_node)?;
            if let Some((prev, _)) = map.get_entry(&name) {
                if let Some(at) = merged.iter().position(|m| *m == name) {
                    merged.remove(at);
                    map.insert(name.clone(), value);
                    continue;
                }
                return Err(SyntaxError {
                    span: key_span,
                    message: format!("duplicate key {name:?} (first defined at line {})", prev.span.line),
                });
            }
            map.push(Key { name, span: key_span }, value);
        }
        Ok(map)
    }
}

fn key_string(key: &Node) -> Result<String, SyntaxError> {
    Ok(match &key.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Null => String::new(),
        Value::Seq(_) | Value::Map(_) => {
            return Err(SyntaxError {
                span: key.span,
                message: format!("mapping keys must be scalars; found {}", key.kind_name()),
            });
        }
    })
}

fn core_suffix(tag: &Tag) -> Option<&str> {
    tag.core_suffix()
}

fn check_collection_tag(tag: Option<&Tag>, want: &str, span: Span) -> Result<(), SyntaxError> {
    match tag {
        None => Ok(()),
        Some(t) if core_suffix(t) == Some(want) => Ok(()),
        Some(t) => Err(SyntaxError { span, message: format!("unsupported YAML tag {:?}", t.original()) }),
    }
}

fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>, span: Span) -> Result<Value, SyntaxError> {
    let bad = |what: &str| SyntaxError { span, message: format!("{text:?} is not a valid {what}") };
    if let Some(tag) = tag {
        return match core_suffix(tag) {
            Some("str") => Ok(Value::Str(text.to_owned())),
            Some("null") => Ok(Value::Null),
            Some("bool") => match resolve_plain(text) {
                Resolved::Value(v @ Value::Bool(_)) => Ok(v),
                _ => Err(bad("boolean")),
            },
            Some("int") => match resolve_plain(text) {
                Resolved::Value(v @ (Value::Int(_) | Value::UInt(_))) => Ok(v),
                _ => Err(bad("integer")),
            },
            Some("float") => match resolve_plain(text) {
                Resolved::Value(Value::Float(f)) => Ok(Value::Float(f)),
                Resolved::Value(Value::Int(i)) => Ok(Value::Float(i as f64)),
                _ => Err(bad("number")),
            },
            _ if tag.original() == "!!binary" || tag.original() == "!" => Ok(Value::Str(text.to_owned())),
            _ => Err(SyntaxError { span, message: format!("unsupported YAML tag {:?}", tag.original()) }),
        };
    }
    Ok(match style {
        ScalarStyle::Plain => match resolve_plain(text) {
            Resolved::Value(v) => v,
            Resolved::Timestamp | Resolved::Merge => Value::Str(text.to_owned()),
        },
        _ => Value::Str(text.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_order() {
        let docs = parse_documents("a: 1\nb:\n  - x\n  - 'y'\nc: {d: on}\n---\nkind: Foo\n").unwrap();
        assert_eq!(docs.len(), 2);
        let m = docs[0].as_map().unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.get("a").unwrap().value, Value::Int(1));
        assert_eq!(m.get("a").unwrap().span, Span::new(1, 4));
        let b = m.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b[1].span, Span::new(4, 5));
        assert_eq!(b[1].value, Value::Str("y".into()));
        assert_eq!(m.get("c").unwrap().as_map().unwrap().get("d").unwrap().value, Value::Str("on".into()));
        assert_eq!(m.get_entry("c").unwrap().0.span, Span::new(5, 1));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.span, Span::new(3, 1));
        assert_eq!(e.message, "duplicate key \"a\" (first defined at line 1)");
    }

    #[test]
    fn anchors_merges_and_tags() {
        let d = parse_document("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\ns: !!str 12\n").unwrap();
        let m = d.as_map().unwrap();
        let o = m.get("other").unwrap().as_map().unwrap();
        assert_eq!(o.get("x").unwrap().value, Value::Int(1));
        assert_eq!(o.get("y").unwrap().value, Value::Int(3));
        assert_eq!(m.get("s").unwrap().value, Value::Str("12".into()));
        let e = parse_document("a: !custom x\n").unwrap_err();
        assert!(e.message.contains("unsupported YAML tag"), "{}", e.message);
    }

    #[test]
    fn comments_are_skipped() {
        let d = parse_document("# head\na: 1 # trailing\n# between\nb:\n  # inside\n  - x\n").unwrap();
        let m = d.as_map().unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(m.get("b").unwrap().as_seq().unwrap().len(), 1);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse_documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.span.line >= 1, "{e:?}");
        let e = parse_documents("a: b: c\n").unwrap_err();
        assert_eq!(e.span.line, 1, "{e:?}");
        assert!(parse_document("a: 1\n---\nb: 2\n").is_err());
        assert_eq!(parse_document("").unwrap().value, Value::Null);
    }
}
