#!/bin/sh
# run.sh — run the libFuzzer targets (build/fuzz/fuzz_*) on their corpora
# (build/fuzz/corpus/<name>/, see seeds.sh) for a fixed time each, a few at
# a time, and report per target the executions, coverage and result; the
# last line is "N passed, N failed" like tests/run.sh.  Crash inputs go to
# build/fuzz/artifacts/<name>/, logs to build/fuzz/logs/<name>.log.
#   usage: sh tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [NAME...]
#   (defaults: 60 s, 2 at a time, every built target; NAME is e.g. json)
# Exit 0 when every target passed, 1 when one failed, 77 (skipped) when no
# target is built, unless FUZZ_REQUIRE=1 (then 1).
cd "$(dirname "$0")/../.." || exit 1
LC_ALL=C; export LC_ALL
secs=60 jobs=2
while getopts t:j: o; do
    case $o in
    t) secs=$OPTARG ;;
    j) jobs=$OPTARG ;;
    *) echo "usage: sh tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [NAME...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
B=build/fuzz
names=$*
if [ -z "$names" ]; then
    for f in $B/fuzz_*; do [ -x "$f" ] && names="$names ${f#$B/fuzz_}"; done
fi
if [ -z "$names" ]; then
    echo "fuzz: no fuzz targets in $B (make fuzz-build; needs clang with libFuzzer)" >&2
    [ "${FUZZ_REQUIRE:-0}" = 1 ] && exit 1
    exit 77
fi

# Per target: the longest input (keeps seeds whole, mutations fast) and a
# dictionary.  Inputs beyond -max_len are cut by libFuzzer.
maxlen() {
    case $1 in
    model) echo 65536 ;; snap) echo 32768 ;; json|safetensors|tok) echo 16384 ;; *) echo 8192 ;;
    esac
}
dict() { [ -f tests/fuzz/$1.dict ] && echo "-dict=tests/fuzz/$1.dict"; }

# Leaks, ASan and UBSan reports (the targets stop at the first) all count as
# failures; an input running over 30 s is a hang; RSS over 2.5 GB or a
# single allocation that big is an out-of-memory failure.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

start() {
    n=$1
    mkdir -p "$B/corpus/$n" "$B/artifacts/$n" "$B/logs"
    # -len_control=0: large seeds (a model, a snapshot) are mutated at full length at once
    "$B/fuzz_$n" -max_total_time="$secs" -max_len="$(maxlen "$n")" -len_control=0 $(dict "$n") \
        -error_exitcode=1 -timeout_exitcode=1 -timeout=30 -rss_limit_mb=2560 -print_final_stats=1 \
        -artifact_prefix="$B/artifacts/$n/" "$B/corpus/$n" > "$B/logs/$n.log" 2>&1
    echo $? > "$B/logs/$n.rc"
}

report() {
    n=$1 log=$B/logs/$1.log
    rc=$(cat "$B/logs/$n.rc" 2>/dev/null || echo 1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    line=$(grep -E "^#[0-9]+[[:space:]].*cov: " "$log" | tail -n 1)
    [ -n "$execs" ] || execs=$(printf '%s' "$line" | sed -n 's/^#\([0-9]*\).*/\1/p')
    cov=$(printf '%s' "$line" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s' "$line" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s' "$line" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
    stats="${execs:-0} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
    if [ "$rc" = 0 ]; then
        pass=$((pass + 1))
        printf '  ok    fuzz_%s: %s\n' "$n" "$stats"
    else
        fail=$((fail + 1))
        what=$(grep -m 1 -o -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [a-z-]+|runtime error: .*|fuzz invariant broken at [^:]*:[0-9]*' "$log")
        unit=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
        printf '  FAIL  fuzz_%s: %s; %s (exit %s)\n        input %s, log %s\n' "$n" "$stats" \
            "${what:-see the log}" "$rc" "${unit:-none}" "$log"
    fi
}

pass=0 fail=0
set -- $names
while [ $# -gt 0 ]; do
    batch=
    i=0
    while [ $# -gt 0 ] && [ $i -lt "$jobs" ]; do
        [ -x "$B/fuzz_$1" ] || { echo "fuzz: no target $B/fuzz_$1" >&2; fail=$((fail + 1)); shift; continue; }
        start "$1" &
        batch="$batch $1"
        i=$((i + 1))
        shift
    done
    wait
    for n in $batch; do report "$n"; done
done
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
