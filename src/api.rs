//! The ReportedIP v2 HTTP client: one POST per report, one GET for the key check, and the
//! classification of every answer into what the caller should do with the report.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use ureq::Agent;
use ureq::config::ConfigBuilder;
use ureq::http::Response;
use ureq::typestate::AgentScope;

use ureq::tls::TlsConfig;

use crate::categories::Categories;
use crate::clock;
use crate::config::Config;
use crate::delivery::{ApiMessage, CertProblem, Delivery, Failure, Quota, Receipt};
use crate::report::Report;
use crate::secret::SecretString;
use crate::trust;
use crate::validate::is_unsafe_char;

/// Largest response body read; the API's answers are a few hundred bytes.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;
/// Longest API-provided text shown to the operator.
const MAX_MESSAGE_CHARS: usize = 300;
/// A `Retry-After` further out than this is treated as a mistake, not obeyed for days.
const MAX_RETRY_WAIT_SECS: u64 = 86_400;

/// `GET /verify-key` data; every field optional so a changed API still shows what it can.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    #[serde(default)]
    pub valid: Option<bool>,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub user_role: Option<String>,
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Option<Limits>,
    #[serde(default)]
    pub domains: Option<Domains>,
}

impl KeyInfo {
    /// `reportedip_free` → `free`; other roles as the API names them.
    pub fn role(&self) -> Option<&str> {
        let role = self.user_role.as_deref()?;
        Some(role.strip_prefix("reportedip_").unwrap_or(role))
    }

    /// Whether the key may report: judged by the daily report limit (0 = no; negative or
    /// missing = unlimited), since the permission names are not documented.
    pub fn may_report(&self) -> bool {
        self.limits.as_ref().and_then(|l| l.daily_report_limit) != Some(0)
    }
}

/// `GET /check` data: the IP's standing. Every field is optional, and in a verbose answer
/// whatever else the API sends is kept in `details`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckInfo {
    #[serde(default, deserialize_with = "lenient_number")]
    pub abuse_confidence_percentage: Option<i64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub total_reports: Option<i64>,
    #[serde(default)]
    pub last_reported_at: Option<serde_json::Value>,
    #[serde(default)]
    pub is_tor: Option<serde_json::Value>,
    #[serde(default)]
    pub is_whitelisted: Option<serde_json::Value>,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// The sites of the key's account, against what its plan allows.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Domains {
    #[serde(default, deserialize_with = "lenient_number")]
    pub used: Option<i64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub limit: Option<i64>,
    #[serde(default)]
    pub status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    #[serde(default, deserialize_with = "lenient_number")]
    pub daily_api_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub remaining_api_calls: Option<i64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub daily_report_limit: Option<i64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub remaining_reports: Option<i64>,
    #[serde(default, deserialize_with = "lenient_number")]
    pub daily_report_usage: Option<i64>,
    /// Format undocumented: any JSON value is kept as it came.
    #[serde(default)]
    pub reset_time: Option<serde_json::Value>,
}

/// Limits may come as numbers, numeric strings, or words like "unlimited" (read as absent).
fn lenient_number<'de, D: Deserializer<'de>>(de: D) -> Result<Option<i64>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    Ok(match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// How every request is made, to the API and to the feed: one deadline for the whole request,
/// redirects never followed, every status an answer; over https, the proxy from the
/// environment and `trust`'s roots. Plain http is only ever allowed to loopback, where an
/// environment proxy would be the one place the key could leak in clear text.
pub(crate) fn agent_builder(
    timeout: Duration,
    https: bool,
    trust: Option<trust::Trust>,
) -> ConfigBuilder<AgentScope> {
    let mut builder = Agent::config_builder()
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .proxy(https.then(ureq::Proxy::try_from_env).flatten())
        .user_agent(concat!("reportedip-report/", env!("CARGO_PKG_VERSION")));
    if let Some(trust) = trust {
        builder = builder.tls_config(TlsConfig::builder().root_certs(trust.roots).build());
    }
    builder
}

/// Settings of a client: where, with which key, which CA roots, and how long a request may
/// take in all. Cloning shares the connection pool.
#[derive(Clone)]
pub struct Client {
    agent: Agent,
    base: String,
    key: SecretString,
    timeout: Duration,
    roots: String,
    /// Why the roots asked for (`ca_file`) could not be loaded: no request is made then.
    trust_problem: Option<String>,
    /// Whether a signal may end the wait for an answer (see [`crate::delivery::within`]).
    interruptible: bool,
}

impl Client {
    pub fn new(config: &Config, key: SecretString) -> Self {
        let base = &config.api_url;
        let https = base.starts_with("https://");
        // Plain http (loopback only) needs no roots.
        let trust = https.then(|| trust::load(config.ca_file.as_deref()));
        let roots = match &trust {
            None => "none needed (plain http to loopback)".to_string(),
            Some(Ok(trust)) => trust.description.clone(),
            Some(Err(why)) => why.clone(),
        };
        let (trust, trust_problem) = match trust {
            Some(Err(why)) => (None, Some(why)),
            Some(Ok(trust)) => (Some(trust), None),
            None => (None, None),
        };
        let builder = agent_builder(config.timeout, https, trust).accept("application/json");
        Self {
            agent: builder.build().into(),
            base: base.clone(),
            key,
            timeout: config.timeout,
            roots,
            trust_problem,
            interruptible: false,
        }
    }

    /// A request that cannot be made safely: the roots asked for could not be loaded.
    fn refuse_untrusted(&self) -> Result<(), Failure> {
        match &self.trust_problem {
            Some(why) => Err(Failure::Certificate {
                host: host_of(&self.base),
                problem: crate::delivery::CertProblem::Other(why.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Lets SIGTERM, SIGHUP and SIGINT end the wait for an answer, keeping the report.
    pub fn interruptible(mut self) -> Self {
        self.interruptible = true;
        self
    }

    /// Which CA roots the client trusts, for people.
    pub fn roots(&self) -> &str {
        &self.roots
    }

    pub fn report_url(&self) -> String {
        format!("{}/report", self.base)
    }

    /// The longest a request may take before its caller stops waiting: the client's own
    /// deadline, plus a second for it to fire.
    pub fn deadline(&self) -> Duration {
        self.timeout + Duration::from_secs(1)
    }

    /// POSTs one report, waiting no longer than [`Self::deadline`]. `now` anchors relative
    /// `Retry-After` values. An older deployment refuses the whole report over a category
    /// added recently; then the report goes once more without those, which the receipt says.
    pub fn send_report(&self, report: &Report, now: u64) -> Delivery {
        self.refuse_untrusted()?;
        let delivery = self.post_report(report, now);
        let Some((fewer, dropped)) = without_recent_categories(report, &delivery) else {
            return delivery;
        };
        let retry = Report {
            categories: fewer,
            ..report.clone()
        };
        self.post_report(&retry, now).map(|receipt| Receipt {
            dropped_categories: Some(dropped),
            ..receipt
        })
    }

    fn post_report(&self, report: &Report, now: u64) -> Delivery {
        let client = self.clone();
        let form = [
            ("ip", report.ip.to_string()),
            ("categories", report.categories.to_string()),
            ("comment", report.comment.clone()),
        ];
        crate::delivery::within(self.deadline(), self.interruptible, move || {
            let result = client
                .agent
                .post(client.report_url())
                .header("X-Key", client.key.expose())
                .send_form(form.iter().map(|(k, v)| (*k, v.as_str())));
            classify(client.read(result, now)?, client.report_url())
        })
    }

    /// GETs `/check` for `ip` (costs one of the day's checks).
    pub fn check(&self, ip: IpAddr, verbose: bool, now: u64) -> Result<CheckInfo, Failure> {
        let mut query = vec![("ip", ip.to_string())];
        if verbose {
            query.push(("verbose", "true".to_string()));
        }
        self.get_data("check", query, now)
    }

    /// GETs `/verify-key` (costs no quota).
    pub fn verify_key(&self, now: u64) -> Result<KeyInfo, Failure> {
        self.get_data("verify-key", Vec::new(), now)
    }

    /// GETs `<base>/<path>` and reads the `data` of its answer, waiting no longer than
    /// [`Self::deadline`].
    fn get_data<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
        now: u64,
    ) -> Result<T, Failure> {
        self.refuse_untrusted()?;
        let client = self.clone();
        let url = format!("{}/{path}", self.base);
        crate::delivery::within(self.deadline(), false, move || {
            let mut request = client.agent.get(&url).header("X-Key", client.key.expose());
            for (name, value) in query {
                request = request.query(name, value);
            }
            let reply = client.read(request.call(), now)?;
            classify(reply.clone(), url.clone())?;
            parse_data(&reply.body).map_err(|problem| {
                Failure::transient(format!("unreadable answer from {url}: {problem}"))
            })
        })
    }

    fn read(
        &self,
        result: Result<Response<ureq::Body>, ureq::Error>,
        now: u64,
    ) -> Result<Reply, Failure> {
        let mut response = result.map_err(|err| self.failure(&err))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = response.status().as_u16();
        let location = header("location");
        let rate_reset = rate_limit_reset(header("x-ratelimit-reset").as_deref(), now);
        let retry_at = header("retry-after")
            .and_then(|v| parse_retry_after(&v, now))
            .or(rate_reset);
        let quota = read_quota(
            header("x-ratelimit-limit").as_deref(),
            header("x-ratelimit-remaining").as_deref(),
            rate_reset,
        );
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_string()
            .map_err(|err| describe_error(&err, self.timeout));
        Ok(Reply {
            status,
            body,
            location,
            retry_at,
            quota,
        })
    }
}

/// `host[:port]` of a URL.
fn host_of(url: &str) -> String {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
        .to_string()
}

impl Client {
    /// A request that got no answer: a refused certificate said as such, else unreachable.
    fn failure(&self, err: &ureq::Error) -> Failure {
        if let Some(problem) = certificate_problem(err) {
            return Failure::Certificate {
                host: host_of(&self.base),
                problem,
            };
        }
        Failure::transient(format!(
            "API unreachable ({})",
            describe_error(err, self.timeout)
        ))
    }
}

/// The certificate verdict inside a TLS error, wherever ureq carries it.
fn certificate_problem(err: &ureq::Error) -> Option<CertProblem> {
    let rustls_error = match err {
        ureq::Error::Rustls(inner) => Some(inner),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    let rustls::Error::InvalidCertificate(cert) = rustls_error else {
        return None;
    };
    use rustls::CertificateError as E;
    Some(match cert {
        E::UnknownIssuer => CertProblem::UnknownIssuer,
        E::NotValidForName | E::NotValidForNameContext { .. } => CertProblem::WrongName,
        E::Expired | E::ExpiredContext { .. } => CertProblem::Expired,
        E::NotValidYet | E::NotValidYetContext { .. } => CertProblem::NotYetValid,
        other => CertProblem::Other(format!("{other:?}")),
    })
}

/// For a report refused as a whole over categories (`rest_invalid_param`) that holds some of
/// the recently added ones and others besides: the report without them, and what was left out.
fn without_recent_categories(
    report: &Report,
    delivery: &Delivery,
) -> Option<(Categories, Categories)> {
    let Err(Failure::Rejected(answer)) = delivery else {
        return None;
    };
    let about_categories = answer.code.as_deref() == Some("rest_invalid_param")
        && answer
            .message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("categor"));
    if !about_categories {
        return None;
    }
    report.categories.split_recent()
}

/// A response reduced to what classification needs.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Result<String, String>,
    location: Option<String>,
    retry_at: Option<u64>,
    quota: Option<Quota>,
}

/// Sorts an answer into the failure model; `url` is what was asked for.
fn classify(reply: Reply, url: String) -> Delivery {
    let status = reply.status;
    match status {
        200..=299 => Ok(receipt(&reply)),
        300..=399 => Err(Failure::transient(match &reply.location {
            Some(location) => format!(
                "API moved (HTTP {status} to {}); update api_url",
                clean_text(location)
            ),
            None => format!("API answered HTTP {status} redirect without Location; check api_url"),
        })),
        403 if api_message(&reply).code.as_deref() == Some("domain_limit_exceeded") => {
            Err(Failure::AccountLimit(api_message(&reply)))
        }
        401 | 403 => Err(Failure::KeyRefused(api_message(&reply))),
        404 => Err(Failure::WrongUrl {
            url,
            answer: api_message(&reply),
        }),
        429 if reply.quota.is_some_and(|quota| quota.used_up()) => Err(Failure::QuotaUsedUp {
            answer: api_message(&reply),
            quota: reply.quota.unwrap_or_default(),
        }),
        408 | 425 | 429 | 499 | 500..=599 => Err(Failure::Transient {
            reason: api_message(&reply).to_string(),
            retry_at: reply.retry_at,
        }),
        400..=499 => Err(Failure::Rejected(api_message(&reply))),
        _ => Err(Failure::transient(format!("unexpected HTTP {status}"))),
    }
}

fn receipt(reply: &Reply) -> Receipt {
    #[derive(Deserialize)]
    struct Envelope {
        data: Data,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        #[serde(default)]
        report_id: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "lenient_number")]
        abuse_confidence_percentage: Option<i64>,
    }
    let mut receipt = Receipt {
        quota: reply.quota,
        ..Receipt::default()
    };
    let parsed = reply
        .body
        .as_ref()
        .map_err(String::clone)
        .and_then(|body| serde_json::from_str::<Envelope>(body).map_err(|e| e.to_string()));
    match parsed {
        Ok(envelope) => {
            receipt.report_id = envelope.data.report_id.map(|id| match id {
                serde_json::Value::String(s) => clean_text(&s),
                other => clean_text(&other.to_string()),
            });
            receipt.confidence = envelope.data.abuse_confidence_percentage;
        }
        Err(problem) => receipt.body_problem = Some(problem),
    }
    receipt
}

/// The `data` object of an answer (a `meta` beside it is ignored). Every string in it (keys
/// included) has its control, bidi and escape characters replaced before anything can show
/// it: a server's text never reaches a terminal raw.
fn parse_data<T: serde::de::DeserializeOwned>(body: &Result<String, String>) -> Result<T, String> {
    #[derive(Deserialize)]
    struct Envelope {
        data: serde_json::Value,
    }
    let body = body.as_ref().map_err(String::clone)?;
    let envelope = serde_json::from_str::<Envelope>(body).map_err(|err| err.to_string())?;
    serde_json::from_value(clean_value(envelope.data)).map_err(|err| err.to_string())
}

/// A JSON value with every string and key made safe to show ([`clean_text`]).
fn clean_value(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(clean_text(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_value).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (clean_text(&key), clean_value(value)))
                .collect(),
        ),
        other => other,
    }
}

/// Reads the WordPress REST error shape, or the AbuseIPDB one, or nothing.
fn api_message(reply: &Reply) -> ApiMessage {
    #[derive(Deserialize)]
    struct WordPress {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct AbuseIpDb {
        errors: Vec<AbuseIpDbError>,
    }
    #[derive(Deserialize)]
    struct AbuseIpDbError {
        detail: Option<String>,
    }
    let mut msg = ApiMessage {
        status: reply.status,
        code: None,
        message: None,
    };
    let Ok(body) = &reply.body else {
        return msg;
    };
    if let Ok(wp) = serde_json::from_str::<WordPress>(body)
        && (wp.code.is_some() || wp.message.is_some())
    {
        msg.code = wp.code.as_deref().map(clean_text);
        msg.message = wp.message.as_deref().map(clean_text);
    } else if let Ok(abuse) = serde_json::from_str::<AbuseIpDb>(body) {
        msg.message = abuse
            .errors
            .into_iter()
            .find_map(|e| e.detail)
            .as_deref()
            .map(clean_text);
    }
    msg
}

/// API text goes into log lines: no control characters, bounded length.
fn clean_text(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if is_unsafe_char(c) { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out.trim().to_string()
}

fn parse_retry_after(value: &str, now: u64) -> Option<u64> {
    let value = value.trim();
    let at = match value.parse::<u64>() {
        Ok(secs) => now.saturating_add(secs.min(MAX_RETRY_WAIT_SECS)),
        Err(_) => clock::parse_http_date(value)?,
    };
    Some(at.min(now + MAX_RETRY_WAIT_SECS))
}

/// The report quota from the rate-limit headers, if the answer carried any. A count that
/// is not a number (`unlimited`) is `None`.
fn read_quota(limit: Option<&str>, remaining: Option<&str>, reset: Option<u64>) -> Option<Quota> {
    if limit.is_none() && remaining.is_none() {
        return None;
    }
    let count = |value: Option<&str>| value.and_then(|v| v.trim().parse::<u64>().ok());
    Some(Quota {
        limit: count(limit),
        remaining: count(remaining),
        reset,
    })
}

fn rate_limit_reset(value: Option<&str>, now: u64) -> Option<u64> {
    let at = value?.trim().parse::<u64>().ok()?;
    (at > now).then_some(at.min(now + MAX_RETRY_WAIT_SECS))
}

fn describe_error(err: &ureq::Error, timeout: Duration) -> String {
    match err {
        ureq::Error::Timeout(_) => format!("timeout after {} s", timeout.as_secs()),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::BodyExceedsLimit(_) => format!("answer larger than {MAX_BODY_BYTES} bytes"),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::TimedOut => format!("timeout after {} s", timeout.as_secs()),
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: Ok(body.to_string()),
            location: None,
            retry_at: None,
            quota: None,
        }
    }

    fn classify(reply: Reply) -> Delivery {
        super::classify(reply, "u".into())
    }

    #[test]
    fn success_body_gives_receipt() {
        let body = r#"{"data":{"ipAddress":"45.155.205.233","abuseConfidencePercentage":39,"reportId":"4316026","aggregated":true}}"#;
        let Ok(receipt) = classify(reply(200, body)) else {
            panic!("not sent")
        };
        assert_eq!(receipt.report_id.as_deref(), Some("4316026"));
        assert_eq!(receipt.confidence, Some(39));
        assert_eq!(receipt.body_problem, None);
    }

    #[test]
    fn unreadable_success_body_still_counts_as_sent() {
        let Ok(receipt) = classify(reply(200, "<html>")) else {
            panic!("not sent")
        };
        assert!(receipt.body_problem.is_some());
    }

    #[test]
    fn status_classes() {
        let wp = r#"{"code":"ip_whitelisted","message":"IP is whitelisted","data":{"status":400}}"#;
        assert_eq!(
            classify(reply(400, wp)),
            Err(Failure::Rejected(ApiMessage {
                status: 400,
                code: Some("ip_whitelisted".into()),
                message: Some("IP is whitelisted".into())
            }))
        );
        assert!(matches!(
            classify(reply(422, "")),
            Err(Failure::Rejected(_))
        ));
        assert!(matches!(
            classify(reply(401, "")),
            Err(Failure::KeyRefused(_))
        ));
        assert!(matches!(
            classify(reply(403, "")),
            Err(Failure::KeyRefused(_))
        ));
        assert!(matches!(
            classify(reply(404, "")),
            Err(Failure::WrongUrl { .. })
        ));
        for transient in [301, 302, 308, 408, 425, 429, 500, 502, 503] {
            assert!(
                matches!(
                    classify(reply(transient, "")),
                    Err(Failure::Transient { .. })
                ),
                "{transient}"
            );
        }
    }

    #[test]
    fn abuseipdb_error_shape_is_understood() {
        let body =
            r#"{"errors":[{"detail":"Daily rate limit of 50 requests exceeded","status":429}]}"#;
        let Err(Failure::Transient { reason, .. }) = classify(reply(429, body)) else {
            panic!()
        };
        assert_eq!(reason, "HTTP 429: Daily rate limit of 50 requests exceeded");
    }

    #[test]
    fn api_text_is_cleaned() {
        let body = "{\"code\":\"x\",\"message\":\"line1\\nforged log line\"}";
        let Err(Failure::Rejected(msg)) = classify(reply(400, body)) else {
            panic!()
        };
        assert_eq!(msg.message.as_deref(), Some("line1 forged log line"));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 1000), Some(1120));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 00:00:00 GMT", 1_796_000_000),
            Some(1_796_083_200)
        );
        assert_eq!(parse_retry_after("99999999", 0), Some(MAX_RETRY_WAIT_SECS));
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(rate_limit_reset(Some("unlimited"), 0), None);
        assert_eq!(rate_limit_reset(Some("500"), 100), Some(500));
        assert_eq!(rate_limit_reset(Some("50"), 100), None);
    }

    #[test]
    fn quota_headers_are_read_with_unlimited_counts() {
        assert_eq!(read_quota(None, None, Some(5)), None);
        assert_eq!(
            read_quota(Some("50"), Some(" 13"), Some(5)),
            Some(Quota {
                limit: Some(50),
                remaining: Some(13),
                reset: Some(5)
            })
        );
        let unlimited = read_quota(Some("unlimited"), Some("unlimited"), None).unwrap();
        assert_eq!((unlimited.limit, unlimited.remaining), (None, None));
        assert!(!unlimited.used_up());
        let spent = Reply {
            quota: read_quota(Some("50"), Some("0"), Some(9000)),
            ..reply(429, r#"{"code":"rate_limited","message":"Daily limit"}"#)
        };
        assert!(matches!(classify(spent), Err(Failure::QuotaUsedUp { .. })));
        let burst = reply(429, "");
        assert!(matches!(classify(burst), Err(Failure::Transient { .. })));
    }

    #[test]
    fn key_info_tolerates_odd_limits() {
        let body = r#"{"data":{"valid":true,"keyName":"srv","permissions":["report"],"limits":{"dailyReportLimit":"unlimited","dailyReportUsage":"7"}}}"#;
        let info: KeyInfo = parse_data(&Ok(body.into())).unwrap();
        let limits = info.limits.unwrap();
        assert_eq!(limits.daily_report_limit, None);
        assert_eq!(limits.daily_report_usage, Some(7));
    }
}
