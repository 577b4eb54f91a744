//! Model hot reload: a good file is swapped in and its version exported; a
//! bad one is refused and the loaded model keeps scoring.

mod common;

use common::*;
use tokenwatch::metrics::Metrics;
use tokenwatch::model::reload as reload_model;

#[test]
fn a_reloaded_model_replaces_the_old_one_and_a_bad_file_changes_nothing() {
    let handle = model();
    let metrics = Metrics::new();
    let before = handle.load().version().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");

    let mut artifact =
        tokenwatch::model::ModelArtifact::load(&repo("models/default.json")).unwrap();
    artifact.version = "lr-next".into();
    artifact.save(&path).unwrap();
    assert_eq!(reload_model(&handle, &path, &metrics).unwrap(), "lr-next");
    assert_eq!(handle.load().version(), "lr-next");
    assert_ne!(before, "lr-next");
    let text = metrics.render();
    assert!(
        text.contains("tokenwatch_model_info{version=\"lr-next\"} 1"),
        "{text}"
    );
    assert!(!text.contains(&format!("version=\"{before}\"")));

    std::fs::write(&path, "{\"format\": 1}").unwrap();
    assert!(reload_model(&handle, &path, &metrics).is_err());
    assert_eq!(
        handle.load().version(),
        "lr-next",
        "a bad file leaves the loaded model in place"
    );
    assert!(metrics
        .render()
        .contains("tokenwatch_model_reloads_total{result=\"error\"} 1"));
}
