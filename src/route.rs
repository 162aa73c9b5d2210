//! Routing keys to bulkheads by glob patterns, for
//! [`BulkheadManagerBuilder::route`](crate::BulkheadManagerBuilder::route).
//!
//! A pattern covers the whole key; `*` matches any run of characters, also an empty one;
//! every other character matches itself. No other metacharacters, so an endpoint's path
//! (`/users/*/orders`) needs no escaping.

/// Whether `pattern` matches all of `key`.
///
/// The classic greedy matcher with one backtrack point (the last `*`): linear in practice,
/// O(pattern × key) at worst, no recursion and no allocation.
pub(crate) fn glob_match(pattern: &str, key: &str) -> bool {
    let p = pattern.as_bytes();
    let k = key.as_bytes();
    let (mut pi, mut ki) = (0, 0);
    // Where the last star was, and the key position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ki < k.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ki));
            pi += 1;
        } else if pi < p.len() && p[pi] == k[ki] {
            pi += 1;
            ki += 1;
        } else if let Some((sp, sk)) = star {
            // Let the star swallow one more byte. Bytes, not chars: a multi-byte character
            // matches only itself, byte by byte, so this stays correct for UTF-8.
            pi = sp + 1;
            ki = sk + 1;
            star = Some((sp, sk + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("/users/*", "/users/"));
        assert!(glob_match("/users/*", "/users/42"));
        assert!(!glob_match("/users/*", "/user"));
        assert!(glob_match("/users/*/orders", "/users/42/orders"));
        assert!(!glob_match("/users/*/orders", "/users/42/orders/7"));
        assert!(glob_match("*.jpg", "a.b.jpg"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("héllo*", "héllo wörld"));
        assert!(glob_match("**", "x"));
    }
}
