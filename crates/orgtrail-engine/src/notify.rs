//! Where alarm transitions go after the monitor recorded them: the lake's `system_errors` table
//! (every transition) and the notification destinations (transitions into and out of `ALARM`): a
//! generic JSON webhook and Slack incoming webhooks.
//!
//! Each destination and the lake writer has its own bounded queue and worker task, so a slow or
//! failing destination never holds up the others, the monitor or the collector. A full queue drops
//! the notification (logged, counted in `orgtrail_notifications_total{result="dropped"}`); the
//! transition stays unsent in the state database and is sent again by [`Notifier::replay_pending`]
//! at the next start. Delivery is retried with exponential backoff (and `Retry-After` on 429).
//!
//! A notification holds the alarm, the source's id and name, the message and the remedy: never a
//! key. Webhook URLs (a Slack URL is itself a credential) are never logged: only their host is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use orgtrail_lake::{Lake, SystemErrorRecord};
use orgtrail_state::{AlarmEvent, AlarmKind, AlarmState, StateStore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::EngineError;
use crate::metrics as m;
use crate::monitor::TransitionSink;

/// A notification destination. `Debug` shows only the URL's scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    /// POST the JSON payload of [`notification_payload`].
    Webhook(String),
    /// POST a Slack incoming-webhook message (`text` + `blocks`).
    Slack(String),
}

impl Destination {
    /// A webhook destination; the URL must be http(s).
    pub fn webhook(url: &str) -> Result<Destination, EngineError> {
        Ok(Destination::Webhook(check_url(url, "--notify-webhook")?))
    }

    /// A Slack incoming webhook; the URL must be http(s).
    pub fn slack(url: &str) -> Result<Destination, EngineError> {
        Ok(Destination::Slack(check_url(url, "--notify-slack")?))
    }

    /// `webhook` or `slack` (the metrics label).
    pub fn label(&self) -> &'static str {
        match self {
            Destination::Webhook(_) => "webhook",
            Destination::Slack(_) => "slack",
        }
    }

    fn url(&self) -> &str {
        match self {
            Destination::Webhook(u) | Destination::Slack(u) => u,
        }
    }

    /// `scheme://host/…`: what logs show instead of the URL.
    pub fn redacted(&self) -> String {
        redact_url(self.url())
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.label(), self.redacted())
    }
}

fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}/…",
            u.scheme(),
            u.host_str().unwrap_or(""),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "<invalid URL>".into(),
    }
}

fn check_url(url: &str, flag: &str) -> Result<String, EngineError> {
    let bad = |why: &str| {
        EngineError::Config(format!(
            "{flag}: {why}; give an http(s) URL such as https://hooks.example.com/orgtrail"
        ))
    };
    let u = url::Url::parse(url.trim()).map_err(|_| bad("not a URL"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
        return Err(bad(&format!("{} is not an http(s) URL", redact_url(url))));
    }
    Ok(url.trim().to_owned())
}

/// Settings of the notifier.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    pub destinations: Vec<Destination>,
    /// Where `system_errors` goes (`None`: not written).
    pub lake: Option<Lake>,
    /// Per destination (and for the lake writer).
    pub queue_capacity: usize,
    /// Attempts per notification and destination.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Per request.
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            destinations: Vec::new(),
            lake: None,
            queue_capacity: 256,
            max_attempts: 8,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The severity of a transition: `CRITICAL` for alarms (Panther's system errors always are),
/// `WARNING` for a key expiring in 7 or 14 days, `INFO` for everything else (resolutions).
pub fn severity(ev: &AlarmEvent) -> &'static str {
    let e = &ev.event;
    match (e.to, e.kind, e.stage.as_deref()) {
        (AlarmState::Alarm, AlarmKind::KeyExpiry, Some("14d" | "7d")) => "WARNING",
        (AlarmState::Alarm, _, _) => "CRITICAL",
        _ => "INFO",
    }
}

fn title(ev: &AlarmEvent) -> String {
    let e = &ev.event;
    if e.to == AlarmState::Alarm {
        format!("{} ALARM: {}", e.kind, e.source_name)
    } else {
        format!("{} resolved ({}): {}", e.kind, e.to, e.source_name)
    }
}

/// The generic webhook's JSON body (documented in the README).
pub fn notification_payload(ev: &AlarmEvent) -> serde_json::Value {
    let e = &ev.event;
    serde_json::json!({
        "version": 1,
        "id": format!("orgtrail-alarm-{}", ev.seq),
        "sequence": ev.seq,
        "product": "orgtrail",
        "alarm": e.kind.as_str(),
        "state": e.to.as_str(),
        "previous_state": e.from.as_str(),
        "resolved": e.to != AlarmState::Alarm,
        "stage": e.stage,
        "severity": severity(ev),
        "title": title(ev),
        "message": e.message,
        "remedy": e.remedy,
        "source": { "id": e.source_id, "name": e.source_name },
        "at": e.at.to_string(),
    })
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Slack incoming-webhook body.
pub fn slack_payload(ev: &AlarmEvent) -> serde_json::Value {
    let e = &ev.event;
    let icon = if e.to == AlarmState::Alarm {
        ":rotating_light:"
    } else {
        ":white_check_mark:"
    };
    let text = format!(
        "{icon} [orgtrail] {}: {}",
        slack_escape(&title(ev)),
        slack_escape(&e.message)
    );
    let mut body = format!(
        "*Source:* {}\n*Alarm:* `{}` {} → {}{}\n*Message:* {}",
        slack_escape(&e.source_name),
        e.kind,
        e.from,
        e.to,
        e.stage
            .as_deref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default(),
        slack_escape(&e.message)
    );
    if let Some(r) = &e.remedy {
        body.push_str(&format!("\n*Remedy:* {}", slack_escape(r)));
    }
    serde_json::json!({
        "text": text,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": format!("{icon} *{}*", slack_escape(&title(ev))) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": body } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": format!("orgtrail · {} · {} · #{}", e.at, severity(ev), ev.seq) } ] },
        ],
    })
}

/// The `system_errors` row of a transition.
pub fn system_error_record(ev: &AlarmEvent) -> SystemErrorRecord {
    let e = &ev.event;
    SystemErrorRecord {
        at: e.at,
        source_id: Some(e.source_id.clone()),
        source_label: Some(e.source_name.clone()),
        alarm: e.kind.as_str().to_owned(),
        severity: severity(ev).to_owned(),
        state: e.to.as_str().to_owned(),
        previous_state: e.from.as_str().to_owned(),
        stage: e.stage.clone(),
        message: e.message.clone(),
        remedy: e.remedy.clone(),
        sequence: ev.seq,
    }
}

/// A notification for one destination, with the countdown of the transition's destinations.
struct Job {
    event: Arc<AlarmEvent>,
    group: Arc<Group>,
}

/// Tracks one transition across destinations: marked notified when the last one finished, unless
/// one was dropped (then it is sent again at the next start).
struct Group {
    remaining: AtomicUsize,
    dropped: AtomicBool,
}

struct Inner {
    store: Arc<dyn StateStore>,
    config: NotifyConfig,
}

/// The queues' senders: dropped at shutdown, which ends the workers once their queues are empty.
struct Senders {
    queues: Vec<(Destination, mpsc::Sender<Job>)>,
    lake_tx: Option<mpsc::Sender<Arc<AlarmEvent>>>,
}

/// Sends alarm transitions to the lake and the destinations. Start it inside a tokio runtime.
pub struct Notifier {
    inner: Arc<Inner>,
    senders: std::sync::Mutex<Option<Senders>>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("destinations", &self.inner.config.destinations)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Starts one worker per destination and one for the lake.
    pub fn start(
        store: Arc<dyn StateStore>,
        config: NotifyConfig,
    ) -> Result<Notifier, EngineError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("orgtrail/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                EngineError::Config(format!(
                    "cannot build the notification HTTP client: {}",
                    e.without_url()
                ))
            })?;
        let cap = config.queue_capacity.max(1);
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for d in &config.destinations {
            let (tx, rx) = mpsc::channel::<Job>(cap);
            queues.push((d.clone(), tx));
            receivers.push((d.clone(), rx));
        }
        let (lake_tx, lake_rx) = match &config.lake {
            Some(_) => {
                let (tx, rx) = mpsc::channel::<Arc<AlarmEvent>>(cap);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner { store, config });
        let mut tasks = Vec::new();
        for (dest, rx) in receivers {
            tasks.push(tokio::spawn(destination_worker(
                inner.clone(),
                client.clone(),
                dest,
                rx,
            )));
        }
        if let (Some(rx), Some(lake)) = (lake_rx, inner.config.lake.clone()) {
            tasks.push(tokio::spawn(lake_worker(inner.clone(), lake, rx)));
        }
        Ok(Notifier {
            inner,
            senders: std::sync::Mutex::new(Some(Senders { queues, lake_tx })),
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    /// Queues again the transitions at or after `since` that a previous run recorded but did not
    /// finish writing or sending (a crash, a full queue). Returns how many.
    pub async fn replay_pending(&self, since: Timestamp) -> Result<usize, EngineError> {
        let pending = self.inner.store.pending_alarm_events(since, 200).await?;
        for ev in &pending {
            tracing::info!(target: "orgtrail_alarms", seq = ev.seq, source = %ev.event.source_name, alarm = ev.event.kind.as_str(), "sending an alarm transition a previous run did not finish sending");
            self.dispatch(ev);
        }
        Ok(pending.len())
    }

    /// Stops taking transitions and waits (at most `deadline`) for the queued ones to be sent;
    /// whatever is left is sent at the next start.
    pub async fn shutdown(&self, deadline: Duration) {
        // Dropping the senders ends the workers once their queues are empty.
        drop(
            self.senders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let all = futures_join(tasks);
        if tokio::time::timeout(deadline, all).await.is_err() {
            tracing::warn!(
                "some alarm notifications were not sent before shutdown; they are sent at the next start"
            );
        }
    }

    fn dispatch(&self, ev: &AlarmEvent) {
        let ev = Arc::new(ev.clone());
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        let Some(senders) = senders.as_ref() else {
            tracing::warn!(
                seq = ev.seq,
                "alarm transition after shutdown: it is sent at the next start"
            );
            return;
        };
        if let Some(tx) = &senders.lake_tx
            && ev.lake_written_at.is_none()
            && tx.try_send(ev.clone()).is_err()
        {
            tracing::error!(
                seq = ev.seq,
                "the system_errors queue is full; this alarm transition is written to the lake at the next start"
            );
        }
        if !ev.event.notify || ev.notified_at.is_some() {
            return;
        }
        if senders.queues.is_empty() {
            // Nowhere to send it: done.
            let store = self.inner.store.clone();
            let seq = ev.seq;
            tokio::spawn(async move {
                let _ = store
                    .mark_alarm_event(seq, None, Some(Timestamp::now()))
                    .await;
            });
            return;
        }
        let group = Arc::new(Group {
            remaining: AtomicUsize::new(senders.queues.len()),
            dropped: AtomicBool::new(false),
        });
        for (dest, tx) in &senders.queues {
            let job = Job {
                event: ev.clone(),
                group: group.clone(),
            };
            if let Err(err) = tx.try_send(job) {
                metrics::counter!(m::NOTIFICATIONS, "destination" => dest.label(), "result" => "dropped")
                    .increment(1);
                tracing::error!(seq = ev.seq, destination = %dest.redacted(), "the notification queue is full; this alarm is sent again at the next start");
                let job = match err {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                job.group.dropped.store(true, Ordering::SeqCst);
                finish(&self.inner, &job);
            }
        }
    }
}

impl TransitionSink for Notifier {
    fn transition(&self, event: &AlarmEvent) {
        self.dispatch(event);
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

/// One destination is done with a job: the last one marks the transition notified.
fn finish(inner: &Arc<Inner>, job: &Job) {
    if job.group.remaining.fetch_sub(1, Ordering::SeqCst) == 1
        && !job.group.dropped.load(Ordering::SeqCst)
    {
        let store = inner.store.clone();
        let seq = job.event.seq;
        tokio::spawn(async move {
            if let Err(e) = store
                .mark_alarm_event(seq, None, Some(Timestamp::now()))
                .await
            {
                tracing::warn!(seq, error = %e, "could not mark an alarm transition as notified; it may be sent again at the next start");
            }
        });
    }
}

fn backoff(config: &NotifyConfig, attempt: u32) -> Duration {
    let exp = config
        .backoff_base
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let capped = exp.min(config.backoff_cap);
    // Up to 20 % jitter so many orgtrails do not retry in step.
    let jitter = capped.mul_f64(rand::random::<f64>() * 0.2);
    capped + jitter
}

/// Why a delivery failed.
enum SendError {
    /// Retrying cannot help (a 4xx other than 408/429).
    Permanent(String),
    /// Retry, after this long if the server said so.
    Transient(String, Option<Duration>),
}

async fn send_once(
    client: &reqwest::Client,
    dest: &Destination,
    body: &[u8],
) -> Result<(), SendError> {
    let resp = client
        .post(dest.url())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| SendError::Transient(e.without_url().to_string(), None))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    if code == 429 || code == 408 || status.is_server_error() {
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(300)));
        return Err(SendError::Transient(format!("HTTP {code}"), retry_after));
    }
    Err(SendError::Permanent(format!("HTTP {code}")))
}

async fn destination_worker(
    inner: Arc<Inner>,
    client: reqwest::Client,
    dest: Destination,
    mut rx: mpsc::Receiver<Job>,
) {
    let config = &inner.config;
    while let Some(job) = rx.recv().await {
        let payload = match &dest {
            Destination::Webhook(_) => notification_payload(&job.event),
            Destination::Slack(_) => slack_payload(&job.event),
        };
        let body = payload.to_string().into_bytes();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            match send_once(&client, &dest, &body).await {
                Ok(()) => break Ok(()),
                Err(SendError::Permanent(why)) => break Err(why),
                Err(SendError::Transient(why, _)) if attempt >= config.max_attempts.max(1) => {
                    break Err(format!("{why}, after {attempt} attempts"));
                }
                Err(SendError::Transient(why, after)) => {
                    metrics::counter!(m::NOTIFICATION_RETRIES, "destination" => dest.label())
                        .increment(1);
                    let wait = after.unwrap_or_else(|| backoff(config, attempt));
                    tracing::debug!(seq = job.event.seq, destination = %dest.redacted(), attempt, error = %why, ?wait, "notification failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        match result {
            Ok(()) => {
                metrics::counter!(m::NOTIFICATIONS, "destination" => dest.label(), "result" => "sent")
                    .increment(1);
            }
            Err(why) => {
                metrics::counter!(m::NOTIFICATIONS, "destination" => dest.label(), "result" => "failed")
                    .increment(1);
                tracing::error!(seq = job.event.seq, destination = %dest.redacted(), alarm = job.event.event.kind.as_str(), source = %job.event.event.source_name, "could not deliver an alarm notification ({why}); check the {} URL given to orgtrail run", dest.label());
            }
        }
        finish(&inner, &job);
    }
}

async fn lake_worker(inner: Arc<Inner>, lake: Lake, mut rx: mpsc::Receiver<Arc<AlarmEvent>>) {
    while let Some(ev) = rx.recv().await {
        let record = system_error_record(&ev);
        let batch = format!("alarm-{}", ev.seq);
        let mut written = false;
        for attempt in 1..=3u32 {
            match lake
                .write_system_errors(&batch, std::slice::from_ref(&record))
                .await
            {
                Ok(_) => {
                    written = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(seq = ev.seq, attempt, error = %e, "could not write an alarm transition to system_errors");
                    tokio::time::sleep(backoff(&inner.config, attempt)).await;
                }
            }
        }
        if written {
            if let Err(e) = inner
                .store
                .mark_alarm_event(ev.seq, Some(Timestamp::now()), None)
                .await
            {
                tracing::warn!(seq = ev.seq, error = %e, "could not mark an alarm transition as written to the lake; it is written again (same file) at the next start");
            }
        } else {
            tracing::error!(
                seq = ev.seq,
                "gave up writing an alarm transition to system_errors; it is written at the next start"
            );
        }
    }
}

/// How far back [`Notifier::replay_pending`] looks by default.
pub const REPLAY_WINDOW: SignedDuration = SignedDuration::from_hours(24);
