//! Misuse of `#[synergy::preemptible]` fails to compile with the macro's own message, pointing
//! at the offending tokens (the expected compiler output is in `tests/ui/*.stderr`; regenerate
//! it with `TRYBUILD=overwrite cargo test -p synergy-macros --test compile_fail` after a
//! deliberate change and review the diff).

#[test]
fn misuse_fails_to_compile_with_a_clear_message() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
