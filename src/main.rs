//! The `tokenwatch` command: parses arguments, loads configuration, and
//! calls into the library, one small function per subcommand.

mod cli;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use clap::Parser;
use rdkafka::producer::FutureProducer;
use tokenwatch::config::Config;
use tokenwatch::detect::DetectorParams;
use tokenwatch::eval::{Labels, Truth};
use tokenwatch::features::FEATURE_SCHEMA_VERSION;
use tokenwatch::geo::{demo_build, GeoHandle};
use tokenwatch::kafka::TopicWriter;
use tokenwatch::model::{train, Family, Model, ModelArtifact};
use tokenwatch::seal::Sealer;
use tokenwatch::sim::{self, SimParams, World};
use tokio_util::sync::CancellationToken;

use cli::{
    BacktestArgs, Cli, Command, ConfigCommand, EvalArgs, GeoCommand, SealArgs, SimulateArgs,
    TrainArgs,
};

fn init_tracing(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// One shutdown signal for every server and loop: Ctrl-C or SIGTERM. A
/// signal that cannot be listened for is logged and waited on forever: it
/// must never read as a request to stop.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = async {
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::warn!(%error, "cannot listen for Ctrl-C; SIGTERM still stops");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut s) => {
                    if s.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutting down: finishing the current record and committing");
        t.cancel();
    });
    token
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain names the key, file or record; a backtrace would bury it.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    // The demo prints its own story; its logs would drown it.
    let default_filter = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info,rdkafka=warn"
    };
    init_tracing(cli.log_json, default_filter);
    match cli.command {
        Command::Serve { config } => serve(config).await,
        Command::Normalize { config } => normalize(config).await,
        Command::Edge { config } => {
            let cfg = Config::load(config.as_deref())?;
            tokenwatch::serve::edge(cfg, shutdown_on_signal(), Default::default()).await?;
            Ok(())
        }
        Command::Demo(args) => {
            tokenwatch::demo::run(args, shutdown_on_signal()).await?;
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config_check(&file),
        Command::Simulate(a) => simulate(a).await,
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Backtest(a) => backtest(a),
        Command::Seal(a) => seal(a),
        Command::Geo { command } => geo(command),
    }
}

async fn serve(config: Option<PathBuf>) -> Result<()> {
    let cfg = Config::load(config.as_deref())?;
    let report = tokenwatch::serve::serve(cfg, shutdown_on_signal(), Default::default()).await?;
    tracing::info!(
        scored = report.scored.handled,
        settled = report.settled.handled,
        "stopped"
    );
    Ok(())
}

async fn normalize(config: Option<PathBuf>) -> Result<()> {
    let cfg = Config::load(config.as_deref())?;
    if cfg.gateway.inputs.is_empty() {
        bail!("configuration key `gateway.inputs`: normalize needs at least one gateway topic");
    }
    let stats = tokenwatch::serve::normalize(cfg, shutdown_on_signal(), Default::default()).await?;
    tracing::info!(handled = stats.handled, "stopped");
    Ok(())
}

fn config_check(file: &Path) -> Result<()> {
    let cfg = Config::load(Some(file))?;
    GeoHandle::open(cfg.geo.city_db.clone(), cfg.geo.asn_db.clone())?;
    ModelArtifact::load(&cfg.model_path)?;
    println!("{}: ok (geo databases and model load)", file.display());
    Ok(())
}

async fn simulate(a: SimulateArgs) -> Result<()> {
    let geo = GeoHandle::open(a.city_db, None)?;
    let world = World::from_geo(&geo.load().db);
    let knobs = match &a.traffic {
        Some(path) => SimParams::from_file(path)?,
        None => SimParams::default(),
    };
    let p = SimParams {
        seed: a.seed,
        users: a.users,
        span_ms: a.span.as_millis() as i64,
        attack_share: a.attack_share,
        ..knobs
    };
    let events = sim::generate(&world, &p);
    let bar = indicatif::ProgressBar::new(events.len() as u64);
    if let (Some(brokers), Some(topic)) = (a.brokers, a.topic) {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .create()
            .context("creating the Kafka producer")?;
        let writer = TopicWriter::new(producer, topic.as_str());
        let n = sim::publish(&writer, a.seed, &events, || bar.inc(1))
            .await
            .with_context(|| format!("publishing to {topic}"))?;
        bar.finish_and_clear();
        eprintln!(
            "{n} events from {} users published to {topic}, seed {}",
            a.users, a.seed
        );
        return Ok(());
    }
    sim::write_file(&a.out, a.seed, &events, a.truth.is_none(), || bar.inc(1))
        .with_context(|| format!("writing {}", a.out))?;
    if let Some(truth) = &a.truth {
        let n = sim::write_truth(truth, a.seed, &events)
            .with_context(|| format!("writing {}", truth.display()))?;
        eprintln!("{n} stolen tokens in {}", truth.display());
    }
    bar.finish_and_clear();
    eprintln!(
        "{} events from {} users, seed {}",
        events.len(),
        a.users,
        a.seed
    );
    Ok(())
}

fn train(a: TrainArgs) -> Result<()> {
    let geo = GeoHandle::open(vec![a.city_db], Some(a.asn_db))?;
    let bar = spinner("replaying the training data through the detector");
    let truth = a.truth.as_deref().map(Truth::load).transpose()?;
    let labels = match (&truth, a.family) {
        (Some(t), _) => Labels::Truth(t),
        // Production telemetry has no labels, and the population model
        // needs none: whatever nobody reported counts as legitimate.
        (None, Family::Population) => Labels::Unlabelled,
        (None, _) => Labels::Inline,
    };
    let (rows, sha) =
        tokenwatch::eval::training_rows(&a.data, geo, DetectorParams::default(), labels)?;
    bar.set_message("fitting with linfa");
    let prefix = match a.family {
        Family::Supervised => "lr",
        Family::Population => "km",
        Family::Combined => "lrkm",
    };
    // The feature schema is part of the name: the same data under another
    // schema is another model.
    let version = a
        .version
        .unwrap_or_else(|| format!("{prefix}-s{FEATURE_SCHEMA_VERSION}-{}", &sha[..12]));
    let params = train::TrainParams {
        family: a.family,
        clusters: a.clusters,
        ..train::TrainParams::default()
    };
    let artifact = train::train(&rows, &params, &sha, &version)?;
    bar.finish_and_clear();
    artifact
        .save(&a.out)
        .with_context(|| format!("writing {}", a.out.display()))?;
    let h = &artifact.training.holdout;
    println!(
        "{}: version {version}, {} rows; hold-out: recall {:.3}, precision {:.3}, {:.1} false flags/100k legit tokens at threshold {:.4}",
        a.out.display(),
        rows.len(),
        h.token_recall,
        h.token_precision,
        h.false_flags_per_100k,
        h.threshold
    );
    Ok(())
}

fn eval(a: EvalArgs) -> Result<()> {
    let params = a.scoring.params();
    let truth = a.truth.as_deref().map(Truth::load).transpose()?;
    let labels = truth.as_ref().map_or(Labels::Inline, Labels::Truth);
    let several = a.model.len() > 1;
    let mut reports = Vec::new();
    for path in &a.model {
        let geo = a.scoring.geo()?;
        let artifact = ModelArtifact::load(path)?;
        let family = artifact.family;
        let handle = Arc::new(ArcSwap::from_pointee(Model::new(artifact)));
        let bar = spinner("replaying through tokenwatch and the baseline");
        let report =
            tokenwatch::eval::evaluate(&a.data, geo, handle, params.clone(), a.warmup, labels)?;
        bar.finish_and_clear();
        let dir = if several {
            a.out.join(path.file_stem().unwrap_or_default())
        } else {
            a.out.clone()
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("report.json");
        std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", json.display()))?;
        let plots = tokenwatch::eval::write_plots(&report, &dir).map_err(anyhow::Error::msg)?;
        println!("## {} ({})\n", path.display(), family.as_str());
        print!("{}", report.table());
        println!(
            "\nwrote {}, {}\n",
            json.display(),
            plots
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        reports.push((path.display().to_string(), family, report));
    }
    if several {
        print!("{}", tokenwatch::eval::comparison(&reports));
    }
    Ok(())
}

fn backtest(a: BacktestArgs) -> Result<()> {
    let artifact = ModelArtifact::load(&a.model)?;
    let handle = Arc::new(ArcSwap::from_pointee(Model::new(artifact)));
    let bar = spinner("replaying through the scoring core");
    let report = tokenwatch::eval::backtest(&a.data, a.scoring.geo()?, handle, a.scoring.params())?;
    bar.finish_and_clear();
    print!("{}", report.table(a.show));
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("\nwrote {}", out.display());
    }
    Ok(())
}

fn seal(a: SealArgs) -> Result<()> {
    if a.new_key {
        println!("{}", Sealer::generate_key());
        return Ok(());
    }
    let (Some(token_id), Some(key)) = (a.token_id, a.key) else {
        bail!("seal needs --token-id and a key (--key or TOKENWATCH_SEAL_KEY)");
    };
    let sealer = Sealer::new([(a.key_id.as_str(), key.as_str())])?;
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw)?;
    println!(
        "{}",
        sealer.seal(&token_id, raw.trim_end_matches(['\r', '\n']))
    );
    Ok(())
}

fn geo(command: GeoCommand) -> Result<()> {
    match command {
        GeoCommand::BuildDemo {
            city_db,
            asn_csv,
            out_dir,
            cities,
        } => {
            let report = demo_build::build(&demo_build::DemoSources {
                city_dbs: city_db,
                asn_csvs: asn_csv,
                out_dir,
                cities,
                v4_nets_per_city: 8,
                v6_nets_per_city: 3,
            })?;
            println!("{report:?}");
        }
        GeoCommand::Lookup {
            ip,
            city_db,
            asn_db,
        } => {
            let geo = GeoHandle::open(city_db, asn_db)?;
            let db = &geo.load().db;
            println!("{:?}\n{:?}", db.lookup(ip), db.place(ip));
        }
        GeoCommand::Cities { city_db } => {
            let geo = GeoHandle::open(city_db, None)?;
            let db = &geo.load().db;
            for c in World::from_geo(db).cities {
                let net = c.v4[0];
                let place = db.place(net.network()).unwrap_or_default();
                let v6 = c.v6.first().map(|n| n.to_string()).unwrap_or_default();
                println!(
                    "{}\t{}\t{:.2},{:.2}\t{net}\t{v6}",
                    place.country,
                    place.city.unwrap_or_default(),
                    c.location.lat,
                    c.location.lon
                );
            }
        }
    }
    Ok(())
}

fn spinner(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
