//! HTTP front: authentication, fault injection, routing of the API paths,
//! and one function per verb translating between HTTP and [`crate::ops`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::ops::{self, Ctx, Deleted, Preconditions};
use crate::patch::{self, PatchType};
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::status::{ApiError, success_status};
use crate::store::ObjKey;
use crate::table::{self, Output};
use crate::watch::{self, WatchParams};
use crate::{Shared, lock};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// The apiserver's default `--max-request-body-bytes`-like limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    match route(&shared, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(secs) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Query(
            q.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        )
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn all(&self, k: &str) -> impl Iterator<Item = &str> {
        self.0.iter().filter(move |(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn flag(&self, k: &str) -> Result<bool, ApiError> {
        // Go's strconv.ParseBool, which the real server uses (the Python
        // client sends `watch=True`).
        match self.get(k) {
            None | Some("" | "0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!("invalid value for {k}: {other:?}"))),
        }
    }

    fn dry_run(&self) -> Result<bool, ApiError> {
        dry_run_values(self.all("dryRun"))
    }

    fn selectors(&self) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(self.get("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))?,
        })
    }
}

fn dry_run_values<'a>(values: impl Iterator<Item = &'a str>) -> Result<bool, ApiError> {
    let mut dry = false;
    for v in values {
        if v != "All" {
            return Err(ApiError::bad_request(format!(
                "Invalid dryRun value: {v:?}; only \"All\" is supported"
            )));
        }
        dry = true;
    }
    Ok(dry)
}

fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let h = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn count(shared: &Shared, verb: &str, resource: &str) {
    let mut stats = lock(&shared.stats);
    *stats
        .requests
        .entry((verb.to_string(), resource.to_string()))
        .or_insert(0) += 1;
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading request body: {e}"))),
    }
}

fn version_doc(git_version: &str) -> Value {
    let mut nums = git_version.trim_start_matches('v').split(['.', '-', '+']);
    let major = nums.next().unwrap_or("1");
    let minor = nums.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-01-01T00:00:00Z",
        "goVersion": "go1.22.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if let Some(code) = shared.active_fault() {
        lock(&shared.stats).injected_failures += 1;
        return Err(ApiError::injected(code));
    }
    if !bearer(&req).is_some_and(|t| shared.check_token(t)) {
        lock(&shared.stats).unauthorized += 1;
        return Err(ApiError::unauthorized());
    }
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let get = req.method() == Method::GET;
    let discovery = |v: Option<Value>| -> Result<Response<Body>, ApiError> {
        if !get {
            return Err(ApiError::method_not_allowed());
        }
        count(shared, "discovery", "");
        v.map(|v| json_response(200, &v)).ok_or_else(ApiError::path_not_found)
    };
    match segs.as_slice() {
        [] => discovery(Some(
            json!({ "paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/readyz", "/version"] }),
        )),
        ["version"] => discovery(Some(version_doc(&shared.config.server_version))),
        ["healthz" | "livez" | "readyz", ..] => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
            Ok(r)
        }
        ["api"] => discovery(Some(
            lock(&shared.store).registry.api_versions(&shared.addr.to_string()),
        )),
        ["apis"] => discovery(Some(lock(&shared.store).registry.group_list())),
        ["apis", g] => discovery(lock(&shared.store).registry.group(g)),
        ["api", "v1"] => discovery(lock(&shared.store).registry.resource_list("", "v1")),
        ["apis", g, v] => discovery(lock(&shared.store).registry.resource_list(g, v)),
        ["openapi", "v2"] => {
            if !get {
                return Err(ApiError::method_not_allowed());
            }
            count(shared, "discovery", "");
            let wants_pb = req
                .headers()
                .get(ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("protobuf"));
            let store = lock(&shared.store);
            if wants_pb {
                let pb = crate::openapi::protobuf(&store.registry, &shared.config.server_version);
                let mut r = Response::new(Full::new(Bytes::from(pb)).boxed());
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
                );
                Ok(r)
            } else {
                Ok(json_response(
                    200,
                    &crate::openapi::json(&store.registry, &shared.config.server_version),
                ))
            }
        }
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(shared, req, "", "v1", &rest).await
        }
        ["apis", g, v, rest @ ..] => {
            let (g, v) = (g.to_string(), v.to_string());
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            resource(shared, req, &g, &v, &rest).await
        }
        _ => Err(ApiError::path_not_found()),
    }
}

struct Target {
    rt: ResourceType,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn ctx(&self, dry_run: bool) -> Ctx<'_> {
        Ctx {
            rt: &self.rt,
            version: &self.version,
            namespace: self.namespace.as_deref(),
            dry_run,
        }
    }
}

fn resolve(shared: &Shared, group: &str, version: &str, rest: &[String]) -> Result<Target, ApiError> {
    let s: Vec<&str> = rest.iter().map(String::as_str).collect();
    // (namespace, plural, name, subresource)
    let (ns, plural, name, sub) = match s.as_slice() {
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*ns), Some(*sub))
        }
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::path_not_found()),
    };
    let rt = lock(&shared.store)
        .registry
        .lookup(group, version, plural)
        .cloned()
        .ok_or_else(ApiError::path_not_found)?;
    if ns.is_some() && !rt.namespaced {
        return Err(ApiError::path_not_found());
    }
    if rt.namespaced && ns.is_none() && name.is_some() {
        return Err(ApiError::path_not_found());
    }
    match sub {
        None => {}
        Some("status") if rt.status_subresource => {}
        Some(_) => return Err(ApiError::path_not_found()),
    }
    Ok(Target {
        rt,
        version: version.to_string(),
        namespace: ns.map(String::from),
        name: name.map(String::from),
        subresource: sub.map(String::from),
    })
}

async fn resource(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    group: &str,
    version: &str,
    rest: &[String],
) -> Result<Response<Body>, ApiError> {
    let t = resolve(shared, group, version, rest)?;
    let query = Query::parse(req.uri().query());
    let qualified = t.rt.qualified();
    let method = req.method().clone();
    let verb = match (&method, &t.name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if query.flag("watch")? => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed()),
    };
    count(shared, verb, &qualified);
    if t.subresource.is_some() && !matches!(verb, "get" | "update" | "patch") {
        return Err(ApiError::method_not_allowed());
    }
    if verb == "create" && t.rt.namespaced && t.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|a| a.to_str().ok())
        .map(String::from);
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|a| a.to_str().ok())
        .unwrap_or("")
        .to_string();
    let name = t.name.clone().unwrap_or_default();
    match verb {
        "get" => get(shared, &t, &name, accept.as_deref(), &query),
        "list" => list(shared, &t, accept.as_deref(), &query),
        "watch" => start_watch(shared, t, accept.as_deref(), &query),
        "create" => {
            let body = read_body(req).await?;
            create(shared, &t, &body, &content_type, &query)
        }
        "update" => {
            let body = read_body(req).await?;
            update(shared, &t, &name, &body, &content_type, &query)
        }
        "patch" => {
            let body = read_body(req).await?;
            patch_object(shared, &t, &name, &body, &content_type, &query)
        }
        "delete" => {
            let body = read_body(req).await?;
            delete(shared, &t, &name, &body, &query)
        }
        _ => {
            let body = read_body(req).await?;
            delete_collection(shared, &t, &body, &query)
        }
    }
}

fn render_one(t: &Target, obj: &Value, accept: Option<&str>, query: &Query) -> Result<Value, ApiError> {
    Ok(match table::negotiate(accept)? {
        Output::Object => ops::output(&t.rt, &t.version, obj),
        Output::Metadata => table::partial_metadata(obj),
        Output::Table(tv) => {
            let include = table::include_object(query.get("includeObject"))?;
            let meta =
                json!({ "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or_default() });
            let full = ops::output(&t.rt, &t.version, obj);
            table::table(&t.rt, &t.version, tv, &[full], include, meta)
        }
    })
}

fn get(
    shared: &Shared,
    t: &Target,
    name: &str,
    accept: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let ctx = t.ctx(false);
    let obj = lock(&shared.store).get(&ctx.gr(), &ctx.key(name)).cloned();
    let obj = obj.ok_or_else(|| ApiError::not_found(t.rt.target(), name))?;
    Ok(json_response(200, &render_one(t, &obj, accept, query)?))
}

/// The continue token: base64 of the same JSON shape the real server uses
/// (`{"v":"meta.k8s.io/v1","rv":N,"start":"<key>"}`); `start` here is the
/// last key returned, `namespace/name` (namespace empty when cluster-scoped).
fn encode_continue(rv: u64, last: &ObjKey) -> String {
    let token = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": format!("{}/{}", last.0, last.1) });
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(s: &str) -> Result<(u64, ObjKey), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE.decode(s).map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    let (ns, name) = start.split_once('/').ok_or_else(bad)?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

fn list(shared: &Shared, t: &Target, accept: Option<&str>, query: &Query) -> Result<Response<Body>, ApiError> {
    let output = table::negotiate(accept)?;
    let selectors = query.selectors()?;
    let limit = match query.get("limit") {
        None | Some("") => 0,
        Some(l) => l
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l:?}")))?,
    };
    let cont = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(decode_continue)
        .transpose()?;
    let rv_param = query.get("resourceVersion").filter(|r| !r.is_empty());
    let rv_match = query.get("resourceVersionMatch").filter(|r| !r.is_empty());
    let ctx = t.ctx(false);
    let gr = ctx.gr();
    let store = lock(&shared.store);
    let (list_rv, objects, after) = match (&cont, rv_param, rv_match) {
        (Some(_), Some(_), _) => {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        (Some((rv, last)), None, _) => {
            let snap = store.snapshot(&gr, *rv).ok_or_else(|| {
                ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new \
                     list without the continue parameter, or use the continue value from the response to get an \
                     inconsistent list.",
                )
            })?;
            (*rv, snap, Some(last.clone()))
        }
        (None, Some(r), Some("Exact")) => {
            let rv = r
                .parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {r}")))?;
            let snap = store.snapshot(&gr, rv).ok_or_else(|| {
                ApiError::expired(format!("too old resource version: {rv} ({})", store.compacted_rv()))
            })?;
            (rv, snap, None)
        }
        (None, None, Some(m)) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch {m:?} is forbidden unless resourceVersion is provided"
            )));
        }
        // Unset, "0" and NotOlderThan all get the latest state, which is
        // never older than what was asked for.
        (None, _, _) => (
            store.current_rv(),
            store.list(&gr, None).map(|(k, v)| (k.clone(), v.clone())).collect(),
            None,
        ),
    };
    drop(store);
    let mut matching = objects
        .into_iter()
        .filter(|(k, _)| t.namespace.as_ref().is_none_or(|ns| k.0 == *ns))
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .filter(|(_, v)| selectors.matches(v));
    let mut page = Vec::new();
    let mut last_key = None;
    for (k, v) in matching.by_ref() {
        page.push(ops::output(&t.rt, &t.version, &v));
        last_key = Some(k);
        if limit > 0 && page.len() as u64 >= limit {
            break;
        }
    }
    let remaining = matching.count();
    let mut list_meta = json!({ "resourceVersion": list_rv.to_string() });
    if remaining > 0
        && let Some(last) = &last_key
    {
        list_meta["continue"] = json!(encode_continue(list_rv, last));
        list_meta["remainingItemCount"] = json!(remaining);
    }
    let body = match output {
        Output::Object => json!({
            "kind": t.rt.list_kind,
            "apiVersion": t.rt.api_version(&t.version),
            "metadata": list_meta,
            "items": page,
        }),
        Output::Metadata => table::partial_metadata_list(&page, list_meta),
        Output::Table(tv) => {
            let include = table::include_object(query.get("includeObject"))?;
            table::table(&t.rt, &t.version, tv, &page, include, list_meta)
        }
    };
    Ok(json_response(200, &body))
}

fn start_watch(
    shared: &Arc<Shared>,
    t: Target,
    accept: Option<&str>,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let output = table::negotiate(accept)?;
    let timeout = match query.get("timeoutSeconds") {
        None | Some("") => shared.config.default_watch_timeout,
        Some(s) => Duration::from_secs(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s:?}")))?,
        ),
    };
    let send_initial_events = query.flag("sendInitialEvents")?;
    let bookmarks = query.flag("allowWatchBookmarks")?;
    if send_initial_events && (!bookmarks || query.get("resourceVersionMatch") != Some("NotOlderThan")) {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "ListOptions",
            "",
            vec![crate::status::FieldError::forbidden(
                "sendInitialEvents",
                "sendInitialEvents requires setting allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan",
            )],
        ));
    }
    let params = WatchParams {
        selectors: query.selectors()?,
        resource_version: query.get("resourceVersion").map(String::from),
        timeout,
        bookmarks,
        send_initial_events,
        output,
        include: table::include_object(query.get("includeObject"))?,
        namespace: t.namespace.clone(),
        version: t.version.clone(),
        rt: t.rt,
    };
    let body = watch::start(shared, params)?;
    let mut r = Response::new(body.boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn parse_object(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let base = content_type.split(';').next().unwrap_or("").trim();
    if !base.is_empty() && base != "application/json" && base != "*/*" {
        return Err(ApiError::unsupported_media_type(base, &["application/json"]));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))
}

fn create(
    shared: &Shared,
    t: &Target,
    body: &[u8],
    content_type: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let qualified = t.rt.qualified();
    *lock(&shared.stats).create_calls.entry(qualified.clone()).or_insert(0) += 1;
    let dry_run = query.dry_run()?;
    let obj = parse_object(body, content_type)?;
    let created = ops::create(&mut lock(&shared.store), &t.ctx(dry_run), obj)?;
    if !dry_run {
        *lock(&shared.stats).creates_succeeded.entry(qualified).or_insert(0) += 1;
    }
    Ok(json_response(201, &ops::output(&t.rt, &t.version, &created)))
}

fn update(
    shared: &Shared,
    t: &Target,
    name: &str,
    body: &[u8],
    content_type: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let dry_run = query.dry_run()?;
    let obj = parse_object(body, content_type)?;
    let status_only = t.subresource.is_some();
    let updated = ops::update(&mut lock(&shared.store), &t.ctx(dry_run), name, obj, status_only)?;
    Ok(json_response(200, &ops::output(&t.rt, &t.version, &updated)))
}

fn patch_object(
    shared: &Shared,
    t: &Target,
    name: &str,
    body: &[u8],
    content_type: &str,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let accepted: Vec<&str> = patch::ACCEPTED
        .iter()
        .copied()
        .filter(|a| t.rt.strategic_merge || !a.contains("strategic"))
        .collect();
    let kind = PatchType::from_content_type(content_type)
        .filter(|k| *k != PatchType::Strategic || t.rt.strategic_merge)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type, &accepted))?;
    let dry_run = query.dry_run()?;
    let manager = query.get("fieldManager").unwrap_or("");
    if kind == PatchType::Apply {
        if manager.is_empty() {
            return Err(ApiError::bad_request("PATCH /apply requires fieldManager to be set"));
        }
        query.flag("force")?;
    }
    let patch_doc = patch::parse_body(body, "patch")?;
    let ctx = t.ctx(dry_run);
    let key = ctx.key(name);
    let gr = ctx.gr();
    let status_only = t.subresource.is_some();
    let mut store = lock(&shared.store);
    let Some(current) = store.get(&gr, &key).cloned() else {
        if kind != PatchType::Apply || status_only {
            return Err(ApiError::not_found(t.rt.target(), name));
        }
        // Apply creates what does not exist yet.
        let mut obj = patch_doc.clone();
        let body_name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if obj.get("apiVersion").is_none() || obj.get("kind").is_none() {
            return Err(ApiError::bad_request(
                "invalid object type: apiVersion and kind must be set for apply",
            ));
        }
        patch::strategic_merge(&mut obj, &json!({}))?;
        *lock(&shared.stats).create_calls.entry(t.rt.qualified()).or_insert(0) += 1;
        let created = ops::create(&mut store, &ctx, obj)?;
        if !dry_run {
            store.set_last_applied(&gr, &key, manager, patch_doc);
            *lock(&shared.stats)
                .creates_succeeded
                .entry(t.rt.qualified())
                .or_insert(0) += 1;
        }
        return Ok(json_response(201, &ops::output(&t.rt, &t.version, &created)));
    };
    let mut doc = ops::output(&t.rt, &t.version, &current);
    match kind {
        PatchType::Json => patch::json_patch(&mut doc, patch_doc.clone())?,
        PatchType::Merge => patch::merge_patch(&mut doc, &patch_doc)?,
        PatchType::Strategic => patch::strategic_merge(&mut doc, &patch_doc)?,
        PatchType::Apply => {
            let previous = store.last_applied(&gr, &key, manager).cloned();
            patch::apply(&mut doc, &patch_doc, previous.as_ref())?;
        }
    }
    // A patch that removes resourceVersion still applies to the live
    // object; one that sets it makes it a precondition.
    if doc
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
        && let Some(m) = doc.get_mut("metadata").and_then(Value::as_object_mut)
    {
        m.insert(
            "resourceVersion".into(),
            current
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or_default(),
        );
    }
    let updated = ops::update(&mut store, &ctx, name, doc, status_only)?;
    if kind == PatchType::Apply && !dry_run {
        store.set_last_applied(&gr, &key, manager, patch_doc);
    }
    Ok(json_response(200, &ops::output(&t.rt, &t.version, &updated)))
}

/// DeleteOptions from the body (kubectl and client-go send one) and query.
fn delete_options(body: &[u8], query: &Query) -> Result<(bool, Preconditions), ApiError> {
    let mut dry_run = query.dry_run()?;
    let mut pre = Preconditions::default();
    if !body.iter().all(u8::is_ascii_whitespace) {
        let opts: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("couldn't decode DeleteOptions: {e}")))?;
        if let Some(values) = opts.get("dryRun").and_then(Value::as_array) {
            dry_run |= dry_run_values(values.iter().filter_map(Value::as_str))?;
        }
        pre.uid = opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        pre.resource_version = opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
    }
    Ok((dry_run, pre))
}

fn deleted_status(t: &Target, obj: &Value) -> Value {
    let mut details = json!({
        "name": obj.pointer("/metadata/name").cloned().unwrap_or_default(),
        "kind": t.rt.plural,
        "uid": obj.pointer("/metadata/uid").cloned().unwrap_or_default(),
    });
    if !t.rt.group.is_empty() {
        details["group"] = json!(t.rt.group);
    }
    success_status(details)
}

fn delete(shared: &Shared, t: &Target, name: &str, body: &[u8], query: &Query) -> Result<Response<Body>, ApiError> {
    let (dry_run, pre) = delete_options(body, query)?;
    let outcome = ops::delete(&mut lock(&shared.store), &t.ctx(dry_run), name, &pre)?;
    Ok(match outcome {
        Deleted::Pending(obj) => json_response(200, &ops::output(&t.rt, &t.version, &obj)),
        Deleted::Gone(obj) => json_response(200, &deleted_status(t, &obj)),
    })
}

fn delete_collection(shared: &Shared, t: &Target, body: &[u8], query: &Query) -> Result<Response<Body>, ApiError> {
    let (dry_run, _) = delete_options(body, query)?;
    let selectors = query.selectors()?;
    let ctx = t.ctx(dry_run);
    let mut store = lock(&shared.store);
    let names: Vec<String> = store
        .list(&ctx.gr(), t.namespace.as_deref())
        .filter(|(_, v)| selectors.matches(v))
        .map(|(k, _)| k.1.clone())
        .collect();
    let mut items = Vec::new();
    for n in names {
        match ops::delete(&mut store, &ctx, &n, &Preconditions::default()) {
            Ok(Deleted::Pending(o) | Deleted::Gone(o)) => items.push(ops::output(&t.rt, &t.version, &o)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let list = json!({
        "kind": t.rt.list_kind,
        "apiVersion": t.rt.api_version(&t.version),
        "metadata": { "resourceVersion": store.current_rv().to_string() },
        "items": items,
    });
    Ok(json_response(200, &list))
}
