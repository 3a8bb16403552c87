//! API keys, as API Gateway deployments send them in `x-api-key`.

/// Whether `presented` is one of `keys`; the comparison takes the same time wherever the
/// bytes differ, so timing tells nothing about a key.
pub fn accepts(keys: &[String], presented: &str) -> bool {
    keys.iter().fold(false, |found, key| found | constant_time_eq(key.as_bytes(), presented.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_key_is_accepted() {
        let keys = vec!["first-key".to_string(), "second-key".to_string()];
        assert!(accepts(&keys, "second-key"));
        assert!(!accepts(&keys, "second-kez"));
        assert!(!accepts(&keys, "second"));
        assert!(!accepts(&keys, ""));
        assert!(!accepts(&[], "first-key"));
    }
}
