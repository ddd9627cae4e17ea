//! `tokenmath replay --report report.html`: one self-contained HTML file (inline CSS, SVG and
//! script; nothing fetched) that shows a replayed step token by token.
//!
//! * a per-token heatmap of each response, the metric switchable (entropy, logp, advantage,
//!   ratio, per-token loss, `∂L/∂logp`), with overlays for clipped tokens (outlined by clip
//!   state) and tokens not in the loss (hatched: DAPO's dynamic-sampling filter). One cell per
//!   token whose input mask is set; padding is summarised as a count at the end of the row;
//! * a per-response table, sortable by any column (reward, loss, …), whose order the heatmap
//!   follows;
//! * histograms (inline SVG, drawn here) of entropy, ratio and advantage over every valid
//!   token of the dump;
//! * the summary the command printed.
//!
//! Tokens are shown decoded with a `--tokenizer tokenizer.json` (`tokenizers` crate, one
//! token at a time; a token that does not decode to text on its own, a piece of a UTF-8
//! sequence, is shown as its vocabulary entry), as ids otherwise.
//!
//! Size \[library choice\]: the per-token data of at most [`MAX_REPORT_TOKENS`] (65,536)
//! unmasked tokens is embedded, taking whole responses in dump order; the table and the
//! histograms always cover every response and token, and a response beyond the budget is
//! listed as such. The heatmap draws [`PAGE_SIZE`] responses per page, so the DOM holds at
//! most `16·T` cells whatever `B`; switching the metric recolours the page in place.
//!
//! The page records what it drew in `<div id="selftest">` (`data-shown`: the responses on the
//! page, `data-cells`: the cells drawn, `data-errors`: script errors and `console.error`
//! calls), which the headless-browser test reads (`cli/tests/browser/run.sh`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::error::CliError;
use crate::replay::Replayed;
use crate::step::clip_state;

/// Unmasked tokens whose per-token data the report embeds at most.
pub const MAX_REPORT_TOKENS: usize = 65_536;
/// Responses drawn per heatmap page (the page's script holds the same number).
pub const PAGE_SIZE: usize = 16;
/// Bins of each histogram.
const BINS: usize = 40;

const TEMPLATE: &str = include_str!("report_template.html");

/// Loads a Hugging Face `tokenizer.json`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer, CliError> {
    Tokenizer::from_file(path).map_err(|e| {
        let message = e.to_string().replace('\n', " ");
        CliError::input(path, format!("not a usable tokenizer.json: {message}"))
    })
}

/// The report's HTML.
pub fn render(r: &Replayed<'_>, tokenizer: Option<&Tokenizer>) -> String {
    let data = data(r, tokenizer);
    // Inside <script>, only `</` could end the element early: escape every `<` (JSON allows
    // `\u003c` anywhere a `<` can appear, which is only inside strings).
    let json = data.to_string().replace('<', "\\u003c");
    let p = r.step.policy();
    let valid = |i: &usize| p.mask[*i] != 0;
    let n = p.mask.len();
    let pick = |v: &[f32]| (0..n).filter(valid).map(|i| f64::from(v[i])).collect::<Vec<f64>>();
    let mut histograms = String::new();
    if let Some(e) = r.entropy {
        histograms.push_str(&histogram("entropy (nats)", &pick(e)));
    }
    histograms.push_str(&histogram("ratio", &pick(&p.ratio)));
    histograms.push_str(&histogram("advantage", &pick(&p.adv)));
    TEMPLATE.replacen("/*DATA*/", &json, 1).replacen("<!--HISTOGRAMS-->", &histograms, 1)
}

/// Rounds to 5 significant digits (the report shows 4), keeping the JSON small.
fn short(x: f32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let s = format!("{x:.4e}");
    s.parse::<f64>().map_or(Value::Null, Value::from)
}

fn data(r: &Replayed<'_>, tokenizer: Option<&Tokenizer>) -> Value {
    let ro = r.rollout;
    let p = r.step.policy();
    let (b, t) = (ro.b, ro.t);
    let mut decoded: HashMap<i64, String> = HashMap::new();
    let mut decode = |id: i64| -> String {
        match tokenizer {
            None => id.to_string(),
            Some(tk) => decoded
                .entry(id)
                .or_insert_with(|| {
                    let id32 = u32::try_from(id).ok();
                    // A token that is part of a UTF-8 sequence decodes to U+FFFD alone: show
                    // its vocabulary entry instead (`<0xE2>` with byte fallback, `â` in GPT-2's
                    // byte-level alphabet).
                    id32.and_then(|i| tk.decode(&[i], false).ok())
                        .filter(|s| !s.is_empty() && !s.contains('\u{FFFD}'))
                        .or_else(|| id32.and_then(|i| tk.id_to_token(i)))
                        .unwrap_or_else(|| format!("<{id}>"))
                })
                .clone(),
        }
    };

    let mut budget = MAX_REPORT_TOKENS;
    let mut seqs = Vec::with_capacity(b);
    let mut tokens = serde_json::Map::new();
    for s in 0..b {
        let row = s * t..(s + 1) * t;
        let cells: Vec<usize> = row.clone().filter(|&i| ro.mask[i] != 0).collect();
        let in_loss: Vec<usize> = row.clone().filter(|&i| p.mask[i] != 0).collect();
        let mean = |v: &[f32], idx: &[usize]| {
            if idx.is_empty() {
                Value::Null
            } else {
                short((idx.iter().map(|&i| f64::from(v[i])).sum::<f64>() / idx.len() as f64) as f32)
            }
        };
        let clipped = in_loss.iter().filter(|&&i| p.clip[i] != clip_state::NONE).count();
        let embedded = cells.len() <= budget;
        seqs.push(json!({
            "i": s,
            "group": group_of(r, s),
            "reward": short(p.rewards[s]),
            "adv": short(p.adv_seq[s]),
            "len": cells.len(),
            "loss": mean(&p.token_loss, &in_loss),
            "entropy": r.entropy.map_or(Value::Null, |e| mean(e, &in_loss)),
            "clipfrac": if in_loss.is_empty() { Value::Null } else { short(clipped as f32 / in_loss.len() as f32) },
            "in_loss": !in_loss.is_empty(),
            "embedded": embedded,
        }));
        if !embedded {
            continue;
        }
        budget -= cells.len();
        let col = |v: &[f32]| Value::Array(cells.iter().map(|&i| short(v[i])).collect());
        let text: Vec<Value> = match &ro.tokens {
            Some(ids) => cells.iter().map(|&i| Value::from(decode(ids[i]))).collect(),
            None => cells.iter().map(|&i| Value::from(format!("t{}", i % t))).collect(),
        };
        let mut m = serde_json::Map::new();
        m.insert("text".into(), Value::Array(text));
        if let Some(ids) = &ro.tokens {
            m.insert("id".into(), Value::Array(cells.iter().map(|&i| Value::from(ids[i])).collect()));
        }
        m.insert("pos".into(), Value::Array(cells.iter().map(|&i| Value::from(i % t)).collect()));
        if let Some(e) = r.entropy {
            m.insert("entropy".into(), col(e));
        }
        m.insert("logp".into(), col(r.logp));
        m.insert("adv".into(), col(&p.adv));
        m.insert("ratio".into(), col(&p.ratio));
        m.insert("loss".into(), col(&p.token_loss));
        m.insert("grad".into(), col(&p.g_logp));
        m.insert("clip".into(), Value::Array(cells.iter().map(|&i| Value::from(p.clip[i])).collect()));
        tokens.insert(s.to_string(), Value::Object(m));
    }
    json!({
        "origin": r.origin,
        "algo": r.algo.name(),
        "B": b,
        "T": t,
        "decoded": tokenizer.is_some() && ro.tokens.is_some(),
        "summary": r.step.summary(),
        "budget": MAX_REPORT_TOKENS,
        "page": PAGE_SIZE,
        "seqs": seqs,
        "tokens": tokens,
    })
}

fn group_of(r: &Replayed<'_>, s: usize) -> Value {
    match &r.rollout.group_ids {
        Some(ids) => Value::from(ids[s]),
        None => Value::Null,
    }
}

/// An inline SVG histogram of `values` (finite ones) in [`BINS`] equal bins from the
/// smallest to the largest.
fn histogram(title: &str, values: &[f64]) -> String {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (w, h, pad) = (360.0, 150.0, 24.0);
    let mut svg = String::new();
    let _ = write!(svg, r#"<figure class="hist"><figcaption>{title} ({} tokens)</figcaption>"#, finite.len());
    let _ = write!(svg, r#"<svg viewBox="0 0 {w} {}" width="{w}" height="{}" role="img">"#, h + pad, h + pad);
    if finite.is_empty() {
        svg.push_str(r#"<text x="10" y="20">no values</text></svg></figure>"#);
        return svg;
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let width = if hi > lo { (hi - lo) / BINS as f64 } else { 1.0 };
    let mut counts = [0usize; BINS];
    for v in &finite {
        let k = (((v - lo) / width) as usize).min(BINS - 1);
        counts[k] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bar = w / BINS as f64;
    for (k, &c) in counts.iter().enumerate() {
        let bh = (c as f64 / top) * (h - 4.0);
        let (x0, x1) = (lo + k as f64 * width, lo + (k + 1) as f64 * width);
        let _ = write!(
            svg,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}"><title>[{x0:.4}, {x1:.4}): {c}</title></rect>"#,
            k as f64 * bar + 0.5,
            h - bh,
            bar - 1.0,
            bh
        );
    }
    let _ = write!(
        svg,
        r#"<text x="0" y="{}">{lo:.4}</text><text x="{w}" y="{}" text-anchor="end">{hi:.4}</text><text x="{}" y="12" text-anchor="end">max {top} / bin</text></svg></figure>"#,
        h + 16.0,
        h + 16.0,
        w - 2.0
    );
    svg
}
