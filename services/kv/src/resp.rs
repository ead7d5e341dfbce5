//! RESP2: parsing requests (multibulk and inline) and encoding replies.

/// Largest bulk string a client may send (Redis allows 512 MB; a wasm32
/// guest has 4 GiB of memory at most, so stay well below).
pub const MAX_BULK_LEN: usize = 64 * 1024 * 1024;
/// Most arguments in one multibulk request.
pub const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline request line, and longest `*<n>` / `$<n>` header line.
pub const MAX_INLINE_LEN: usize = 64 * 1024;

/// Result of looking at the start of the input buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// No complete request yet: read more.
    Incomplete,
    /// A request (its arguments, possibly none, e.g. a blank inline line)
    /// and how many bytes of the buffer it used.
    Request(Vec<Vec<u8>>, usize),
}

/// A malformed request. The message follows `ERR Protocol error: ` in the
/// reply, after which the connection is closed (as Redis does).
#[derive(Debug, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

/// Parses the request at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    match buf.first() {
        None => Ok(Parsed::Incomplete),
        Some(b'*') => parse_multibulk(buf),
        Some(_) => parse_inline(buf),
    }
}

/// Finds the `\r\n` ending the header line starting at `from`; returns the
/// index of the `\r`.
fn header_end(buf: &[u8], from: usize, too_long: &'static str) -> Result<Option<usize>, ProtocolError> {
    let rest = &buf[from..];
    let window = &rest[..rest.len().min(MAX_INLINE_LEN + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i > MAX_INLINE_LEN => Err(ProtocolError(too_long)),
        Some(i) => Ok(Some(from + i)),
        None if rest.len() > MAX_INLINE_LEN => Err(ProtocolError(too_long)),
        None => Ok(None),
    }
}

/// Parses a decimal (optionally negative) integer of a header line.
fn header_int(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
    Some(if negative { -value } else { value })
}

fn parse_multibulk(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    let Some(end) = header_end(buf, 1, "too big mbulk count string")? else {
        return Ok(Parsed::Incomplete);
    };
    let count = header_int(&buf[1..end]).ok_or(ProtocolError("invalid multibulk length"))?;
    let mut pos = end + 2;
    if count <= 0 {
        // `*0` and `*-1` are empty requests: nothing to do, nothing to reply.
        return Ok(Parsed::Request(Vec::new(), pos));
    }
    let count = usize::try_from(count).map_err(|_| ProtocolError("invalid multibulk length"))?;
    if count > MAX_ARGS {
        return Err(ProtocolError("invalid multibulk length"));
    }
    // Find every argument first and copy only once the request is complete,
    // so a request arriving in many reads is not copied over and over. The
    // count comes from the client: do not trust it for the allocation.
    let mut spans = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(Parsed::Incomplete),
            Some(b'$') => {}
            Some(_) => return Err(ProtocolError("expected '$'")),
        }
        let Some(end) = header_end(buf, pos + 1, "too big bulk count string")? else {
            return Ok(Parsed::Incomplete);
        };
        let len = header_int(&buf[pos + 1..end])
            .and_then(|len| usize::try_from(len).ok())
            .filter(|&len| len <= MAX_BULK_LEN)
            .ok_or(ProtocolError("invalid bulk length"))?;
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(Parsed::Incomplete);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Err(ProtocolError("expected CRLF after bulk string"));
        }
        spans.push(start..start + len);
        pos = start + len + 2;
    }
    let args = spans.into_iter().map(|span| buf[span].to_vec()).collect();
    Ok(Parsed::Request(args, pos))
}

fn parse_inline(buf: &[u8]) -> Result<Parsed, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_INLINE_LEN + 1)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_INLINE_LEN {
            Err(ProtocolError("too big inline request"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    if newline > MAX_INLINE_LEN {
        return Err(ProtocolError("too big inline request"));
    }
    let line = buf[..newline].strip_suffix(b"\r").unwrap_or(&buf[..newline]);
    let args = split_inline(line).ok_or(ProtocolError("unbalanced quotes in request"))?;
    Ok(Parsed::Request(args, newline + 1))
}

/// Splits an inline request on whitespace. `"..."` (with `\n \r \t \\ \"
/// \xHH` escapes) and `'...'` (with `\'`) quote an argument, as in
/// `redis-cli`. Returns `None` for unbalanced quotes.
fn split_inline(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            let escaped = *line.get(i + 1)?;
                            let hex = line.get(i + 2..i + 4).and_then(hex_byte);
                            match (escaped, hex) {
                                (b'x', Some(byte)) => {
                                    arg.push(byte);
                                    i += 4;
                                    continue;
                                }
                                (b'n', _) => arg.push(b'\n'),
                                (b'r', _) => arg.push(b'\r'),
                                (b't', _) => arg.push(b'\t'),
                                (b'b', _) => arg.push(0x08),
                                (b'a', _) => arg.push(0x07),
                                (other, _) => arg.push(other),
                            }
                            i += 2;
                        }
                        byte => {
                            arg.push(byte);
                            i += 1;
                        }
                    }
                }
                i += 1; // the closing quote
            }
            b'\'' => {
                i += 1;
                loop {
                    match *line.get(i)? {
                        b'\'' => break,
                        b'\\' if line.get(i + 1) == Some(&b'\'') => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        byte => {
                            arg.push(byte);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    arg.push(line[i]);
                    i += 1;
                }
                args.push(arg);
                continue;
            }
        }
        // A closing quote must be followed by whitespace or the end.
        if i < line.len() && !line[i].is_ascii_whitespace() {
            return None;
        }
        args.push(arg);
    }
}

fn hex_byte(digits: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(digits).ok()?;
    u8::from_str_radix(text, 16).ok()
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(&'static str),
    /// `-ERR ...`: the whole message, e.g. `ERR syntax error`.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// `$-1`
    Nil,
    Array(Vec<Reply>),
}

impl Reply {
    pub const OK: Reply = Reply::Simple("OK");

    /// `-ERR <message>`.
    pub fn err(message: impl Into<String>) -> Reply {
        Reply::Error(format!("ERR {}", message.into()))
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => {
                out.push(b'+');
                push_line(out, text.as_bytes());
            }
            Reply::Error(message) => {
                out.push(b'-');
                push_line(out, message.as_bytes());
            }
            Reply::Integer(n) => {
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            Reply::Bulk(bytes) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

/// Appends a status/error line; CR and LF (which would end it early, e.g.
/// from a client's bytes echoed in an error) become spaces.
fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk() {
        let input = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\nrest";
        assert_eq!(
            parse(input),
            Ok(Parsed::Request(args(&["GET", "foo"]), input.len() - 4))
        );
        assert_eq!(parse(b"*1\r\n$0\r\n\r\n"), Ok(Parsed::Request(vec![vec![]], 10)));
        assert_eq!(parse(b"*0\r\n"), Ok(Parsed::Request(vec![], 4)));
        assert_eq!(parse(b"*-1\r\n"), Ok(Parsed::Request(vec![], 5)));
    }

    #[test]
    fn multibulk_binary_value() {
        let input = b"*1\r\n$4\r\na\r\nb\r\n";
        assert_eq!(parse(input), Ok(Parsed::Request(vec![b"a\r\nb".to_vec()], input.len())));
    }

    #[test]
    fn incomplete_at_every_split() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]), Ok(Parsed::Incomplete), "cut {cut}");
        }
        assert_eq!(
            parse(input),
            Ok(Parsed::Request(args(&["SET", "k", "hello"]), input.len()))
        );
    }

    #[test]
    fn protocol_errors() {
        assert!(parse(b"*x\r\n").is_err());
        assert!(parse(b"*1\r\n:3\r\n").is_err());
        assert!(parse(b"*1\r\n$-1\r\n").is_err());
        assert!(parse(b"*1\r\n$abc\r\n").is_err());
        assert!(parse(b"*1\r\n$3\r\nfooXY").is_err());
        assert!(parse(b"*99999999999999999999\r\n").is_err());
        assert!(parse(format!("*1\r\n${}\r\n", MAX_BULK_LEN + 1).as_bytes()).is_err());
        assert!(parse(&vec![b'*'; MAX_INLINE_LEN + 10]).is_err());
        assert!(parse(&vec![b'a'; MAX_INLINE_LEN + 10]).is_err());
        // A huge count alone allocates nothing and just waits for more.
        assert_eq!(parse(b"*1000000\r\n"), Ok(Parsed::Incomplete));
    }

    #[test]
    fn inline() {
        assert_eq!(parse(b"PING\r\n"), Ok(Parsed::Request(args(&["PING"]), 6)));
        assert_eq!(
            parse(b"  set  a   b\n"),
            Ok(Parsed::Request(args(&["set", "a", "b"]), 13))
        );
        assert_eq!(parse(b"\r\n"), Ok(Parsed::Request(vec![], 2)));
        assert_eq!(parse(b"PING"), Ok(Parsed::Incomplete));
        let quoted = b"SET \"a b\\x41\\n\" 'it\\'s'\r\n";
        assert_eq!(
            parse(quoted),
            Ok(Parsed::Request(args(&["SET", "a bA\n", "it's"]), quoted.len()))
        );
        assert!(parse(b"SET \"abc\r\n").is_err());
        assert!(parse(b"SET \"abc\"def\r\n").is_err());
    }

    #[test]
    fn encode() {
        let mut out = Vec::new();
        Reply::Array(vec![
            Reply::OK,
            Reply::err("bad\r\nthing"),
            Reply::Integer(-3),
            Reply::Bulk(b"hi".to_vec()),
            Reply::Nil,
            Reply::Array(vec![]),
        ])
        .encode(&mut out);
        assert_eq!(out, b"*6\r\n+OK\r\n-ERR bad  thing\r\n:-3\r\n$2\r\nhi\r\n$-1\r\n*0\r\n");
    }
}
