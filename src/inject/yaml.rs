//! YAML for `trustgate inject`, on yaml-rust2 (pure safe Rust, maintained; serde_yaml and
//! its libyaml-based forks are unmaintained, and a typed serde model would drop every
//! field of a workload it does not know).
//!
//! Two things the stock loader does not do and inject needs:
//! - A stream is split into documents *as text* first, so that a document inject leaves
//!   alone is copied byte for byte (comments, quoting, key order, all of it).
//! - A plain (unquoted) scalar is kept as its source text and written back verbatim, so
//!   a re-written workload means to Kubernetes' YAML 1.1 reader exactly what it meant
//!   before: `defaultMode: 0400` stays octal 0400 (a YAML 1.2 loader would read decimal
//!   400 and write back a different mode), `yes` stays whatever the reader makes of it.
//!   Quoted and block scalars become strings, re-quoted by the emitter as needed.
use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

/// One document of a stream: the separator line(s) before it (`---`), then its text.
pub struct Document<'a> {
    pub separator: &'a str,
    pub body: &'a str,
}

/// Splits a YAML stream at its `---` lines (a separator may carry a comment).
pub fn split(input: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut sep_start = 0;
    let mut body_start = 0;
    let mut pos = 0;
    for line in input.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let is_separator = content == "---"
            || content.strip_prefix("---").is_some_and(|rest| {
                rest.trim_start().starts_with('#') && rest.starts_with([' ', '\t'])
            });
        if is_separator {
            if pos > 0 {
                docs.push(Document {
                    separator: &input[sep_start..body_start],
                    body: &input[body_start..pos],
                });
            }
            sep_start = pos;
            body_start = pos + line.len();
        }
        pos += line.len();
    }
    docs.push(Document {
        separator: &input[sep_start..body_start],
        body: &input[body_start..],
    });
    docs
}

/// Parses one document's text (see the module's note on plain scalars). `None` for a
/// document with no content (only comments or blank).
pub fn load(text: &str) -> Result<Option<Yaml>, String> {
    let mut loader = Loader::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut loader, true).map_err(|e| e.to_string())?;
    if let Some(e) = loader.error {
        return Err(e);
    }
    match loader.docs.len() {
        0 => Ok(None),
        1 => Ok(loader.docs.pop()),
        _ => Err("more than one document where one was expected".into()),
    }
}

/// Writes a document back (no leading `---`; the caller keeps the original separator).
pub fn emit(doc: &Yaml) -> Result<String, String> {
    let mut out = String::new();
    {
        let mut emitter = YamlEmitter::new(&mut out);
        emitter.multiline_strings(true);
        emitter.dump(doc).map_err(|e| format!("{e:?}"))?;
    }
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    let body = body.strip_prefix("---").unwrap_or(body);
    let mut body = body.trim_start_matches(' ').to_owned();
    body.push('\n');
    Ok(body)
}

#[derive(Default)]
struct Loader {
    docs: Vec<Yaml>,
    stack: Vec<(Yaml, usize)>,
    keys: Vec<Option<Yaml>>,
    anchors: HashMap<usize, Yaml>,
    error: Option<String>,
}

impl MarkedEventReceiver for Loader {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let result = match ev {
            Event::DocumentEnd => {
                if let Some((doc, _)) = self.stack.pop() {
                    self.docs.push(doc);
                }
                Ok(())
            }
            Event::SequenceStart(anchor, tag) => {
                self.container(Yaml::Array(Vec::new()), anchor, tag)
            }
            Event::MappingStart(anchor, tag) => {
                self.keys.push(None);
                self.container(Yaml::Hash(Hash::new()), anchor, tag)
            }
            Event::SequenceEnd => self.close(mark),
            Event::MappingEnd => {
                self.keys.pop();
                self.close(mark)
            }
            Event::Scalar(value, style, anchor, tag) => match scalar(value, style, tag) {
                Ok(node) => self.insert(node, anchor, mark),
                Err(e) => Err(e),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.insert(node, 0, mark),
                None => Err(format!("line {}: alias to an unknown anchor", mark.line())),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.error = Some(e);
        }
    }
}

impl Loader {
    fn container(&mut self, node: Yaml, anchor: usize, tag: Option<Tag>) -> Result<(), String> {
        if let Some(tag) = tag {
            if !is_core(&tag) {
                return Err(format!("tag {}{} is not supported", tag.handle, tag.suffix));
            }
        }
        self.stack.push((node, anchor));
        Ok(())
    }

    fn close(&mut self, mark: Marker) -> Result<(), String> {
        let (node, anchor) = self.stack.pop().ok_or("unbalanced document")?;
        if self.stack.is_empty() {
            if anchor > 0 {
                self.anchors.insert(anchor, node.clone());
            }
            self.stack.push((node, 0));
            return Ok(());
        }
        self.insert(node, anchor, mark)
    }

    fn insert(&mut self, node: Yaml, anchor: usize, mark: Marker) -> Result<(), String> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some((parent, _)) = self.stack.last_mut() else {
            self.stack.push((node, 0));
            return Ok(());
        };
        match parent {
            Yaml::Array(a) => a.push(node),
            Yaml::Hash(h) => {
                let key = self.keys.last_mut().ok_or("mapping without a key slot")?;
                match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        if h.contains_key(&k) {
                            return Err(format!("line {}: duplicated key", mark.line()));
                        }
                        h.insert(k, node);
                    }
                }
            }
            _ => return Err("a scalar cannot hold a value".into()),
        }
        Ok(())
    }
}

fn is_core(tag: &Tag) -> bool {
    tag.handle == "tag:yaml.org,2002:" && matches!(tag.suffix.as_str(), "map" | "seq" | "str")
}

/// A plain scalar keeps its source text (written back verbatim: [`Yaml::Real`] is emitted
/// as is); a quoted or block scalar, and `!!str`, is a string.
fn scalar(value: String, style: TScalarStyle, tag: Option<Tag>) -> Result<Yaml, String> {
    match tag {
        None if style == TScalarStyle::Plain => Ok(Yaml::Real(value)),
        None => Ok(Yaml::String(value)),
        Some(tag) if tag.handle == "tag:yaml.org,2002:" && tag.suffix == "str" => {
            Ok(Yaml::String(value))
        }
        Some(tag) => Err(format!(
            "tag {}{} is not supported in a workload inject rewrites",
            tag.handle, tag.suffix
        )),
    }
}

/// The text of a scalar, however it was written.
pub fn text(y: &Yaml) -> Option<&str> {
    match y {
        Yaml::Real(s) | Yaml::String(s) => Some(s),
        _ => None,
    }
}

/// A scalar's value as an integer (`8080`, `"8080"`).
pub fn int(y: &Yaml) -> Option<i64> {
    match y {
        Yaml::Integer(i) => Some(*i),
        _ => text(y)?.parse().ok(),
    }
}

/// `map[key]`, comparing keys by their text.
pub fn get<'a>(y: &'a Yaml, key: &str) -> Option<&'a Yaml> {
    let Yaml::Hash(h) = y else { return None };
    h.iter().find(|(k, _)| text(k) == Some(key)).map(|(_, v)| v)
}

pub fn get_mut<'a>(y: &'a mut Yaml, key: &str) -> Option<&'a mut Yaml> {
    let Yaml::Hash(h) = y else { return None };
    h.iter_mut()
        .find(|(k, _)| text(k) == Some(key))
        .map(|(_, v)| v)
}

/// `map[key]`, created (empty, of `empty`'s shape) if absent or null.
pub fn entry<'a>(y: &'a mut Yaml, key: &str, empty: Yaml) -> &'a mut Yaml {
    let absent = get(y, key).is_none_or(is_null);
    if absent {
        if let Yaml::Hash(h) = y {
            let k = h
                .keys()
                .find(|k| text(k) == Some(key))
                .cloned()
                .unwrap_or_else(|| s(key));
            h.insert(k, empty);
        }
    }
    get_mut(y, key).expect("just inserted")
}

/// `null`, `~` or nothing, written plain.
pub fn is_null(v: &Yaml) -> bool {
    match v {
        Yaml::Null => true,
        Yaml::Real(t) => matches!(t.as_str(), "~" | "null" | "Null" | "NULL" | ""),
        _ => false,
    }
}

/// A string scalar.
pub fn s(v: &str) -> Yaml {
    Yaml::String(v.to_owned())
}

/// A mapping from pairs, in order.
pub fn map<const N: usize>(pairs: [(&str, Yaml); N]) -> Yaml {
    let mut h = Hash::new();
    for (k, v) in pairs {
        h.insert(s(k), v);
    }
    Yaml::Hash(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_byte() {
        let input = "a: 1\n---\nb: 2\n--- # second\n# only a comment\n---\n\nc: 3";
        let docs = split(input);
        assert_eq!(docs.len(), 4);
        let joined: String = docs
            .iter()
            .map(|d| format!("{}{}", d.separator, d.body))
            .collect();
        assert_eq!(joined, input);
        assert_eq!(docs[1].body, "b: 2\n");
        assert_eq!(docs[2].separator, "--- # second\n");
        assert!(
            load(docs[2].body).unwrap().is_none(),
            "a comment-only document"
        );
        // A "---" inside a block scalar is indented, so it is not a separator.
        assert_eq!(split("a: |\n  ---\n  x\n").len(), 1);
    }

    #[test]
    fn plain_scalars_are_written_back_verbatim() {
        let doc = load(
            "mode: 0400\nquoted: \"0400\"\nflag: yes\nnum: 1e3\nempty: \"\"\nnull1: ~\n\
             colon: \"a: b\"\nhash: '#x'\nblock: |\n  line one\n  line two\n",
        )
        .unwrap()
        .unwrap();
        let out = emit(&doc).unwrap();
        assert!(out.contains("mode: 0400\n"), "{out}");
        assert!(out.contains("flag: yes\n"), "{out}");
        assert!(out.contains("num: 1e3\n"), "{out}");
        assert!(out.contains("null1: ~\n"), "{out}");
        // Strings stay strings, whatever they look like.
        let again = load(&out).unwrap().unwrap();
        for key in ["quoted", "empty", "colon", "hash", "block"] {
            assert_eq!(get(&again, key), get(&doc, key), "{key} in {out}");
            assert!(matches!(get(&again, key), Some(Yaml::String(_))), "{key}");
        }
    }

    #[test]
    fn anchors_are_expanded_and_unknown_tags_refused() {
        let doc = load("a: &x {k: v}\nb: *x\n").unwrap().unwrap();
        assert_eq!(get(&doc, "a"), get(&doc, "b"));
        assert!(load("a: !custom 1\n").is_err());
        assert!(load("a: [1\n").is_err());
    }
}
