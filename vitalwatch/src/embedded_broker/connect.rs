//! The first packet of an MQTT connection (CONNECT), read far enough to choose the protocol
//! (3.1/3.1.1 or 5) and to check the credentials. Pure: bytes in, fields out.

/// MQTT 5's protocol level.
pub const MQTT5: u8 = 5;

/// What the front of the embedded broker needs from a CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub level: u8,
    /// Username, if given.
    pub username: Option<String>,
    /// Password, if given.
    pub password: Option<Vec<u8>>,
    /// Length of the whole packet, bytes.
    pub len: usize,
}

/// Why the first packet is not a usable CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// Another packet type first.
    #[error("the first packet is not CONNECT")]
    NotConnect,
    /// A length or field that runs past the packet, or a bad encoding.
    #[error("malformed CONNECT packet")]
    Malformed,
    /// Larger than allowed.
    #[error("CONNECT packet larger than {0} bytes")]
    TooLarge(usize),
}

/// Parses a CONNECT at the start of `buf`. `Ok(None)`: not all of it has arrived yet.
pub fn parse(buf: &[u8], max_len: usize) -> Result<Option<Connect>, ConnectError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    if first != 0x10 {
        return Err(ConnectError::NotConnect);
    }
    let Some((remaining, header)) = varint(&buf[1..])? else { return Ok(None) };
    let len = 1 + header + remaining;
    if len > max_len {
        return Err(ConnectError::TooLarge(max_len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut r = Reader { buf: &buf[1 + header..len] };
    let name = r.bytes()?;
    if name != b"MQTT" && name != b"MQIsdp" {
        return Err(ConnectError::Malformed);
    }
    let level = r.u8()?;
    let flags = r.u8()?;
    r.take(2)?; // keep-alive
    if level == MQTT5 {
        r.properties()?;
    }
    r.bytes()?; // client id
    if flags & 0x04 != 0 {
        if level == MQTT5 {
            r.properties()?;
        }
        r.bytes()?; // will topic
        r.bytes()?; // will payload
    }
    let username = if flags & 0x80 != 0 {
        Some(String::from_utf8(r.bytes()?.to_vec()).map_err(|_| ConnectError::Malformed)?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 { Some(r.bytes()?.to_vec()) } else { None };
    Ok(Some(Connect { level, username, password, len }))
}

/// The CONNACK refusing a client that gave no or wrong credentials: 3.1.1 return code 5 ("not
/// authorized"), MQTT 5 reason 0x87 ("not authorized").
pub fn not_authorized(level: u8) -> &'static [u8] {
    if level == MQTT5 { &[0x20, 0x03, 0x00, 0x87, 0x00] } else { &[0x20, 0x02, 0x00, 0x05] }
}

/// A variable byte integer: (value, bytes used), `None` if incomplete.
fn varint(buf: &[u8]) -> Result<Option<(usize, usize)>, ConnectError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(i) else { return Ok(None) };
        value |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    Err(ConnectError::Malformed)
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ConnectError> {
        if self.buf.len() < n {
            return Err(ConnectError::Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ConnectError> {
        Ok(self.take(1)?[0])
    }

    /// A two-byte length and that many bytes.
    fn bytes(&mut self) -> Result<&'a [u8], ConnectError> {
        let l = self.take(2)?;
        self.take(u16::from_be_bytes([l[0], l[1]]) as usize)
    }

    /// MQTT 5 properties: a variable byte length and that many bytes, skipped.
    fn properties(&mut self) -> Result<(), ConnectError> {
        let (n, used) = varint(self.buf)?.ok_or(ConnectError::Malformed)?;
        self.take(used + n).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Vec<u8> {
        let mut out = (v.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(v.as_bytes());
        out
    }

    fn connect(level: u8, will: bool, user: Option<&str>, pass: Option<&str>) -> Vec<u8> {
        let mut body = s("MQTT");
        body.push(level);
        let flags = 0x02
            | if will { 0x04 } else { 0 }
            | if user.is_some() { 0x80 } else { 0 }
            | if pass.is_some() { 0x40 } else { 0 };
        body.push(flags);
        body.extend([0, 60]);
        if level == MQTT5 {
            body.extend([0x05, 0x11, 0, 0, 0, 10]); // properties: session expiry 10 s
        }
        body.extend(s("client-1"));
        if will {
            if level == MQTT5 {
                body.push(0);
            }
            body.extend(s("will/topic"));
            body.extend(s("gone"));
        }
        if let Some(u) = user {
            body.extend(s(u));
        }
        if let Some(p) = pass {
            body.extend(s(p));
        }
        let mut out = vec![0x10, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn reads_level_and_credentials() {
        for level in [4, MQTT5] {
            for will in [false, true] {
                let p = connect(level, will, Some("dev-1"), Some("pw"));
                let c = parse(&p, 1024).unwrap().unwrap();
                assert_eq!(c.level, level);
                assert_eq!(c.username.as_deref(), Some("dev-1"));
                assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
                assert_eq!(c.len, p.len());
                // Any prefix: not complete yet.
                for cut in 0..p.len() {
                    assert_eq!(parse(&p[..cut], 1024), Ok(None), "level {level} will {will} cut {cut}");
                }
            }
        }
        let anon = parse(&connect(4, false, None, None), 1024).unwrap().unwrap();
        assert_eq!((anon.username, anon.password), (None, None));
    }

    #[test]
    fn refuses_other_packets_and_oversize() {
        assert_eq!(parse(&[0x30, 0x00], 1024), Err(ConnectError::NotConnect));
        assert_eq!(parse(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01], 1024), Err(ConnectError::Malformed));
        let p = connect(4, false, Some("u"), Some("p"));
        assert_eq!(parse(&p, 10), Err(ConnectError::TooLarge(10)));
        let mut bad = p.clone();
        bad[3] = 0x7f; // protocol name length past the end
        assert_eq!(parse(&bad, 1024), Err(ConnectError::Malformed));
    }
}
