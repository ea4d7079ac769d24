//! [`JsonText`]: one value of a [`super::Fields`], read in place. The loose
//! comparison walks lists, objects and strings through it without building a
//! `serde_json::Value`, so comparing a cached spec with a cached live resource
//! allocates nothing.
//!
//! It reads only the text [`super::Fields`] wrote: valid, compact JSON from
//! serde_json (no whitespace, objects with sorted keys, strings escaped the
//! one way serde_json escapes them). That is why equal strings have equal raw
//! text, and why the scanner below need not handle what a parser must.

use serde_json::Value;

/// The compact JSON text of one value held by [`super::Fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonText<'a>(pub(super) &'a str);

impl<'a> JsonText<'a> {
    pub fn as_str(self) -> &'a str {
        self.0
    }

    /// The value, parsed (this allocates; the comparison never calls it).
    pub fn to_value(self) -> Value {
        serde_json::from_str(self.0).expect("Fields holds the JSON text it wrote")
    }

    /// What kind of value the text holds, by its first byte.
    pub(super) fn read(self) -> Read<'a> {
        let text = self.0;
        match text.as_bytes().first() {
            None | Some(b'n') => Read::Null,
            Some(b't') => Read::Bool(true),
            Some(b'f') => Read::Bool(false),
            Some(b'"') => Read::Str(JsonStr::Spelled(&text[1..text.len() - 1])),
            Some(b'[') => Read::List(Members { rest: &text[1..text.len() - 1] }),
            Some(b'{') => Read::Object(Entries { rest: &text[1..text.len() - 1] }),
            Some(_) => Read::Number(text),
        }
    }
}

/// One value of the text, read one level deep.
pub(super) enum Read<'a> {
    Null,
    Bool(bool),
    /// The number's text, as serde_json wrote it.
    Number(&'a str),
    Str(JsonStr<'a>),
    List(Members<'a>),
    Object(Entries<'a>),
}

/// A string: plain, or as spelled in the text (which may hold escapes).
#[derive(Clone, Copy, Debug)]
pub(super) enum JsonStr<'a> {
    Plain(&'a str),
    Spelled(&'a str),
}

impl<'a> JsonStr<'a> {
    pub(super) fn is_empty(self) -> bool {
        match self {
            JsonStr::Plain(s) | JsonStr::Spelled(s) => s.is_empty(),
        }
    }

    /// The string itself, when it needs no unescaping.
    pub(super) fn plain(self) -> Option<&'a str> {
        match self {
            JsonStr::Plain(s) => Some(s),
            JsonStr::Spelled(s) => (!s.contains('\\')).then_some(s),
        }
    }

    /// Equality of the strings (not of their spellings).
    pub(super) fn same(self, other: JsonStr<'_>) -> bool {
        match (self, other) {
            (JsonStr::Plain(a), JsonStr::Plain(b)) => a == b,
            // serde_json escapes one way only, so equal strings are spelled alike.
            (JsonStr::Spelled(a), JsonStr::Spelled(b)) => a == b,
            // Most strings need no escape, so their spelling is the string.
            (JsonStr::Plain(p), JsonStr::Spelled(s)) | (JsonStr::Spelled(s), JsonStr::Plain(p)) => {
                p == s || (s.contains('\\') && unescaped(s).eq(p.chars()))
            }
        }
    }
}

/// The characters of a raw JSON string's content, escapes decoded.
fn unescaped(raw: &str) -> impl Iterator<Item = char> + '_ {
    let mut chars = raw.chars();
    std::iter::from_fn(move || {
        let c = chars.next()?;
        if c != '\\' {
            return Some(c);
        }
        Some(match chars.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let high = hex4(&mut chars)?;
                if (0xD800..0xDC00).contains(&high) {
                    // A surrogate pair: the low half follows as `\uXXXX`.
                    if (chars.next(), chars.next()) != (Some('\\'), Some('u')) {
                        return None;
                    }
                    let low = hex4(&mut chars)?.checked_sub(0xDC00).filter(|l| *l < 0x400)?;
                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + low)?
                } else {
                    char::from_u32(high)?
                }
            }
            other => other,
        })
    })
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Option<u32> {
    (0..4).try_fold(0, |n, _| Some(n * 16 + chars.next()?.to_digit(16)?))
}

/// The members of a list, in order.
#[derive(Clone, Debug)]
pub(super) struct Members<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Members<'a> {
    type Item = JsonText<'a>;

    fn next(&mut self) -> Option<JsonText<'a>> {
        let (value, rest) = split_value(self.rest)?;
        self.rest = rest;
        Some(value)
    }
}

/// The entries of an object, in key order.
#[derive(Clone, Debug)]
pub(super) struct Entries<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (JsonStr<'a>, JsonText<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, rest) = split_value(self.rest)?;
        let (value, rest) = split_value(rest.strip_prefix(':')?)?;
        self.rest = rest;
        let key = key.0;
        Some((JsonStr::Spelled(&key[1..key.len() - 1]), value))
    }
}

/// The first value of `text` and what follows it (past a separating comma).
fn split_value(text: &str) -> Option<(JsonText<'_>, &str)> {
    if text.is_empty() {
        return None;
    }
    let end = value_end(text.as_bytes());
    let rest = &text[end..];
    Some((JsonText(&text[..end]), rest.strip_prefix(',').unwrap_or(rest)))
}

/// Where the value at the start of `bytes` ends.
fn value_end(bytes: &[u8]) -> usize {
    match bytes[0] {
        b'"' => string_end(bytes, 0) + 1,
        b'[' | b'{' => nested_end(bytes),
        _ => bytes.iter().position(|b| matches!(b, b',' | b':' | b']' | b'}')).unwrap_or(bytes.len()),
    }
}

/// Where the list or object at the start of `bytes` ends: a loop, not
/// recursion, counting the depth and skipping strings whole.
fn nested_end(bytes: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i),
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth == 1 => return i + 1,
            b']' | b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The index of the quote that closes the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i,
            _ => i += 1,
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Fields;
    use proptest::prelude::*;
    use serde_json::json;

    fn text_of(value: &Value) -> String {
        value.to_string()
    }

    fn members(text: &str) -> Vec<&str> {
        match JsonText(text).read() {
            Read::List(m) => m.map(JsonText::as_str).collect(),
            _ => panic!("not a list: {text}"),
        }
    }

    #[test]
    fn lists_split_into_their_members_whatever_they_hold() {
        let list = json!([1, "a,b", [2, [3]], {"k": "]", "l": [4]}, null, "q\"}", -1.5e300, true]);
        let text = text_of(&list);
        let parts = members(&text);
        let back: Vec<Value> = parts.iter().map(|p| serde_json::from_str(p).unwrap()).collect();
        assert_eq!(Value::Array(back), list);
        assert!(members("[]").is_empty());
    }

    #[test]
    fn objects_split_into_keys_and_values() {
        let object = json!({"a\"b": [1, {"x": ","}], "c": "d", "e": {}});
        let text = text_of(&object);
        let Read::Object(entries) = JsonText(&text).read() else { panic!() };
        let seen: Vec<(String, Value)> = entries
            .map(|(k, v)| {
                (
                    unescaped(match k {
                        JsonStr::Plain(s) | JsonStr::Spelled(s) => s,
                    })
                    .collect(),
                    v.to_value(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![("a\"b".into(), json!([1, {"x": ","}])), ("c".into(), json!("d")), ("e".into(), json!({}))]
        );
    }

    #[test]
    fn escaped_strings_equal_their_plain_selves() {
        for s in ["tab\there", "quote\"", "back\\slash", "nul\u{0}", "naïve", "emoji 🦀", "\u{1f}"] {
            let text = text_of(&json!(s));
            let Read::Str(read) = JsonText(&text).read() else { panic!() };
            assert!(read.same(JsonStr::Plain(s)), "{s:?} read from {text}");
            assert!(!read.same(JsonStr::Plain("other")), "{s:?}");
        }
        // A surrogate pair, written by another JSON writer.
        assert!(JsonStr::Spelled("\\ud83e\\udd80").same(JsonStr::Plain("🦀")));
        // A broken pair ends the string as read: it equals nothing, and nothing panics.
        assert!(!JsonStr::Spelled("\\ud83e\\u0041").same(JsonStr::Plain("x")));
        assert!(!JsonStr::Spelled("\\ud83ex").same(JsonStr::Plain("x")));
    }

    proptest! {
        #[test]
        fn every_value_fields_holds_splits_back_into_itself(
            items in prop::collection::vec(any::<String>(), 0..5),
            key in any::<String>(),
            n in any::<f64>().prop_filter("finite", |f| f.is_finite()),
        ) {
            let value = json!({"list": items, "obj": {key.clone(): [n, key]}});
            let fields = Fields::try_from(value.clone()).unwrap();
            for (k, text) in fields.json_entries() {
                prop_assert_eq!(text.to_value(), value[k].clone());
                if let Read::List(m) = text.read() {
                    prop_assert_eq!(m.map(JsonText::to_value).collect::<Vec<_>>(), value[k].as_array().unwrap().clone());
                }
            }
        }
    }
}
