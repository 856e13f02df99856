# Shared helpers for the CLI tests (sourced by tests/cli/tNNNN-*.sh).
# Each script runs in a fresh scratch directory under tests/out/ with bin/ and
# build/tools/ first on PATH, and ends with `finish`, which prints
# "N passed, N failed".
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
PATH=$TOP/bin:$TOP/build/tools:$PATH; export PATH
FIXTURES=${DSV4_FIXTURES:-$TOP/../shared/fixtures}
T=$TOP/tests/out/$(basename "$0" .sh).d
rm -rf "$T" && mkdir -p "$T" && cd "$T" || exit 1
_pass=0 _fail=0

ok()   { _pass=$((_pass + 1)); echo "ok: $*"; }
bad()  { _fail=$((_fail + 1)); echo "FAILED: $*"; }

# expect CODE DESC -- CMD...   run CMD (stdout > out, stderr > err), check its exit status
expect() {
    _code=$1; _desc=$2; shift 3
    "$@" >out 2>err; _st=$?
    if [ "$_st" = "$_code" ]; then ok "$_desc"; else
        bad "$_desc (exit $_st, wanted $_code)"; sed 's/^/    err: /' err | head -n 10; fi
}
# grep_out PATTERN DESC / grep_err PATTERN DESC   check the last command's output
grep_out() { if grep -q -e "$1" out; then ok "$2"; else bad "$2 (stdout lacks '$1')"; head -n 20 out | sed 's/^/    out: /'; fi; }
grep_err() { if grep -q -e "$1" err; then ok "$2"; else bad "$2 (stderr lacks '$1')"; head -n 20 err | sed 's/^/    err: /'; fi; }
finish() { echo "$_pass passed, $_fail failed"; [ "$_fail" = 0 ]; }

# ---- binary token streams for the tests (dsv4-tokens(5)) ----

# oct N: byte N as a printf octal escape
oct() { printf '\\%03o' "$1"; }
# u32le N: N as 4 little-endian bytes
u32le() { printf "$(oct $(($1 & 255)))$(oct $(($1 >> 8 & 255)))$(oct $(($1 >> 16 & 255)))$(oct $(($1 >> 24 & 255)))"; }
# tokbin VOCAB FP_HEX IDS...: a binary token stream (dsv4-tokens(5), header 1.0)
tokbin() {
    _v=$1 _fp=$2; shift 2
    printf '\211TK4\r\n\032\n'          # signature
    u32le 1                              # major 1, minor 0
    u32le 0                              # flags, reserved
    u32le 56                             # header_bytes
    u32le "$_v"                          # vocab_size
    _i=0
    while [ $_i -lt 32 ]; do             # fingerprint
        _h=$(printf '%s' "$_fp" | cut -c $((2 * _i + 1))-$((2 * _i + 2)))
        printf "$(oct $((0x${_h:-00})))"
        _i=$((_i + 1))
    done
    for _id in "$@"; do u32le "$_id"; done
}
ZERO=0000000000000000000000000000000000000000000000000000000000000000   # an unknown fingerprint
