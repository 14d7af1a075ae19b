//! `idgraph-score`: pairwise precision / recall / F1 of `idgraph profiles`
//! output against a truth file, with examples of over- and under-merges.

use clap::Parser;
use idgraph_loadtest::score::{score, Truth};
use std::path::PathBuf;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long)]
    truth: PathBuf,
    /// NDJSON of `idgraph profiles`.
    #[arg(long)]
    profiles: PathBuf,
    /// Exit non-zero below these.
    #[arg(long, default_value_t = 0.0)]
    min_precision: f64,
    #[arg(long, default_value_t = 0.0)]
    min_recall: f64,
    /// Print the score as JSON.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let truth = Truth::parse(&std::fs::read_to_string(&a.truth)?)?;
    let s = score(&truth, &std::fs::read_to_string(&a.profiles)?)?;
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!("profiles            {}", s.profiles);
        println!("scored identifiers  {} ({} in no profile)", s.scored_identifiers, s.unresolved_identifiers);
        println!("pairwise precision  {:.6}  ({} of {} predicted pairs)", s.precision, s.correct_pairs, s.predicted_pairs);
        println!("pairwise recall     {:.6}  ({} of {} evidence pairs)", s.recall, s.found_truth_pairs, s.truth_pairs);
        println!("F1                  {:.6}", s.f1);
        for (p, persons) in s.over_merges.iter().take(5) {
            println!("over-merge: profile {p} holds identifiers of persons {persons:?}");
        }
        for (person, n) in s.under_merges.iter().take(5) {
            println!("under-merge: person {person} is spread over {n} profiles");
        }
    }
    if s.precision < a.min_precision || s.recall < a.min_recall {
        anyhow::bail!("below the required precision {} / recall {}", a.min_precision, a.min_recall);
    }
    Ok(())
}
