//! The build id a coordinator and its workers compare (`QueryOptions::build`): the git commit the
//! binary was built from, when there is one.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = root.join(".git");
    for watched in ["HEAD", "packed-refs", "refs/heads"] {
        println!("cargo:rerun-if-changed={}", git.join(watched).display());
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
