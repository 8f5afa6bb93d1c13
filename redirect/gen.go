// SPDX-License-Identifier: Apache-2.0

package redirect

// The objects are committed; clang is only needed to regenerate them (make generate).
//go:generate go tool -modfile=../tools.mod bpf2go -cc ${BPF_CLANG} -cflags ${BPF_CFLAGS} -target bpfel -type conn_meta -type target_key -type target_value -type peer_key -type local_key -type unit_path -type unix_path -type unix_target -type unix_origin redirect ../bpf/redirect.c -- -I../bpf/include
