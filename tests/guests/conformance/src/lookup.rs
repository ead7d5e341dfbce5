//! ip-name-lookup cases (mirroring wasmtime's p2_ip_name_lookup).

use wasip2::sockets::network::ErrorCode::{self, *};
use wasip2::sockets::network::IpAddress;

use crate::cx::{CaseFn, Cx, R, show};
use crate::net::*;

pub const CASES: &[(&str, CaseFn)] = &[
    ("ip-name-lookup-localhost", localhost),
    ("ip-name-lookup-literals", literals),
    ("ip-name-lookup-invalid", invalid),
    ("ip-name-lookup-denied", denied),
];

fn show_list(list: &[IpAddress]) -> String {
    let v: Vec<String> = list.iter().map(show_ip).collect();
    format!("[{}]", v.join(", "))
}

fn localhost(cx: &mut Cx) -> R<()> {
    let net = net();
    match resolve(&net, "localhost") {
        Ok(list) => {
            cx.check(!list.is_empty(), || "`localhost` resolved to no addresses".to_string());
            cx.check(list.iter().all(|ip| std_ip(ip).is_loopback()), || {
                format!("`localhost` resolved to non-loopback addresses: {}", show_list(&list))
            });
            cx.note(format!("`localhost` -> {}", show_list(&list)));
        }
        Err(e) => cx.fail(format!(
            "resolve `localhost`: expected addresses, got error({})",
            e.name()
        )),
    }
    Ok(())
}

/// IP literals resolve to themselves, without any DNS (so even under a
/// deny-all lookup policy).
fn literals(cx: &mut Cx) -> R<()> {
    let net = net();
    let cases: &[(&str, IpAddress)] = &[
        ("0.0.0.0", ANY4),
        ("127.0.0.1", LO4),
        ("192.0.2.0", DOC4),
        ("::", ANY6),
        ("::1", LO6),
        ("[::]", ANY6),
        ("2001:0db8:0:0:0:0:0:0", DOC6),
        ("dead:beef::", IpAddress::Ipv6((0xdead, 0xbeef, 0, 0, 0, 0, 0, 0))),
        ("dead:beef::0", IpAddress::Ipv6((0xdead, 0xbeef, 0, 0, 0, 0, 0, 0))),
        ("DEAD:BEEF::0", IpAddress::Ipv6((0xdead, 0xbeef, 0, 0, 0, 0, 0, 0))),
    ];
    for (name, want) in cases {
        match resolve(&net, name) {
            Ok(list) => {
                let first_ok = list.first().is_some_and(|a| ip_eq(a, want));
                cx.check(first_ok, || {
                    format!(
                        "resolve `{name}`: expected first address {}, got {}",
                        show_ip(want),
                        show_list(&list)
                    )
                });
            }
            Err(e) => cx.fail(format!(
                "resolve `{name}`: expected {}, got error({})",
                show_ip(want),
                e.name()
            )),
        }
    }
    Ok(())
}

/// Syntactically invalid names fail with invalid-argument (from
/// resolve-addresses itself or from the first resolve-next-address).
fn invalid(cx: &mut Cx) -> R<()> {
    let net = net();
    for name in ["", " ", "a.b<&>", "127.0.0.1:80", "[::]:80", "http://example.com/"] {
        let r = resolve(&net, name);
        cx.expect_err(&format!("resolve {name:?}"), r, &[InvalidArgument]);
    }
    Ok(())
}

/// Real DNS names under the default (deny) policy.
fn denied(cx: &mut Cx) -> R<()> {
    let net = net();
    const DENIED: [ErrorCode; 4] = [
        AccessDenied,
        PermanentResolverFailure,
        NameUnresolvable,
        TemporaryResolverFailure,
    ];
    // Upstream ignores the result for this IDNA name entirely; report only.
    let idna = resolve(&net, "münchen.de");
    cx.note(format!("resolve `münchen.de` -> {}", show(&idna)));
    for name in ["example.com"] {
        match resolve(&net, name) {
            Err(e) if DENIED.contains(&e) => {
                let upstream = matches!(e, NameUnresolvable | TemporaryResolverFailure);
                cx.note(format!(
                    "resolve `{name}` -> error({}){}",
                    e.name(),
                    if upstream {
                        " (upstream p2_ip_name_lookup tolerates this code)"
                    } else {
                        " (policy denial; upstream p2_ip_name_lookup only tolerates name-unresolvable / temporary-resolver-failure / empty / timeout here)"
                    }
                ));
            }
            Ok(list) if list.is_empty() => {
                cx.note(format!("resolve `{name}` -> empty list (upstream treats as name-unresolvable)"));
            }
            r => cx.fail(format!(
                "resolve `{name}` with lookups not allowed: expected a denial (error(access-denied) or error(permanent-resolver-failure); name-unresolvable / temporary-resolver-failure / empty also accepted), got {}",
                match &r {
                    Ok(list) => format!("addresses {}", show_list(list)),
                    Err(_) => show(&r),
                }
            )),
        }
    }
    Ok(())
}
