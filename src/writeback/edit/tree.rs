//! A YAML file as a tree of nodes that know where they stand in the text.

use super::NotYaml;
use granit_parser::{Event, Parser, ScalarStyle, Span, StructureStyle};
use std::ops::Range;

#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    /// The anchor id the node defines (0 for none).
    pub anchor: usize,
    /// The node's bytes: a scalar with its quotes; a collection from its
    /// first character to its last item's end (flow: to the closing bracket).
    pub span: Range<usize>,
}

#[derive(Debug)]
pub enum NodeKind {
    /// A plain or quoted scalar; `quote` is `'` or `"` for quoted ones.
    Scalar {
        quote: Option<char>,
        text: String,
    },
    /// A literal (`|`) or folded (`>`) scalar, whose span misses its header.
    BlockScalar,
    /// A list; its items are not kept (an edit replaces a list whole).
    Seq {
        flow: bool,
    },
    Map {
        entries: Vec<(Node, Node)>,
    },
    Alias,
}

impl Node {
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value of `key` in a map.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map { entries, .. } => entries.iter().find(|(k, _)| k.scalar() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn anchored(&self) -> bool {
        self.anchor != 0
    }
}

type Events<'t> = std::iter::Peekable<std::vec::IntoIter<(Event<'t>, Range<usize>)>>;

/// The root node of each document (empty documents are left out).
pub fn parse_documents(text: &str) -> Result<Vec<Node>, NotYaml> {
    let mut events = Vec::new();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| NotYaml::said(e.to_string()))?;
        events.push((event, byte_range(&span)?));
    }
    let mut events: Events<'_> = events.into_iter().peekable();
    let mut docs = Vec::new();
    while let Some((event, _)) = events.next() {
        if let Event::DocumentStart(..) = event
            && let Some(node) = node(&mut events)?
        {
            docs.push(node);
        }
    }
    Ok(docs)
}

fn byte_range(span: &Span) -> Result<Range<usize>, NotYaml> {
    span.byte_range().ok_or_else(|| NotYaml::said("the YAML parser gave no byte offsets".to_owned()))
}

/// What comes next in a collection or document.
enum Next {
    Node(Node),
    /// The end of a collection, document or stream, and where its end event stands.
    End(Range<usize>),
}

fn next(events: &mut Events<'_>) -> Result<Next, NotYaml> {
    loop {
        let Some((event, span)) = events.next() else { return Ok(Next::End(0..0)) };
        return Ok(Next::Node(match event {
            Event::Comment(..) | Event::Anchor(..) => continue,
            Event::Scalar(text, style, anchor, _) => {
                let kind = match style {
                    ScalarStyle::Literal | ScalarStyle::Folded => NodeKind::BlockScalar,
                    ScalarStyle::SingleQuoted => NodeKind::Scalar { quote: Some('\''), text: text.into_owned() },
                    ScalarStyle::DoubleQuoted => NodeKind::Scalar { quote: Some('"'), text: text.into_owned() },
                    _ => NodeKind::Scalar { quote: None, text: text.into_owned() },
                };
                Node { kind, anchor, span }
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => Node { kind: NodeKind::Alias, anchor: 0, span },
            Event::SequenceStart(style, anchor, _) => sequence(events, style, anchor, span)?,
            Event::MappingStart(style, anchor, _) => mapping(events, style, anchor, span)?,
            Event::SequenceEnd | Event::MappingEnd | Event::DocumentEnd | Event::StreamEnd => {
                return Ok(Next::End(span));
            }
            _ => continue,
        }));
    }
}

/// The root node of a document, if it has one.
fn node(events: &mut Events<'_>) -> Result<Option<Node>, NotYaml> {
    Ok(match next(events)? {
        Next::Node(node) => Some(node),
        Next::End(_) => None,
    })
}

fn sequence(
    events: &mut Events<'_>,
    style: StructureStyle,
    anchor: usize,
    start: Range<usize>,
) -> Result<Node, NotYaml> {
    let flow = style == StructureStyle::Flow;
    let mut end = start.end;
    loop {
        match next(events)? {
            Next::Node(item) => end = item.span.end,
            Next::End(close) => {
                // A flow list ends at its bracket, a block one at its last item.
                let end = if flow { close.end } else { end };
                return Ok(Node { kind: NodeKind::Seq { flow }, anchor, span: start.start..end });
            }
        }
    }
}

fn mapping(
    events: &mut Events<'_>,
    style: StructureStyle,
    anchor: usize,
    start: Range<usize>,
) -> Result<Node, NotYaml> {
    let flow = style == StructureStyle::Flow;
    let mut entries = Vec::new();
    let mut end = start.end;
    loop {
        match next(events)? {
            Next::Node(key) => {
                let Next::Node(value) = next(events)? else {
                    return Err(NotYaml::said("a map key without a value".into()));
                };
                end = value.span.end;
                entries.push((key, value));
            }
            Next::End(close) => {
                let end = if flow { close.end } else { end };
                return Ok(Node { kind: NodeKind::Map { entries }, anchor, span: start.start..end });
            }
        }
    }
}
