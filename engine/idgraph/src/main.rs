//! # idgraph — the binary
//!
//! # Layout
//! - `main.rs`: the command line.
//! - `alloc.rs`: the allocator and its tuning.
//! - `config/`: TOML config, `IDGRAPH__…` overrides (`env.rs`), validation.
//! - `run.rs`: the `run` driver (streaming engine, embedded broker).
//! - `replay.rs`: the `replay` driver.
//! - `sink.rs`: NDJSON output streams with crash-safe positions.
//! - `query.rs`: `profiles`, `lookup`, `explain` (and `check`, in `main.rs`).

mod alloc;
mod config;
mod query;
mod replay;
mod run;
mod sink;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use idgraph_core::input::Format;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "idgraph", version, about = "Event-streaming identity resolution: identity graph and golden profiles")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Canonical,
    Segment,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The streaming engine: input topics in, profile / lifecycle / consent
    /// topics out. Without `kafka.brokers` it starts an embedded broker.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Process NDJSON files in order through the identity core into a state
    /// dir, writing each output stream as OUT/<stream>.ndjson.
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Input format; default: the format of the first `[[inputs]]` of the
        /// config, else canonical.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// State directory (RocksDB); overrides `state.dir`.
        #[arg(long)]
        state: Option<PathBuf>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Print at most this many rejected lines to stderr (all go to rejects.ndjson).
        #[arg(long, default_value_t = 20)]
        report: u64,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Every live golden profile, NDJSON, to stdout.
    Profiles {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        state: PathBuf,
    },
    /// The profile that holds an identifier (TYPE:VALUE).
    Lookup {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        state: PathBuf,
        identifier: String,
    },
    /// Verify the rules and ownership invariants over a whole state.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        state: PathBuf,
    },
    /// The chain of links (with evidence) joining two identifiers.
    Explain {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        state: PathBuf,
        a: String,
        b: String,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<config::Config> {
    Ok(config::Config::load(path.map(PathBuf::as_path), std::env::vars())?)
}

fn main() -> ExitCode {
    alloc::tune();
    let cli = Cli::parse();
    let filter = |default: &str| tracing_subscriber::EnvFilter::try_from_env("IDGRAPH_LOG").unwrap_or_else(|_| default.into());
    let service = matches!(cli.cmd, Cmd::Run { .. });
    if service {
        // The service logs JSON lines (no identifier values: keys are redacted).
        tracing_subscriber::fmt().json().with_env_filter(filter("info")).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter("warn")).with_writer(std::io::stderr).init();
    }
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the context chain, one cause per colon. The
            // service also logs it as a JSON line, for log shippers that
            // read nothing else.
            if service {
                tracing::error!(error = %format!("{e:#}"), "stopped on an error");
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Run { config } => {
            let cfg = load_config(config.as_ref())?;
            run::run(&cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay { config, format, state, out, report, files } => {
            let cfg = load_config(config.as_ref())?;
            let args = replay::ReplayArgs {
                format: match format {
                    Some(FormatArg::Canonical) => Format::Canonical,
                    Some(FormatArg::Segment) => Format::Segment,
                    None => cfg.inputs.first().map_or(Format::Canonical, |i| i.json_shape()),
                },
                state: state.unwrap_or_else(|| cfg.state.dir.clone()),
                out,
                files,
                max_reported: report,
            };
            let s = replay::run(&cfg, &args)?;
            print_summary(&s);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Profiles { config, state } => {
            let cfg = load_config(config.as_ref())?;
            let (store, _, core) = query::open(&state, &cfg)?;
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            query::profiles(&store, &core, &mut w)?;
            std::io::Write::flush(&mut w).ok();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lookup { config, state, identifier } => {
            let cfg = load_config(config.as_ref())?;
            let (store, p, core) = query::open(&state, &cfg)?;
            let k = query::parse_ident(&core, &identifier)?;
            match query::lookup(&store, p, &k)? {
                Some((id, lp)) => {
                    println!("{}", idgraph_core::golden::render(id, &lp, &core));
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!("no profile holds this {} identifier", core.type_name(k.ty()));
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Check { config, state } => {
            let cfg = load_config(config.as_ref())?;
            let (store, _, core) = query::open(&state, &cfg)?;
            let snap = idgraph_state::snapshot(&store)?;
            let errs = idgraph_core::invariants::check(&snap, &core);
            let live = snap.live_groups().values().filter(|g| !g.is_empty()).count();
            println!("{} identifiers, {} profile records, {live} live profiles", snap.idents.len(), snap.profiles.len());
            for e in &errs {
                println!("violation: {e}");
            }
            if errs.is_empty() {
                println!("all invariants hold");
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Explain { config, state, a, b } => {
            let cfg = load_config(config.as_ref())?;
            let (store, p, core) = query::open(&state, &cfg)?;
            let (ka, kb) = (query::parse_ident(&core, &a)?, query::parse_ident(&core, &b)?);
            match query::explain(&store, p, &core, &ka, &kb)? {
                Ok(lines) => {
                    for line in lines {
                        println!("{line}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(not_joined) => {
                    eprintln!("{not_joined}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn print_summary(s: &replay::Summary) {
    eprintln!("replay summary");
    eprintln!("  lines read           {}", s.lines);
    eprintln!("  events applied       {}", s.events);
    eprintln!("  lines rejected       {} (all in rejects.ndjson)", s.rejects);
    for (r, n) in &s.rejects_by_reason {
        eprintln!("    {r:<28} {n}");
    }
    let dropped: u64 = s.identifiers_dropped_by_reason.iter().map(|(_, n)| n).sum();
    eprintln!("  identifiers dropped  {dropped}");
    for (r, n) in &s.identifiers_dropped_by_reason {
        eprintln!("    {r:<28} {n}");
    }
    eprintln!("  profiles created     {}", s.profiles_created);
    eprintln!("  merges               {}", s.merges);
    eprintln!("  splits               {}", s.splits);
    eprintln!("  conflicts            {}", s.conflicts);
    eprintln!("  identifiers shared   {}", s.identifiers_shared);
    eprintln!(
        "  this run             {} events in {:.2} s = {:.0} events/s (batch p50 {:.1} ms, p99 {:.1} ms, peak RSS {:.0} MiB, P={})",
        s.this_run_events, s.this_run_seconds, s.events_per_second, s.batch_p50_ms, s.batch_p99_ms, s.peak_rss_mb, s.partitions
    );
}
