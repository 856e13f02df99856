#!/bin/sh
# probe.sh CC — can CC build a libFuzzer target with ASan and UBSan?
# Exit 0 if so; otherwise print why on stderr and exit 77 (skipped), or 1
# when FUZZ_REQUIRE=1 (CI: a missing toolchain must not pass silently).
cc=${1:-clang}
no() {
    [ "${FUZZ_REQUIRE:-0}" = 1 ] && w=FAIL || w=SKIP
    echo "fuzz: $w: $* (Debian: apt-get install clang libclang-rt-dev, or set FUZZ_CC=clang-NN)" >&2
    [ "${FUZZ_REQUIRE:-0}" = 1 ] && exit 1
    exit 77
}
command -v "$cc" >/dev/null 2>&1 || no "'$cc' not found"
d=$(mktemp -d "${TMPDIR:-/tmp}/dsv4-fuzzprobe.XXXXXX") || exit 1
trap 'rm -rf "$d"' EXIT
cat > "$d/t.c" <<'EOT'
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }
EOT
"$cc" -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >"$d/log" 2>&1 ||
    no "'$cc' cannot link a libFuzzer target: $(head -n 1 "$d/log")"
"$d/t" -runs=1 >"$d/log" 2>&1 || no "a libFuzzer test binary built by '$cc' does not run: $(tail -n 1 "$d/log")"
exit 0
