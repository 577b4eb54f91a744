//! The committed model: it loads, re-training from the committed data
//! reproduces it, and each family trains and scores as documented.

mod common;

use tokenwatch::features::idx;

use common::*;
use tokenwatch::detect::DetectorParams;
use tokenwatch::model::train::{self, Row, TrainParams};
use tokenwatch::model::{Family, Model, ModelArtifact, NOVELTY};

fn training_rows() -> (Vec<Row>, String) {
    tokenwatch::eval::training_rows(
        &repo("data/sim/train-seed1.ndjson.gz"),
        geo(),
        DetectorParams::default(),
        tokenwatch::eval::Labels::Inline,
    )
    .expect("the committed training data replays")
}

#[test]
fn retraining_from_the_committed_data_reproduces_the_default_model() {
    let committed = ModelArtifact::load(&repo("models/default.json")).expect("loads");
    let (rows, sha) = training_rows();
    assert_eq!(
        sha, committed.training.data_sha256,
        "the committed model was trained on other data"
    );
    let params = TrainParams {
        family: committed.family,
        clusters: committed.training.clusters,
        ..TrainParams::default()
    };
    let again = train::train(&rows, &params, &sha, &committed.version).expect("trains");
    let (a, b) = (&committed.training.holdout, &again.training.holdout);
    assert_eq!(a.legit_tokens, b.legit_tokens);
    assert_eq!(a.attacked_tokens, b.attacked_tokens);
    assert!(
        (a.token_recall - b.token_recall).abs() <= 0.05,
        "{a:?} vs {b:?}"
    );
    assert!(
        (a.token_precision - b.token_precision).abs() <= 0.05,
        "{a:?} vs {b:?}"
    );
    // One legitimate token's worth of false flags.
    let one = 100_000.0 / a.legit_tokens.max(1) as f64;
    assert!(
        (a.false_flags_per_100k - b.false_flags_per_100k).abs() <= one,
        "{a:?} vs {b:?}"
    );
    assert!((committed.revoke_threshold - again.revoke_threshold).abs() <= 0.02);
    for (x, y) in committed.weights.iter().zip(&again.weights) {
        assert!(
            (x - y).abs() <= 0.05 * x.abs().max(1.0),
            "weights {x} vs {y}"
        );
    }
}

#[test]
fn the_population_family_trains_without_a_single_attack() {
    let (rows, sha) = training_rows();
    let legit: Vec<Row> = rows.into_iter().filter(|r| !r.attacked_token).collect();
    let supervised = train::train(&legit, &TrainParams::default(), &sha, "x");
    assert!(supervised.is_err(), "the supervised fit needs attacks");

    let params = TrainParams {
        family: Family::Population,
        ..TrainParams::default()
    };
    let a = train::train(&legit, &params, &sha, "km-test").expect("trains on legit only");
    let p = a.population.as_ref().expect("a population model");
    assert_eq!(p.centroids.len(), params.clusters);
    assert!(p.distance_quantiles.windows(2).all(|w| w[0] <= w[1]));

    // Typical traffic scores low; a request unlike any legitimate one high.
    let m = Model::new(a);
    let typical: Vec<f32> = legit
        .iter()
        .step_by(97)
        .map(|r| m.score(&r.features).model_score)
        .collect();
    let median = {
        let mut t = typical.clone();
        t.sort_by(f32::total_cmp);
        t[t.len() / 2]
    };
    assert!(median < 0.8, "median legitimate score {median}");
    let mut odd = legit[0].features;
    odd.values[idx::VELOCITY] = 20_000.0;
    odd.values[idx::DISTANCE] = 15_000.0;
    odd.values[idx::BURST] = 40.0;
    let s = m.score(&odd);
    assert!(s.model_score > 0.99, "{s:?}");
    let top: Vec<&str> = s.top.iter().flatten().map(|c| c.feature).collect();
    assert!(
        top.contains(&"velocity_kmh") || top.contains(&"distance_km"),
        "explained by what is unusual: {top:?}"
    );
}

#[test]
fn the_combined_family_weighs_the_population_distance() {
    let committed = ModelArtifact::load(&repo("models/default.json")).expect("loads");
    assert_eq!(committed.family, Family::Combined);
    let p = committed
        .population
        .as_ref()
        .expect("combined has a population model");
    assert!(p.weight > 0.0, "farther from legitimate traffic is riskier");
    let (rows, _) = training_rows();
    let m = Model::new(committed);
    // Somewhere the novelty term is among the reasons given.
    assert!(rows.iter().filter(|r| r.attacker).any(|r| m
        .score(&r.features)
        .top
        .iter()
        .flatten()
        .any(|c| c.feature == NOVELTY)));
}

#[test]
fn an_artifact_without_its_population_model_is_refused_at_load() {
    let text = std::fs::read_to_string(repo("models/default.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_object_mut().unwrap().remove("population");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let err = ModelArtifact::load(&path).unwrap_err().to_string();
    assert!(err.contains("population"), "{err}");
}

#[test]
fn every_committed_model_loads_under_the_current_feature_schema() {
    // `serve` refuses an artifact of another schema; a committed one that
    // was not retrained with the schema would fail the user who picks it.
    let mut n = 0;
    for entry in std::fs::read_dir(repo("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let a =
                ModelArtifact::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                a.feature_schema_version,
                tokenwatch::features::FEATURE_SCHEMA_VERSION,
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 3, "{n} models");
}
