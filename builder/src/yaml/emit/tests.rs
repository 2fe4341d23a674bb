//! Emitter tests. Expected texts come from go-yaml v4.0.0-rc.6's own tables (`testdata/encode.yaml`,
//! `yaml_test.go` `marshalTests`/`TestSortedOutput`) with Go inputs rewritten as `Node` trees, plus cases
//! traced through go-yaml's emitter by hand for behaviour those tables do not cover (marked "traced").

use super::*;
use crate::yaml::node::Mapping;

fn s(text: &str) -> Node {
    Node::str(text)
}

fn i(v: i64) -> Node {
    Node::int(v)
}

fn f(v: f64) -> Node {
    Node::new(Value::Float(v))
}

fn seq(items: Vec<Node>) -> Node {
    Node::seq(items)
}

fn map(entries: Vec<(&str, Node)>) -> Node {
    Node::map(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Mapping>())
}

/// `{v: value}`, the shape of most of go-yaml's table entries.
fn v(value: Node) -> Node {
    map(vec![("v", value)])
}

fn a(value: Node) -> Node {
    map(vec![("a", value)])
}

#[track_caller]
fn check(cases: Vec<(Node, &str)>) {
    for (n, (node, want)) in cases.into_iter().enumerate() {
        assert_eq!(to_string(&node), want, "case {n}: {node:?}");
    }
}

#[test]
fn encode_yaml_scalars_in_maps() {
    // testdata/encode.yaml, "Basic string values" .. "Null and empty string"
    check(vec![
        (v(s("hi")), "v: hi\n"),
        (v(s("true")), "v: \"true\"\n"),
        (v(s("false")), "v: \"false\"\n"),
        (v(Node::bool(true)), "v: true\n"),
        (v(Node::bool(false)), "v: false\n"),
        (v(i(10)), "v: 10\n"),
        (v(i(-10)), "v: -10\n"),
        (v(Node::new(Value::UInt(42))), "v: 42\n"),
        (v(i(4294967296)), "v: 4294967296\n"),
        (v(s("10")), "v: \"10\"\n"),
        (v(f(0.1)), "v: 0.1\n"),
        (v(f(0.99)), "v: 0.99\n"),
        (v(f(-0.1)), "v: -0.1\n"),
        (v(f(f64::INFINITY)), "v: .inf\n"),
        (v(f(f64::NEG_INFINITY)), "v: -.inf\n"),
        (v(f(f64::NAN)), "v: .nan\n"),
        (v(Node::null()), "v: null\n"),
        (v(s("")), "v: \"\"\n"),
    ]);
}

#[test]
fn encode_yaml_collections() {
    check(vec![
        (v(seq(vec![s("A"), s("B")])), "v:\n    - A\n    - B\n"),
        (v(seq(vec![s("A"), s("B\nC")])), "v:\n    - A\n    - |-\n      B\n      C\n"),
        (
            v(seq(vec![s("A"), i(1), map(vec![("B", seq(vec![i(2), i(3)]))])])),
            "v:\n    - A\n    - 1\n    - B:\n        - 2\n        - 3\n",
        ),
        (v(s("\nhi")), "v: |-\n\n    hi\n"),
        (v(seq(vec![map(vec![("v1", s("\nhi"))])])), "v:\n    - v1: |-\n\n        hi\n"),
        (a(map(vec![("b", s("c"))])), "a:\n    b: c\n"),
        (
            a(map(vec![("b", seq(vec![map(vec![("c", i(1)), ("d", i(2))])]))])),
            "a:\n    b:\n        - c: 1\n          d: 2\n",
        ),
        (map(vec![]), "{}\n"),
        (a(Node::null()), "a: null\n"),
        (a(seq(vec![i(1), i(2)])), "a:\n    - 1\n    - 2\n"),
        (map(vec![("<<", seq(vec![]))]), "'<<': []\n"),
        (map(vec![("foo", s("<<"))]), "foo: '<<'\n"),
        // yaml_test.go marshalTests: "bug: question mark in value"
        (map(vec![("foo", map(vec![("bar", s("a?bc"))]))]), "foo:\n    bar: a?bc\n"),
    ]);
}

#[test]
fn encode_yaml_quoting() {
    check(vec![
        (a(s("-")), "a: '-'\n"),
        (a(s("<foo>")), "a: <foo>\n"),
        (a(s("1:1")), "a: '1:1'\n"),
        (a(s("\0")), "a: \"\\0\"\n"),
        (a(s("你好")), "a: 你好\n"),
        (a(s("2015-02-24T18:19:39Z")), "a: \"2015-02-24T18:19:39Z\"\n"),
        (a(s("b: c")), "a: 'b: c'\n"),
        (a(s("Hello #comment")), "a: 'Hello #comment'\n"),
        (a(s("你好 #comment")), "a: '你好 #comment'\n"),
        (a(s("\t\n\t\n")), "a: \"\\t\\n\\t\\n\"\n"),
        (a(s("true")), "a: \"true\"\n"),
        (a(s("off")), "a: 'off'\n"),
        (a(Node::bool(true)), "a: true\n"),
        (
            a(s(
                "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 ",
            )),
            "a: 'abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 1234567890 '\n",
        ),
        // "WithQuotePreference tests - QuoteLegacy" (what Marshal uses)
        (v(s("null")), "v: \"null\"\n"),
        (v(s("123")), "v: \"123\"\n"),
        (v(s(" hello")), "v: ' hello'\n"),
        (v(s("hello ")), "v: 'hello '\n"),
        (v(s(": hello")), "v: ': hello'\n"),
        (v(s("-")), "v: '-'\n"),
        (v(s("hello")), "v: hello\n"),
    ]);
}

#[test]
fn encode_yaml_top_level_scalar_styles() {
    // "Scalar style encoding tests", "Whitespace-only strings", "Whitespace with content"
    check(vec![
        (s("\n"), "\"\\n\"\n"),
        (s("hello\nworld"), "|-\n    hello\n    world\n"),
        (s("hello"), "hello\n"),
        (s("123"), "\"123\"\n"),
        (s("true"), "\"true\"\n"),
        (
            s("This is a longer string\nwith multiple lines\nthat should use literal style"),
            "|-\n    This is a longer string\n    with multiple lines\n    that should use literal style\n",
        ),
        (
            s(" This starts with space\nand is long enough\nfor literal style"),
            "|4-\n     This starts with space\n    and is long enough\n    for literal style\n",
        ),
        (s("a\n"), "|\n    a\n"),
        (s("a\nb"), "|-\n    a\n    b\n"),
        (s(" a\n"), "|4\n     a\n"),
        (s("\n\n"), "\"\\n\\n\"\n"),
        (s(" \n"), "\" \\n\"\n"),
        (s("\t\n"), "\"\\t\\n\"\n"),
        (s(" \n "), "\" \\n \"\n"),
        (s("\n \n"), "\"\\n \\n\"\n"),
        (s("\t \n\t"), "\"\\t \\n\\t\"\n"),
        (s("   \n   "), "\"   \\n   \"\n"),
        (s("\n\n\n"), "\"\\n\\n\\n\"\n"),
        (s(" \t\n \t"), "\" \\t\\n \\t\"\n"),
        (s("hello\n"), "|\n    hello\n"),
        (s(" hello\n"), "|4\n     hello\n"),
        (s(" \nhello"), "\" \\nhello\"\n"),
        (s("  hello  \n"), "\"  hello  \\n\"\n"),
        (s("hello  \n"), "\"hello  \\n\"\n"),
        (s("hello\n  "), "\"hello\\n  \"\n"),
    ]);
}

#[test]
fn marshal_tests_simple_values() {
    // yaml_test.go marshalTests
    check(vec![
        (Node::null(), "null\n"),
        (i(123), "123\n"),
        (f(-0.0), "-0\n"),
        (s("\t\n"), "\"\\t\\n\"\n"),
        (map(vec![("a", i(1))]), "a: 1\n"),
        (map(vec![("a", f(1.0))]), "a: 1\n"),
        (map(vec![("a", s("3s"))]), "a: 3s\n"),
        (map(vec![("a", s("1.2.3.4"))]), "a: 1.2.3.4\n"),
        (map(vec![("a", i(1)), ("b", i(2)), ("c", i(3))]), "a: 1\nb: 2\nc: 3\n"),
        (map(vec![("hello", s("world"))]), "hello: world\n"),
        (seq(vec![]), "[]\n"),
    ]);
}

#[test]
fn indentation_quirks() {
    // traced: increaseIndent adds 2 inside a sequence item and aligns to a multiple of 4 elsewhere
    let secretbox = map(vec![(
        "secretbox",
        map(vec![(
            "keys",
            seq(vec![map(vec![("name", s("key2")), ("secret", s("45yd2Ke+sytiICojDf8aibTfgt99nzJmO53cjDqrCto="))])]),
        )]),
    )]);
    let doc = map(vec![(
        "config",
        map(vec![(
            "resources",
            seq(vec![map(vec![("providers", seq(vec![secretbox])), ("resources", seq(vec![s("secrets")]))])]),
        )]),
    )]);
    assert_eq!(
        to_string(&doc),
        "config:\n    resources:\n        - providers:\n            - secretbox:\n                keys:\n                    - name: key2\n                      secret: 45yd2Ke+sytiICojDf8aibTfgt99nzJmO53cjDqrCto=\n          resources:\n            - secrets\n"
    );
    check(vec![
        // sequences directly inside sequences share the line of the outer "- "
        (seq(vec![seq(vec![s("a"), s("b")]), seq(vec![s("c")])]), "- - a\n  - b\n- - c\n"),
        (v(seq(vec![seq(vec![i(1), i(2)])])), "v:\n    - - 1\n      - 2\n"),
        (seq(vec![seq(vec![seq(vec![s("x")])])]), "- - - x\n"),
        (seq(vec![map(vec![("a", seq(vec![s("b")]))])]), "- a:\n    - b\n"),
        (seq(vec![map(vec![("a", map(vec![("b", s("c"))]))])]), "- a:\n    b: c\n"),
        (seq(vec![map(vec![]), seq(vec![]), Node::null()]), "- {}\n- []\n- null\n"),
        (map(vec![("a", map(vec![])), ("b", seq(vec![]))]), "a: {}\nb: []\n"),
        (seq(vec![s("a\nb")]), "- |-\n  a\n  b\n"),
        (v(seq(vec![seq(vec![s(" x\ny")])])), "v:\n    - - |4-\n         x\n        y\n"),
        // literal as the last value: no extra blank line
        (map(vec![("k", s("a\n")), ("l", s("b"))]), "k: |\n    a\nl: b\n"),
        (map(vec![("k", s("a\n\n")), ("l", s("b"))]), "k: |+\n    a\n\nl: b\n"),
    ]);
}

#[test]
fn complex_keys() {
    let long = "k".repeat(129);
    let limit = "k".repeat(128);
    check(vec![
        (map(vec![(limit.as_str(), s("v"))]), format!("{limit}: v\n").leak()),
        (map(vec![(long.as_str(), s("v"))]), format!("? {long}\n: v\n").leak()),
        (map(vec![(long.as_str(), map(vec![("x", s("z"))]))]), format!("? {long}\n:   x: z\n").leak()),
        (map(vec![(long.as_str(), seq(vec![s("z")]))]), format!("? {long}\n:   - z\n").leak()),
        (map(vec![(long.as_str(), map(vec![]))]), format!("? {long}\n: {{}}\n").leak()),
        (map(vec![("a\nb", s("v"))]), "? |-\n    a\n    b\n: v\n"),
        (map(vec![("a\n", s("v"))]), "? |\n    a\n: v\n"),
        (map(vec![("\n", s("v"))]), "? \"\\n\"\n: v\n"),
        (map(vec![("x", map(vec![(long.as_str(), i(1))]))]), format!("x:\n    ? {long}\n    : 1\n").leak()),
        (seq(vec![map(vec![(long.as_str(), i(1))])]), format!("- ? {long}\n  : 1\n").leak()),
        (map(vec![("", s("v"))]), "\"\": v\n"),
        (map(vec![("true", s("v")), ("yes", s("v")), ("1", s("v"))]), "\"true\": v\n'yes': v\n\"1\": v\n"),
    ]);
}

#[test]
fn plain_scalar_analysis() {
    // traced through analyzeScalar/selectScalarStyle: indicators force single quotes, anything single quotes
    // cannot hold (tabs, specials, spaces next to breaks) forces double quotes
    for (text, want) in [
        ("-a", "-a"),
        ("- a", "'- a'"),
        ("-\ta", "\"-\\ta\""),
        ("?a", "?a"),
        ("? a", "'? a'"),
        ("?", "'?'"),
        (":a", ":a"),
        (":", "':'"),
        ("a:b", "a:b"),
        ("a:", "'a:'"),
        ("a: b", "'a: b'"),
        ("a#b", "a#b"),
        ("a #b", "'a #b'"),
        ("#a", "'#a'"),
        ("a[b]{c},d", "a[b]{c},d"),
        ("a?b", "a?b"),
        ("---", "'---'"),
        ("---a", "'---a'"),
        ("...", "'...'"),
        ("--", "--"),
        ("..", ".."),
        ("'a", "'''a'"),
        ("a'b", "a'b"),
        ("\"a", "'\"a'"),
        ("a\"b", "a\"b"),
        (" a", "' a'"),
        ("a ", "'a '"),
        ("a  b", "a  b"),
        ("a\tb", "\"a\\tb\""),
        ("a\rb", "\"a\\rb\""),
        ("a\u{85}b", "\"a\\Nb\""),
        ("a\u{9f}b", "\"a\\x9Fb\""),
        ("a\u{7f}", "\"a\\x7F\""),
        ("a\u{1b}", "\"a\\e\""),
        ("\u{7}\u{8}\u{b}\u{c}", "\"\\a\\b\\v\\f\""),
        ("a\u{1}", "\"a\\x01\""),
        ("a\\b", "a\\b"),
        ("a\u{a0}b", "a\u{a0}b"),
        ("€", "€"),
        ("😀", "\"\\U0001F600\""),
        ("a😀 \"b\"", "\"a\\U0001F600 \\\"b\\\"\""),
        ("a\u{feff}b", "\"a\\uFEFFb\""),
        ("\u{feff}a b\u{e9}\u{a0}\u{20ac}", "\"\\uFEFF\\x61\\x20\\x62\\xE9\\_\\u20AC\""),
        ("a\u{fffe}", "\"a\\uFFFE\""),
        ("a\u{fffd}", "a\u{fffd}"),
        ("a\u{2028}b", "'a\u{2028}    b'"),
        ("a \u{2028}b", "\"a \\Lb\""),
    ] {
        assert_eq!(to_string(&v(s(text))), format!("v: {want}\n"), "{text:?}");
    }
    for first in ["!", "&", "*", "|", ">", "%", "@", "`", "[", "]", "{", "}", ","] {
        let text = format!("{first}x");
        assert_eq!(to_string(&v(s(&text))), format!("v: '{text}'\n"), "{text:?}");
    }
}

#[test]
fn old_bools_and_resolvable_strings() {
    for text in ["y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"] {
        assert_eq!(to_string(&v(s(text))), format!("v: '{text}'\n"));
    }
    for text in ["1:20", "-1:20:30.5", "<<"] {
        assert_eq!(to_string(&v(s(text))), format!("v: '{text}'\n"));
    }
    for text in [
        "true",
        "False",
        "NULL",
        "~",
        "",
        "0",
        "-0",
        "0x1F",
        "0o17",
        "0b1",
        "1_000",
        "1e3",
        ".5",
        ".inf",
        "-.Inf",
        ".NaN",
        "2001-12-14",
        "2001-12-14 21:59:43.10",
        "9223372036854775808",
    ] {
        assert_eq!(to_string(&v(s(text))), format!("v: \"{text}\"\n"));
    }
    for text in ["yess", "nope", "2001-02-30", "2001-12-14T21:59:43", "1e999", "0x", "1.2.3", "+", ".", "1:60"] {
        assert_eq!(to_string(&v(s(text))), format!("v: {text}\n"));
    }
}

#[test]
fn literal_block_scalars() {
    check(vec![
        (v(s("a\nb\n")), "v: |\n    a\n    b\n"),
        (v(s("a\nb\n\n")), "v: |+\n    a\n    b\n\n"),
        (v(s("a\n\nb")), "v: |-\n    a\n\n    b\n"),
        (v(s("\n\nb")), "v: |-\n\n\n    b\n"),
        (v(s("a\n b")), "v: |-\n    a\n     b\n"),
        (v(s(" a\nb\n\n")), "v: |4+\n     a\n    b\n\n"),
        (v(s("\ta\nb")), "v: |-\n    \ta\n    b\n"),
        (v(s("a\u{2028}b\nc")), "v: |-\n    a\u{2028}    b\n    c\n"),
        (v(s("a\u{2029}\n")), "v: |+\n    a\u{2029}\n"),
        (v(s("a \nb")), "v: \"a \\nb\"\n"),
        (v(s("a\nb ")), "v: \"a\\nb \"\n"),
        (v(s("a\nb\u{1}")), "v: \"a\\nb\\x01\"\n"),
        (v(s("a\r\nb")), "v: \"a\\r\\nb\"\n"),
        (v(s("é\n😀")), "v: \"é\\n\\U0001F600\"\n"),
        (s("a\n\n"), "|+\n    a\n\n"),
    ]);
}

#[test]
fn go_float_formatting() {
    for (value, want) in [
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (123456.0, "123456"),
        (100.0, "100"),
        (1.0, "1"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1.5e-7, "1.5e-07"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e21, "1e+21"),
        (1e100, "1e+100"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (-1e-10, "-1e-10"),
        (123.456, "123.456"),
    ] {
        let mut out = String::new();
        push_go_float(&mut out, value);
        assert_eq!(out, want, "{value:e}");
    }
    check(vec![
        (v(Node::new(Value::Int(i64::MIN))), "v: -9223372036854775808\n"),
        (v(Node::new(Value::UInt(u64::MAX))), "v: 18446744073709551615\n"),
    ]);
}

#[test]
fn sorted_output_order() {
    // yaml_test.go TestSortedOutput, the string keys
    let order = [
        "", ".1", ".2", ".a", "1", "2", "a!10", "a/0001", "a/002", "a/3", "a/10", "a/11", "a/0012", "a/100", "a~10",
        "ab/1", "b/1", "b/01", "b/2", "b/02", "b/3", "b/03", "b1", "b01", "b3", "c2.10", "c10.2", "d1", "d7", "d7abc",
        "d12", "d12a", "e2b", "e4b", "e21a",
    ];
    for (x, a) in order.iter().enumerate() {
        for (y, b) in order.iter().enumerate() {
            assert_eq!(go_map_key_cmp(a, b), x.cmp(&y), "{a:?} vs {b:?}");
        }
    }
    let mut shuffled: Vec<&str> = order.iter().rev().copied().collect();
    shuffled.rotate_left(7);
    shuffled.sort_by(|a, b| go_map_key_cmp(a, b));
    assert_eq!(shuffled, order);
}

#[test]
fn key_order_differs_from_byte_order() {
    assert_eq!(go_map_key_cmp("a_", "aB"), Ordering::Less); // bytes: "aB" < "a_"
    assert_eq!(go_map_key_cmp("a9", "a10"), Ordering::Less);
    assert_eq!(go_map_key_cmp("B", "a"), Ordering::Less);
    assert_eq!(go_map_key_cmp("node-role.kubernetes.io/control-plane", "node.kubernetes.io/exclude"), Ordering::Less);
    assert_eq!(go_map_key_cmp("é1", "é10"), Ordering::Less);
    assert_eq!(go_map_key_cmp("x", "x"), Ordering::Equal);
    // numbers too long for int64 wrap as in Go, but the order stays total
    let big = "9".repeat(40);
    assert_ne!(go_map_key_cmp(&big, "1"), Ordering::Equal);
}

#[test]
fn multi_document_join() {
    let docs = [map(vec![("a", i(1))]), map(vec![]), s("x")];
    assert_eq!(to_string_multi(&docs), "a: 1\n---\n{}\n---\nx\n");
    assert_eq!(to_string_multi(&[]), "");
    let mut out = String::from("prefix\n");
    write_document(&mut out, &docs[0]);
    assert_eq!(out, "prefix\na: 1\n");
}

#[test]
fn never_panics_on_odd_input() {
    let mut odd: Vec<String> = (0u32..0x250).filter_map(char::from_u32).map(|c| format!("{c}x{c}")).collect();
    odd.extend(
        ["\u{feff}", "\u{feff}\n", "\u{2028}", "\u{2029}\u{2029}", "\u{85}", "\r", "\r\n", " ", "  \n", "\n "]
            .map(String::from),
    );
    odd.extend((0x1F300u32..0x1F310).filter_map(char::from_u32).map(String::from));
    odd.push("x".repeat(1 << 20));
    odd.push(format!("{}\n{}", " ".repeat(1000), "y".repeat(1000)));
    for text in &odd {
        let doc = map(vec![(text.as_str(), seq(vec![s(text), map(vec![(text.as_str(), s(text))])]))]);
        let out = to_string(&doc);
        assert!(out.ends_with('\n'));
    }
    for value in [f64::MIN_POSITIVE, -f64::MIN_POSITIVE, f64::EPSILON, -0.0, f64::NAN] {
        let _ = to_string(&v(f(value)));
    }
}

#[test]
fn deep_nesting() {
    // go-yaml's decoder stops at depth 10000; make sure that much nesting renders on a test thread's stack
    let handle = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut node = s("leaf");
            for depth in 0..10_000 {
                node = if depth % 2 == 0 { seq(vec![node]) } else { map(vec![("k", node)]) };
            }
            let out = to_string(&node);
            std::mem::forget(node); // the derived Drop of Node recurses too; not what this test is about
            out.len()
        })
        .unwrap();
    assert!(handle.join().unwrap() > 10_000);
}

#[test]
fn key_order_doc_examples() {
    assert_eq!(go_map_key_cmp("1a", "1_"), Ordering::Less);
    assert_eq!(go_map_key_cmp("a_", "aB"), Ordering::Less);
}
