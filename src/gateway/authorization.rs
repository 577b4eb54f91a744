//! Reading the `Authorization` header, one way at the edge check and in
//! the scorer: the scheme in any case, spaces or tabs, repeated headers
//! joined with ", " by the gateway. Anything else a client may write is
//! either another scheme (not tokenwatch's to judge) or unreadable (refused
//! at the edge).

/// What an `Authorization` header value says, read one way at the edge
/// check and in the scorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authorization<'a> {
    /// No bearer credential (another scheme, such as Basic): not a token
    /// tokenwatch judges.
    Other,
    /// Exactly one bearer token; a header repeated with the same token
    /// (NGINX ≥ 1.23 and Envoy join repeats with ", ") counts once.
    Bearer(&'a str),
    /// Different bearer tokens in one request, or a bearer credential that
    /// cannot be read: an edge must refuse it. The scorer scores the first
    /// token it could read.
    Ambiguous(Option<&'a str>),
}

/// Reads an `Authorization` value: the scheme in any case, then one or
/// more spaces or tabs, then a token with no white space; comma-joined
/// repeats allowed (a token never holds a comma, RFC 6750 `b64token`).
pub fn read_authorization(header: &str) -> Authorization<'_> {
    // One credential, the usual case: one pass, no split.
    if memchr::memchr(b',', header.as_bytes()).is_none() {
        return match one_credential(header) {
            Credential::Bearer(t) => Authorization::Bearer(t),
            Credential::Other => Authorization::Other,
            Credential::Unreadable => Authorization::Ambiguous(None),
        };
    }
    let (mut token, mut other, mut unreadable, mut distinct) = (None, false, false, false);
    for part in header.split(',') {
        match one_credential(part) {
            Credential::Bearer(t) => match token {
                None => token = Some(t),
                Some(first) => distinct |= first != t,
            },
            Credential::Other => other = true,
            Credential::Unreadable => unreadable = true,
        }
    }
    match token {
        None if !unreadable => Authorization::Other,
        Some(t) if !(other || unreadable || distinct) => Authorization::Bearer(t),
        first => Authorization::Ambiguous(first),
    }
}

enum Credential<'a> {
    Bearer(&'a str),
    Other,
    Unreadable,
}

fn one_credential(part: &str) -> Credential<'_> {
    let part = part.trim_matches([' ', '\t']);
    // The scheme by its fixed length: no search through a long token.
    let Some(rest) = part
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer"))
        .map(|_| &part[6..])
    else {
        return Credential::Other;
    };
    let token = rest.trim_start_matches([' ', '\t']);
    if token.len() == rest.len() {
        // "Bearerxyz": not the bearer scheme followed by a token.
        return if rest.is_empty() {
            Credential::Unreadable
        } else {
            Credential::Other
        };
    }
    // memchr's vector search: a token is a few hundred bytes, and std's
    // search showed in the normalize profile.
    if token.is_empty() || memchr::memchr2(b' ', b'\t', token.as_bytes()).is_some() {
        Credential::Unreadable
    } else {
        Credential::Bearer(token)
    }
}

/// The bearer tokens of an ambiguous header other than `first` (the one
/// [`read_authorization`] names), each once, in order. The scorer scores a
/// request by every one of them: a decoy in front must not hide a stolen
/// token behind it.
pub fn other_bearer_tokens<'h>(header: &'h str, first: &str) -> Vec<&'h str> {
    let mut others: Vec<&str> = Vec::new();
    for part in header.split(',') {
        if let Credential::Bearer(t) = one_credential(part) {
            if t != first && !others.contains(&t) {
                others.push(t);
            }
        }
    }
    others
}

/// The token a request is scored by first: its one bearer token, or the
/// first of several.
pub fn bearer(header: &str) -> Option<&str> {
    match read_authorization(header) {
        Authorization::Bearer(t) | Authorization::Ambiguous(Some(t)) => Some(t),
        Authorization::Other | Authorization::Ambiguous(None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_credential_is_a_token() {
        for (header, want) in [
            ("Bearer abc.def", Some("abc.def")),
            ("bearer   abc ", Some("abc")),
            (" BEARER abc", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearer a b", None),
            // A tab, as well as spaces, separates scheme and token (RFC 9110
            // allows either; a thief's client may send either).
            ("Bearer\tabc", Some("abc")),
            ("Bearer \t abc\t", Some("abc")),
            // A repeated header joined by the gateway: the one token.
            ("Bearer abc, Bearer abc", Some("abc")),
            ("Bearer abc,bearer\tabc", Some("abc")),
            // Different tokens: scored by the first.
            ("Bearer abc, Bearer xyz", Some("abc")),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearerabc", None),
            ("Béarer abc", None),
        ] {
            assert_eq!(bearer(header), want, "{header:?}");
        }
    }

    #[test]
    fn an_authorization_header_reads_one_way() {
        use Authorization::*;
        for (header, want) in [
            ("Bearer abc", Bearer("abc")),
            ("bEaReR\tabc", Bearer("abc")),
            ("Bearer abc, Bearer abc", Bearer("abc")),
            ("Basic dXNlcjpwYXNz", Other),
            ("Basic a, Basic b", Other),
            ("Bearerabc", Other),
            ("Bearer abc, Bearer xyz", Ambiguous(Some("abc"))),
            ("Bearer abc, Basic dXNlcjpwYXNz", Ambiguous(Some("abc"))),
            ("Bearer a b", Ambiguous(None)),
            ("Bearer", Ambiguous(None)),
            ("Bearer abc, Bearer", Ambiguous(Some("abc"))),
        ] {
            assert_eq!(read_authorization(header), want, "{header:?}");
        }
    }

    #[test]
    fn every_other_bearer_token_is_named_once_in_order() {
        let h = "Bearer decoy, Bearer stolen,bearer\tdecoy, Basic x, Bearer third, Bearer stolen";
        assert_eq!(other_bearer_tokens(h, "decoy"), ["stolen", "third"]);
        assert!(other_bearer_tokens("Bearer a, Bearer a", "a").is_empty());
    }
}
