//! The report as Markdown, JSON and a self-contained HTML page (no script,
//! no external style sheet or font), and the comparison rows every format
//! (the CLI's aligned text too) is made of.

use std::collections::BTreeSet;

use super::{DailyReport, DayFigures};
use crate::money::Money;

/// One figure of the day, the day before, and the change (`+3`, `-0.25`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub figure: String,
    pub day: String,
    pub previous: String,
    pub change: String,
}

fn count_row(figure: impl Into<String>, day: i64, previous: i64) -> Row {
    let d = day - previous;
    Row {
        figure: figure.into(),
        day: day.to_string(),
        previous: previous.to_string(),
        change: if d > 0 { format!("+{d}") } else { d.to_string() },
    }
}

fn money_row(figure: &str, day: &str, previous: &str) -> Row {
    let parse = |s: &str| Money::parse_decimal(s).unwrap_or(Money::from_picodollars(0));
    let d = parse(day) - parse(previous);
    let text = d.to_decimal_string();
    Row {
        figure: figure.into(),
        day: format!("${day}"),
        previous: format!("${previous}"),
        change: if d > Money::from_picodollars(0) {
            format!("+${text}")
        } else if let Some(neg) = text.strip_prefix('-') {
            format!("-${neg}")
        } else {
            format!("${text}")
        },
    }
}

fn sum(m: &std::collections::BTreeMap<String, u64>) -> i64 {
    m.values().sum::<u64>() as i64
}

/// The comparison rows: requests, jobs, money.
pub fn rows(r: &DailyReport) -> Vec<Row> {
    let (d, p) = (&r.day, &r.previous);
    let mut out = vec![
        count_row("requests enqueued", d.requests.enqueued, p.requests.enqueued),
        count_row("requests completed", d.requests.completed, p.requests.completed),
        count_row("requests failed", d.requests.failed, p.requests.failed),
        count_row("requests cancelled", d.requests.cancelled, p.requests.cancelled),
        count_row("requests retried", d.requests.retried, p.requests.retried),
        count_row("jobs submitted", sum(&d.jobs_submitted), sum(&p.jobs_submitted)),
        count_row("jobs finished", sum(&d.jobs_finished), sum(&p.jobs_finished)),
    ];
    let statuses: BTreeSet<&String> = d.jobs_finished.keys().chain(p.jobs_finished.keys()).collect();
    for s in statuses {
        let n = |f: &DayFigures| f.jobs_finished.get(s).copied().unwrap_or(0) as i64;
        out.push(count_row(format!("  finished {s}"), n(d), n(p)));
    }
    out.push(money_row("spend (batch cost)", &d.spend_usd, &p.spend_usd));
    out.push(money_row("real-time cost", &d.realtime_usd, &p.realtime_usd));
    out.push(money_row("saved", &d.saved_usd, &p.saved_usd));
    out.push(money_row("AWS overhead", &d.aws_overhead_usd, &p.aws_overhead_usd));
    out.push(money_row("net saved", &d.net_saved_usd, &p.net_saved_usd));
    out
}

/// Failures by error code: (code, day, previous), the day's largest first.
pub fn failure_rows(r: &DailyReport) -> Vec<(String, i64, i64)> {
    let codes: BTreeSet<&String> = r.day.failures.keys().chain(r.previous.failures.keys()).collect();
    let mut out: Vec<(String, i64, i64)> = codes
        .into_iter()
        .map(|c| {
            (
                c.clone(),
                r.day.failures.get(c).copied().unwrap_or(0),
                r.previous.failures.get(c).copied().unwrap_or(0),
            )
        })
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then_with(|| a.0.cmp(&b.0)));
    out
}

/// `1h 02m 05s` style.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, sec) => format!("{h}h {m:02}m {sec:02}s"),
    }
}

/// The title line.
pub fn title(r: &DailyReport) -> String {
    format!(
        "batchq daily report: {} (tenant {}), compared with {}",
        r.day.day, r.tenant, r.previous.day
    )
}

/// The report as pretty JSON.
pub fn json(r: &DailyReport) -> String {
    serde_json::to_string_pretty(r).expect("the report serializes")
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
}

/// The report as Markdown.
pub fn markdown(r: &DailyReport) -> String {
    let mut out = format!("# {}\n\n", md_cell(&title(r)));
    out.push_str(&format!(
        "| figure | {} | {} | change |\n|---|--:|--:|--:|\n",
        r.day.day, r.previous.day
    ));
    for row in rows(r) {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            md_cell(row.figure.trim()),
            row.day,
            row.previous,
            row.change
        ));
    }
    out.push_str("\n## Failures by reason\n\n");
    let failures = failure_rows(r);
    if failures.is_empty() {
        out.push_str("No failed requests.\n");
    } else {
        out.push_str(&format!(
            "| code | {} | {} |\n|---|--:|--:|\n",
            r.day.day, r.previous.day
        ));
        for (code, d, p) in failures {
            out.push_str(&format!("| {} | {d} | {p} |\n", md_cell(&code)));
        }
    }
    out.push_str("\n## Slowest batches (submitted to finished)\n\n");
    if r.day.slowest.is_empty() {
        out.push_str("No batch finished this day.\n");
    } else {
        out.push_str("| job | model | status | submitted | finished | took |\n|---|---|---|---|---|--:|\n");
        for b in &r.day.slowest {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                md_cell(&b.job_id),
                md_cell(&b.model),
                b.status,
                b.submitted_at,
                b.finished_at,
                duration(b.seconds)
            ));
        }
        if let Some(prev) = r.previous.slowest.first() {
            out.push_str(&format!(
                "\nThe slowest batch of {} took {}.\n",
                r.previous.day,
                duration(prev.seconds)
            ));
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .7em}\
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}";

/// The report as one HTML page with its style inline.
pub fn html(r: &DailyReport) -> String {
    let mut out = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(&title(r))
    );
    out.push_str(&format!(
        "<table><tr><th>figure</th><th>{}</th><th>{}</th><th>change</th></tr>\n",
        esc(&r.day.day),
        esc(&r.previous.day)
    ));
    for row in rows(r) {
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
            esc(row.figure.trim()),
            esc(&row.day),
            esc(&row.previous),
            esc(&row.change)
        ));
    }
    out.push_str("</table>\n<h2>Failures by reason</h2>\n");
    let failures = failure_rows(r);
    if failures.is_empty() {
        out.push_str("<p>No failed requests.</p>\n");
    } else {
        out.push_str(&format!(
            "<table><tr><th>code</th><th>{}</th><th>{}</th></tr>\n",
            esc(&r.day.day),
            esc(&r.previous.day)
        ));
        for (code, d, p) in failures {
            out.push_str(&format!(
                "<tr><td>{}</td><td class=\"n\">{d}</td><td class=\"n\">{p}</td></tr>\n",
                esc(&code)
            ));
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Slowest batches (submitted to finished)</h2>\n");
    if r.day.slowest.is_empty() {
        out.push_str("<p>No batch finished this day.</p>\n");
    } else {
        out.push_str("<table><tr><th>job</th><th>model</th><th>status</th><th>submitted</th><th>finished</th><th>took</th></tr>\n");
        for b in &r.day.slowest {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>\n",
                esc(&b.job_id),
                esc(&b.model),
                esc(&b.status),
                esc(&b.submitted_at),
                esc(&b.finished_at),
                duration(b.seconds)
            ));
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::SlowBatch;

    fn report() -> DailyReport {
        let mut day = DayFigures {
            day: "2026-12-01".into(),
            spend_usd: "1.50".into(),
            realtime_usd: "3.00".into(),
            saved_usd: "1.50".into(),
            aws_overhead_usd: "0.25".into(),
            net_saved_usd: "1.25".into(),
            ..DayFigures::default()
        };
        day.requests.completed = 10;
        day.failures.insert("<script>".into(), 2);
        day.jobs_finished.insert("done".into(), 1);
        day.slowest.push(SlowBatch {
            job_id: "job_1".into(),
            model: "m".into(),
            status: "done".into(),
            submitted_at: "2026-12-01T00:00:00.000Z".into(),
            finished_at: "2026-12-01T01:02:05.000Z".into(),
            seconds: 3725,
        });
        let previous = DayFigures {
            day: "2026-11-30".into(),
            spend_usd: "2.00".into(),
            realtime_usd: "4.00".into(),
            saved_usd: "2.00".into(),
            aws_overhead_usd: "0.50".into(),
            net_saved_usd: "1.50".into(),
            ..DayFigures::default()
        };
        DailyReport {
            tenant: "acme".into(),
            day,
            previous,
        }
    }

    #[test]
    fn each_figure_is_compared_with_the_day_before() {
        let rows = rows(&report());
        let find = |f: &str| rows.iter().find(|r| r.figure == f).unwrap().clone();
        assert_eq!(find("requests completed").change, "+10");
        assert_eq!(find("spend (batch cost)").change, "-$0.50");
        assert_eq!(find("  finished done").day, "1");
    }

    #[test]
    fn the_html_page_escapes_what_it_shows_and_loads_nothing_else() {
        let page = html(&report());
        assert!(page.contains("&lt;script&gt;"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http"), "no external resource");
        assert!(page.contains("1h 02m 05s"));
    }

    #[test]
    fn markdown_lists_failures_and_the_slowest_batches() {
        let md = markdown(&report());
        assert!(md.contains("| <script> | 2 | 0 |"), "{md}");
        assert!(md.contains("| job_1 | m | done |"), "{md}");
    }
}
