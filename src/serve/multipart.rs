//! The one part of a `multipart/form-data` body that `POST /file` takes.

/// The part named `field`: its filename (empty if none) and bytes.
pub fn file_part(content_type: &str, body: &[u8], field: &str) -> Option<(String, Vec<u8>)> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })?;
    if boundary.is_empty() || boundary.len() > 200 {
        return None;
    }
    let delim = format!("--{boundary}").into_bytes();
    let mut at = find(body, &delim, 0)? + delim.len();
    loop {
        // After a delimiter: "--" ends the body, else CRLF and a part.
        if body.get(at..at + 2) == Some(b"--") {
            return None;
        }
        at = find(body, b"\r\n", at)? + 2;
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = String::from_utf8_lossy(&body[at..head_end]);
        let start = head_end + 4;
        let next = find(body, &[b"\r\n".as_slice(), &delim].concat(), start)?;
        let disposition = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-disposition")
                .then(|| v.to_string())
        });
        if let Some(d) = disposition {
            let param = |name: &str| {
                d.split(';').find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
                })
            };
            if param("name").as_deref() == Some(field) {
                return Some((
                    param("filename").unwrap_or_default(),
                    body[start..next].to_vec(),
                ));
            }
        }
        at = next + 2 + delim.len();
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_part_is_found_among_others() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nzzz\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.cc\"\r\nContent-Type: application/octet-stream\r\n\r\nint main(){}\r\n\r\n--XyZ--\r\n";
        let (name, data) = file_part("multipart/form-data; boundary=XyZ", body, "file").unwrap();
        assert_eq!(name, "a.cc");
        assert_eq!(data, b"int main(){}\r\n");
        assert!(file_part("multipart/form-data; boundary=XyZ", body, "nope").is_none());
        assert!(file_part("application/json", body, "file").is_none());
        assert!(file_part(
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\ngarbage",
            "file"
        )
        .is_none());
    }
}
