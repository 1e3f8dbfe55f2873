//! The build id a coordinator and its workers compare (`QueryOptions::build`): the git commit the
//! binary was built from, when there is one.

fn main() {
    // Read when the script runs, not compiled in: cargo reuses a compiled build script across
    // checkouts of the same source, and a path compiled in would name the first checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = std::path::Path::new(&manifest_dir).join("..");
    let git = root.join(".git");
    // Only paths that exist: cargo takes a missing one as changed, and rebuilds every crate
    // that depends on this one on every build (a repository without packed refs has no
    // `packed-refs`; packing them changes `refs/heads`).
    for watched in ["HEAD", "packed-refs", "refs/heads"] {
        let path = git.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=STRATA_BUILD_ID={commit}");
}
