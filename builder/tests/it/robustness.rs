//! No panic on any input: thousands of mangled variants of the sample cluster file go through parsing,
//! decoding, planning and config rendering; each must end in a result or an error, never a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use talforge_builder::machine_config::render::ClusterInputs;
use talforge_builder::plan::{PlanOverrides, resolve};
use talforge_builder::spec::{Catalog, ClusterSpec, Source};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// xorshift64*: a fixed, dependency-free sequence so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const NOISE: &[&str] = &[
    ":",
    "-",
    "[",
    "]",
    "{",
    "}",
    "#",
    "&a",
    "*a",
    "!!int",
    "|",
    ">",
    "'",
    "\"",
    "%",
    "@",
    " ",
    "\t",
    "\n",
    "0",
    "~",
    "null",
    "1e400",
    "-1",
    "99999999999999999999",
    "10.5.0.300/24",
    "v9.9.9",
    "https://",
    "$patch: delete",
    "<<: *a",
    "é",
    "\u{feff}",
];

fn mangle(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..=rng.below(3) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match rng.below(6) {
            0 if n > 1 => {
                lines.remove(rng.below(n));
            }
            1 => {
                let l = lines[rng.below(n)].clone();
                lines.insert(rng.below(n), l);
            }
            2 if n > 1 => {
                let (a, b) = (rng.below(n), rng.below(n));
                lines.swap(a, b);
            }
            3 => {
                let i = rng.below(n);
                let chars: Vec<char> = lines[i].chars().collect();
                let at = rng.below(chars.len() + 1);
                let mut s: String = chars[..at].iter().collect();
                s.push_str(NOISE[rng.below(NOISE.len())]);
                s.extend(&chars[at..]);
                lines[i] = s;
            }
            4 => {
                let i = rng.below(n);
                let cut = lines[i].chars().count();
                lines[i] = lines[i].chars().take(rng.below(cut + 1)).collect();
            }
            _ => lines.truncate(rng.below(n + 1)),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[test]
fn mangled_cluster_files_never_panic() {
    let catalog = Catalog::open(&repo()).unwrap();
    let base = std::fs::read_to_string(repo().join("testbed/labs/sample.yaml")).unwrap();
    let secrets = talforge_builder::lint::placeholder_secrets();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut rejected) = (0, 0);
    for _ in 0..3000 {
        let text = mangle(&base, &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), talforge_builder::Error> {
            let src = Source::parse(repo().join("testbed/labs/mangled.yaml"), text.clone())?;
            let spec: ClusterSpec = src.decode()?;
            let plan = resolve(&src, &spec, &catalog, &PlanOverrides::default())?;
            let inputs = ClusterInputs::new(&plan, &secrets)?;
            for n in &plan.nodes {
                inputs.node_config(n)?;
            }
            Ok(())
        }));
        match outcome {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) => {
                // Every rejection is a located message, never an internal error.
                assert_ne!(e.class(), talforge_builder::ErrorClass::Internal, "{e}\n--- input\n{text}");
                rejected += 1;
            }
            Err(_) => panic!("panicked on input:\n{text}"),
        }
    }
    eprintln!("{ok} accepted, {rejected} rejected");
    assert!(ok > 100 && rejected > 100, "the mutations should both keep and break files ({ok}/{rejected})");
}
