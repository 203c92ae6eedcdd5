// SPDX-License-Identifier: GPL-2.0
/* The C side of the layout check (kmod_common/c_layout.rs), compiled into kmod_uintr. */
#include "../kmod_common/c_layout.c"
