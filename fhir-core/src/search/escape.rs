//! Splitting search values on unescaped separators (`,` between OR values, `|` inside tokens and
//! quantities, `$` between composite parts) and removing the escapes (`\,` `\|` `\$` `\\`).

/// Splits `text` on every `separator` not preceded by a backslash; the parts keep their escapes.
pub fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, character) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' {
            escaped = true;
        } else if character == separator {
            parts.push(&text[start..index]);
            start = index + character.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Removes the backslash before escaped characters.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            match characters.next() {
                Some(next) => out.push(next),
                None => out.push('\\'),
            }
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_and_unescapes() {
        assert_eq!(split_unescaped("a,b\\,c,d", ','), vec!["a", "b\\,c", "d"]);
        assert_eq!(split_unescaped("sys|co\\|de", '|'), vec!["sys", "co\\|de"]);
        assert_eq!(unescape("co\\|de\\,x\\$y\\\\"), "co|de,x$y\\");
        assert_eq!(split_unescaped("", ','), vec![""]);
        assert_eq!(split_unescaped("a\\\\,b", ','), vec!["a\\\\", "b"]);
    }

    proptest! {
        #[test]
        fn escaping_round_trips(values in proptest::collection::vec("[a-z,|$\\\\]{0,6}", 1..5)) {
            let escaped: Vec<String> = values
                .iter()
                .map(|v| v.replace('\\', "\\\\").replace(',', "\\,").replace('|', "\\|").replace('$', "\\$"))
                .collect();
            let joined = escaped.join(",");
            let parts: Vec<String> = split_unescaped(&joined, ',').into_iter().map(unescape).collect();
            prop_assert_eq!(parts, values);
        }
    }
}
