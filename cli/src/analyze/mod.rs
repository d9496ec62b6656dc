//! `batchq analyze USAGE.jsonl`: which past real-time calls could have waited
//! for a batch, and what that would save. The log format, the batchable rule
//! and the arithmetic are in `analysis`. Needs no AWS and no
//! provider: only the file and a price table (the bundled one, or a local
//! file named by `BATCHQ_PRICING_FILE`).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::Duration;

use batchq_core::config::PRICING_FILE;
use batchq_core::job::ProviderKind;
use batchq_core::money::Money;
use batchq_core::pricing::PriceBook;
use batchq_core::request::Usage;
use serde_json::{json, Value};

use crate::output::emit;
use crate::Failure;

mod analysis;
mod log_line;
mod terms;

use self::analysis::{Analysis, Totals};

pub fn analyze(file: &Path, min_wait: Duration, json: bool) -> Result<(), Failure> {
    let reader = File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let prices = price_book()?;
    let analysis =
        analysis::analyze(BufReader::new(reader), &prices, min_wait).map_err(|e| format!("{}: {e}", file.display()))?;
    let v = to_json(&analysis, &prices, file);
    emit(json, &v, || human(&analysis, &prices, file))?;
    Ok(())
}

/// The price table the service uses: `BATCHQ_PRICING_FILE` when it names a
/// local file, else the bundled one. A table in S3 is not fetched (analyze
/// needs no AWS): that is an error saying so, never a silent fallback.
fn price_book() -> Result<PriceBook, Failure> {
    let source = match std::env::var(PRICING_FILE) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => return Ok(PriceBook::bundled()),
    };
    if source.starts_with("s3://") {
        return Err(format!(
            "{PRICING_FILE}={source:?}: analyze reads a price table from a local file only (it needs no AWS); \
             download it and point {PRICING_FILE} at the copy"
        )
        .into());
    }
    let text = std::fs::read_to_string(&source).map_err(|e| format!("{PRICING_FILE}={source:?}: {e}"))?;
    PriceBook::from_json(&text).map_err(|e| format!("{PRICING_FILE}={source:?}: {e}").into())
}

fn usd(m: Money) -> Value {
    Value::String(m.to_decimal_string())
}

fn usd_opt(m: Option<Money>) -> Value {
    m.map_or(Value::Null, usd)
}

fn tokens(u: &Usage) -> Value {
    json!({
        "input": u.input_tokens,
        "cached_input": u.cached_input_tokens,
        "cache_write": u.cache_write_tokens,
        "output": u.output_tokens,
    })
}

fn totals_json(t: &Totals, projected: Option<Money>) -> Value {
    json!({
        "lines": t.lines,
        "calls": t.calls,
        "tokens": tokens(&t.usage),
        "realtime_cost_usd": usd(t.realtime_cost),
        "batch_cost_usd": usd(t.batch_cost),
        "saving_if_batched_usd": usd(t.saving_if_batched()),
        "calls_without_tolerance": t.calls_without_tolerance,
        "batchable": {
            "calls": t.batchable_calls,
            "realtime_cost_usd": usd(t.batchable_realtime_cost),
            "batch_cost_usd": usd(t.batchable_batch_cost),
            "saving_usd": usd(t.batchable_saving()),
            // batchq's own AWS use for these calls, estimated from their
            // sizes, and the saving less it.
            "aws_overhead_usd": usd(t.batchable_aws_overhead),
            "net_saving_usd": usd(t.batchable_net_saving()),
            "saving_covers_aws_overhead": !t.saving_below_overhead(),
        },
        "batchable_share_percent": t.batchable_share().map(|p| p.to_string()),
        "projected_monthly_saving_usd": usd_opt(projected),
    })
}

fn to_json(a: &Analysis, prices: &PriceBook, file: &Path) -> Value {
    let groups: Vec<Value> = a
        .groups
        .iter()
        .map(|g| {
            let mut v = json!({
                "category": g.category.as_str(),
                "provider": g.provider.as_str(),
                "model": g.model.as_str(),
                "priced_as": g.priced_as,
            });
            if let (Value::Object(head), Value::Object(rest)) = (&mut v, totals_json(&g.totals, a.project(&g.totals))) {
                head.extend(rest);
            }
            v
        })
        .collect();
    let unpriced: Vec<Value> = a
        .unpriced
        .iter()
        .map(|u| {
            json!({
                "category": u.category.as_str(),
                "provider": u.provider.as_str(),
                "model": u.model.as_str(),
                "reason": u.reason.as_str(),
                "lines": u.lines,
                "calls": u.calls,
                "tokens": tokens(&u.usage),
            })
        })
        .collect();
    let malformed: Vec<Value> = a
        .malformed
        .iter()
        .map(|m| json!({"line": m.line, "error": m.problem.to_string()}))
        .collect();
    json!({
        "file": file.display().to_string(),
        "min_wait_seconds": a.min_wait.as_secs(),
        "prices": {
            "source": prices.source(),
            "as_of": prices.as_of(),
            "by_provider": a.providers().into_iter().map(|p| (p.as_str().to_owned(), provenance(prices, p)
                .map_or(Value::Null, |(source, as_of)| json!({"source": source, "as_of": as_of}))))
                .collect::<serde_json::Map<String, Value>>(),
        },
        "period": a.period.map(|p| json!({
            "from": p.from.to_rfc3339(),
            "to": p.to.to_rfc3339(),
            "seconds": p.millis() / 1000,
        })),
        "lines_read": a.lines_read,
        "groups": groups,
        "totals": totals_json(&a.totals, a.projected_monthly_saving()),
        "unpriced": unpriced,
        "already_batched": {"lines": a.already_batched.lines, "calls": a.already_batched.calls},
        "malformed_lines": a.malformed_lines,
        "malformed": malformed,
    })
}

/// Dollars for people: rounded to the cent (halves away from zero) with
/// thousands separators; an amount under a cent is shown exactly.
fn dollars(m: Money) -> String {
    let p = m.picodollars();
    let per_cent = Money::PICOS_PER_DOLLAR / 100;
    if p != 0 && p.abs() < per_cent {
        return format!("${}", m.to_decimal_string());
    }
    let cents = (p.abs() + per_cent / 2) / per_cent;
    let sign = if p < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", thousands(cents / 100), cents % 100)
}

fn thousands(n: impl Into<i128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c.is_ascii_digit() {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 line`, `1,234 lines`.
fn count(n: u64, noun: &str) -> String {
    format!("{} {noun}{}", thousands(n), if n == 1 { "" } else { "s" })
}

fn span(millis: i64) -> String {
    let minutes = millis / 60_000;
    let (days, hours, mins) = (minutes / 1440, minutes % 1440 / 60, minutes % 60);
    match (days, hours, mins) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, 0, _) => "1 day".into(),
        (1, h, _) => format!("1 day {h} h"),
        (d, 0, _) => format!("{d} days"),
        (d, h, _) => format!("{d} days {h} h"),
    }
}

fn share(t: &Totals) -> String {
    t.batchable_share().map_or("-".into(), |p| format!("{p}%"))
}

fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    // Text columns (category, provider, model) left, figures right.
                    if c < 3 {
                        format!("{s:<w$}", w = widths[c])
                    } else {
                        format!("{s:>w$}", w = widths[c])
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn human(a: &Analysis, prices: &PriceBook, file: &Path) -> String {
    let mut out = Vec::new();
    let period = match a.period {
        Some(p) => format!(
            "{} to {} ({})",
            p.from.to_rfc3339(),
            p.to.to_rfc3339(),
            span(p.millis())
        ),
        None => "no period (no timestamps)".into(),
    };
    out.push(format!("{}: {}, {period}", file.display(), count(a.lines_read, "line")));
    out.push(format!(
        "A call is batchable when it can wait at least {} (--min-wait).",
        terms::format_wait(a.min_wait)
    ));
    out.push(String::new());

    let t = &a.totals;
    if a.groups.is_empty() {
        out.push("No priced calls.".into());
    } else {
        let mut rows = vec![[
            "category",
            "provider",
            "model",
            "calls",
            "batchable",
            "real-time",
            "batch",
            "share",
            "saving",
            "per 30 days",
        ]
        .map(String::from)
        .to_vec()];
        let row = |category: &str, provider: &str, model: &str, t: &Totals, projected: Option<Money>| {
            vec![
                category.to_owned(),
                provider.to_owned(),
                model.to_owned(),
                thousands(t.calls),
                thousands(t.batchable_calls),
                dollars(t.realtime_cost),
                dollars(t.batch_cost),
                share(t),
                dollars(t.batchable_saving()),
                projected.map_or("-".into(), dollars),
            ]
        };
        for g in &a.groups {
            rows.push(row(
                g.category.as_str(),
                g.provider.as_str(),
                g.model.as_str(),
                &g.totals,
                a.project(&g.totals),
            ));
        }
        rows.push(Vec::new());
        rows.push(row("total", "", "", t, a.projected_monthly_saving()));
        let mut text = table(&rows);
        // The empty row becomes a rule above the total.
        let width = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        text = text.replace("\n\n", &format!("\n{}\n", "-".repeat(width)));
        out.push(text);
        out.push(
            "real-time: what the calls cost; batch: the same calls at Batch API prices; share: batchable part\n\
             of the real-time spend; saving: real-time minus batch cost of the batchable calls."
                .into(),
        );
        out.push(String::new());
        out.push(format!(
            "Batchable share of spend: {} ({} of {} real-time spend).",
            share(t),
            dollars(t.batchable_realtime_cost),
            dollars(t.realtime_cost)
        ));
        let over = a
            .period
            .map_or("in this log".to_owned(), |p| format!("over {}", span(p.millis())));
        out.push(format!(
            "Saving had the batchable calls used the Batch API: {} {over}; projected: {}.",
            dollars(t.batchable_saving()),
            a.projected_monthly_saving()
                .map_or("none (the log covers no period)".to_owned(), |m| format!(
                    "{} per 30 days",
                    dollars(m)
                ))
        ));
    }
    let below: Vec<&analysis::Group> = a.groups.iter().filter(|g| g.totals.saving_below_overhead()).collect();
    if !below.is_empty() {
        out.push(String::new());
        out.push(
            "Where the saving would not cover batchq's own AWS overhead (estimated from the calls' sizes):".into(),
        );
        for g in below {
            out.push(format!(
                "  {} {} {}: saving {}, AWS overhead about {}",
                g.category.as_str(),
                g.provider.as_str(),
                g.model.as_str(),
                dollars(g.totals.batchable_saving()),
                dollars(g.totals.batchable_aws_overhead)
            ));
        }
    }
    if t.calls_without_tolerance > 0 {
        out.push(format!(
            "{} gave no latency tolerance and count as not batchable.",
            count(t.calls_without_tolerance, "call")
        ));
    }
    for u in &a.unpriced {
        let why = match u.reason {
            analysis::UnpricedReason::UnknownModel => "model not in the price table",
            analysis::UnpricedReason::UsageNotPriced => "usage the price table cannot price",
        };
        out.push(format!(
            "Not priced, left out of every figure: {} / {} / {}: {} on {} ({why}).",
            u.category,
            u.provider.as_str(),
            u.model,
            count(u.calls, "call"),
            count(u.lines, "line")
        ));
    }
    if a.already_batched.lines > 0 {
        out.push(format!(
            "Already through a Batch API, not analysed: {} on {}.",
            count(a.already_batched.calls, "call"),
            count(a.already_batched.lines, "line")
        ));
    }
    if a.malformed_lines > 0 {
        out.push(format!("Skipped {}:", count(a.malformed_lines, "malformed line")));
        for m in &a.malformed {
            out.push(format!("  line {}: {}", m.line, m.problem));
        }
        let unlisted = a.malformed_lines - a.malformed.len() as u64;
        if unlisted > 0 {
            out.push(format!("  … and {unlisted} more"));
        }
    }
    out.push(format!("{} Exact figures: --json.", priced_from(a, prices)));
    out.join("\n")
}

/// Where and when `provider`'s prices were read; `None` when the price
/// table lists no model of it (its calls are all unpriced, and the
/// file-level source would name another provider's page).
fn provenance(prices: &PriceBook, provider: ProviderKind) -> Option<(&str, &str)> {
    prices.models(provider).next()?;
    Some((prices.source_for(provider), prices.as_of_for(provider)))
}

/// `Prices: URL as of DATE.` for the price file, or per provider the log
/// names: `Prices: anthropic URL as of DATE; openai URL as of DATE.`
fn priced_from(a: &Analysis, prices: &PriceBook) -> String {
    let providers = a.providers();
    if providers.is_empty() {
        return format!("Prices: {} as of {}.", prices.source(), prices.as_of());
    }
    let each: Vec<String> = providers
        .into_iter()
        .map(|p| match provenance(prices, p) {
            Some((source, as_of)) => format!("{} {source} as of {as_of}", p.as_str()),
            None => format!("{} not in the price table", p.as_str()),
        })
        .collect();
    format!("Prices: {}.", each.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_round_to_the_cent_and_show_sub_cent_amounts_exactly() {
        let usd = |s: &str| dollars(Money::parse_decimal(s).unwrap());
        assert_eq!(usd("465.011004192857"), "$465.01");
        assert_eq!(usd("1234567.005"), "$1,234,567.01");
        assert_eq!(usd("-0.015"), "-$0.02");
        assert_eq!(usd("0.000435"), "$0.000435");
        assert_eq!(usd("0"), "$0.00");
    }

    #[test]
    fn spans_read_in_days_hours_and_minutes() {
        assert_eq!(span(7 * 86_400_000), "7 days");
        assert_eq!(span(86_400_000 + 3_600_000), "1 day 1 h");
        assert_eq!(span(3 * 86_400_000 + 7_200_000), "3 days 2 h");
        assert_eq!(span(5_400_000), "1 h 30 min");
        assert_eq!(span(60_000), "1 min");
    }
}
