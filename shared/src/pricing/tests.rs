//! Tests of prices, lookups and the price file.

use super::book::BUNDLED_JSON;
use super::names::is_iso_date;
use super::*;
use crate::job::ProviderKind;
use crate::money::Money;
use crate::request::Usage;
use serde_json::json;
use serde_json::Value;

const OPENAI: ProviderKind = ProviderKind::OpenAi;
const ANTHROPIC: ProviderKind = ProviderKind::Anthropic;
const GROQ: ProviderKind = ProviderKind::Groq;
const TOGETHER: ProviderKind = ProviderKind::Together;

fn pico(p: i128) -> Money {
    Money::from_picodollars(p)
}

fn cost_of(model: &str, u: Usage) -> Cost {
    cost_at(OPENAI, model, u)
}

fn cost_at(provider: ProviderKind, model: &str, u: Usage) -> Cost {
    PriceBook::bundled()
        .cost(provider, model, &u)
        .unwrap_or_else(|| panic!("{model} should be priced"))
}

/// A usage with cache writes: `input` counts all input tokens, `cached` and
/// `written` included.
fn cached_usage(input: u64, cached: u64, written: u64, output: u64) -> Usage {
    Usage {
        cache_write_tokens: written,
        ..Usage::of(input, cached, output, 0)
    }
}

// ---- costs against hand-computed figures --------------------------------
// Prices in USD per 1M tokens × 10^6 = picodollars per token.

#[test]
fn gpt_4o_mini_plain() {
    // realtime: in $0.15 → 150_000, out $0.60 → 600_000
    // batch:    in $0.075 → 75_000, out $0.30 → 300_000
    let c = cost_of("gpt-4o-mini", Usage::of(1_000, 0, 500, 0));
    // 1000×150_000 + 500×600_000 = 150_000_000 + 300_000_000 = 450_000_000 = $0.00045
    assert_eq!(c.realtime, pico(450_000_000));
    // 1000×75_000 + 500×300_000 = 75_000_000 + 150_000_000 = 225_000_000 = $0.000225
    assert_eq!(c.batch, pico(225_000_000));
    assert_eq!(c.saved(), pico(225_000_000));
    assert_eq!(c.realtime.to_decimal_string(), "0.00045");
    assert_eq!(c.batch.to_decimal_string(), "0.000225");
}

#[test]
fn gpt_4o_with_cached_input() {
    // realtime: in $2.50 → 2_500_000, cached $1.25 → 1_250_000, out $10 → 10_000_000
    // batch:    in $1.25 → 1_250_000, cached "-" → billed at input, out $5 → 5_000_000
    let c = cost_of("gpt-4o", Usage::of(2_048, 1_024, 300, 0));
    // (2048−1024)×2_500_000 + 1024×1_250_000 + 300×10_000_000
    //   = 2_560_000_000 + 1_280_000_000 + 3_000_000_000 = 6_840_000_000 = $0.00684
    assert_eq!(c.realtime, pico(6_840_000_000));
    // 1024×1_250_000 + 1024×1_250_000 + 300×5_000_000
    //   = 1_280_000_000 + 1_280_000_000 + 1_500_000_000 = 4_060_000_000 = $0.00406
    assert_eq!(c.batch, pico(4_060_000_000));
    // 6_840_000_000 − 4_060_000_000 = 2_780_000_000 = $0.00278
    assert_eq!(c.saved().to_decimal_string(), "0.00278");
}

#[test]
fn o4_mini_reasoning_tokens_are_part_of_output() {
    // realtime: in $1.10 → 1_100_000, cached $0.275 → 275_000, out $4.40 → 4_400_000
    // batch:    in $0.55 → 550_000, cached "-" → 550_000, out $2.20 → 2_200_000
    let c = cost_of("o4-mini", Usage::of(3_000, 2_048, 2_000, 1_500));
    // (3000−2048)×1_100_000 + 2048×275_000 + 2000×4_400_000
    //   = 1_047_200_000 + 563_200_000 + 8_800_000_000 = 10_410_400_000 = $0.0104104
    assert_eq!(c.realtime, pico(10_410_400_000));
    // 3000×550_000 + 2000×2_200_000 = 1_650_000_000 + 4_400_000_000 = 6_050_000_000 = $0.00605
    assert_eq!(c.batch, pico(6_050_000_000));
    assert_eq!(c.realtime.to_decimal_string(), "0.0104104");
    // The 1_500 reasoning tokens are inside the 2_000 output tokens: not billed twice.
    assert_eq!(cost_of("o4-mini", Usage::of(3_000, 2_048, 2_000, 0)), c);
}

#[test]
fn o1_dated_snapshot() {
    // realtime: in $15 → 15_000_000, out $60 → 60_000_000; batch: in $7.50 → 7_500_000, out $30 → 30_000_000
    let c = cost_of("o1-2024-12-17", Usage::of(7, 0, 13, 9));
    // 7×15_000_000 + 13×60_000_000 = 105_000_000 + 780_000_000 = 885_000_000
    assert_eq!(c.realtime, pico(885_000_000));
    // 7×7_500_000 + 13×30_000_000 = 52_500_000 + 390_000_000 = 442_500_000
    assert_eq!(c.batch, pico(442_500_000));
}

#[test]
fn gpt_4_1_nano_a_million_tokens() {
    // realtime: in $0.10 → 100_000, cached $0.025 → 25_000, out $0.40 → 400_000
    // batch:    in $0.05 → 50_000, cached "-" → 50_000, out $0.20 → 200_000
    let c = cost_of("gpt-4.1-nano", Usage::of(1_000_000, 400_000, 1_000_000, 0));
    // 600_000×100_000 + 400_000×25_000 + 1_000_000×400_000
    //   = 60_000_000_000 + 10_000_000_000 + 400_000_000_000 = 470_000_000_000 = $0.47
    assert_eq!(c.realtime, pico(470_000_000_000));
    // 1_000_000×50_000 + 1_000_000×200_000 = 250_000_000_000 = $0.25
    assert_eq!(c.batch, pico(250_000_000_000));
    assert_eq!(c.saved().to_decimal_string(), "0.22");
}

#[test]
fn gpt_4_1_mostly_cached_can_cost_more_in_a_batch() {
    // realtime: in $2 → 2_000_000, cached $0.50 → 500_000; batch: in $1 → 1_000_000, cached "-" → 1_000_000
    let c = cost_of("gpt-4.1", Usage::of(10_000, 10_000, 0, 0));
    // 10_000×500_000 = 5_000_000_000; batch 10_000×1_000_000 = 10_000_000_000
    assert_eq!(c.realtime, pico(5_000_000_000));
    assert_eq!(c.batch, pico(10_000_000_000));
    assert_eq!(c.saved(), pico(-5_000_000_000));
}

#[test]
fn gpt_5_nano_has_a_batch_cached_price() {
    // realtime: in $0.05 → 50_000, cached $0.005 → 5_000, out $0.40 → 400_000
    // batch:    in $0.025 → 25_000, cached $0.0025 → 2_500, out $0.20 → 200_000
    let c = cost_of("gpt-5-nano-2025-08-07", Usage::of(10_000, 8_000, 1_000, 600));
    // 2_000×50_000 + 8_000×5_000 + 1_000×400_000 = 100_000_000 + 40_000_000 + 400_000_000 = 540_000_000
    assert_eq!(c.realtime, pico(540_000_000));
    // 2_000×25_000 + 8_000×2_500 + 1_000×200_000 = 50_000_000 + 20_000_000 + 200_000_000 = 270_000_000
    assert_eq!(c.batch, pico(270_000_000));
}

#[test]
fn gpt_3_5_turbo() {
    // realtime: in $0.50 → 500_000, out $1.50 → 1_500_000; batch: in $0.25 → 250_000, out $0.75 → 750_000
    let c = cost_of("gpt-3.5-turbo", Usage::of(100, 0, 50, 0));
    // 100×500_000 + 50×1_500_000 = 50_000_000 + 75_000_000 = 125_000_000
    assert_eq!(c.realtime, pico(125_000_000));
    // 100×250_000 + 50×750_000 = 25_000_000 + 37_500_000 = 62_500_000
    assert_eq!(c.batch, pico(62_500_000));
}

#[test]
fn embeddings_have_no_output_price() {
    // text-embedding-3-small: realtime $0.02 → 20_000, batch $0.01 → 10_000
    let c = cost_of("text-embedding-3-small", Usage::of(12_345, 0, 0, 0));
    // 12_345×20_000 = 246_900_000; 12_345×10_000 = 123_450_000
    assert_eq!(c.realtime, pico(246_900_000));
    assert_eq!(c.batch, pico(123_450_000));
    // Output tokens on a model with no output price are not priced as zero.
    assert_eq!(
        PriceBook::bundled().cost(OPENAI, "text-embedding-3-small", &Usage::of(1, 0, 1, 0)),
        None
    );
}

#[test]
fn moderation_is_free_and_known() {
    let book = PriceBook::bundled();
    let zero = Cost {
        batch: Money::ZERO,
        realtime: Money::ZERO,
    };
    assert_eq!(
        book.cost(OPENAI, "omni-moderation-latest", &Usage::of(500, 0, 0, 0)),
        Some(zero)
    );
    assert_eq!(
        book.cost(OPENAI, "omni-moderation-2024-09-26", &Usage::of(500, 0, 0, 0)),
        Some(zero)
    );
}

#[test]
fn fine_tuned_models_use_fine_tuned_prices() {
    // ft:gpt-4o-mini-2024-07-18: realtime in $0.30 → 300_000, out $1.20 → 1_200_000;
    // batch in $0.15 → 150_000, out $0.60 → 600_000
    let c = cost_of(
        "ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123",
        Usage::of(1_000, 0, 1_000, 0),
    );
    // 1000×300_000 + 1000×1_200_000 = 1_500_000_000; 1000×150_000 + 1000×600_000 = 750_000_000
    assert_eq!(c.realtime, pico(1_500_000_000));
    assert_eq!(c.batch, pico(750_000_000));
    let book = PriceBook::bundled();
    assert_eq!(
        book.lookup(OPENAI, "ft:gpt-4o-mini-2024-07-18:org::id").unwrap().model,
        "ft:gpt-4o-mini-2024-07-18"
    );
    // Unlisted fine-tunes never fall back to the base model's price.
    assert!(book.lookup(OPENAI, "ft:gpt-4o-2024-08-06:org::id").is_none());
    assert!(book.lookup(OPENAI, "ft:gpt-4o-mini:org::id").is_none());
    assert!(book.lookup(OPENAI, "ft:").is_none());
    assert!(book.lookup(OPENAI, "ft::org::id").is_none());
}

#[test]
fn odd_usages_are_not_priced() {
    let book = PriceBook::bundled();
    // More cached than input tokens: inconsistent, so unpriced rather than guessed.
    assert_eq!(book.cost(OPENAI, "gpt-4o", &Usage::of(10, 11, 0, 0)), None);
    // Huge counts still compute exactly: (2^64−1) × 2_500_000 fits in i128.
    let c = book.cost(OPENAI, "gpt-4o", &Usage::of(u64::MAX, 0, 0, 0)).unwrap();
    assert_eq!(c.realtime.picodollars(), i128::from(u64::MAX) * 2_500_000);
}

// ---- lookup --------------------------------------------------------------

#[test]
fn dated_snapshots_resolve_to_their_family() {
    let book = PriceBook::bundled();
    for (name, entry) in [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-4o-mini", "gpt-4o-mini"),
    ] {
        assert_eq!(
            book.lookup(OPENAI, name).map(|p| p.model.as_str()),
            Some(entry),
            "{name}"
        );
    }
}

#[test]
fn exact_names_win_over_families() {
    // gpt-4o-2024-05-13 is priced apart: $5 / $15 real time, $2.50 / $7.50 batch.
    let book = PriceBook::bundled();
    assert_eq!(
        book.lookup(OPENAI, "gpt-4o-2024-05-13").unwrap().model,
        "gpt-4o-2024-05-13"
    );
    let c = cost_of("gpt-4o-2024-05-13", Usage::of(1_000, 0, 1_000, 0));
    // 1000×5_000_000 + 1000×15_000_000 = 20_000_000_000; 1000×2_500_000 + 1000×7_500_000 = 10_000_000_000
    assert_eq!(c.realtime, pico(20_000_000_000));
    assert_eq!(c.batch, pico(10_000_000_000));
    // gpt-4o family: 1000×2_500_000 + 1000×10_000_000 = 12_500_000_000
    assert_eq!(
        cost_of("gpt-4o-2024-08-06", Usage::of(1_000, 0, 1_000, 0)).realtime,
        pico(12_500_000_000)
    );
}

#[test]
fn unknown_models_are_none() {
    let book = PriceBook::bundled();
    for name in [
        "",
        "gpt-7",
        "GPT-4O",
        "gpt-4o-audio-preview-2024-12-17", // strips to gpt-4o-audio-preview: not listed, not gpt-4o
        "o1-preview-2024-09-12",
        "gpt-3.5-turbo-1106", // priced apart on the page; MMDD suffixes are never stripped
        "gpt-4o-mini-2024-13-45",
        "-2024-07-18",
        "gpt-4o:extended",
    ] {
        assert!(book.lookup(OPENAI, name).is_none(), "{name:?} must be unknown");
        assert_eq!(book.cost(OPENAI, name, &Usage::of(1, 0, 1, 0)), None);
    }
    // No Azure prices are shipped: deployment names are free-form.
    assert!(book.lookup(ProviderKind::AzureOpenAi, "gpt-4o-mini").is_none());
}

// ---- the bundled file ------------------------------------------------------

#[test]
fn bundled_file_parses_and_lists_the_core_models() {
    let book = PriceBook::from_json(BUNDLED_JSON).expect("bundled prices.json must parse");
    assert!(book.source().starts_with("https://"));
    assert!(is_iso_date(book.as_of()));
    for model in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o1",
        "o3-mini",
        "o4-mini",
        "gpt-3.5-turbo",
        "text-embedding-3-small",
        "text-embedding-3-large",
        "omni-moderation-latest",
    ] {
        assert!(book.lookup(OPENAI, model).is_some(), "{model} missing from prices.json");
    }
    assert_eq!(book.models(ProviderKind::AzureOpenAi).count(), 0);
}

#[test]
fn bundled_batch_prices_are_half_of_realtime() {
    // The Batch API is 50% off; the file writes both figures out, and this
    // cross-checks them for typos. (Cached input may have no batch figure.)
    for p in PriceBook::bundled().models(OPENAI) {
        let half = |rt: Money| pico(rt.picodollars() / 2);
        assert_eq!(p.realtime.input.picodollars() % 2, 0, "{}", p.model);
        assert_eq!(p.batch.input, half(p.realtime.input), "{} input", p.model);
        assert_eq!(p.batch.output, p.realtime.output.map(half), "{} output", p.model);
        if let (Some(rt), Some(b)) = (p.realtime.cached_input, p.batch.cached_input) {
            assert_eq!(b, half(rt), "{} cached_input", p.model);
        }
    }
}

// ---- bad files -------------------------------------------------------------

fn file_with(model_entry: Value) -> String {
    json!({
        "source": "https://example.com/pricing",
        "as_of": "2025-11-13",
        "providers": { "openai": { "m": model_entry } }
    })
    .to_string()
}

fn error_of(text: &str) -> String {
    PriceBook::from_json(text).unwrap_err().to_string()
}

fn tier(input: &str, output: &str) -> Value {
    json!({ "input": input, "output": output })
}

#[test]
fn a_minimal_file_parses() {
    let book = PriceBook::from_json(&file_with(json!({
        "realtime": { "input": "0.1500000", "cached_input": "0.075", "output": "10" },
        "batch": tier("0.075", "5"),
        "note": "n"
    })))
    .unwrap();
    let p = book.lookup(OPENAI, "m").unwrap();
    assert_eq!(p.realtime.input, pico(150_000));
    assert_eq!(p.realtime.cached_input, Some(pico(75_000)));
    assert_eq!(p.realtime.output, Some(pico(10_000_000)));
    assert_eq!(p.batch.cached_input_or_input(), pico(75_000));
    assert_eq!(p.note.as_deref(), Some("n"));
}

#[test]
fn prices_must_be_exact_decimal_strings() {
    let e = error_of(&file_with(
        json!({ "realtime": { "input": 0.15 }, "batch": { "input": "0.075" } }),
    ));
    assert!(
        e.contains("\"m\"") && e.contains("realtime.input") && e.contains("decimal string"),
        "{e}"
    );

    let e = error_of(&file_with(
        json!({ "realtime": { "input": "0.1234567" }, "batch": { "input": "0.1" } }),
    ));
    assert!(e.contains("realtime.input") && e.contains("7 decimal places"), "{e}");

    for bad in ["-1", "1e3", ".5", "5.", "", " 1", "0x10", "1.2.3", "+1"] {
        let e = error_of(&file_with(
            json!({ "realtime": { "input": bad }, "batch": { "input": "0" } }),
        ));
        assert!(e.contains("realtime.input"), "{bad:?}: {e}");
    }
    let e = error_of(&file_with(
        json!({ "realtime": { "input": "1".repeat(40) }, "batch": { "input": "0" } }),
    ));
    assert!(e.contains("too large"), "{e}");
}

#[test]
fn model_entries_must_be_complete_and_consistent() {
    let e = error_of(&file_with(json!({ "realtime": tier("1", "2") })));
    assert!(e.contains("\"m\"") && e.contains("batch: missing"), "{e}");

    let e = error_of(&file_with(
        json!({ "realtime": tier("1", "2"), "batch": { "output": "1" } }),
    ));
    assert!(e.contains("batch.input: missing"), "{e}");

    let e = error_of(&file_with(
        json!({ "realtime": tier("1", "2"), "batch": { "input": "0.5", "cached": "0.1", "output": "1" } }),
    ));
    assert!(e.contains("batch.cached") && e.contains("unknown field"), "{e}");

    let e = error_of(&file_with(
        json!({ "realtime": tier("1", "2"), "batch": tier("0.5", "1"), "price": "1" }),
    ));
    assert!(e.contains("price: unknown field"), "{e}");

    let e = error_of(&file_with(
        json!({ "realtime": tier("1", "2"), "batch": tier("2", "1") }),
    ));
    assert!(e.contains("batch.input") && e.contains("above the real-time"), "{e}");

    let e = error_of(&file_with(json!({
        "realtime": { "input": "1", "cached_input": "2", "output": "2" },
        "batch": tier("0.5", "1")
    })));
    assert!(
        e.contains("realtime.cached_input") && e.contains("above the input"),
        "{e}"
    );

    let e = error_of(&file_with(
        json!({ "realtime": tier("1", "2"), "batch": { "input": "0.5" } }),
    ));
    assert!(e.contains("output") && e.contains("both"), "{e}");
}

#[test]
fn file_level_problems_name_the_field() {
    let e = error_of("not json");
    assert!(e.contains("cannot be read"), "{e}");

    let e = error_of(r#"{"as_of": "2025-11-13", "providers": {}}"#);
    assert!(e.contains("source: missing"), "{e}");

    let e = error_of(r#"{"source": "s", "as_of": "Nov 2025", "providers": {}}"#);
    assert!(e.contains("as_of") && e.contains("YYYY-MM-DD"), "{e}");

    let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "unit": "USD per 1K tokens", "providers": {}}"#);
    assert!(e.contains("unit"), "{e}");

    let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"mistral": {}}}"#);
    assert!(e.contains("providers.mistral") && e.contains("unknown provider"), "{e}");

    let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"openai": {}, "azure": {}}, "x": 1}"#);
    assert!(e.contains("x: unknown field"), "{e}");

    let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"openai": {"ft:a:b": {}}}}"#);
    assert!(e.contains("\"ft:a:b\"") && e.contains("(name)"), "{e}");
}

#[test]
fn duplicate_keys_are_refused() {
    let entry = r#"{"realtime": {"input": "1"}, "batch": {"input": "0.5"}}"#;
    let text = format!(
        r#"{{"source": "s", "as_of": "2025-11-13", "providers": {{"openai": {{"m": {entry}, "m": {entry}}}}}}}"#
    );
    let e = error_of(&text);
    assert!(e.contains("duplicate key \"m\""), "{e}");

    let e = error_of(
        r#"{"source": "s", "as_of": "2025-11-13", "providers": {"openai": {"m": {"realtime": {"input": "1", "input": "2"}, "batch": {"input": "0.5"}}}}}"#,
    );
    assert!(e.contains("duplicate key \"input\""), "{e}");
}

#[test]
fn a_price_that_is_not_an_exact_decimal_is_a_typed_error() {
    use super::error::PriceError;
    use super::file::parse_price;
    assert_eq!(parse_price("0.150"), Ok(Money::from_picodollars(150_000)));
    assert_eq!(parse_price("-1"), Err(PriceError::Negative("-1".into())));
    assert_eq!(parse_price("1e3"), Err(PriceError::NotDecimal("1e3".into())));
    assert_eq!(
        parse_price("0.0000001"),
        Err(PriceError::TooPrecise {
            text: "0.0000001".into(),
            places: 7
        })
    );
    assert!(matches!(parse_price(&"9".repeat(60)), Err(PriceError::TooLarge(_))));
}

// ---- cache writes ------------------------------------------------------------

fn prices(input: i128, cached: Option<i128>, write: Option<i128>, output: i128) -> TokenPrices {
    TokenPrices {
        input: pico(input),
        cached_input: cached.map(pico),
        output: Some(pico(output)),
        cache_write: write.map(pico),
    }
}

#[test]
fn cache_writes_are_billed_at_the_cache_write_price() {
    let p = prices(1_000, Some(100), Some(1_250), 5_000);
    // uncached 10 − 4 − 3 = 3: 3×1_000 + 4×100 + 3×1_250 + 2×5_000 = 3_000 + 400 + 3_750 + 10_000
    assert_eq!(p.cost(&cached_usage(10, 4, 3, 2)), Some(pico(17_150)));
    // All input written to the cache: 10×1_250 = 12_500
    assert_eq!(p.cost(&cached_usage(10, 0, 10, 0)), Some(pico(12_500)));
}

#[test]
fn cache_writes_without_a_cache_write_price_are_billed_at_input() {
    let p = prices(1_000, Some(100), None, 5_000);
    assert_eq!(p.cache_write_or_input(), pico(1_000));
    // 3×1_000 + 4×100 + 3×1_000 = 6_400
    assert_eq!(p.cost(&cached_usage(10, 4, 3, 0)), Some(pico(6_400)));
}

#[test]
fn more_cached_and_written_than_input_tokens_is_not_priced() {
    let p = prices(1_000, Some(100), Some(1_250), 5_000);
    assert_eq!(p.cost(&cached_usage(10, 6, 5, 0)), None);
    assert_eq!(p.cost(&cached_usage(10, 0, 11, 0)), None);
    // Exactly all of it cached or written is fine: 6×100 + 4×1_250 = 5_600
    assert_eq!(p.cost(&cached_usage(10, 6, 4, 0)), Some(pico(5_600)));
    // A usage with cache writes on a whole book refuses the same way.
    assert_eq!(
        PriceBook::bundled().cost(ANTHROPIC, "claude-haiku-4-5", &cached_usage(10, 6, 5, 0)),
        None
    );
}

#[test]
fn claude_sonnet_with_cache_reads_and_writes_prices_exactly() {
    // claude-sonnet-4-5 real time: in $3 → 3_000_000, cache hit $0.30 → 300_000,
    //   5m write $3.75 → 3_750_000, out $15 → 15_000_000
    // batch (50%): in 1_500_000, hit 150_000, write 1_875_000, out 7_500_000
    let c = cost_at(
        ANTHROPIC,
        "claude-sonnet-4-5-20250929",
        cached_usage(10_000, 6_000, 3_000, 500),
    );
    // (10_000 − 6_000 − 3_000)×3_000_000 + 6_000×300_000 + 3_000×3_750_000 + 500×15_000_000
    //   = 3_000_000_000 + 1_800_000_000 + 11_250_000_000 + 7_500_000_000 = 23_550_000_000
    assert_eq!(c.realtime, pico(23_550_000_000));
    assert_eq!(c.realtime.to_decimal_string(), "0.02355");
    // 1_000×1_500_000 + 6_000×150_000 + 3_000×1_875_000 + 500×7_500_000
    //   = 1_500_000_000 + 900_000_000 + 5_625_000_000 + 3_750_000_000 = 11_775_000_000
    assert_eq!(c.batch, pico(11_775_000_000));
    assert_eq!(c.batch.to_decimal_string(), "0.011775");
}

#[test]
fn claude_3_haiku_sub_cent_prices_are_exact() {
    // real time: in $0.25 → 250_000, hit $0.03 → 30_000, write $0.30 → 300_000, out $1.25 → 1_250_000
    // batch:     in $0.125 → 125_000, hit $0.015 → 15_000, write $0.15 → 150_000, out $0.625 → 625_000
    let c = cost_at(
        ANTHROPIC,
        "claude-3-haiku-20240307",
        cached_usage(2_000, 1_000, 500, 100),
    );
    // 500×250_000 + 1_000×30_000 + 500×300_000 + 100×1_250_000
    //   = 125_000_000 + 30_000_000 + 150_000_000 + 125_000_000 = 430_000_000
    assert_eq!(c.realtime, pico(430_000_000));
    // 500×125_000 + 1_000×15_000 + 500×150_000 + 100×625_000
    //   = 62_500_000 + 15_000_000 + 75_000_000 + 62_500_000 = 215_000_000
    assert_eq!(c.batch, pico(215_000_000));
}

#[test]
fn groq_cached_tokens_have_no_batch_discount_beyond_the_batch_input_price() {
    // openai/gpt-oss-120b real time: in $0.15 → 150_000, cached $0.075 → 75_000, out $0.60 → 600_000
    // batch: in $0.075 → 75_000 (no cached price: cached billed at input), out $0.30 → 300_000
    let c = cost_at(GROQ, "openai/gpt-oss-120b", Usage::of(4_000, 2_000, 1_000, 200));
    // 2_000×150_000 + 2_000×75_000 + 1_000×600_000 = 300_000_000 + 150_000_000 + 600_000_000
    assert_eq!(c.realtime, pico(1_050_000_000));
    // 4_000×75_000 + 1_000×300_000 = 300_000_000 + 300_000_000
    assert_eq!(c.batch, pico(600_000_000));
}

// ---- per-provider tables -----------------------------------------------------

#[test]
fn lookups_are_per_provider() {
    let book = PriceBook::bundled();
    assert!(book.lookup(GROQ, "openai/gpt-oss-120b").is_some());
    assert!(book.lookup(OPENAI, "openai/gpt-oss-120b").is_none());
    assert!(book.lookup(ANTHROPIC, "claude-haiku-4-5").is_some());
    assert!(book.lookup(OPENAI, "claude-haiku-4-5").is_none());
    assert!(book.lookup(GROQ, "claude-haiku-4-5").is_none());
    assert!(book.lookup(ANTHROPIC, "gpt-4o-mini").is_none());
    // Together has no section: its models are unknown, never free.
    assert_eq!(book.models(TOGETHER).count(), 0);
    assert_eq!(book.cost(TOGETHER, "openai/gpt-oss-120b", &Usage::of(1, 0, 1, 0)), None);
}

#[test]
fn each_provider_says_where_and_when_its_prices_were_read() {
    let book = PriceBook::bundled();
    assert_eq!(
        book.source_for(ANTHROPIC),
        "https://platform.claude.com/docs/en/about-claude/pricing"
    );
    assert_eq!(book.source_for(GROQ), "https://console.groq.com/docs/models");
    assert_eq!(book.source_for(OPENAI), "https://platform.openai.com/docs/pricing");
    for kind in [OPENAI, ANTHROPIC, GROQ] {
        assert!(is_iso_date(book.as_of_for(kind)), "{kind:?}");
    }
    // A provider without its own fields falls back to the file-level ones.
    assert_eq!(book.source_for(TOGETHER), book.source());
    assert_eq!(book.as_of_for(TOGETHER), book.as_of());
}

#[test]
fn claude_snapshots_and_aliases_resolve_to_their_entry() {
    let book = PriceBook::bundled();
    for (name, entry) in [
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku-latest"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-8", "claude-opus-4-8"),
    ] {
        assert_eq!(
            book.lookup(ANTHROPIC, name).map(|p| p.model.as_str()),
            Some(entry),
            "{name}"
        );
    }
    for name in [
        "claude-3-5-haiku-20241322",
        "claude-3-opus-20240229",
        "claude-3-5-haiku-1022",
    ] {
        assert!(book.lookup(ANTHROPIC, name).is_none(), "{name} must be unknown");
    }
}

#[test]
fn bundled_anthropic_and_groq_batch_prices_are_half_of_realtime() {
    let book = PriceBook::bundled();
    let half = |rt: Money| pico(rt.picodollars() / 2);
    for p in book.models(ANTHROPIC) {
        // Every Claude entry has all four prices, and batch is 50% of each.
        for (field, rt, b) in [
            ("input", Some(p.realtime.input), Some(p.batch.input)),
            ("cached_input", p.realtime.cached_input, p.batch.cached_input),
            ("cache_write", p.realtime.cache_write, p.batch.cache_write),
            ("output", p.realtime.output, p.batch.output),
        ] {
            let (rt, b) = (rt.expect(field), b.expect(field));
            assert_eq!(rt.picodollars() % 2, 0, "{} {field}", p.model);
            assert_eq!(b, half(rt), "{} {field}", p.model);
        }
        // The 5-minute cache write is 1.25× input and a cache hit 0.1× input,
        // except on Claude Haiku 3, which the page prices apart ($0.30 and $0.03
        // on a $0.25 input).
        if p.model == "claude-3-haiku" {
            continue;
        }
        assert_eq!(
            p.realtime.cache_write.unwrap().picodollars() * 4,
            p.realtime.input.picodollars() * 5,
            "{}",
            p.model
        );
        assert_eq!(
            p.realtime.cached_input.unwrap().picodollars() * 10,
            p.realtime.input.picodollars(),
            "{}",
            p.model
        );
    }
    assert!(book.models(ANTHROPIC).count() >= 12);
    for p in book.models(GROQ) {
        assert_eq!(p.batch.input, half(p.realtime.input), "{}", p.model);
        assert_eq!(p.batch.output, p.realtime.output.map(half), "{}", p.model);
        assert_eq!(p.realtime.cache_write, None, "{}", p.model);
    }
    assert!(book.models(GROQ).count() >= 2);
}

#[test]
fn bundled_model_names_are_valid_request_model_names() {
    let book = PriceBook::bundled();
    for kind in [OPENAI, ANTHROPIC, GROQ] {
        for p in book.models(kind) {
            assert!(crate::ids::ModelName::parse(p.model.clone()).is_ok(), "{}", p.model);
        }
    }
}

// ---- bad cache_write values and provider sections ------------------------------

#[test]
fn bad_cache_write_values_are_refused_naming_the_field() {
    let e = error_of(&file_with(json!({
        "realtime": { "input": "1", "cache_write": 1.25 },
        "batch": { "input": "0.5" }
    })));
    assert!(
        e.contains("\"m\"") && e.contains("realtime.cache_write") && e.contains("decimal string"),
        "{e}"
    );
    let e = error_of(&file_with(json!({
        "realtime": { "input": "1", "cache_write": "-1.25" },
        "batch": { "input": "0.5" }
    })));
    assert!(e.contains("realtime.cache_write") && e.contains("negative"), "{e}");
    let e = error_of(&file_with(json!({
        "realtime": { "input": "1" },
        "batch": { "input": "0.5", "cache_write": "0.6250001" }
    })));
    assert!(e.contains("batch.cache_write") && e.contains("7 decimal places"), "{e}");
    let e = error_of(&file_with(json!({
        "realtime": { "input": "1", "cache_write": "1.25" },
        "batch": { "input": "0.5", "cache_write": "2.5" }
    })));
    assert!(
        e.contains("batch.cache_write") && e.contains("above the real-time"),
        "{e}"
    );
}

#[test]
fn a_cache_write_price_parses_in_both_tiers() {
    let book = PriceBook::from_json(&file_with(json!({
        "realtime": { "input": "3", "cached_input": "0.30", "cache_write": "3.75", "output": "15" },
        "batch": { "input": "1.50", "cached_input": "0.15", "cache_write": "1.875", "output": "7.50" }
    })))
    .unwrap();
    let p = book.lookup(OPENAI, "m").unwrap();
    assert_eq!(p.realtime.cache_write, Some(pico(3_750_000)));
    assert_eq!(p.batch.cache_write, Some(pico(1_875_000)));
}

fn file_with_provider(section: Value) -> String {
    json!({
        "source": "https://example.com/pricing",
        "as_of": "2025-11-13",
        "providers": { "anthropic": section }
    })
    .to_string()
}

fn one_model() -> Value {
    json!({ "m": { "realtime": tier("1", "2"), "batch": tier("0.5", "1") } })
}

#[test]
fn a_provider_section_carries_its_own_source_and_as_of() {
    let book = PriceBook::from_json(&file_with_provider(json!({
        "source": "https://example.com/claude",
        "as_of": "2026-11-30",
        "notes": ["free text"],
        "models": one_model()
    })))
    .unwrap();
    assert!(book.lookup(ANTHROPIC, "m").is_some());
    assert_eq!(book.source_for(ANTHROPIC), "https://example.com/claude");
    assert_eq!(book.as_of_for(ANTHROPIC), "2026-11-30");
    assert_eq!(book.source(), "https://example.com/pricing");

    // Only as_of: the source is the file-level one.
    let book = PriceBook::from_json(&file_with_provider(
        json!({ "as_of": "2026-11-30", "models": one_model() }),
    ))
    .unwrap();
    assert_eq!(book.source_for(ANTHROPIC), "https://example.com/pricing");
    assert_eq!(book.as_of_for(ANTHROPIC), "2026-11-30");

    // The short form (models directly) keeps the file-level fields.
    let book = PriceBook::from_json(&file_with_provider(one_model())).unwrap();
    assert!(book.lookup(ANTHROPIC, "m").is_some());
    assert_eq!(book.as_of_for(ANTHROPIC), "2025-11-13");
}

#[test]
fn bad_provider_sections_name_the_field() {
    let e = error_of(&file_with_provider(
        json!({ "as_of": "Nov 2026", "models": one_model() }),
    ));
    assert!(
        e.contains("providers.anthropic.as_of") && e.contains("YYYY-MM-DD"),
        "{e}"
    );
    let e = error_of(&file_with_provider(json!({ "source": "", "models": one_model() })));
    assert!(e.contains("providers.anthropic.source") && e.contains("empty"), "{e}");
    let e = error_of(&file_with_provider(json!({ "source": 1, "models": one_model() })));
    assert!(e.contains("providers.anthropic.source") && e.contains("string"), "{e}");
    let e = error_of(&file_with_provider(json!({ "models": one_model(), "m2": {} })));
    assert!(
        e.contains("providers.anthropic.m2") && e.contains("unknown field"),
        "{e}"
    );
    let e = error_of(&file_with_provider(json!({ "models": "m" })));
    assert!(e.contains("providers.anthropic.models") && e.contains("object"), "{e}");
    // A model error inside the long form still names provider, model and field.
    let e = error_of(&file_with_provider(json!({
        "models": { "m": { "realtime": tier("1", "2"), "batch": { "input": "x", "output": "1" } } }
    })));
    assert!(
        e.contains("anthropic") && e.contains("\"m\"") && e.contains("batch.input"),
        "{e}"
    );
}
