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

fn pico(p: i128) -> Money {
    Money::from_picodollars(p)
}

fn cost_of(model: &str, u: Usage) -> Cost {
    PriceBook::bundled()
        .cost(OPENAI, model, &u)
        .unwrap_or_else(|| panic!("{model} should be priced"))
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

    let e = error_of(r#"{"source": "s", "as_of": "2025-11-13", "providers": {"anthropic": {}}}"#);
    assert!(
        e.contains("providers.anthropic") && e.contains("unknown provider"),
        "{e}"
    );

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
