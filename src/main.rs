//! The `tokenwatch` command: parses arguments, loads configuration, and
//! calls into the library. Nothing else lives here.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use tokenwatch::config::Config;
use tokenwatch::detect::DetectorParams;
use tokenwatch::geo::{demo_build, GeoHandle};
use tokenwatch::model::{train, Model, ModelArtifact};
use tokenwatch::sim::{self, SimParams, World};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "tokenwatch",
    version,
    about = "Catches stolen access tokens while they are being used, and shuts them off."
)]
struct Cli {
    /// Log as JSON lines (for log shippers) instead of text.
    #[arg(long, global = true, env = "TOKENWATCH_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: consume telemetry, score, decide, revoke.
    Serve {
        #[arg(long, short, env = "TOKENWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Read gateway-log topics (`gateway.inputs`) and republish them as
    /// telemetry keyed by token id: the first hop of a fleet.
    Normalize {
        #[arg(long, short, env = "TOKENWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Everything in one process: an in-process Kafka cluster, a loopback
    /// authorization server, simulated traffic with attacks, the real
    /// consumer path, /metrics live.
    Demo(tokenwatch::demo::DemoArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Generate labelled gateway telemetry (NDJSON) from a seed.
    Simulate {
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 300)]
        users: u32,
        #[arg(long, default_value = "4h", value_parser = humantime::parse_duration)]
        span: Duration,
        #[arg(long, default_value_t = 0.03)]
        attack_share: f64,
        #[arg(long, num_args = 1.., default_value = "data/geo/demo-city.mmdb")]
        city_db: Vec<PathBuf>,
        /// Output file (`.gz` compresses); `-` for stdout.
        #[arg(long, short, default_value = "-")]
        out: String,
        /// Publish to this Kafka cluster instead of writing a file.
        #[arg(long, requires = "topic")]
        brokers: Option<String>,
        /// Topic to publish to (records keyed by token id, labels dropped).
        #[arg(long, requires = "brokers")]
        topic: Option<String>,
    },
    /// Train a model on labelled telemetry and write the artifact.
    Train {
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "models/default.json")]
        out: PathBuf,
        #[arg(long, default_value = "data/geo/demo-city.mmdb")]
        city_db: PathBuf,
        #[arg(long, default_value = "data/geo/demo-asn.mmdb")]
        asn_db: PathBuf,
        /// Model version recorded in the artifact.
        #[arg(long)]
        version: Option<String>,
        /// `combined` (logistic regression + k-means population distance),
        /// `supervised` (logistic regression) or `population` (k-means on
        /// legitimate traffic only: no attack labels needed).
        #[arg(long, default_value = "combined")]
        family: tokenwatch::model::Family,
        /// k-means clusters of the population model.
        #[arg(long, default_value_t = 8)]
        clusters: usize,
    },
    /// Evaluate a model and the fixed-rule baseline on labelled telemetry:
    /// per-scenario table, JSON report and PNG plots.
    Eval {
        #[arg(long)]
        data: PathBuf,
        /// One or more models; with several, each gets its own report
        /// directory under `--out` and a comparison table is printed.
        #[arg(long, default_value = "models/default.json", num_args = 1..)]
        model: Vec<PathBuf>,
        #[arg(long, default_value = "data/geo/demo-city.mmdb")]
        city_db: PathBuf,
        #[arg(long, default_value = "data/geo/demo-asn.mmdb")]
        asn_db: PathBuf,
        /// Revoke on a single impossible hop (`detect.impossible_travel_revokes`).
        #[arg(long)]
        impossible_travel_revokes: bool,
        /// Directory for report.json, pr_curve.png and ttd_histogram.png.
        #[arg(long, default_value = "reports/eval")]
        out: PathBuf,
        /// Replay, but do not count, tokens first seen this early in the file
        /// (the population learns shared egress and rates meanwhile).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        warmup: Duration,
    },
    /// Seal a raw token (stdin) into a handle for the revoker.
    Seal {
        #[arg(long)]
        token_id: Option<String>,
        #[arg(long, env = "TOKENWATCH_SEAL_KEY_ID", default_value = "k1")]
        key_id: String,
        #[arg(long, env = "TOKENWATCH_SEAL_KEY")]
        key: Option<String>,
        /// Print a fresh random key instead.
        #[arg(long)]
        new_key: bool,
    },
    /// Geo database tools.
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file (and the environment) and exit.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum GeoCommand {
    /// Build the committed demo databases from DB-IP Lite (see scripts/build-demo-geo).
    BuildDemo {
        #[arg(long, num_args = 1.., required = true)]
        city_db: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true)]
        asn_csv: Vec<PathBuf>,
        #[arg(long, default_value = "data/geo")]
        out_dir: PathBuf,
        #[arg(long, default_value_t = 300)]
        cities: usize,
    },
    /// List the cities of a database with a sample network each.
    Cities {
        #[arg(long, num_args = 1.., default_value = "data/geo/demo-city.mmdb")]
        city_db: Vec<PathBuf>,
    },
    /// Look an address up in the configured databases.
    Lookup {
        ip: std::net::IpAddr,
        #[arg(long, num_args = 1.., default_value = "data/geo/demo-city.mmdb")]
        city_db: Vec<PathBuf>,
        #[arg(long)]
        asn_db: Option<PathBuf>,
    },
}

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

/// One shutdown signal for every server and loop: Ctrl-C or SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
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
        Command::Serve { config } => {
            let cfg = Config::load(config.as_deref())?;
            let shutdown = shutdown_on_signal();
            let report = tokenwatch::serve::serve(cfg, shutdown, Default::default()).await?;
            tracing::info!(
                scored = report.scored.handled,
                settled = report.settled.handled,
                "stopped"
            );
        }
        Command::Normalize { config } => {
            let cfg = Config::load(config.as_deref())?;
            if cfg.gateway.inputs.is_empty() {
                anyhow::bail!("configuration key `gateway.inputs`: normalize needs at least one gateway topic");
            }
            let shutdown = shutdown_on_signal();
            let stats = tokenwatch::normalize::normalize(cfg, shutdown, Default::default()).await?;
            tracing::info!(handled = stats.handled, "stopped");
        }
        Command::Demo(args) => {
            let shutdown = shutdown_on_signal();
            tokenwatch::demo::run(args, shutdown).await?;
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let cfg = Config::load(Some(&file))?;
            GeoHandle::open(cfg.geo.city_db.clone(), cfg.geo.asn_db.clone())?;
            ModelArtifact::load(&cfg.model_path)?;
            println!("{}: ok (geo databases and model load)", file.display());
        }
        Command::Simulate {
            seed,
            users,
            span,
            attack_share,
            city_db,
            out,
            brokers,
            topic,
        } => {
            let geo = GeoHandle::open(city_db, None)?;
            let world = World::from_geo(&geo.load().db);
            let p = SimParams {
                seed,
                users,
                span_ms: span.as_millis() as i64,
                attack_share,
                ..SimParams::default()
            };
            let events = sim::generate(&world, &p);
            if let (Some(brokers), Some(topic)) = (brokers, topic) {
                let n = publish(&brokers, &topic, seed, &events).await?;
                eprintln!("{n} events from {users} users published to {topic}, seed {seed}");
                return Ok(());
            }
            let sink: Box<dyn Write> = if out == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                let file =
                    std::fs::File::create(&out).with_context(|| format!("creating {out}"))?;
                if out.ends_with(".gz") {
                    // Fixed header fields: the same events give the same bytes.
                    Box::new(
                        flate2::GzBuilder::new()
                            .mtime(0)
                            .write(file, flate2::Compression::best()),
                    )
                } else {
                    Box::new(file)
                }
            };
            let mut w = BufWriter::new(sink);
            let bar = indicatif::ProgressBar::new(events.len() as u64);
            for e in &events {
                let id = e.sim_token_id(seed);
                serde_json::to_writer(&mut w, &e.to_wire(&id, None, true))?;
                w.write_all(b"\n")?;
                bar.inc(1);
            }
            w.flush()?;
            bar.finish_and_clear();
            eprintln!("{} events from {} users, seed {seed}", events.len(), users);
        }
        Command::Train {
            data,
            out,
            city_db,
            asn_db,
            version,
            family,
            clusters,
        } => {
            let geo = GeoHandle::open(vec![city_db], Some(asn_db))?;
            let placeholder = Arc::new(ArcSwap::from_pointee(Model::new(placeholder_artifact())));
            let bar = spinner("replaying the training data through the detector");
            let (rows, sha) = tokenwatch::eval::training_rows(
                &data,
                geo,
                placeholder,
                DetectorParams::default(),
            )?;
            bar.set_message("fitting with linfa");
            let prefix = match family {
                tokenwatch::model::Family::Supervised => "lr",
                tokenwatch::model::Family::Population => "km",
                tokenwatch::model::Family::Combined => "lrkm",
            };
            let version = version.unwrap_or_else(|| format!("{prefix}-{}", &sha[..12]));
            let params = train::TrainParams {
                family,
                clusters,
                ..train::TrainParams::default()
            };
            let artifact = train::train(&rows, &params, &sha, &version)?;
            bar.finish_and_clear();
            artifact
                .save(&out)
                .with_context(|| format!("writing {}", out.display()))?;
            let h = &artifact.training.holdout;
            println!(
                "{}: version {version}, {} rows; hold-out: recall {:.3}, precision {:.3}, {:.1} false flags/100k legit tokens at threshold {:.4}",
                out.display(),
                rows.len(),
                h.token_recall,
                h.token_precision,
                h.false_flags_per_100k,
                h.threshold
            );
        }
        Command::Eval {
            data,
            model,
            city_db,
            asn_db,
            impossible_travel_revokes,
            out,
            warmup,
        } => {
            let params = DetectorParams {
                impossible_travel_revokes,
                ..DetectorParams::default()
            };
            let several = model.len() > 1;
            let mut reports = Vec::new();
            for path in &model {
                let geo = GeoHandle::open(vec![city_db.clone()], Some(asn_db.clone()))?;
                let artifact = ModelArtifact::load(path)?;
                let family = artifact.family;
                let handle = Arc::new(ArcSwap::from_pointee(Model::new(artifact)));
                let bar = spinner("replaying through tokenwatch and the baseline");
                let report =
                    tokenwatch::eval::evaluate(&data, geo, handle, params.clone(), warmup)?;
                bar.finish_and_clear();
                let dir = if several {
                    out.join(path.file_stem().unwrap_or_default())
                } else {
                    out.clone()
                };
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let json = dir.join("report.json");
                std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", json.display()))?;
                let plots =
                    tokenwatch::eval::write_plots(&report, &dir).map_err(anyhow::Error::msg)?;
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
        }
        Command::Seal {
            token_id,
            key_id,
            key,
            new_key,
        } => {
            if new_key {
                println!("{}", tokenwatch::respond::Sealer::generate_key());
                return Ok(());
            }
            let (Some(token_id), Some(key)) = (token_id, key) else {
                bail!("seal needs --token-id and a key (--key or TOKENWATCH_SEAL_KEY)");
            };
            let sealer = tokenwatch::respond::Sealer::new([(key_id.as_str(), key.as_str())])?;
            let mut raw = String::new();
            std::io::stdin().read_to_string(&mut raw)?;
            println!(
                "{}",
                sealer.seal(&token_id, raw.trim_end_matches(['\r', '\n']))
            );
        }
        Command::Geo {
            command:
                GeoCommand::BuildDemo {
                    city_db,
                    asn_csv,
                    out_dir,
                    cities,
                },
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
        Command::Geo {
            command:
                GeoCommand::Lookup {
                    ip,
                    city_db,
                    asn_db,
                },
        } => {
            let geo = GeoHandle::open(city_db, asn_db)?;
            let db = &geo.load().db;
            println!("{:?}\n{:?}", db.lookup(ip), db.place(ip));
        }
        Command::Geo {
            command: GeoCommand::Cities { city_db },
        } => {
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

/// Publishes simulated telemetry to Kafka, keyed by token id, without labels.
async fn publish(brokers: &str, topic: &str, seed: u64, events: &[sim::SimEvent]) -> Result<usize> {
    use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .create()
        .context("creating the Kafka producer")?;
    let bar = indicatif::ProgressBar::new(events.len() as u64);
    let mut pending = Vec::with_capacity(1024);
    for e in events {
        let id = e.sim_token_id(seed);
        let payload = serde_json::to_vec(&e.to_wire(&id, None, false))?;
        let mut record = FutureRecord::to(topic).key(&id).payload(&payload);
        // Enqueue now (the record is copied); wait only when the queue is full.
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                Err((_, r)) => {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        if pending.len() == 1024 {
            for d in futures::future::join_all(pending.drain(..)).await {
                d.context("delivery canceled")?
                    .map_err(|(e, _)| e)
                    .context("publishing to Kafka")?;
            }
        }
        bar.inc(1);
    }
    for d in futures::future::join_all(pending).await {
        d.context("delivery canceled")?
            .map_err(|(e, _)| e)
            .context("publishing to Kafka")?;
    }
    producer
        .flush(Duration::from_secs(30))
        .context("flushing")?;
    bar.finish_and_clear();
    Ok(events.len())
}

fn spinner(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Training replays features only; the scorer is never consulted.
fn placeholder_artifact() -> ModelArtifact {
    use tokenwatch::features::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
    ModelArtifact {
        format: tokenwatch::model::ARTIFACT_FORMAT,
        version: "untrained".into(),
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        family: tokenwatch::model::Family::Supervised,
        feature_names: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        mean: vec![0.0; N_FEATURES],
        scale: vec![1.0; N_FEATURES],
        weights: vec![0.0; N_FEATURES],
        bias: 0.0,
        population: None,
        alert_threshold: 1.0,
        revoke_threshold: 1.0,
        training: Default::default(),
    }
}
