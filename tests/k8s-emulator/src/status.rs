//! Errors as the apiserver reports them: a `meta.k8s.io/v1` `Status` object
//! with the HTTP code repeated in `code` and a machine-readable `reason`.
//! Clients (client-go, kube-rs, the Python client) branch on `reason`, so the
//! reasons and messages follow the real server's wording.

use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Seconds for `Retry-After` (429 and some 500s).
    pub retry_after: Option<u64>,
}

/// What `details` names: group and resource plural, as the server reports.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub group: &'a str,
    pub resource: &'a str,
}

impl Target<'_> {
    /// `configmaps` or `greetings.demo.loophost.dev` (a qualified resource).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        let mut d = json!({ "name": name, "kind": self.resource });
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn not_found(t: Target<'_>, name: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("{} \"{name}\" not found", t.qualified()));
        e.details = Some(t.details(name));
        e
    }

    pub fn path_not_found() -> Self {
        let mut e = Self::new(404, "NotFound", "the server could not find the requested resource");
        e.details = Some(json!({}));
        e
    }

    pub fn already_exists(t: Target<'_>, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", t.qualified()),
        );
        e.details = Some(t.details(name));
        e
    }

    pub fn conflict(t: Target<'_>, name: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again",
            t.qualified()
        );
        let mut e = Self::new(409, "Conflict", msg);
        e.details = Some(t.details(name));
        e
    }

    pub fn precondition_failed(t: Target<'_>, name: &str, what: &str) -> Self {
        let msg = format!(
            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: {what}",
            t.qualified()
        );
        let mut e = Self::new(409, "Conflict", msg);
        e.details = Some(t.details(name));
        e
    }

    /// 422 with one cause per invalid field, worded like
    /// `ConfigMap "x" is invalid: data[a b]: Invalid value: ...`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<FieldError>) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let joined: Vec<String> = causes.iter().map(FieldError::to_string).collect();
        let message = if joined.len() == 1 {
            format!("{qualified_kind} \"{name}\" is invalid: {}", joined[0])
        } else {
            format!("{qualified_kind} \"{name}\" is invalid: [{}]", joined.join(", "))
        };
        let mut details = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({
                "reason": c.reason, "message": c.message_tail(), "field": c.field
            })).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        let mut e = Self::new(422, "Invalid", message);
        e.details = Some(details);
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(500, "InternalError", format!("Internal error occurred: {message}"));
        e.details = Some(json!({ "causes": [{ "message": message }] }));
        e
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(got: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {} (got {got:?})",
                accepted.join(", ")
            ),
        )
    }

    pub fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// Injected by the fault knob: the codes the real server uses for
    /// overload (429 from priority and fairness) and for internal errors.
    pub fn injected(code: u16) -> Self {
        let (reason, message) = match code {
            429 => ("TooManyRequests", "Too many requests, please try again later."),
            500 => ("InternalError", "Internal error occurred: injected fault"),
            503 => (
                "ServiceUnavailable",
                "The server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "The server was unable to return a response in the time allotted",
            ),
            _ => ("", "injected fault"),
        };
        let mut e = Self::new(code, reason, message);
        if code == 429 {
            e.retry_after = Some(1);
            e.details = Some(json!({ "retryAfterSeconds": 1 }));
        }
        e
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        });
        if !self.reason.is_empty() {
            s["reason"] = json!(self.reason);
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// One entry of a 422's `details.causes`, built like apimachinery's
/// `field.Error` so the message reads the same.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub reason: &'static str,
    pub detail: String,
    pub value: Option<Value>,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            detail: detail.into(),
            value: None,
        }
    }

    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            detail: detail.into(),
            value: Some(value),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden",
            detail: detail.into(),
            value: None,
        }
    }

    pub fn unsupported(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            detail: detail.into(),
            value: Some(value),
        }
    }

    fn message_tail(&self) -> String {
        let head = match self.reason {
            "FieldValueRequired" => "Required value".to_string(),
            "FieldValueForbidden" => "Forbidden".to_string(),
            "FieldValueNotSupported" => format!(
                "Unsupported value: {}",
                self.value.as_ref().map(Value::to_string).unwrap_or_default()
            ),
            _ => format!(
                "Invalid value: {}",
                self.value.as_ref().map(Value::to_string).unwrap_or_default()
            ),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message_tail())
    }
}

pub fn success_status(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
