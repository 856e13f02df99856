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
