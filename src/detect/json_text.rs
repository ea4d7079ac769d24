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

/// The compact JSON text of one value held by [`super::Fields`]. The default,
/// no text, reads as null.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonText<'a>(pub(super) &'a str);

impl<'a> JsonText<'a> {
    pub fn as_str(self) -> &'a str {
        self.0
    }

    /// The value, parsed (this allocates; the comparison never calls it).
    pub fn to_value(self) -> Value {
        serde_json::from_str(self.0).expect("Fields holds the JSON text it wrote")
    }

    #[inline]
    pub(super) fn is_string(self) -> bool {
        self.0.starts_with('"')
    }

    pub(super) fn is_list(self) -> bool {
        self.0.starts_with('[')
    }

    /// The string's content as spelled; call it on a string only.
    pub(super) fn string(self) -> JsonStr<'a> {
        JsonStr::Spelled(&self.0[1..self.0.len() - 1])
    }

    /// The members of a list; call it on a list only.
    pub(super) fn members(self) -> Members<'a> {
        Members { rest: &self.0[1..self.0.len() - 1] }
    }

    /// What kind of value the text holds, by its first byte.
    #[inline]
    pub(super) fn read(self) -> Read<'a> {
        let text = self.0;
        match text.as_bytes().first() {
            None | Some(b'n') => Read::Null,
            Some(b't') => Read::Bool(true),
            Some(b'f') => Read::Bool(false),
            Some(b'"') => Read::Str(self.string()),
            Some(b'[') => Read::List(self.members()),
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
            JsonStr::Spelled(s) => (!has_escape(s)).then_some(s),
        }
    }

    /// Equality of the strings (not of their spellings).
    pub(super) fn same(self, other: JsonStr<'_>) -> bool {
        match (self, other) {
            (JsonStr::Plain(a), JsonStr::Plain(b)) => a == b,
            // serde_json escapes one way only, so equal strings are spelled alike.
            (JsonStr::Spelled(a), JsonStr::Spelled(b)) => a == b,
            // Most strings need no escape, so their spelling is the string. An
            // escape is longer than what it stands for, so a spelling with one
            // is longer than the string it spells.
            (JsonStr::Plain(p), JsonStr::Spelled(s)) | (JsonStr::Spelled(s), JsonStr::Plain(p)) => {
                match s.len().cmp(&p.len()) {
                    std::cmp::Ordering::Equal => s == p && !has_escape(s),
                    std::cmp::Ordering::Greater => has_escape(s) && unescaped(s).eq(p.chars()),
                    std::cmp::Ordering::Less => false,
                }
            }
        }
    }
}

/// Whether a string's content as spelled holds an escape: it holds no bare
/// quote, so the first quote or backslash found is a backslash.
fn has_escape(spelled: &str) -> bool {
    quote_or_backslash(spelled.as_bytes(), 0).is_some()
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
        // A key is a string, and a colon follows it.
        let close = (!self.rest.is_empty()).then(|| string_end(self.rest.as_bytes(), 0))?;
        let key = &self.rest[1..close];
        let (value, rest) = split_value(self.rest.get(close + 2..)?)?;
        self.rest = rest;
        Some((JsonStr::Spelled(key), value))
    }
}

/// The first value of `text` and what follows it (past a separating comma).
#[inline]
fn split_value(text: &str) -> Option<(JsonText<'_>, &str)> {
    if text.is_empty() {
        return None;
    }
    let end = value_end(text.as_bytes());
    let rest = &text[end..];
    Some((JsonText(&text[..end]), rest.strip_prefix(',').unwrap_or(rest)))
}

/// Where the value at the start of `bytes` ends.
#[inline]
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
    while let Some(at) = quote_or_backslash(bytes, i) {
        if bytes[at] == b'"' {
            return at;
        }
        i = at + 2;
    }
    bytes.len()
}

/// The index of the first `"` or `\` at or after `from`. Strings are most of
/// what is scanned (ids, names), so it reads eight bytes at a time: a byte
/// equal to `c` is a zero byte of `word ^ c…c`, and the lowest high bit of
/// `(x - 0x01…01) & !x & 0x80…80` marks the first zero byte of `x` exactly.
fn quote_or_backslash(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = zero_bytes(word ^ (ONES * u64::from(b'"'))) | zero_bytes(word ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(i + found.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    let tail = bytes.get(i..)?;
    tail.iter().position(|b| matches!(b, b'"' | b'\\')).map(|p| i + p)
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
    fn the_scanner_finds_the_first_quote_or_backslash_at_any_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for c in [b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    if at < len {
                        bytes[at] = c;
                    }
                    // High bytes (UTF-8) and the neighbours of both characters never match.
                    bytes.iter_mut().take(at).step_by(3).for_each(|b| *b = 0xC3);
                    bytes.iter_mut().take(at).skip(1).step_by(3).for_each(|b| *b = b'!');
                    bytes.iter_mut().take(at).skip(2).step_by(3).for_each(|b| *b = b']');
                    let expected = (at < len).then_some(at);
                    for from in 0..=at.min(len) {
                        assert_eq!(quote_or_backslash(&bytes, from), expected, "len {len}, at {at}, from {from}");
                    }
                }
            }
        }
        assert_eq!(quote_or_backslash(b"abc", 5), None);
    }

    #[test]
    fn escaped_strings_equal_their_plain_selves() {
        for s in ["tab\there", "quote\"", "back\\slash", "nul\u{0}", "naïve", "emoji 🦀", "\u{1f}"] {
            let text = text_of(&json!(s));
            let Read::Str(read) = JsonText(&text).read() else { panic!() };
            assert!(read.same(JsonStr::Plain(s)), "{s:?} read from {text}");
            assert!(!read.same(JsonStr::Plain("other")), "{s:?}");
        }
        // A backslash in the string itself is not an escape.
        assert!(!JsonStr::Spelled(r"a\\b").same(JsonStr::Plain(r"a\\b")));
        assert!(JsonStr::Spelled(r"a\\b").same(JsonStr::Plain(r"a\b")));
        assert!(!JsonStr::Spelled("ab").same(JsonStr::Plain("abc")));
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
            for (k, text, _) in fields.json_entries_with(None) {
                prop_assert_eq!(text.to_value(), value[k].clone());
                if let Read::List(m) = text.read() {
                    prop_assert_eq!(m.map(JsonText::to_value).collect::<Vec<_>>(), value[k].as_array().unwrap().clone());
                }
            }
        }
    }
}
