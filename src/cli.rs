//! The command line as clap reads it: every subcommand and its flags, with
//! the help text users see. `main.rs` runs them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tokenwatch",
    version,
    about = "Catches stolen access tokens while they are being used, and shuts them off."
)]
pub struct Cli {
    /// Log as JSON lines (for log shippers) instead of text.
    #[arg(long, global = true, env = "TOKENWATCH_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service: consume telemetry, score, decide, revoke.
    Serve {
        #[arg(long, short, env = "TOKENWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The edge check alone: follow the denylist and answer `/v1/check`
    /// for the gateways, in no consumer group (scale it with the gateways).
    Edge {
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
    Simulate(SimulateArgs),
    /// Train a model on labelled telemetry and write the artifact.
    Train(TrainArgs),
    /// Evaluate a model and the fixed-rule baseline on labelled telemetry:
    /// per-scenario table, JSON report and PNG plots.
    Eval(EvalArgs),
    /// Replay historical telemetry (no labels needed) through a model, as
    /// `serve` would score it, and report what it would have done: alerts
    /// and revocations per day, the reasons, the tokens it would revoke.
    Backtest(BacktestArgs),
    /// Seal a raw token (stdin) into a handle for the revoker.
    Seal(SealArgs),
    /// Geo database tools.
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
}

#[derive(clap::Args)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, default_value_t = 300)]
    pub users: u32,
    #[arg(long, default_value = "4h", value_parser = humantime::parse_duration)]
    pub span: Duration,
    #[arg(long, default_value_t = 0.03)]
    pub attack_share: f64,
    /// What the traffic is like (TOML: any `SimParams` knob, see
    /// docs/evaluation.md), e.g. data/sim/consumer-scale.toml.
    #[arg(long)]
    pub traffic: Option<PathBuf>,
    #[arg(long, num_args = 1.., default_value = "data/geo/demo-city.mmdb")]
    pub city_db: Vec<PathBuf>,
    /// Output file (`.gz` compresses); `-` for stdout.
    #[arg(long, short, default_value = "-")]
    pub out: String,
    /// Write the labels to this side file (token id → theft time and
    /// scenario, the `--truth` format of `eval` and `train`) and leave them
    /// out of the telemetry, as production telemetry is.
    #[arg(long, conflicts_with = "brokers")]
    pub truth: Option<PathBuf>,
    /// Publish to this Kafka cluster instead of writing a file.
    #[arg(long, requires = "topic")]
    pub brokers: Option<String>,
    /// Topic to publish to (records keyed by token id, labels dropped).
    #[arg(long, requires = "brokers")]
    pub topic: Option<String>,
}

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Telemetry (NDJSON, `.gz` allowed). With inline labels (the
    /// simulator's), a `--truth` side file, or, for `--family population`,
    /// none: production telemetry as it is.
    #[arg(long)]
    pub data: PathBuf,
    /// Labels as a side file: `{"<token id>": {"stolen_at": "<RFC 3339>",
    /// "scenario": "<optional>"}}`; tokens not in it are legitimate.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    #[arg(long, default_value = "models/default.json")]
    pub out: PathBuf,
    #[arg(long, default_value = "data/geo/demo-city.mmdb")]
    pub city_db: PathBuf,
    #[arg(long, default_value = "data/geo/demo-asn.mmdb")]
    pub asn_db: PathBuf,
    /// Model version recorded in the artifact.
    #[arg(long)]
    pub version: Option<String>,
    /// `combined` (logistic regression + k-means population distance),
    /// `supervised` (logistic regression) or `population` (k-means on
    /// legitimate traffic only: no attack labels needed).
    #[arg(long, default_value = "combined")]
    pub family: tokenwatch::model::Family,
    /// k-means clusters of the population model.
    #[arg(long, default_value_t = 8)]
    pub clusters: usize,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Labels as a side file instead of inline: `{"<token id>":
    /// {"stolen_at": "<RFC 3339>", "scenario": "<optional>"}}`; tokens not
    /// in it are legitimate. Every request of a stolen token from
    /// `stolen_at` on counts as the thief's.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// One or more models; with several, each gets its own report
    /// directory under `--out` and a comparison table is printed.
    #[arg(long, default_value = "models/default.json", num_args = 1..)]
    pub model: Vec<PathBuf>,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Directory for report.json, pr_curve.png and ttd_histogram.png.
    #[arg(long, default_value = "reports/eval")]
    pub out: PathBuf,
    /// Replay, but do not count, tokens first seen this early in the file
    /// (the population learns shared egress and rates meanwhile).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
}

/// What a replay scores with besides the model: the geo databases and the
/// rule setting `serve` reads from config.
#[derive(clap::Args)]
pub struct ScoringArgs {
    #[arg(long, default_value = "data/geo/demo-city.mmdb")]
    pub city_db: PathBuf,
    #[arg(long, default_value = "data/geo/demo-asn.mmdb")]
    pub asn_db: PathBuf,
    /// Revoke on a single impossible hop (`detect.impossible_travel_revokes`).
    #[arg(long)]
    pub impossible_travel_revokes: bool,
    /// Revoke on an impossible hop onto a network nobody signs in from
    /// (`detect.unknown_egress_revokes`); `false`: alert.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub unknown_egress_revokes: bool,
}

impl ScoringArgs {
    pub fn params(&self) -> tokenwatch::detect::DetectorParams {
        tokenwatch::detect::DetectorParams {
            impossible_travel_revokes: self.impossible_travel_revokes,
            unknown_egress_revokes: self.unknown_egress_revokes,
            ..Default::default()
        }
    }

    pub fn geo(
        &self,
    ) -> Result<std::sync::Arc<tokenwatch::geo::GeoHandle>, tokenwatch::geo::GeoError> {
        tokenwatch::geo::GeoHandle::open(vec![self.city_db.clone()], Some(self.asn_db.clone()))
    }
}

#[derive(clap::Args)]
pub struct BacktestArgs {
    /// Telemetry (NDJSON, `.gz` allowed), e.g. a dump of the telemetry topic.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "models/default.json")]
    pub model: PathBuf,
    #[command(flatten)]
    pub scoring: ScoringArgs,
    /// Tokens to list of those it would revoke (all are in the JSON).
    #[arg(long, default_value_t = 20)]
    pub show: usize,
    /// Write the whole report here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct SealArgs {
    #[arg(long)]
    pub token_id: Option<String>,
    #[arg(long, env = "TOKENWATCH_SEAL_KEY_ID", default_value = "k1")]
    pub key_id: String,
    #[arg(long, env = "TOKENWATCH_SEAL_KEY")]
    pub key: Option<String>,
    /// Print a fresh random key instead.
    #[arg(long)]
    pub new_key: bool,
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (and the environment) and exit.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
pub enum GeoCommand {
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
