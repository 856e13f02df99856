#!/bin/sh
# The test runner behind `make check`: unit tests, kernel tests (exit 77 =
# skipped, e.g. no GPU; their emulated twins always run) and CLI tests.
# Each test program prints its own "N passed, N failed" line; this script
# adds them up and prints the total as its last line.  Logs go to tests/out/.
#   usage: sh tests/run.sh [unit] [kernels] [cli] [fuzz]   (default: the first three)
# fuzz runs every libFuzzer target for $FUZZ_TIME seconds (default 60), two at
# a time (tests/fuzz/run.sh; `make fuzz-build` first); skipped without them.
cd "$(dirname "$0")/.." || exit 1
LC_ALL=C; export LC_ALL
out=tests/out
mkdir -p "$out"
pass=0 fail=0 skip=0
kinds=${*:-unit kernels cli}

# Sanitized builds (./configure --sanitize): every report must fail its test,
# also from a program a CLI test expects to fail (exit 1) or only expects to
# be non-zero.  So reports go to files under $san as well as the exit status
# 99, and a test that left a report fails with the report in its log.  User
# options come last and win.  Harmless for unsanitized builds.
san=$PWD/$out/sanitizer
rm -rf "$san" && mkdir -p "$san" || exit 1
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:exitcode=99:log_path=$san/asan:${ASAN_OPTIONS:-}"
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=99:log_path=$san/ubsan:${UBSAN_OPTIONS:-}"
export ASAN_OPTIONS UBSAN_OPTIONS
# reports LOG: append any sanitizer reports to LOG, clear them; false if any
reports() {
    set -- "$1" "$san"/*
    [ -e "$2" ] || return 0
    _rlog=$1; shift
    { echo "sanitizer reports:"; cat "$@"; } >>"$_rlog"
    rm -f "$@"
    return 1
}

count() { # $1 = name, $2 = exit status, $3 = log
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$3" | tail -n 1)
    if [ "$2" = 77 ]; then
        skip=$((skip + 1))
        printf '  SKIP  %s: %s\n' "$1" "$(tail -n 1 "$3")"
        return
    fi
    if [ -n "$line" ]; then
        p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    else
        p=0; f=0
    fi
    if [ "$2" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$f" = 0 ]; then
        printf '  ok    %s (%s)\n' "$1" "$line"
    else
        printf '  FAIL  %s (exit %s; log %s)\n' "$1" "$2" "$3"
        sed 's/^/        /' "$3" | tail -n 25
    fi
}

for kind in $kinds; do
    case $kind in
    unit)
        for t in build/tests/test_*; do
            [ -x "$t" ] || continue
            n=${t##*/}; log=$out/$n.log
            "$t" >"$log" 2>&1; st=$?
            reports "$log" || st=99
            count "$n" $st "$log"
        done ;;
    kernels)
        # each kernel test twice: on the GPU (skipped without one) and on
        # the emulated backend (kernels/emu.h), which runs everywhere
        for t in build/tests/kernels/test_* build/emu/tests/kernels/test_*; do
            [ -x "$t" ] || continue
            case $t in
            build/emu/*) n=kernels-emu/${t##*/}; log=$out/kernels-emu-${t##*/}.log ;;
            *) n=kernels/${t##*/}; log=$out/kernels-${t##*/}.log ;;
            esac
            "$t" >"$log" 2>&1; st=$?
            if [ "$st" = 77 ] && [ -n "$DSV4_REQUIRE_GPU" ]; then st=1; fi
            reports "$log" || st=99
            count "$n" $st "$log"
        done ;;
    cli)
        for t in tests/cli/t[0-9]*.sh; do
            [ -f "$t" ] || continue
            n=${t##*/}; n=${n%.sh}; log=$out/$n.log
            sh "$t" >"$log" 2>&1; st=$?
            reports "$log" || st=99
            count "$n" $st "$log"
        done ;;
    fuzz)
        log=$out/fuzz.log
        if ls build/fuzz/fuzz_* >/dev/null 2>&1 && sh tests/fuzz/seeds.sh >"$out/fuzz-seeds.log" 2>&1; then
            sh tests/fuzz/run.sh -t "${FUZZ_TIME:-60}" -j "${FUZZ_JOBS:-2}" >"$log" 2>&1; st=$?
        else
            echo "skipped: no fuzz targets built (make fuzz-build needs clang and libFuzzer)" >"$log"; st=77
            if [ -n "$FUZZ_REQUIRE" ]; then st=1; fi
        fi
        count fuzz $st "$log" ;;
    *) echo "run.sh: unknown test kind '$kind'" >&2; exit 2 ;;
    esac
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
