//! The function runtime with a real `uv` and real Python workers: environments built once and
//! reused, failures that leave nothing, and invocations that are confined, limited and metered.
//! Needs `uv` on PATH (scripts/test.sh puts it there) and PyPI for the packages.

use std::path::Path;

use basin_core::ErrorKind;
use basin_runtime::{EnvCache, EnvSpec};

fn cache(dir: &Path) -> EnvCache {
    EnvCache::new(dir.join("envs"), dir.join("tools"))
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("envs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".lock"))
                .collect()
        })
        .unwrap_or_default()
}

async fn python_says(python: &Path, code: &str) -> String {
    let out = tokio::process::Command::new(python)
        .args(["-c", code])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn an_environment_is_built_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11").with_package("six", "1.16.0");
    let first = cache(dir.path()).resolve(&spec).await.unwrap();
    assert!(first.built);
    assert_eq!(
        python_says(&first.python, "import six; print(six.__version__)").await,
        "1.16.0"
    );
    let again = cache(dir.path()).resolve(&spec).await.unwrap();
    assert!(!again.built, "the second resolve must not install anything");
    assert_eq!(again.path, first.path);
    // Same packages in another order: same environment.
    assert_eq!(
        EnvSpec::new("3.11").with_package("SIX", "1.16.0").hash(),
        spec.hash()
    );
    assert_ne!(
        EnvSpec::new("3.11").with_package("six", "1.15.0").hash(),
        spec.hash()
    );
}

#[tokio::test]
async fn concurrent_resolves_of_a_new_spec_build_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11");
    // Separate caches over one folder behave like separate processes.
    let (x, y, z) = (cache(dir.path()), cache(dir.path()), cache(dir.path()));
    let (a, b, c) = tokio::join!(x.resolve(&spec), y.resolve(&spec), z.resolve(&spec));
    let built = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|e| e.built)
        .count();
    assert_eq!(built, 1);
    assert_eq!(cache(dir.path()).list().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_build_names_the_package_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11").with_package("basin-no-such-package-xyz", "1.0.0");
    let err = cache(dir.path()).resolve(&spec).await.unwrap_err();
    assert!(
        err.message.contains("basin-no-such-package-xyz"),
        "{}",
        err.message
    );
    assert!(err.hint.is_some());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
}

/// docopt 0.6.2 is on PyPI only as a source archive: installing it runs its setup.py.
#[tokio::test]
async fn a_package_without_a_wheel_is_built_only_when_the_setting_allows() {
    let dir = tempfile::tempdir().unwrap();
    let spec = EnvSpec::new("3.11").with_package("docopt", "0.6.2");
    let err = cache(dir.path()).resolve(&spec).await.unwrap_err();
    assert!(err.message.contains("docopt"), "{}", err.message);
    let hint = err.hint.unwrap_or_default();
    assert!(hint.contains("build_from_source = true"), "{hint}");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    let env = cache(dir.path())
        .with_source_builds(true)
        .resolve(&spec)
        .await
        .unwrap();
    assert!(env.built);
    let version = python_says(&env.python, "import docopt; print(docopt.__version__)").await;
    assert_eq!(version.trim(), "0.6.2");
}

#[tokio::test]
async fn an_unavailable_python_lists_the_ones_present() {
    let dir = tempfile::tempdir().unwrap();
    let err = cache(dir.path())
        .resolve(&EnvSpec::new("3.99"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(
        err.message.contains("Python 3.99 is not available"),
        "{}",
        err.message
    );
    assert!(
        err.hint.as_deref().unwrap_or_default().contains("3.11"),
        "{:?}",
        err.hint
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[tokio::test]
async fn list_remove_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path());
    let env = cache.resolve(&EnvSpec::new("3.11")).await.unwrap();
    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].bytes > 0);
    assert!(
        cache
            .prune(std::time::Duration::from_secs(3600))
            .unwrap()
            .is_empty(),
        "just used"
    );
    assert_eq!(
        cache.remove(&env.hash[..4]).unwrap(),
        vec![env.hash.clone()]
    );
    assert!(cache.list().unwrap().is_empty());
    assert_eq!(
        cache.remove("ffff").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn without_uv_on_path_basin_installs_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let env = cache(dir.path())
        .with_search_path(None)
        .resolve(&EnvSpec::new("3.11"))
        .await
        .unwrap();
    assert!(dir.path().join("tools/uv/bin/uv").is_file());
    assert!(
        python_says(&env.python, "import sys; print(sys.version_info[:2])")
            .await
            .contains("3, 11")
    );
}

/// Invocations: confined, limited and metered children of a warm worker.
mod invocations;
