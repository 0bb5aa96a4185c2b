//! Sorting raw messages before they are parsed, for overload control: what continues
//! work already under way (a response to one of our requests, a request inside a
//! dialog, a PUBLISH refreshing a publication) is served before what starts new work.
//! A byte scan of the header section, no parse: a message it misjudges is only queued
//! at the wrong priority, and is parsed and checked like any other later.

/// Whether `bytes` continues work under way rather than starting new work.
pub fn continues_work(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"SIP/") {
        return true;
    }
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = bytes.get(..head_end).unwrap_or(bytes);
    // The request line first, then one header per line (folding cannot start a name).
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let name = name.trim_ascii();
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        if (is(b"To") || is(b"t")) && contains_ci(value, b";tag=") {
            // RFC 3261 §12: a To tag puts the request inside a dialog.
            return true;
        }
        // RFC 3903 §4.1: a PUBLISH with an entity-tag refreshes or changes a
        // publication that exists.
        if is(b"SIP-If-Match") {
            return true;
        }
    }
    false
}

fn contains_ci(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &str) -> Vec<u8> {
        format!(
            "SUBSCRIBE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{headers}\r\n\r\nTo: x;tag=body"
        )
        .into_bytes()
    }

    #[test]
    fn responses_and_in_dialog_requests_continue_work_and_new_requests_do_not() {
        assert!(continues_work(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(continues_work(&request("To: <sip:a@b>;tag=x")));
        assert!(continues_work(&request("t : <sip:a@b> ;TAG=x")));
        assert!(continues_work(&request(
            "To: <sip:a@b>\r\nSIP-If-Match: e1"
        )));
        assert!(!continues_work(&request("To: <sip:a@b>")));
        assert!(!continues_work(&request(
            "From: <sip:c@d>;tag=1\r\nTo: <sip:a@b>"
        )));
        // A tag in the body does not count.
        assert!(!continues_work(&request("To: <sip:a@b>")));
        assert!(!continues_work(b""));
        assert!(!continues_work(b"garbage"));
    }
}
