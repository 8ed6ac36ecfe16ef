//! The blocklist parser and compiler on arbitrary bytes: lists come from the internet, so no input may panic,
//! and the compiled engine must answer for any name.
#![no_main]

use hearth::dns::blocklist::{Engine, ListInput, ListKind, ListSet, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for line in String::from_utf8_lossy(data).lines() {
        let _ = parse_line(line);
    }
    let (block, allow) = data.split_at(data.len() / 2);
    let lists = vec![
        ListInput { id: 0, kind: ListKind::Block, reader: block },
        ListInput { id: 1, kind: ListKind::Allow, reader: allow },
    ];
    if let Ok((engine, _)) = Engine::compile(lists) {
        for name in ["example.com", "ads.example.com", "a.b.c.d", "", "xn--bcher-kva.example"] {
            let _ = engine.check(name, &ListSet::all());
        }
    }
});
