//! The repository's documents each hold their own facts: the README is a front page, the crate
//! docs hold the guarantees and name every feature, the benchmark tables live beside the
//! benchmarks, and the changelog speaks Keep a Changelog.

use std::{fs, path::Path};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The `//!` lines of `src/lib.rs`, without the marker.
fn crate_docs() -> String {
    read("src/lib.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The features `Cargo.toml` declares, `default` aside.
fn features() -> Vec<String> {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("\n[features]\n")
        .nth(1)
        .expect("Cargo.toml has a [features] table");
    section
        .lines()
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.starts_with('#') && line.contains('='))
        .map(|line| line.split('=').next().unwrap().trim().to_owned())
        .filter(|name| name != "default")
        .collect()
}

#[test]
fn the_readme_is_a_front_page_of_at_most_12_kib() {
    let size = read("README.md").len();
    assert!(size <= 12 * 1024, "README.md is {size} bytes");
}

#[test]
fn the_readme_keeps_the_two_commands() {
    let readme = read("README.md");
    for command in [
        "cargo run --example quickstart",
        "cargo test --all-features",
    ] {
        assert!(readme.contains(command), "README.md lost `{command}`");
    }
}

#[test]
fn the_readme_states_the_headline_promises_and_links_to_the_crate_docs_for_all() {
    let readme = read("README.md");
    for promise in [
        "single flight",
        "refresh",
        "expired token",
        "replayed once",
        "API key",
        "secret",
    ] {
        assert!(
            readme.contains(promise),
            "README.md no longer says `{promise}`"
        );
    }
    assert!(
        readme.contains("#guarantees"),
        "README.md does not link to the crate docs' guarantees"
    );
}

#[test]
fn the_guarantees_are_written_out_in_the_crate_docs_alone() {
    let docs = crate_docs();
    assert!(
        docs.contains("\n# Guarantees\n"),
        "the crate docs lost their guarantees"
    );
    // Details only the full list has: the README states the headlines and links to it.
    for detail in [
        "whichever runtime dies",
        "`Duration::MAX`",
        "at most a tenth",
    ] {
        assert!(docs.contains(detail), "the crate docs lost `{detail}`");
        assert!(
            !read("README.md").contains(detail),
            "README.md repeats the guarantees' `{detail}`"
        );
    }
}

#[test]
fn the_crate_docs_name_every_feature() {
    let docs = crate_docs();
    let listed = docs
        .split("\n# Features\n")
        .nth(1)
        .expect("the crate docs have a Features section");
    let listed = listed.split("\n# ").next().unwrap();
    let features = features();
    assert!(features.len() >= 8, "found {features:?} in Cargo.toml");
    for feature in &features {
        assert!(
            listed.contains(&format!("`{feature}`")),
            "the crate docs' Features section does not name `{feature}`"
        );
    }
}

#[test]
fn the_performance_tables_live_beside_the_benchmarks() {
    let benches = read("benches/README.md");
    let readme = read("README.md");
    for row in [
        "| `SetRequestHeader` × 2, static values (floor) | 399 ns | 431 ns |",
        "| mutex held across the fetch | 19,785 / 19,943 / 19,944 |",
    ] {
        assert!(benches.contains(row), "benches/README.md lacks `{row}`");
        assert!(!readme.contains(row), "README.md still holds `{row}`");
    }
}

#[test]
fn running_the_tests_is_explained_in_contributing() {
    let contributing = read("CONTRIBUTING.md");
    assert!(contributing.contains("cargo test --all-features -- --include-ignored"));
    assert!(contributing.contains(".ci/run"));
}

#[test]
fn the_changelog_uses_only_keep_a_changelog_sections() {
    let allowed = [
        "Added",
        "Changed",
        "Deprecated",
        "Removed",
        "Fixed",
        "Security",
    ];
    for heading in read("CHANGELOG.md")
        .lines()
        .filter_map(|line| line.strip_prefix("### "))
    {
        assert!(
            allowed.contains(&heading),
            "CHANGELOG.md has a section `### {heading}`"
        );
    }
}

#[test]
fn the_changelog_has_each_section_once_per_release() {
    let changelog = read("CHANGELOG.md");
    for release in changelog.split("\n## ").skip(1) {
        let mut seen = Vec::new();
        for heading in release.lines().filter_map(|line| line.strip_prefix("### ")) {
            assert!(
                !seen.contains(&heading),
                "CHANGELOG.md repeats `### {heading}` in `## {}`",
                release.lines().next().unwrap()
            );
            seen.push(heading);
        }
    }
}
