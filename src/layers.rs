//! The layering of the crate, checked by `cargo test` (this module exists only in tests): each top-level module
//! sits on one layer and may import (`crate::<module>`) only modules on lower layers; modules on the same layer
//! never import each other, so the subsystems stay independent and there is no import cycle between modules.
//! ARCHITECTURE.md states the same list as "Architecture Invariant" lines; change both together.
//!
//! What is read: every `.rs` file under `src/`, without its `#[cfg(test)] mod tests` block (tests may reach across
//! layers to build fixtures). An edge is any `crate::<name>` path in the code, `use` or inline.

/// Lowest first.
pub(crate) const LAYERS: &[(&str, &[&str])] = &[
    ("helpers", &["util"]),
    ("vocabulary", &["net", "ratelimit", "docker", "tracecontext"]),
    ("runtime", &["supervisor"]),
    ("foundation", &["config", "storage"]),
    ("process services", &["telemetry", "logging", "sysdns"]),
    ("shared services", &["auth", "tls"]),
    ("subsystems", &["dns", "proxy", "memory", "metrics", "alerts", "logs", "traces"]),
    ("admin API", &["http"]),
    ("front door", &["front"]),
    ("wiring", &["app", "fuzzing", "layers"]),
    ("command line", &["cli", "lib", "main"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level module a file belongs to (`src/dns/task.rs` → `dns`, `src/app.rs` → `app`).
pub(crate) fn module_of(path: &str) -> String {
    let rel = path.trim_start_matches("src/");
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without its unit tests.
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = text[start + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// The modules `text` names as `crate::<module>`.
pub(crate) fn imports(text: &str) -> Vec<String> {
    let code = without_tests(text);
    let mut out: Vec<String> = vec![];
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        let after = &rest[i + "crate::".len()..];
        rest = after;
        // `hearth::crate::x` does not exist; skip identifiers that merely end in "crate" (e.g. `my_crate::`)
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        // a comment line is not an edge
        let line_start = code[..code.len() - after.len()].rfind('\n').map(|p| p + 1).unwrap_or(0);
        let line = code[line_start..].trim_start();
        if line.starts_with("//") {
            continue;
        }
        for name in first_segments(after) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// The modules a path after `crate::` starts with: `dns::Dns` → `dns`; a group, `{dns::Dns, util::{a, b}}`, names
/// each of its members' first segment.
fn first_segments(after: &str) -> Vec<String> {
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let Some(group) = after.strip_prefix('{') else {
        return [ident(after)].into_iter().filter(|n| !n.is_empty()).collect();
    };
    let (mut depth, mut names, mut start) = (0usize, vec![], 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                names.push(ident(group[start..i].trim_start()));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                names.push(ident(group[start..i].trim_start()));
                start = i + 1;
            }
            _ => {}
        }
    }
    names.into_iter().filter(|n| !n.is_empty() && n != "self").collect()
}

/// Every forbidden edge among `files` (path, text): "file: module → imported (why)".
pub(crate) fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut v = vec![];
    for (path, text) in files {
        let from = module_of(path);
        let Some(lf) = layer_of(&from) else {
            v.push(format!("{path}: module `{from}` is on no layer (add it to crate::layers::LAYERS)"));
            continue;
        };
        for to in imports(text) {
            if to == from {
                continue;
            }
            // items of the crate root (build constants)
            let Some(lt) = layer_of(&to) else {
                if to.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && !is_root_item(&to) {
                    v.push(format!("{path}: `crate::{to}` is on no layer"));
                }
                continue;
            };
            if lt >= lf {
                let why = if lt == lf { "same layer" } else { "upward" };
                v.push(format!("{path}: {from} ({}) → {to} ({}): {why}", LAYERS[lf].0, LAYERS[lt].0));
            }
        }
    }
    v
}

fn is_root_item(name: &str) -> bool {
    ["build_epoch"].contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_tree(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                read_tree(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display().to_string();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }

    #[test]
    fn the_source_tree_keeps_its_layers() {
        let mut files = vec![];
        read_tree(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        assert!(files.len() > 50, "read the tree");
        let v = violations(&files);
        assert!(v.is_empty(), "forbidden imports:\n{}", v.join("\n"));
    }

    #[test]
    fn a_forbidden_edge_is_found() {
        let file = |p: &str, t: &str| (p.to_string(), t.to_string());
        // config (foundation) importing a subsystem
        let v = violations(&[file("src/config/mod.rs", "use crate::dns::Settings;\n")]);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("config (foundation) → dns (subsystems): upward"), "{v:?}");
        // two subsystems
        let v = violations(&[file("src/proxy/mod.rs", "fn f() { crate::memory::thing(); }\n")]);
        assert!(v[0].contains("same layer"), "{v:?}");
        // an inline path counts; comments, tests and the module itself do not
        let ok = "// see crate::http::x\nuse crate::dns::wire;\n#[cfg(test)]\nmod tests { use crate::app::x; }\n";
        assert!(violations(&[file("src/dns/server.rs", ok)]).is_empty());
        // a new top-level module must be placed
        assert!(violations(&[file("src/backup/mod.rs", "")])[0].contains("on no layer"));
        assert_eq!(imports("let x = my_crate::y; crate::net::canonical(a); crate::util::x;"), ["net", "util"]);
        // a group import names each member (the command line's `use crate::{app, auth, …}` was once unseen)
        assert_eq!(imports("use crate::{app, dns::{Dns, task::{self, run}}, util};"), ["app", "dns", "util"]);
        assert!(violations(&[file("src/proxy/send.rs", "use crate::{net::ConnInfo, http};\n")])[0].contains("upward"));
    }
}
