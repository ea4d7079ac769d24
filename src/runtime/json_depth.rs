//! A bound on how deep the JSON this process decodes may nest. serde_json
//! refuses input nested past 128 levels, and a refusal fails the whole list
//! or watch event it is in: one object with a 200-level value (its spec, or
//! the `managedFields` the API server derives from it) would make every list
//! of its kind undecodable and stop the controller. Responses of the
//! Kubernetes API pass through [`DepthFilter`], which replaces any value
//! nested deeper than the bound with `null`, streaming and without
//! recursion, so the objects around it decode. Objects of the project's own
//! kinds bound their free-form values more tightly, and say so in a condition.

use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// The deepest nesting passed through: below serde_json's 128 with room for
/// the envelope (list, item, metadata, managedFields) around a value.
pub const MAX_DEPTH: u32 = 100;

/// The scanner's state, carried from one chunk of a body to the next.
#[derive(Clone, Debug)]
pub struct DepthFilter {
    max: u32,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Open brackets inside the value being dropped, when dropping one.
    dropping: Option<u32>,
}

impl DepthFilter {
    pub fn new(max: u32) -> Self {
        DepthFilter { max, depth: 0, in_string: false, escaped: false, dropping: None }
    }

    /// The chunk with every value past the bound replaced by `null`; the
    /// chunk itself (no copy) when nothing in it is dropped.
    pub fn filter(&mut self, chunk: Bytes) -> Bytes {
        let mut out: Option<Vec<u8>> = None;
        for (i, &byte) in chunk.iter().enumerate() {
            let keep = self.step(byte);
            match (&mut out, keep) {
                (Some(out), Keep::Byte) => out.push(byte),
                (Some(out), Keep::Null) => out.extend_from_slice(b"null"),
                (Some(_), Keep::Nothing) | (None, Keep::Byte) => {}
                (None, Keep::Null | Keep::Nothing) => {
                    let mut started = Vec::with_capacity(chunk.len());
                    started.extend_from_slice(&chunk[..i]);
                    if keep == Keep::Null {
                        started.extend_from_slice(b"null");
                    }
                    out = Some(started);
                }
            }
        }
        out.map_or(chunk, Bytes::from)
    }

    fn step(&mut self, byte: u8) -> Keep {
        if self.in_string {
            match (self.escaped, byte) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return if self.dropping.is_some() { Keep::Nothing } else { Keep::Byte };
        }
        if let Some(open) = self.dropping.as_mut() {
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => *open += 1,
                b'}' | b']' => {
                    *open -= 1;
                    if *open == 0 {
                        self.dropping = None;
                    }
                }
                _ => {}
            }
            return Keep::Nothing;
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' if self.depth >= self.max => {
                self.dropping = Some(1);
                return Keep::Null;
            }
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Keep::Byte
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Byte,
    /// The first byte of a dropped value: `null` stands for it.
    Null,
    Nothing,
}

/// A tower layer under kube's client that bounds the depth of JSON responses.
#[derive(Clone, Copy, Debug)]
pub struct DepthLimitLayer {
    pub max: u32,
}

impl<S> Layer<S> for DepthLimitLayer {
    type Service = DepthLimited<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DepthLimited { inner, max: self.max }
    }
}

#[derive(Clone)]
pub struct DepthLimited<S> {
    inner: S,
    max: u32,
}

impl<S, R, B> Service<R> for DepthLimited<S>
where
    S: Service<R, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = http::Response<BoundedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let response = self.inner.call(request);
        let max = self.max;
        Box::pin(async move {
            let response = response.await?;
            let json = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            Ok(response
                .map(|inner| BoundedBody { inner: Box::pin(inner), filter: json.then(|| DepthFilter::new(max)) }))
        })
    }
}

/// A response body passed through a [`DepthFilter`] (JSON) or untouched.
pub struct BoundedBody<B> {
    inner: Pin<Box<B>>,
    filter: Option<DepthFilter>,
}

impl<B: Body<Data = Bytes>> Body for BoundedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match (&mut this.filter, frame.into_data()) {
                    (Some(filter), Ok(data)) => Frame::data(filter.filter(data)),
                    (None, Ok(data)) => Frame::data(data),
                    (_, Err(other)) => other,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Dropping values shortens the body: only the upper bound still holds.
        let mut hint = http_body::SizeHint::new();
        if let Some(upper) = self.inner.size_hint().upper() {
            hint.set_upper(upper);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        (0..levels).fold(String::from("1"), |inner, _| format!("{{\"a\":{inner}}}"))
    }

    fn run(filter: &mut DepthFilter, text: &str) -> String {
        String::from_utf8(filter.filter(Bytes::from(text.to_owned())).to_vec()).unwrap()
    }

    #[test]
    fn shallow_json_passes_unchanged_without_a_copy() {
        let text = Bytes::from(r#"{"items":[{"a":"{[\"]}"},[1,2]]}"#);
        let out = DepthFilter::new(3).filter(text.clone());
        assert_eq!(out, text);
        assert_eq!(out.as_ptr(), text.as_ptr());
    }

    #[test]
    fn values_past_the_bound_become_null_and_the_rest_is_kept() {
        let text = format!(r#"{{"deep":{},"next":"ok","s":"{{[}}"}}"#, nested(10));
        let out = run(&mut DepthFilter::new(4), &text);
        assert_eq!(out, r#"{"deep":{"a":{"a":{"a":null}}},"next":"ok","s":"{[}"}"#);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["next"], "ok");
    }

    #[test]
    fn a_value_split_across_chunks_is_dropped_whole_and_lines_reset_the_depth() {
        let line = format!("{{\"type\":\"ADDED\",\"object\":{{\"v\":{},\"s\":\"x]\\\"}}\"}}}}\n", nested(300));
        let whole = run(&mut DepthFilter::new(MAX_DEPTH), &line.repeat(2));
        let mut filter = DepthFilter::new(MAX_DEPTH);
        let pieces: String =
            line.repeat(2).as_bytes().chunks(7).map(|c| run(&mut filter, std::str::from_utf8(c).unwrap())).collect();
        assert_eq!(pieces, whole);
        for event in whole.lines() {
            let value: serde_json::Value = serde_json::from_str(event).expect("decodes under serde_json's limit");
            assert_eq!(value["object"]["s"], "x]\"}");
        }
    }
}
