//! The alarm state machine: given what is known about a source now and an alarm's previous state,
//! its next state and the transition to record. Pure functions of their inputs (the time is an
//! input), so every transition is tested without a clock or a database.
//!
//! Rules, per alarm:
//! - `SOURCE_NO_DATA` (only with a threshold): `INSUFFICIENT_DATA` until events arrive after the
//!   alarm was set; `ALARM` once no events arrived for the threshold (measured from the later of
//!   the last event received and the time the alarm was set); `OK` as soon as events arrive again.
//!   Right after a start (or a resume) it waits for the source's first cycle before going to
//!   `ALARM`, so a restart after downtime does not fire before the collector has looked.
//! - `SOURCE_PERMISSIONS_CHECKS`: `ALARM` on a 401/403/404 (or an unreadable key), `OK` after the
//!   next successful cycle.
//! - `SOURCE_LOG_PROCESSING_ERRORS`: `ALARM` after [`Rules::processing_error_cycles`] failed cycles
//!   in a row (each already retried inside the client), `OK` after a successful cycle.
//! - `SOURCE_CLASSIFICATION_FAILURES`: `ALARM` on the first failure ever (stage `first`), and when
//!   at least [`Rules::classification_min_failures`] failures make up
//!   [`Rules::classification_rate`] of the last [`Rules::classification_window`] (stage `rate`);
//!   `OK` after a whole window below that.
//! - `SOURCE_KEY_EXPIRY` (only with an expiry date): `ALARM` 14, 7 and 1 days before it and at it
//!   (stages `14d`, `7d`, `1d`, `expired`: each stage notifies once), `OK` when the date is further.
//! - `SOURCE_RETENTION_RISK`: `ALARM` when events not yet collected are older than the retention
//!   minus [`Rules::retention_warning`].
//!
//! Every change of state, and every change of stage within `ALARM`, is a transition. Transitions
//! into `ALARM` and out of it are notified; the others (`INSUFFICIENT_DATA` ↔ `OK`) are only
//! recorded and logged.

use jiff::{SignedDuration, Timestamp};
use orgtrail_atlassian::REPLACE_KEY_HINT;
use orgtrail_state::{AlarmKind, AlarmRecord, AlarmState, NewAlarmEvent, Source};

use crate::RETENTION;

/// Thresholds of the system alarms.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Failed cycles in a row before `SOURCE_LOG_PROCESSING_ERRORS` fires.
    pub processing_error_cycles: u32,
    /// The window of the classification failure rate.
    pub classification_window: SignedDuration,
    /// Share of failed events in the window that fires `SOURCE_CLASSIFICATION_FAILURES`.
    pub classification_rate: f64,
    /// Fewest failures in the window for the rate to count.
    pub classification_min_failures: u64,
    /// `SOURCE_RETENTION_RISK` fires this long before uncollected events fall out of retention.
    pub retention_warning: SignedDuration,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            processing_error_cycles: 3,
            classification_window: SignedDuration::from_hours(1),
            // The API does serve some events that Panther's schema rejects (no `links`): only a
            // rate well above that background is news.
            classification_rate: 0.10,
            classification_min_failures: 10,
            retention_warning: SignedDuration::from_hours(30 * 24),
        }
    }
}

/// How the latest cycle of a source (since the monitor started) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastCycle {
    Ok,
    /// The source cannot work until a person fixes something (401/403/404, key unreadable).
    Fatal {
        /// The error class (`auth`, `forbidden`, `not_found`, `key_unavailable`, `config`).
        class: &'static str,
        message: String,
    },
    /// A transient failure (after the client's retries).
    Failed {
        message: String,
    },
}

/// What the monitor knows about a source when it evaluates its alarms.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub source: &'a Source,
    pub now: Timestamp,
    /// At least one cycle ended since the monitor started or the source was resumed.
    pub cycle_seen: bool,
    /// When events were last received (ingest time).
    pub last_data_at: Option<Timestamp>,
    pub last_cycle: Option<LastCycle>,
    pub consecutive_failures: u32,
    /// The first classification failure of the source ever was seen since the last evaluation.
    pub first_failure: bool,
    /// Rows and failures written within the classification window.
    pub window_rows: u64,
    pub window_failures: u64,
    /// The monitor has watched the source for a whole classification window.
    pub window_covered: bool,
    /// Events after this instant may not be collected yet (the later of the newest `processedAt`
    /// and the last time a cycle caught up); `None` when unknown.
    pub uncollected_since: Option<Timestamp>,
    pub log_type: &'a str,
}

/// What to do with one alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store this state, and record this transition if any.
    Save(AlarmRecord, Option<NewAlarmEvent>),
    /// The alarm no longer applies (its setting was cleared): delete it, recording this transition
    /// if any.
    Remove(Option<NewAlarmEvent>),
    /// The alarm does not exist and need not.
    Absent,
}

/// The state an alarm should be in, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    state: AlarmState,
    stage: Option<String>,
    message: String,
    remedy: Option<String>,
}

impl Target {
    fn new(state: AlarmState, message: String) -> Target {
        Target {
            state,
            stage: None,
            message,
            remedy: None,
        }
    }

    fn stage(mut self, stage: &str) -> Target {
        self.stage = Some(stage.to_owned());
        self
    }

    fn remedy(mut self, remedy: String) -> Target {
        self.remedy = Some(remedy);
        self
    }
}

/// A duration for people: `16 minutes`, `2 hours 5 minutes`, `3 days 4 hours`.
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    let unit = |n: i64, u: &str| format!("{n} {u}{}", if n == 1 { "" } else { "s" });
    match (days, hours, mins) {
        (0, 0, 0) => unit(secs, "second"),
        (0, 0, m) => unit(m, "minute"),
        (0, h, 0) => unit(h, "hour"),
        (0, h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
        (d, 0, _) => unit(d, "day"),
        (d, h, _) => format!("{} {}", unit(d, "day"), unit(h, "hour")),
    }
}

fn day(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\\\""))
}

/// The remedy of a permissions failure, by error class.
pub fn permissions_remedy(class: &str, source: &Source) -> String {
    let name = q(&source.name);
    match class {
        "auth" => REPLACE_KEY_HINT.replace("NAME", &name),
        "forbidden" => format!(
            "use a key created by an organization admin of an organization with Atlassian Guard, then `orgtrail source edit {name} --api-key-env VAR`"
        ),
        "not_found" => format!(
            "check the Organization ID and the base URL with `orgtrail source show {name}`; fix the URL with `orgtrail source edit {name} --base-url URL`, or add the right organization as a new source"
        ),
        "key_unavailable" => format!(
            "make the key readable again (set the environment variable or fix the file named above) or give a new one with `orgtrail source edit {name} --api-key-env VAR`"
        ),
        _ => format!("fix the source's settings with `orgtrail source edit {name}`"),
    }
}

/// Evaluates one alarm of a source.
pub fn evaluate(
    kind: AlarmKind,
    prev: Option<&AlarmRecord>,
    input: &Input<'_>,
    rules: &Rules,
) -> Decision {
    match kind {
        AlarmKind::NoData => no_data(prev, input),
        AlarmKind::Permissions => apply(kind, prev, permissions(input), input),
        AlarmKind::ProcessingErrors => apply(kind, prev, processing(input, rules), input),
        AlarmKind::ClassificationFailures => {
            apply(kind, prev, classification(prev, input, rules), input)
        }
        AlarmKind::KeyExpiry => match input.source.key_expires_at {
            Some(at) => apply(kind, prev, Some(key_expiry(at, input)), input),
            None => removed(kind, prev, input, "the key expiry date was cleared"),
        },
        AlarmKind::RetentionRisk => apply(kind, prev, Some(retention(input, rules)), input),
    }
}

/// An alarm whose setting was cleared: delete it; if it was firing, that is a resolution.
fn removed(kind: AlarmKind, prev: Option<&AlarmRecord>, input: &Input<'_>, why: &str) -> Decision {
    match prev {
        None => Decision::Absent,
        Some(p) => Decision::Remove((p.state == AlarmState::Alarm).then(|| NewAlarmEvent {
            source_id: input.source.id.clone(),
            source_name: input.source.name.clone(),
            kind,
            from: p.state,
            to: AlarmState::Ok,
            stage: None,
            at: input.now,
            message: format!("{why}: the alarm is off"),
            remedy: None,
            notify: true,
        })),
    }
}

/// Moves an alarm to `target` (or only stamps the evaluation when `None`), with the transition.
fn apply(
    kind: AlarmKind,
    prev: Option<&AlarmRecord>,
    target: Option<Target>,
    input: &Input<'_>,
) -> Decision {
    let now = input.now;
    let Some(t) = target else {
        return match prev {
            Some(p) => Decision::Save(
                AlarmRecord {
                    evaluated_at: now,
                    ..p.clone()
                },
                None,
            ),
            // Nothing known yet: the alarm starts OK.
            None => apply(
                kind,
                None,
                Some(Target::new(AlarmState::Ok, "no problem seen yet".into())),
                input,
            ),
        };
    };
    let from = prev.map(|p| p.state);
    let state_changed = from != Some(t.state);
    let stage_changed = from == Some(AlarmState::Alarm)
        && t.state == AlarmState::Alarm
        && prev.and_then(|p| p.stage.as_deref()) != t.stage.as_deref();
    let record = AlarmRecord {
        source_id: input.source.id.clone(),
        kind,
        state: t.state,
        since: match prev {
            Some(p) if !state_changed => p.since,
            _ => now,
        },
        evaluated_at: now,
        threshold_minutes: prev.and_then(|p| p.threshold_minutes),
        armed_at: prev.and_then(|p| p.armed_at),
        last_data_at: prev.and_then(|p| p.last_data_at),
        stage: t.stage.clone(),
        message: t.message.clone(),
        remedy: t.remedy.clone(),
    };
    // A new alarm that starts in ALARM (a key already close to expiry) is a transition from OK.
    let from = from.or((t.state == AlarmState::Alarm).then_some(AlarmState::Ok));
    let event = match from {
        Some(from) if state_changed || stage_changed => Some(NewAlarmEvent {
            source_id: input.source.id.clone(),
            source_name: input.source.name.clone(),
            kind,
            from,
            to: t.state,
            stage: t.stage,
            at: now,
            message: t.message,
            remedy: t.remedy,
            notify: t.state == AlarmState::Alarm || from == AlarmState::Alarm,
        }),
        _ => None,
    };
    Decision::Save(record, event)
}

fn no_data(prev: Option<&AlarmRecord>, input: &Input<'_>) -> Decision {
    let Some(threshold) = input.source.dropoff_alarm_minutes else {
        return removed(
            AlarmKind::NoData,
            prev,
            input,
            "the drop-off alarm was turned off",
        );
    };
    let now = input.now;
    let name = q(&input.source.name);
    let armed_at = prev.and_then(|p| p.armed_at).unwrap_or(now);
    let last = input.last_data_at.max(prev.and_then(|p| p.last_data_at));
    let thr = SignedDuration::from_mins(i64::from(threshold));
    let silent_from = last.map_or(armed_at, |l| l.max(armed_at));
    let silent = now.duration_since(silent_from);
    let data_since_armed = last.is_some_and(|l| l >= armed_at);
    let changed = match prev.and_then(|p| p.threshold_minutes) {
        Some(old) if old != threshold => format!(
            " (threshold changed from {} to {})",
            human(SignedDuration::from_mins(i64::from(old))),
            human(thr)
        ),
        _ => String::new(),
    };
    let paused = input.source.paused;
    let was_alarm = prev.is_some_and(|p| p.state == AlarmState::Alarm);
    let target = if paused {
        None
    } else if silent >= thr {
        if !input.cycle_seen && !was_alarm {
            // Just started or resumed: wait for the first cycle before deciding.
            None
        } else {
            let message = match last.filter(|_| data_since_armed) {
                Some(l) => format!(
                    "no events received from source {name} for {} (threshold {}); the last arrived at {l}{changed}",
                    human(silent),
                    human(thr)
                ),
                None => format!(
                    "no events received from source {name} since the drop-off alarm was set at {armed_at}, {} ago (threshold {}){changed}",
                    human(silent),
                    human(thr)
                ),
            };
            Some(Target::new(AlarmState::Alarm, message).remedy(format!(
                "check `orgtrail source health {name}`: a failing key or permissions, a paused source, or an organization that really went quiet; the alarm resolves on the next event. Change the threshold with `orgtrail source edit {name} --dropoff-alarm DURATION`"
            )))
        }
    } else if let Some(l) = last.filter(|_| data_since_armed) {
        Some(Target::new(
            AlarmState::Ok,
            format!(
                "events received from source {name} at {l} (threshold {}){changed}",
                human(thr)
            ),
        ))
    } else {
        Some(Target::new(
            AlarmState::InsufficientData,
            format!(
                "no events received from source {name} since the drop-off alarm was set at {armed_at}; ALARM after {} without events{changed}",
                human(thr)
            ),
        ))
    };
    let prev_for_apply = prev.cloned();
    let mut decision = match (&prev_for_apply, target) {
        (None, None) => {
            // A new alarm while paused or waiting for the first cycle: it starts undecided.
            apply(
                AlarmKind::NoData,
                None,
                Some(Target::new(
                    AlarmState::InsufficientData,
                    format!(
                        "no events received from source {name} since the drop-off alarm was set at {armed_at}"
                    ),
                )),
                input,
            )
        }
        (p, t) => apply(AlarmKind::NoData, p.as_ref(), t, input),
    };
    if let Decision::Save(rec, _) = &mut decision {
        rec.threshold_minutes = Some(threshold);
        rec.armed_at = Some(armed_at);
        rec.last_data_at = last;
    }
    decision
}

fn permissions(input: &Input<'_>) -> Option<Target> {
    if input.source.paused {
        return None;
    }
    match &input.last_cycle {
        Some(LastCycle::Fatal { class, message }) => Some(
            Target::new(AlarmState::Alarm, message.clone())
                .stage(class)
                .remedy(permissions_remedy(class, input.source)),
        ),
        Some(LastCycle::Ok) => Some(Target::new(
            AlarmState::Ok,
            format!(
                "the API accepts the key of source {}",
                q(&input.source.name)
            ),
        )),
        _ => None,
    }
}

fn processing(input: &Input<'_>, rules: &Rules) -> Option<Target> {
    if input.source.paused {
        return None;
    }
    let name = q(&input.source.name);
    match &input.last_cycle {
        Some(LastCycle::Failed { message })
            if input.consecutive_failures >= rules.processing_error_cycles =>
        {
            Some(Target::new(
                AlarmState::Alarm,
                format!(
                    "{} collection cycles of source {name} failed in a row; the last error: {message}",
                    input.consecutive_failures
                ),
            ).remedy(format!(
                "orgtrail retries transient errors by itself; if this persists, check status.atlassian.com, the network or proxy to the API, and that the lake and the data directory are writable (`orgtrail source health {name}` shows the last error)"
            )))
        }
        Some(LastCycle::Ok) => Some(Target::new(
            AlarmState::Ok,
            format!("the last collection cycle of source {name} succeeded"),
        )),
        _ => None,
    }
}

fn classification(prev: Option<&AlarmRecord>, input: &Input<'_>, rules: &Rules) -> Option<Target> {
    let name = q(&input.source.name);
    let remedy = format!(
        "the events are kept, with the reasons, in classification_failures: orgtrail query \"SELECT p_parse_time, errors, payload FROM classification_failures WHERE p_source_id = '{}' ORDER BY p_parse_time DESC LIMIT 20\"",
        input.source.id
    );
    let total = input.window_rows + input.window_failures;
    let rate = if total == 0 {
        0.0
    } else {
        input.window_failures as f64 / total as f64
    };
    let high = input.window_failures >= rules.classification_min_failures
        && rate >= rules.classification_rate;
    if high {
        return Some(
            Target::new(
                AlarmState::Alarm,
                format!(
                    "{:.1} % of the events of source {name} in the last {} did not fit {} ({} of {})",
                    rate * 100.0,
                    human(rules.classification_window),
                    input.log_type,
                    input.window_failures,
                    total
                ),
            )
            .stage("rate")
            .remedy(remedy),
        );
    }
    if input.first_failure {
        return Some(
            Target::new(
                AlarmState::Alarm,
                format!(
                    "first classification failure of source {name}: {} event(s) did not fit {}",
                    input.window_failures.max(1),
                    input.log_type
                ),
            )
            .stage("first")
            .remedy(remedy),
        );
    }
    match prev {
        Some(p) if p.state == AlarmState::Alarm => {
            let calm = input.window_covered
                && input.now.duration_since(p.since) >= rules.classification_window;
            calm.then(|| {
                Target::new(
                    AlarmState::Ok,
                    format!(
                        "classification failures of source {name} stayed below {:.1} % for {}",
                        rules.classification_rate * 100.0,
                        human(rules.classification_window)
                    ),
                )
            })
        }
        Some(_) => None,
        None => Some(Target::new(
            AlarmState::Ok,
            format!("no high classification failure rate for source {name}"),
        )),
    }
}

fn key_expiry(at: Timestamp, input: &Input<'_>) -> Target {
    let left = at.duration_since(input.now);
    let name = q(&input.source.name);
    let remedy = format!(
        "create a new key in admin.atlassian.com > Settings > API keys, then `orgtrail source edit {name} --api-key-env VAR --key-expires YYYY-MM-DD`"
    );
    let day_ = SignedDuration::from_hours(24);
    let stage = if left <= SignedDuration::ZERO {
        "expired"
    } else if left <= day_ {
        "1d"
    } else if left <= day_ * 7 {
        "7d"
    } else if left <= day_ * 14 {
        "14d"
    } else {
        return Target::new(
            AlarmState::Ok,
            format!(
                "the API key of source {name} expires on {} (in {})",
                day(at),
                human(left)
            ),
        );
    };
    let message = if stage == "expired" {
        format!(
            "the API key of source {name} expired on {} ({at}); collection fails until it is replaced",
            day(at)
        )
    } else {
        format!(
            "the API key of source {name} expires on {} ({at}), in {}",
            day(at),
            human(left)
        )
    };
    Target::new(AlarmState::Alarm, message)
        .stage(stage)
        .remedy(remedy)
}

fn retention(input: &Input<'_>, rules: &Rules) -> Target {
    let name = q(&input.source.name);
    let Some(since) = input.uncollected_since else {
        return Target::new(
            AlarmState::Ok,
            format!("nothing of source {name} is close to the 180-day retention"),
        );
    };
    let age = input.now.duration_since(since);
    let limit = RETENTION - rules.retention_warning;
    if age >= limit {
        let lost_from = since.checked_add(RETENTION).unwrap_or(since);
        Target::new(
            AlarmState::Alarm,
            format!(
                "events of source {name} after {since} are not collected yet ({} behind); Atlassian deletes audit events after 180 days, so they are lost from {} on",
                human(age),
                day(lost_from)
            ),
        )
        .remedy(format!(
            "fix what stops the source (`orgtrail source health {name}`): it resumes from its checkpoint and catches up"
        ))
    } else {
        Target::new(
            AlarmState::Ok,
            format!("source {name} is collected well within the 180-day retention"),
        )
    }
}
