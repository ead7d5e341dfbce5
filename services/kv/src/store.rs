//! The key space and the commands that work on it.
//!
//! Keys expire lazily: an expired key is removed when a command touches it,
//! and `KEYS` / `DBSIZE` sweep the whole key space first.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::glob;
use crate::resp::Reply;

struct Entry {
    value: Vec<u8>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// What the connection should do after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply(Reply),
    /// `QUIT`: reply `+OK` and close.
    Quit,
    /// `DEBUG SEGFAULT`: crash the whole service.
    Crash,
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        Outcome::Reply(reply)
    }
}

#[derive(Default)]
pub struct Store {
    map: HashMap<Vec<u8>, Entry>,
}

type Args = [Vec<u8>];

fn wrong_args(name: &str) -> Reply {
    Reply::err(format!("wrong number of arguments for '{name}' command"))
}

fn not_an_integer() -> Reply {
    Reply::err("value is not an integer or out of range")
}

fn syntax_error() -> Reply {
    Reply::err("syntax error")
}

fn parse_i64(arg: &[u8]) -> Option<i64> {
    // Like Redis: plain decimal only (no `+`, no spaces).
    if arg.first() == Some(&b'+') {
        return None;
    }
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Printable form of a client's bytes for error messages (at most 128 bytes).
fn show(arg: &[u8]) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(128)]).into_owned()
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// The live entry for `key`, removing it first if it has expired.
    fn live(&mut self, key: &[u8], now: Instant) -> Option<&mut Entry> {
        if self.map.get(key).is_some_and(|e| !e.is_live(now)) {
            self.map.remove(key);
        }
        self.map.get_mut(key)
    }

    fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, e| e.is_live(now));
    }

    /// Runs one request (`args` is non-empty) at time `now`.
    pub fn execute(&mut self, args: &Args, now: Instant) -> Outcome {
        let Some((name, rest)) = args.split_first() else {
            return Reply::err("empty command").into();
        };
        let upper = name.to_ascii_uppercase();
        let lower = String::from_utf8_lossy(&name.to_ascii_lowercase()).into_owned();
        let argc = args.len();
        // Arity is checked here, so the handlers can index `args` freely.
        let arity_ok = match upper.as_slice() {
            b"PING" => argc <= 2,
            b"ECHO" | b"GET" | b"INCR" | b"DECR" | b"TTL" | b"PTTL" | b"PERSIST" | b"KEYS" => argc == 2,
            b"SET" => argc >= 3,
            b"DEL" | b"EXISTS" | b"MGET" => argc >= 2,
            b"MSET" => argc >= 3 && argc % 2 == 1,
            b"INCRBY" | b"DECRBY" => argc == 3,
            b"EXPIRE" | b"PEXPIRE" => argc >= 3,
            b"DBSIZE" => argc == 1,
            b"FLUSHALL" | b"FLUSHDB" => argc <= 2,
            b"SELECT" => argc == 2,
            b"CLIENT" | b"DEBUG" => argc >= 2,
            b"COMMAND" | b"QUIT" => true,
            _ => {
                let shown: String = rest.iter().take(16).map(|a| format!("'{}' ", show(a))).collect();
                let message = format!("unknown command '{}', with args beginning with: {shown}", show(name));
                return Reply::err(message).into();
            }
        };
        if !arity_ok {
            return wrong_args(&lower).into();
        }
        match upper.as_slice() {
            b"PING" => match rest.first() {
                None => Reply::Simple("PONG"),
                Some(message) => Reply::Bulk(message.clone()),
            },
            b"ECHO" => Reply::Bulk(args[1].clone()),
            b"GET" => match self.live(&args[1], now) {
                Some(entry) => Reply::Bulk(entry.value.clone()),
                None => Reply::Nil,
            },
            b"SET" => self.set(args, now),
            b"DEL" => {
                let mut removed = 0;
                for key in rest {
                    if self.live(key, now).is_some() {
                        self.map.remove(key);
                        removed += 1;
                    }
                }
                Reply::Integer(removed)
            }
            b"EXISTS" => {
                // Like Redis, a key named twice counts twice.
                let mut found = 0;
                for key in rest {
                    if self.live(key, now).is_some() {
                        found += 1;
                    }
                }
                Reply::Integer(found)
            }
            b"INCR" => self.incr_by(&args[1], 1, now),
            b"DECR" => self.incr_by(&args[1], -1, now),
            b"INCRBY" | b"DECRBY" => {
                let delta = parse_i64(&args[2]);
                let delta = if upper == b"DECRBY" {
                    delta.and_then(i64::checked_neg)
                } else {
                    delta
                };
                match delta {
                    Some(delta) => self.incr_by(&args[1], delta, now),
                    None => not_an_integer(),
                }
            }
            b"EXPIRE" => self.expire(args, 1000, &lower, now),
            b"PEXPIRE" => self.expire(args, 1, &lower, now),
            b"TTL" | b"PTTL" => match self.live(&args[1], now) {
                None => Reply::Integer(-2),
                Some(Entry { expires_at: None, .. }) => Reply::Integer(-1),
                Some(Entry {
                    expires_at: Some(at), ..
                }) => {
                    let millis = i64::try_from(at.duration_since(now).as_millis()).unwrap_or(i64::MAX);
                    // TTL rounds to the nearest second, as Redis does.
                    Reply::Integer(if upper == b"TTL" {
                        millis.saturating_add(500) / 1000
                    } else {
                        millis
                    })
                }
            },
            b"PERSIST" => match self.live(&args[1], now) {
                Some(entry) if entry.expires_at.is_some() => {
                    entry.expires_at = None;
                    Reply::Integer(1)
                }
                _ => Reply::Integer(0),
            },
            b"KEYS" => {
                self.sweep(now);
                let mut keys: Vec<&Vec<u8>> = self.map.keys().filter(|key| glob::matches(&args[1], key)).collect();
                keys.sort();
                Reply::Array(keys.into_iter().map(|key| Reply::Bulk(key.clone())).collect())
            }
            b"MGET" => Reply::Array(
                rest.iter()
                    .map(|key| match self.live(key, now) {
                        Some(entry) => Reply::Bulk(entry.value.clone()),
                        None => Reply::Nil,
                    })
                    .collect(),
            ),
            b"MSET" => {
                for pair in rest.chunks_exact(2) {
                    let entry = Entry {
                        value: pair[1].clone(),
                        expires_at: None,
                    };
                    self.map.insert(pair[0].clone(), entry);
                }
                Reply::OK
            }
            b"DBSIZE" => {
                self.sweep(now);
                Reply::Integer(self.map.len() as i64)
            }
            b"FLUSHALL" | b"FLUSHDB" => {
                self.map.clear();
                Reply::OK
            }
            b"SELECT" => match parse_i64(&args[1]) {
                Some(0) => Reply::OK,
                Some(_) => Reply::err("DB index is out of range"),
                None => not_an_integer(),
            },
            b"CLIENT" => match args[1].to_ascii_uppercase().as_slice() {
                // Sent by client libraries on connect (redis-rs: SETINFO).
                b"SETINFO" | b"SETNAME" => Reply::OK,
                b"GETNAME" => Reply::Nil,
                _ => Reply::err(format!("unknown subcommand '{}'", show(&args[1]))),
            },
            // redis-cli asks for command docs on start; there are none.
            b"COMMAND" => Reply::Array(Vec::new()),
            b"QUIT" => return Outcome::Quit,
            b"DEBUG" => match args[1].to_ascii_uppercase().as_slice() {
                b"SEGFAULT" => return Outcome::Crash,
                _ => Reply::err(format!("unknown subcommand '{}'", show(&args[1]))),
            },
            _ => Reply::err("unreachable: command without handler"),
        }
        .into()
    }

    /// `SET key value [NX | XX] [GET] [EX seconds | PX millis | KEEPTTL]`
    fn set(&mut self, args: &Args, now: Instant) -> Reply {
        let (mut nx, mut xx, mut get, mut keep_ttl) = (false, false, false, false);
        let mut ttl: Option<Duration> = None;
        let mut i = 3;
        while i < args.len() {
            let option = args[i].to_ascii_uppercase();
            match option.as_slice() {
                b"NX" if !xx => nx = true,
                b"XX" if !nx => xx = true,
                b"GET" => get = true,
                b"KEEPTTL" if ttl.is_none() => keep_ttl = true,
                b"EX" | b"PX" if ttl.is_none() && !keep_ttl && i + 1 < args.len() => {
                    i += 1;
                    let Some(amount) = parse_i64(&args[i]) else {
                        return not_an_integer();
                    };
                    let unit = if option == b"EX" { 1000 } else { 1 };
                    match amount.checked_mul(unit).filter(|&ms| ms > 0) {
                        Some(ms) if now.checked_add(Duration::from_millis(ms.unsigned_abs())).is_some() => {
                            ttl = Some(Duration::from_millis(ms.unsigned_abs()));
                        }
                        _ => return Reply::err("invalid expire time in 'set' command"),
                    }
                }
                _ => return syntax_error(),
            }
            i += 1;
        }
        let key = &args[1];
        let old = self.live(key, now);
        let old_value = old.as_ref().map(|e| e.value.clone());
        let old_expiry = old.and_then(|e| e.expires_at);
        let previous = || match &old_value {
            Some(value) => Reply::Bulk(value.clone()),
            None => Reply::Nil,
        };
        if (nx && old_value.is_some()) || (xx && old_value.is_none()) {
            return if get { previous() } else { Reply::Nil };
        }
        let expires_at = match ttl {
            Some(ttl) => now.checked_add(ttl),
            None if keep_ttl => old_expiry,
            None => None,
        };
        let reply = if get { previous() } else { Reply::OK };
        self.map.insert(
            key.clone(),
            Entry {
                value: args[2].clone(),
                expires_at,
            },
        );
        reply
    }

    /// `INCR` and friends; keeps the key's TTL.
    fn incr_by(&mut self, key: &[u8], delta: i64, now: Instant) -> Reply {
        let current = match self.live(key, now) {
            None => 0,
            Some(entry) => match parse_i64(&entry.value) {
                Some(n) => n,
                None => return not_an_integer(),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return Reply::err("increment or decrement would overflow");
        };
        let value = next.to_string().into_bytes();
        match self.live(key, now) {
            Some(entry) => entry.value = value,
            None => {
                self.map.insert(
                    key.to_vec(),
                    Entry {
                        value,
                        expires_at: None,
                    },
                );
            }
        }
        Reply::Integer(next)
    }

    /// `EXPIRE key seconds [NX | XX | GT | LT]` (and `PEXPIRE`, `unit_ms` 1).
    fn expire(&mut self, args: &Args, unit_ms: i64, name: &str, now: Instant) -> Reply {
        let Some(amount) = parse_i64(&args[2]) else {
            return not_an_integer();
        };
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for option in &args[3..] {
            match option.to_ascii_uppercase().as_slice() {
                b"NX" => nx = true,
                b"XX" => xx = true,
                b"GT" => gt = true,
                b"LT" => lt = true,
                _ => return Reply::err(format!("Unsupported option {}", show(option))),
            }
        }
        if (nx && (xx || gt || lt)) || (gt && lt) {
            return Reply::err("NX and XX, GT or LT options at the same time are not compatible");
        }
        let invalid = || Reply::err(format!("invalid expire time in '{name}' command"));
        let Some(ms) = amount.checked_mul(unit_ms) else {
            return invalid();
        };
        let new_expiry = if ms > 0 {
            match now.checked_add(Duration::from_millis(ms.unsigned_abs())) {
                Some(at) => Some(at),
                None => return invalid(),
            }
        } else {
            None // already in the past: the key goes away
        };
        let Some(entry) = self.live(&args[1], now) else {
            return Reply::Integer(0);
        };
        // For GT/LT a key without a TTL counts as an infinite TTL; a
        // non-positive new TTL counts as "now".
        let new_at = new_expiry.unwrap_or(now);
        let applies = match entry.expires_at {
            None => !xx && !gt,
            Some(current) => !nx && (!gt || new_at > current) && (!lt || new_at < current),
        };
        if !applies {
            return Reply::Integer(0);
        }
        match new_expiry {
            Some(at) => entry.expires_at = Some(at),
            None => {
                self.map.remove(args[1].as_slice());
            }
        }
        Reply::Integer(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(store: &mut Store, now: Instant, line: &str) -> Reply {
        let args: Vec<Vec<u8>> = line.split(' ').map(|a| a.as_bytes().to_vec()).collect();
        match store.execute(&args, now) {
            Outcome::Reply(reply) => reply,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    fn is_err(reply: &Reply, prefix: &str) -> bool {
        matches!(reply, Reply::Error(m) if m.starts_with(prefix))
    }

    #[test]
    fn get_set_del() {
        let mut s = Store::new();
        let t = Instant::now();
        assert_eq!(run(&mut s, t, "PING"), Reply::Simple("PONG"));
        assert_eq!(run(&mut s, t, "ping hi"), bulk("hi"));
        assert_eq!(run(&mut s, t, "GET a"), Reply::Nil);
        assert_eq!(run(&mut s, t, "SET a 1"), Reply::OK);
        assert_eq!(run(&mut s, t, "get a"), bulk("1"));
        assert_eq!(run(&mut s, t, "SET a 2 NX"), Reply::Nil);
        assert_eq!(run(&mut s, t, "SET b 2 XX"), Reply::Nil);
        assert_eq!(run(&mut s, t, "SET a 3 XX GET"), bulk("1"));
        assert_eq!(run(&mut s, t, "MSET b 2 c 3"), Reply::OK);
        assert_eq!(
            run(&mut s, t, "MGET a b x c"),
            Reply::Array(vec![bulk("3"), bulk("2"), Reply::Nil, bulk("3")])
        );
        assert_eq!(run(&mut s, t, "EXISTS a a x"), Reply::Integer(2));
        assert_eq!(run(&mut s, t, "DEL a b x"), Reply::Integer(2));
        assert_eq!(run(&mut s, t, "DBSIZE"), Reply::Integer(1));
    }

    #[test]
    fn errors() {
        let mut s = Store::new();
        let t = Instant::now();
        assert!(is_err(
            &run(&mut s, t, "GET"),
            "ERR wrong number of arguments for 'get'"
        ));
        assert!(is_err(&run(&mut s, t, "GET a b"), "ERR wrong number"));
        assert!(is_err(&run(&mut s, t, "MSET a"), "ERR wrong number"));
        assert!(is_err(&run(&mut s, t, "MSET a 1 b"), "ERR wrong number"));
        assert!(is_err(
            &run(&mut s, t, "NOPE x"),
            "ERR unknown command 'NOPE', with args beginning with: 'x'"
        ));
        assert!(is_err(&run(&mut s, t, "SET a 1 EX"), "ERR syntax error"));
        assert!(is_err(&run(&mut s, t, "SET a 1 EX x"), "ERR value is not an integer"));
        assert!(is_err(&run(&mut s, t, "SET a 1 EX 0"), "ERR invalid expire time"));
        assert!(is_err(
            &run(&mut s, t, "SET a 1 EX 9223372036854775807"),
            "ERR invalid expire time"
        ));
        assert!(is_err(&run(&mut s, t, "SET a 1 EX 1 PX 1"), "ERR syntax error"));
        assert!(is_err(&run(&mut s, t, "SET a 1 NX XX"), "ERR syntax error"));
        assert!(is_err(&run(&mut s, t, "EXPIRE a x"), "ERR value is not an integer"));
        assert!(is_err(&run(&mut s, t, "EXPIRE a 1 ZZ"), "ERR Unsupported option ZZ"));
        assert!(is_err(&run(&mut s, t, "DEBUG nothing"), "ERR unknown subcommand"));
        assert_eq!(s.execute(&[b"debug".to_vec(), b"segfault".to_vec()], t), Outcome::Crash);
        assert_eq!(s.execute(&[b"QUIT".to_vec()], t), Outcome::Quit);
    }

    #[test]
    fn incr() {
        let mut s = Store::new();
        let t = Instant::now();
        assert_eq!(run(&mut s, t, "INCR n"), Reply::Integer(1));
        assert_eq!(run(&mut s, t, "INCR n"), Reply::Integer(2));
        assert_eq!(run(&mut s, t, "INCRBY n 10"), Reply::Integer(12));
        assert_eq!(run(&mut s, t, "DECRBY n 2"), Reply::Integer(10));
        assert_eq!(run(&mut s, t, "DECR n"), Reply::Integer(9));
        assert_eq!(run(&mut s, t, "GET n"), bulk("9"));
        run(&mut s, t, "SET s abc");
        assert!(is_err(&run(&mut s, t, "INCR s"), "ERR value is not an integer"));
        run(&mut s, t, "SET big 9223372036854775807");
        assert!(is_err(
            &run(&mut s, t, "INCR big"),
            "ERR increment or decrement would overflow"
        ));
        assert!(is_err(
            &run(&mut s, t, "DECRBY n -9223372036854775808"),
            "ERR value is not an integer"
        ));
    }

    #[test]
    fn expiry() {
        let mut s = Store::new();
        let t = Instant::now();
        let later = |ms| t + Duration::from_millis(ms);
        assert_eq!(run(&mut s, t, "TTL a"), Reply::Integer(-2));
        run(&mut s, t, "SET a 1");
        assert_eq!(run(&mut s, t, "TTL a"), Reply::Integer(-1));
        assert_eq!(run(&mut s, t, "SET b 1 EX 10"), Reply::OK);
        assert_eq!(run(&mut s, later(400), "TTL b"), Reply::Integer(10));
        assert_eq!(run(&mut s, later(600), "TTL b"), Reply::Integer(9));
        assert_eq!(run(&mut s, later(600), "PTTL b"), Reply::Integer(9400));
        assert_eq!(run(&mut s, later(10_000), "GET b"), Reply::Nil);
        assert_eq!(run(&mut s, later(10_000), "TTL b"), Reply::Integer(-2));
        run(&mut s, t, "SET c 1 PX 100");
        run(&mut s, t, "SET d 1 EX 100");
        assert_eq!(
            run(&mut s, later(200), "KEYS *"),
            Reply::Array(vec![bulk("a"), bulk("d")])
        );
        assert_eq!(run(&mut s, t, "EXPIRE a 5"), Reply::Integer(1));
        assert_eq!(run(&mut s, t, "EXPIRE nope 5"), Reply::Integer(0));
        assert_eq!(run(&mut s, t, "TTL a"), Reply::Integer(5));
        assert_eq!(run(&mut s, t, "EXPIRE a 3 GT"), Reply::Integer(0));
        assert_eq!(run(&mut s, t, "EXPIRE a 3 LT"), Reply::Integer(1));
        assert_eq!(run(&mut s, t, "EXPIRE a 9 NX"), Reply::Integer(0));
        assert_eq!(run(&mut s, t, "SET a 2 KEEPTTL"), Reply::OK);
        assert_eq!(run(&mut s, t, "TTL a"), Reply::Integer(3));
        assert_eq!(run(&mut s, t, "INCR a"), Reply::Integer(3));
        assert_eq!(run(&mut s, t, "TTL a"), Reply::Integer(3));
        assert_eq!(run(&mut s, t, "SET a 2"), Reply::OK);
        assert_eq!(run(&mut s, t, "TTL a"), Reply::Integer(-1));
        assert_eq!(run(&mut s, t, "EXPIRE a 0"), Reply::Integer(1));
        assert_eq!(run(&mut s, t, "GET a"), Reply::Nil);
        assert_eq!(run(&mut s, t, "DEL c"), Reply::Integer(0));
    }

    #[test]
    fn keys_pattern() {
        let mut s = Store::new();
        let t = Instant::now();
        run(&mut s, t, "MSET user:1 a user:2 b user:10 c other d");
        assert_eq!(
            run(&mut s, t, "KEYS user:?"),
            Reply::Array(vec![bulk("user:1"), bulk("user:2")])
        );
        assert_eq!(
            run(&mut s, t, "KEYS user:[1]*"),
            Reply::Array(vec![bulk("user:1"), bulk("user:10")])
        );
        assert_eq!(run(&mut s, t, "KEYS nothing*"), Reply::Array(vec![]));
    }
}
