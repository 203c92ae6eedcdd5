//! Commands renamed when the CLI was grouped (CHANGELOG.md): `demo` is `run`, `loadgen` is
//! `load`, `microbench` is `bench interrupt`, `simulate` is `sim thesis`, the simulations under
//! `bench` moved to `sim`, and the load sweeps to `sweep`. For one release the old spellings
//! still work: the command line is rewritten to the new one before clap parses it, with a warning
//! naming the replacement. Nothing in this repository uses the old names.

/// Each old spelling (the words after `synergy`) and the words that replace it.
pub const RENAMED: &[(&[&str], &[&str])] = &[
    (&["demo"], &["run"]),
    (&["loadgen"], &["load"]),
    (&["microbench"], &["bench", "interrupt"]),
    (&["simulate"], &["sim", "thesis"]),
    (&["bench", "syrup-sim"], &["sim", "syrup"]),
    (&["bench", "shinjuku-sim"], &["sim", "shinjuku"]),
    (&["bench", "coresync-sim"], &["sim", "coresync"]),
    (&["bench", "idle"], &["sweep", "idle"]),
    (&["bench", "overload"], &["sweep", "overload"]),
    (&["bench", "burst"], &["sweep", "burst"]),
    (&["bench", "scale"], &["sweep", "scale"]),
];

/// `args` (with the program name first) with an old command spelling replaced by its new one,
/// and the warning to print if it was. A bare `synergy sweep <flags>` (the old sweep, flags and
/// no subcommand) becomes `synergy sweep preempt <flags>`.
pub fn rewrite(args: Vec<String>) -> (Vec<String>, Option<String>) {
    let words: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    for (old, new) in RENAMED {
        if words.len() >= old.len() && words[..old.len()] == **old {
            let mut out = vec![args[0].clone()];
            out.extend(new.iter().map(|w| w.to_string()));
            out.extend(args[1 + old.len()..].iter().cloned());
            let warning = format!(
                "'synergy {}' is now 'synergy {}'; the old name goes in the next release",
                old.join(" "),
                new.join(" ")
            );
            return (out, Some(warning));
        }
    }
    if words.first() == Some(&"sweep")
        && words.get(1).is_some_and(|w| w.starts_with('-') && !matches!(*w, "-h" | "--help"))
    {
        let mut out = vec![args[0].clone(), "sweep".into(), "preempt".into()];
        out.extend(args[2..].iter().cloned());
        return (
            out,
            Some(
                "'synergy sweep <flags>' is now 'synergy sweep preempt <flags>'; the old form goes in the next release"
                    .into(),
            ),
        );
    }
    (args, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn old_spellings_become_the_new_ones_with_a_warning() {
        let (a, w) = rewrite(argv("synergy bench coresync-sim --seeds 2"));
        assert_eq!(a, argv("synergy sim coresync --seeds 2"));
        assert!(w.unwrap().contains("'synergy sim coresync'"));
        let (a, _) = rewrite(argv("synergy sweep --loads 0.5 --modes none"));
        assert_eq!(a, argv("synergy sweep preempt --loads 0.5 --modes none"));
        for new in ["synergy run", "synergy bench ctx", "synergy sweep idle --loads 0.1", "synergy sweep --help"] {
            assert_eq!(rewrite(argv(new)), (argv(new), None), "{new} is left alone");
        }
    }
}
