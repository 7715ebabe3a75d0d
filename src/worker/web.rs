//! What every HTTP call the worker makes shares, to a destination or to its token
//! endpoint: the checks of URLs and headers, the origin logs name, and which answers are
//! final.

/// An `http://` or `https://` URL with a host and no blanks or control characters.
pub(crate) fn valid_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    })
}

/// A header name: a token of RFC 9110.
pub(crate) fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value of printable ASCII and tabs.
pub(crate) fn valid_header_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// Whether an answer's `status` (not 2xx) is final: a 4xx other than 408 (time-out), 425
/// (too early) and 429 (too many requests), as EventBridge API destinations judge it;
/// unless the rule retries every error.
pub fn is_permanent(status: u16, retry_all_errors: bool) -> bool {
    !retry_all_errors && (400..500).contains(&status) && !matches!(status, 408 | 425 | 429)
}

/// For logs: a URL's host and port, without credentials, path or query.
pub fn origin(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority)
}
