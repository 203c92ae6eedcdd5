savedcmd_kmod_ipi/kmod_ipi.o := OBJTREE=/root/.cache/synergy/kernel/linux-7.3-408772e9b025940d RUST_MODFILE=kmod_ipi/kmod_ipi rustc --edition=2021 -Zbinary_dep_depinfo=y -Astable_features -Aunused_features -Dnon_ascii_idents -Dunsafe_op_in_unsafe_fn -Wmissing_docs -Wrust_2018_idioms -Wunreachable_pub -Wclippy::all -Wclippy::as_ptr_cast_mut -Wclippy::as_underscore -Wclippy::cast_lossless -Aclippy::collapsible_if -Aclippy::collapsible_match -Wclippy::ignored_unit_patterns -Aclippy::incompatible_msrv -Wclippy::mut_mut -Wclippy::needless_bitwise_bool -Aclippy::needless_lifetimes -Wclippy::no_mangle_with_rust_abi -Wclippy::ptr_as_ptr -Wclippy::ptr_cast_constness -Wclippy::ref_as_ptr -Wclippy::undocumented_unsafe_blocks -Aclippy::uninlined_format_args -Wclippy::unnecessary_safety_comment -Wclippy::unnecessary_safety_doc -Aclippy::unwrap_or_default -Wrustdoc::missing_crate_level_docs -Wrustdoc::unescaped_backticks -Cpanic=abort -Cembed-bitcode=n -Clto=n -Cforce-unwind-tables=n -Ccodegen-units=1 -Csymbol-mangling-version=v0 -Crelocation-model=static -Zfunction-sections=n -Wclippy::float_arithmetic --target=/root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/scripts/target.json -Ctarget-feature=-sse,-sse2,-sse3,-ssse3,-sse4.1,-sse4.2,-avx,-avx2 -Zcf-protection=branch -Cjump-tables=n -Ctarget-cpu=x86-64 -Ztune-cpu=generic -Cno-redzone=y -Ccode-model=kernel -Copt-level=s -Cdebug-assertions=n -Coverflow-checks=y  --cfg MODULE  @/root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/include/generated/rustc_cfg -Zallow-features=arbitrary_self_types,asm_goto,generic_arg_infer,used_with_arg -Zcrate-attr=no_std -Zcrate-attr='feature(arbitrary_self_types,asm_goto,generic_arg_infer,used_with_arg)' -Zunstable-options --extern pin_init --extern kernel --extern zerocopy --extern zerocopy_derive --crate-type rlib -L /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/ --sysroot=/dev/null --out-dir kmod_ipi/ --emit=dep-info=kmod_ipi/.kmod_ipi.o.d --emit=obj=kmod_ipi/kmod_ipi.o kmod_ipi/kmod_ipi.rs   ; /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/tools/objtool/objtool --hacks=jump_label --hacks=noinstr --ibt --static-call --uaccess  --link  --module kmod_ipi/kmod_ipi.o

source_kmod_ipi/kmod_ipi.o := kmod_ipi/kmod_ipi.rs

deps_kmod_ipi/kmod_ipi.o := \
    $(wildcard include/config/X86_FRED) \
  kmod_ipi/../uapi/src/ioctl.rs \
  kmod_ipi/../uapi/src/ipi.rs \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libcore.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libkernel.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libffi.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libcompiler_builtins.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libpin_init.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libpin_init_internal.so \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libmacros.so \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libbuild_error.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libzerocopy.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libbindings.rmeta \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libzerocopy_derive.so \
  /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/rust/libuapi.rmeta \

kmod_ipi/kmod_ipi.o: $(deps_kmod_ipi/kmod_ipi.o)

$(deps_kmod_ipi/kmod_ipi.o):

kmod_ipi/kmod_ipi.o: $(wildcard /root/.cache/synergy/kernel/linux-7.3-408772e9b025940d/tools/objtool/objtool)
