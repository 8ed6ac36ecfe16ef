//! Build script: builds the web UI (`web/` → `web/dist`) with npm when the output is missing or older than its
//! sources, and records the git commit and build date for `hearth --version`.
//! `HEARTH_SKIP_WEB_BUILD=1` skips the npm step (an existing `web/dist` is embedded as it is).

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest(&e.path())).max()
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: cannot run ({e}); are node and npm installed?"));
    assert!(status.success(), "{what} failed with {status}");
}

fn main() {
    let web = Path::new("web");
    let sources = [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
        "scripts",
        "openapi.json",
    ];
    for s in sources {
        println!("cargo:rerun-if-changed=web/{s}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=web/dist/.build-stamp");
    println!("cargo:rerun-if-env-changed=HEARTH_SKIP_WEB_BUILD");
    let stamp = web.join("dist/.build-stamp");
    let built = std::fs::metadata(&stamp).and_then(|m| m.modified()).ok();
    let src_time = sources.iter().filter_map(|s| newest(&web.join(s))).max();
    let stale = match (built, src_time) {
        (None, _) => true,
        (Some(b), Some(s)) => s > b,
        (Some(_), None) => false,
    };
    if stale && std::env::var_os("HEARTH_SKIP_WEB_BUILD").is_none() {
        // dependencies missing, or older than the lock file (a new devDependency)
        let installed = std::fs::metadata(web.join("node_modules/.package-lock.json")).and_then(|m| m.modified()).ok();
        let locked = std::fs::metadata(web.join("package-lock.json")).and_then(|m| m.modified()).ok();
        if installed.is_none() || locked > installed {
            run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(web), "npm ci (web UI)");
        }
        run(Command::new("npm").args(["run", "build"]).current_dir(web), "npm run build (web UI)");
    }
    assert!(
        web.join("dist/index.html").exists(),
        "web/dist is missing: build the UI with `cd web && npm ci && npm run build`"
    );
    // rust-embed's files are not tracked by cargo: a new stamp in the build script's output forces the crate to be
    // recompiled whenever the UI was rebuilt, so the binary never embeds a stale UI.
    let stamp_text = std::fs::read_to_string(&stamp).unwrap_or_default();
    println!("cargo:rustc-env=HEARTH_WEB_BUILD={}", stamp_text.trim());

    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=HEARTH_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let date = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or_else(|| {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
    });
    // civil date from days since epoch (Howard Hinnant's algorithm)
    let z = date.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    println!("cargo:rustc-env=HEARTH_BUILD_DATE={y:04}-{m:02}-{d:02}");
    println!("cargo:rustc-env=HEARTH_BUILD_EPOCH={date}");
}
