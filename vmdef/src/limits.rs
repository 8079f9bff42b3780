// SPDX-License-Identifier: Apache-2.0
//! Bounds every definition document must respect before it is parsed.
//!
//! A definition reaches `vmctld` from any client of its socket, so a hostile document must end
//! as an error, never as a daemon that runs out of stack or memory. [`check_xml`] scans the
//! text once, without recursion and without building anything, and refuses what is too big,
//! too deep or has too many elements, a document type declaration (the door to entity
//! expansion) and an encoding other than UTF-8. [`check_json`] bounds size and nesting the
//! same way. roxmltree and serde_json have limits of their own, but neither bounds nesting
//! depth to what a VM definition needs, and our readers walk the tree recursively.

/// Largest definition accepted, in bytes (libvirt's largest real domains are a few tens of KiB).
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Deepest element or JSON nesting accepted (a domain XML needs six levels).
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one XML document.
pub const MAX_ELEMENTS: usize = 10_000;

/// Why a document was refused before parsing, with the 1-based line where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Larger than [`MAX_DOCUMENT_BYTES`].
    #[error("the document is {0} bytes; definitions are limited to {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels; a VM definition needs far fewer")]
    TooDeep(u32),
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("more than {MAX_ELEMENTS} elements; a VM definition needs far fewer")]
    TooManyElements(u32),
    /// A `<!DOCTYPE>` or another markup declaration.
    #[error("document type declarations (<!DOCTYPE>, <!ENTITY>) are refused; remove them")]
    Doctype(u32),
    /// An XML declaration naming an encoding other than UTF-8.
    #[error("the XML declaration names encoding {0:?}; only UTF-8 is accepted: convert the file (iconv -t UTF-8) and change the declaration")]
    Encoding(String),
    /// A comment, CDATA section, processing instruction or tag that never ends.
    #[error("markup that is never closed")]
    Unterminated(u32),
}

impl LimitError {
    /// The 1-based line the error names (1 for the whole document).
    pub fn line(&self) -> u32 {
        match self {
            LimitError::TooDeep(l)
            | LimitError::TooManyElements(l)
            | LimitError::Doctype(l)
            | LimitError::Unterminated(l) => *l,
            LimitError::TooLarge(_) | LimitError::Encoding(_) => 1,
        }
    }
}

fn line_at(text: &[u8], pos: usize) -> u32 {
    let n = text[..pos.min(text.len())].iter().filter(|&&b| b == b'\n').count();
    u32::try_from(n + 1).unwrap_or(u32::MAX)
}

fn find(text: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    text.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

/// The `encoding="..."` of an XML declaration at the start of `decl`, if any.
fn declared_encoding(decl: &str) -> Option<String> {
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    Some(body[..body.find(quote)?].to_string())
}

/// Checks an XML document against the limits above; see the module documentation.
pub fn check_xml(text: &str) -> Result<(), LimitError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(LimitError::TooLarge(text.len()));
    }
    let b = text.as_bytes();
    let (mut i, mut depth, mut elements) = (0usize, 0usize, 0usize);
    while let Some(off) = b.get(i..).and_then(|s| s.iter().position(|&c| c == b'<')) {
        let start = i + off;
        let rest = &b[start..];
        let unterminated = || LimitError::Unterminated(line_at(b, start));
        if rest.starts_with(b"<!--") {
            i = find(b, start + 4, b"-->").ok_or_else(unterminated)? + 3;
        } else if rest.starts_with(b"<![CDATA[") {
            i = find(b, start + 9, b"]]>").ok_or_else(unterminated)? + 3;
        } else if rest.starts_with(b"<!") {
            return Err(LimitError::Doctype(line_at(b, start)));
        } else if rest.starts_with(b"<?") {
            let end = find(b, start + 2, b"?>").ok_or_else(unterminated)?;
            let pi = &text[start + 2..end];
            if pi.starts_with("xml") && pi[3..].starts_with(|c: char| c.is_ascii_whitespace()) {
                if let Some(enc) = declared_encoding(pi) {
                    if !enc.eq_ignore_ascii_case("utf-8") && !enc.eq_ignore_ascii_case("utf8") {
                        return Err(LimitError::Encoding(enc));
                    }
                }
            }
            i = end + 2;
        } else {
            // A start or end tag: its end is the first '>' outside a quoted attribute value.
            let (mut j, mut quote) = (start + 1, None);
            loop {
                let c = *b.get(j).ok_or_else(unterminated)?;
                match (quote, c) {
                    (None, b'"' | b'\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, b'>') => break,
                    _ => {}
                }
                j += 1;
            }
            if rest.starts_with(b"</") {
                depth = depth.saturating_sub(1);
            } else {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(LimitError::TooManyElements(line_at(b, start)));
                }
                if b[j - 1] != b'/' {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(LimitError::TooDeep(line_at(b, start)));
                    }
                }
            }
            i = j + 1;
        }
    }
    Ok(())
}

/// Checks a JSON document's size and nesting depth (brackets outside strings).
pub fn check_json(text: &str) -> Result<(), LimitError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(LimitError::TooLarge(text.len()));
    }
    let b = text.as_bytes();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (pos, &c) in b.iter().enumerate() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(LimitError::TooDeep(line_at(b, pos)));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("<domain>{}{}</domain>", "<a>".repeat(n), "</a>".repeat(n))
    }

    #[test]
    fn ordinary_documents_pass() {
        let xml = "<?xml version='1.0' encoding='UTF-8'?>\n<!-- virsh dumpxml -->\n<domain type='kvm'>\
                   <name>a&gt;b</name><devices><disk a=\"x>y\"/><![CDATA[<not><a><tag>]]></devices></domain>";
        assert_eq!(check_xml(xml), Ok(()));
        assert_eq!(check_xml(&nested(MAX_DEPTH - 1)), Ok(()));
        assert_eq!(check_json(r#"{"a": [1, {"b": "[[[{{{\"["}]}"#), Ok(()));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_line() {
        assert_eq!(check_xml(&nested(MAX_DEPTH)), Err(LimitError::TooDeep(1)));
        let deep = format!("<domain>\n{}", "<a>".repeat(3000));
        assert_eq!(check_xml(&deep), Err(LimitError::TooDeep(2)));
        let json = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(check_json(&json), Err(LimitError::TooDeep(1)));
    }

    #[test]
    fn element_count_and_size_are_bounded() {
        let many = format!("<domain>{}</domain>", "<a/>".repeat(MAX_ELEMENTS));
        assert_eq!(check_xml(&many), Err(LimitError::TooManyElements(1)));
        let big = format!("<domain>{}</domain>", " ".repeat(10 * 1024 * 1024));
        assert!(matches!(check_xml(&big), Err(LimitError::TooLarge(_))));
        assert!(matches!(
            check_json(&format!("\"{}\"", "x".repeat(MAX_DOCUMENT_BYTES))),
            Err(LimitError::TooLarge(_))
        ));
    }

    #[test]
    fn doctype_entities_and_other_encodings_are_refused() {
        let bomb = "<?xml version='1.0'?>\n<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;'>]>\n<domain>&lol2;</domain>";
        assert_eq!(check_xml(bomb), Err(LimitError::Doctype(2)));
        let latin1 = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><domain/>";
        assert_eq!(check_xml(latin1), Err(LimitError::Encoding("ISO-8859-1".into())));
        assert_eq!(check_xml("<domain><!-- open"), Err(LimitError::Unterminated(1)));
        assert_eq!(check_xml("<domain a='>"), Err(LimitError::Unterminated(1)));
    }
}
