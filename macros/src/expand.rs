//! The transformation itself, on `proc_macro2` tokens so that it can be unit tested.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::visit_mut::VisitMut;
use syn::{parse_quote, Block, Expr, Ident, ItemFn, LitInt, Stmt};

/// How often a loop probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Every {
    Iteration,
    /// Once every N iterations (N ≥ 2; `every = 1` is the same as no argument).
    Nth(u32),
}

fn parse_args(attr: TokenStream) -> syn::Result<Every> {
    if attr.is_empty() {
        return Ok(Every::Iteration);
    }
    let mut every = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("every") {
            if every.is_some() {
                return Err(meta.error("`every` given twice"));
            }
            let lit: LitInt = meta.value()?.parse()?;
            let n: u32 = lit
                .base10_parse()
                .map_err(|_| syn::Error::new(lit.span(), "`every` must be an integer between 1 and 4294967295"))?;
            if n == 0 {
                return Err(syn::Error::new(
                    lit.span(),
                    "`every` must be at least 1: a loop cannot probe every 0 iterations",
                ));
            }
            every = Some(if n == 1 { Every::Iteration } else { Every::Nth(n) });
            Ok(())
        } else {
            Err(meta.error("unknown argument: #[synergy::preemptible] takes nothing or `every = N`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(every.unwrap_or(Every::Iteration))
}

pub fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let every = parse_args(attr)?;
    let mut f: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(e.span(), "#[synergy::preemptible] applies to functions and methods (with a body)")
    })?;
    if let Some(c) = &f.sig.constness {
        return Err(syn::Error::new_spanned(
            c,
            "#[synergy::preemptible] cannot instrument a `const fn`: a probe is not const",
        ));
    }
    if let Some(a) = &f.sig.asyncness {
        return Err(syn::Error::new_spanned(
            a,
            "#[synergy::preemptible] cannot instrument an `async fn`: a probe parks the green thread that polls it, \
             with the executor's state on its stack; yield to the executor instead",
        ));
    }
    Probes { every }.visit_block_mut(&mut f.block);
    f.block.stmts.insert(0, probe());
    Ok(quote!(#f))
}

fn probe() -> Stmt {
    parse_quote!(::synergy::preempt_point();)
}

/// Adds the probes to every loop of a body.
struct Probes {
    every: Every,
}

impl Probes {
    /// The statements a loop body starts with.
    fn instrument(&self, body: &mut Block, countdown: &Ident) {
        match self.every {
            Every::Iteration => body.stmts.insert(0, probe()),
            Every::Nth(n) => {
                let stmt: Stmt = parse_quote! {
                    if { #countdown -= 1; #countdown == 0 } {
                        #countdown = #n;
                        ::synergy::preempt_point();
                    }
                };
                body.stmts.insert(0, stmt);
            }
        }
    }

    /// `loop_expr`, with its countdown declared before it when probing every N iterations.
    fn wrap(&self, loop_expr: &mut Expr, countdown: Ident) {
        if let Every::Nth(n) = self.every {
            let inner = std::mem::replace(loop_expr, Expr::Verbatim(TokenStream::new()));
            *loop_expr = parse_quote!({
                #[allow(unused_mut)]
                let mut #countdown: u32 = #n;
                #inner
            });
        }
    }
}

impl VisitMut for Probes {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // Inner loops first (and closures' loops, through the default traversal).
        syn::visit_mut::visit_expr_mut(self, e);
        // Mixed-site hygiene: the user's code cannot see or clash with the countdown.
        let countdown = Ident::new("__synergy_probe_countdown", Span::mixed_site());
        let body = match e {
            Expr::Loop(l) => &mut l.body,
            Expr::While(l) => &mut l.body,
            Expr::ForLoop(l) => &mut l.body,
            _ => return,
        };
        self.instrument(body, &countdown);
        self.wrap(e, countdown);
    }

    /// Items inside the body (nested `fn`s, impls) are other functions: not instrumented.
    fn visit_item_mut(&mut self, _item: &mut syn::Item) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expands_to(attr: TokenStream, item: TokenStream, want: TokenStream) {
        let got = expand(attr, item).expect("expands");
        let want: ItemFn = syn::parse2(want).expect("the expectation is a function");
        assert_eq!(got.to_string(), quote!(#want).to_string());
    }

    #[test]
    fn probes_at_entry_and_every_loop_back_edge() {
        expands_to(
            quote!(),
            quote! {
                fn sum(v: &[u64], n: usize) -> u64 {
                    let mut acc = 0;
                    for x in v { acc += x; }
                    let mut i = 0;
                    while i < n { i += 1; }
                    'outer: loop { loop { break 'outer; } }
                    acc
                }
            },
            quote! {
                fn sum(v: &[u64], n: usize) -> u64 {
                    ::synergy::preempt_point();
                    let mut acc = 0;
                    for x in v { ::synergy::preempt_point(); acc += x; }
                    let mut i = 0;
                    while i < n { ::synergy::preempt_point(); i += 1; }
                    'outer: loop { ::synergy::preempt_point(); loop { ::synergy::preempt_point(); break 'outer; } }
                    acc
                }
            },
        );
    }

    #[test]
    fn loops_in_closures_are_probed_and_nested_items_are_not() {
        expands_to(
            quote!(),
            quote! {
                fn f(v: Vec<u64>) -> u64 {
                    fn helper() { loop {} }
                    let g = |n: u64| { let mut s = 0; for i in 0..n { s += i; } s };
                    v.into_iter().map(g).sum()
                }
            },
            quote! {
                fn f(v: Vec<u64>) -> u64 {
                    ::synergy::preempt_point();
                    fn helper() { loop {} }
                    let g = |n: u64| { let mut s = 0; for i in 0..n { ::synergy::preempt_point(); s += i; } s };
                    v.into_iter().map(g).sum()
                }
            },
        );
    }

    #[test]
    fn every_n_keeps_a_countdown_per_loop() {
        let got = expand(quote!(every = 64), quote! { fn f() { loop { for _ in 0..3 {} } } }).unwrap().to_string();
        // Entry probe, then the outer loop's countdown block, the inner one's inside its body.
        let entry = got.find(":: synergy :: preempt_point () ;").expect("entry probe");
        let outer = got.find("let mut __synergy_probe_countdown : u32 = 64u32 ; loop").expect("outer countdown");
        let inner = got.find("let mut __synergy_probe_countdown : u32 = 64u32 ; for").expect("inner countdown");
        assert!(entry < outer && outer < inner, "{got}");
        assert_eq!(got.matches("__synergy_probe_countdown -= 1").count(), 2, "{got}");
        assert_eq!(got.matches("__synergy_probe_countdown = 64u32 ;").count(), 2, "{got}");
        assert_eq!(got.matches("preempt_point").count(), 3, "{got}");
    }

    #[test]
    fn every_1_is_every_iteration() {
        let a = expand(quote!(every = 1), quote! { fn f() { loop {} } }).unwrap().to_string();
        let b = expand(quote!(), quote! { fn f() { loop {} } }).unwrap().to_string();
        assert_eq!(a, b);
    }

    #[test]
    fn misuse_is_a_clear_error() {
        let err = |attr: TokenStream, item: TokenStream| expand(attr, item).unwrap_err().to_string();
        assert!(err(
            quote!(),
            quote!(
                struct S;
            )
        )
        .contains("applies to functions"));
        assert!(err(
            quote!(every = 0),
            quote!(
                fn f() {}
            )
        )
        .contains("at least 1"));
        assert!(err(
            quote!(often),
            quote!(
                fn f() {}
            )
        )
        .contains("unknown argument"));
        assert!(err(
            quote!(every = 2, every = 3),
            quote!(
                fn f() {}
            )
        )
        .contains("given twice"));
        assert!(err(
            quote!(every = -1),
            quote!(
                fn f() {}
            )
        )
        .contains("between 1 and"));
        assert!(err(
            quote!(),
            quote!(
                const fn f() {}
            )
        )
        .contains("const fn"));
        assert!(err(
            quote!(),
            quote!(
                async fn f() {}
            )
        )
        .contains("async fn"));
    }
}
