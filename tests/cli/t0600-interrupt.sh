#!/bin/sh
# Interrupted and failed writes: SIGINT or SIGTERM at any moment during
# dsv4-convert, dsv4-quant, dsv4-prefill -o and dsv4-decode -o leaves the
# previous file intact or the complete new one, never a part, and no temp
# file; a file-size limit and a full device give a clear error, exit 1 and no
# file; a reader that closes the pipe early ends the writer with exit 1.
. "$(dirname "$0")/lib.sh"

same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi; }
absent() { if [ -e "$1" ]; then bad "$2 ($1 exists)"; else ok "$2"; fi; }
no_temps() { if ls -a | grep -q '\.tmp\.'; then bad "$1 (left: $(ls -a | grep '\.tmp\.' | tr '\n' ' '))"; else ok "$1"; fi; }
ids() { awk -v s="$1" -v n="$2" 'BEGIN { x = s; for (i = 0; i < n; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d\n", 2 + x % 1022 } }'; }

# A 221 MB checkpoint (tiny-v4-swa widened: hidden 1024, 64 experts of 1024),
# so that converting and re-encoding it take long enough to be interrupted.
sed -e 's/"hidden_size": 128/"hidden_size": 1024/' -e 's/"n_routed_experts": 16/"n_routed_experts": 64/' \
    -e 's/"moe_intermediate_size": 128/"moe_intermediate_size": 1024/' "$FIXTURES/tiny-v4-swa/config.json" > mid.json
expect 0 "a 221 MB synthetic checkpoint" -- dsv4-synth --config mid.json --seed 3 -o mid
expect 0 "its reference conversion" -- dsv4-convert -q -o mid-ref.dsv4 mid
expect 0 "an older file to be replaced" -- dsv4-convert -q -o old.dsv4 "$FIXTURES/tiny-v4-swa"

# interrupt NAME OLD NEW SIGNAL -- CMD...: with OUT holding OLD, run CMD (which
# writes OUT) and send SIGNAL after 0, 20, 50, ... ms; every time OUT must be
# OLD or NEW, byte for byte, and no temp file may remain; at least one run must
# have been cut short.  OUT is the file named by $out.
interrupt() {
    _name=$1 _old=$2 _new=$3 _sig=$4; shift 5
    _cut=0 _bad=0
    for _d in 0 0.02 0.05 0.1 0.15 0.2 0.3 0.4 0.6; do
        cp "$_old" "$out"
        "$@" >/dev/null 2>&1 &
        _pid=$!
        sleep $_d
        kill -$_sig $_pid 2>/dev/null
        wait $_pid; _st=$?
        [ $_st != 0 ] && _cut=$((_cut + 1))
        if cmp -s "$out" "$_old" || cmp -s "$out" "$_new"; then :; else
            _bad=$((_bad + 1)); echo "    $_name after ${_d}s (exit $_st): $out is neither the old nor the new file"
        fi
    done
    [ $_bad = 0 ] && ok "$_name: the old file or the whole new one, 9 times ($_cut cut short)" ||
        bad "$_name: $_bad partial files"
    [ $_cut -gt 0 ] && ok "$_name: $_sig interrupted at least one run" || bad "$_name: every run finished first"
    no_temps "$_name: no temp files"
}

out=out.dsv4
interrupt "convert, SIGINT" old.dsv4 mid-ref.dsv4 INT -- dsv4-convert -q -f -o out.dsv4 mid
interrupt "convert, SIGTERM" old.dsv4 mid-ref.dsv4 TERM -- dsv4-convert -q -f -o out.dsv4 mid
expect 0 "quant reference" -- dsv4-quant -q -R fp8-bf16 mid-ref.dsv4 q-ref.dsv4
interrupt "quant, SIGINT" old.dsv4 q-ref.dsv4 INT -- dsv4-quant -q -f -R fp8-bf16 mid-ref.dsv4 out.dsv4
interrupt "quant, SIGTERM" old.dsv4 q-ref.dsv4 TERM -- dsv4-quant -q -f -R fp8-bf16 mid-ref.dsv4 out.dsv4

expect 0 "convert tiny-v4" -- dsv4-convert -q -o tiny.dsv4 "$FIXTURES/tiny-v4"
{ echo 0; ids 5 400; } > p.txt
head -n 20 p.txt > p20.txt
expect 0 "an older snapshot" -- dsv4-prefill -q -m tiny.dsv4 -i p20.txt -o old.kv
expect 0 "the reference snapshot" -- dsv4-prefill -q -m tiny.dsv4 -i p.txt -o ref.kv
out=out.kv
interrupt "prefill -o, SIGINT" old.kv ref.kv INT -- dsv4-prefill -q -f -m tiny.dsv4 -i p.txt --chunk 4 --threads 1 -o out.kv
interrupt "prefill -o, SIGTERM" old.kv ref.kv TERM -- dsv4-prefill -q -f -m tiny.dsv4 -i p.txt --chunk 4 --threads 1 -o out.kv
expect 0 "the reference decode" -- dsv4-decode -q -m tiny.dsv4 -r ref.kv -n 40 --seed 1 --format none -o dref.kv
interrupt "decode -o, SIGINT" old.kv dref.kv INT -- dsv4-decode -q -f -m tiny.dsv4 -r ref.kv -n 40 --seed 1 --threads 1 --format none -o out.kv
interrupt "decode -o, SIGTERM" old.kv dref.kv TERM -- dsv4-decode -q -f -m tiny.dsv4 -r ref.kv -n 40 --seed 1 --threads 1 --format none -o out.kv
rm -f out.kv out.dsv4

# ---- a full disk: a file-size limit (RLIMIT_FSIZE) and /dev/full -----------

limited() { ( ulimit -f 64; "$@" ); }   # 64 blocks of 512 bytes: 32 KiB
expect 1 "convert under a 32 KiB file limit" -- limited dsv4-convert -q -o big.dsv4 mid
grep_err "big.dsv4.*File too large" "convert: the error names the file and the cause"
absent big.dsv4 "convert: no file"
expect 1 "quant under the limit" -- limited dsv4-quant -q -R fp8-bf16 mid-ref.dsv4 big.dsv4
grep_err "'big.dsv4'.*File too large" "quant: names the file and the cause"
absent big.dsv4 "quant: no file"
expect 1 "prefill -o under the limit" -- limited dsv4-prefill -q -m tiny.dsv4 -i p.txt -o big.kv
grep_err "cannot write 'big.kv': File too large" "prefill: names the file and the cause"
absent big.kv "prefill: no file"
expect 1 "decode -o under the limit" -- limited dsv4-decode -q -m tiny.dsv4 -r ref.kv -n 3 --format none -o big.kv
grep_err "big.kv.*File too large" "decode: names the file and the cause"
absent big.kv "decode: no file"
no_temps "no temp files after full disks"
if [ -w /dev/full ]; then
    expect 1 "prefill -o - to /dev/full" -- sh -c 'dsv4-prefill -q -m tiny.dsv4 -i p20.txt -o - > /dev/full'
    grep_err "cannot write standard output: No space left on device" "prefill: a clear message"
    expect 1 "decode tokens to /dev/full" -- sh -c 'dsv4-decode -q -m tiny.dsv4 -r ref.kv -n 3 > /dev/full'
    grep_err "standard output: write error: No space left on device" "decode: a clear message"
    expect 1 "kvdump to /dev/full" -- sh -c 'dsv4-kvdump ref.kv > /dev/full'
    grep_err "No space left on device" "kvdump: a clear message"
else
    echo "skip: no writable /dev/full"
fi

# ---- a reader that goes away ----------------------------------------------

{ dsv4-prefill -q -m tiny.dsv4 -i p.txt -o - 2>err; echo $? > st; } | head -c 100 > /dev/null
[ "$(cat st)" = 1 ] && ok "prefill -o - | head -c 100: exit 1" || bad "prefill into a closed pipe: exit $(cat st)"
grep_err "cannot write standard output: Broken pipe" "prefill: says the reader went away"
{ dsv4-decode -q -m tiny.dsv4 -r ref.kv -n 100000 --ignore-eos --format text -o gone.kv 2>err; echo $? > st; } | head -n 2 > two.txt
[ "$(cat st)" = 1 ] && ok "decode | head -n 2: exit 1" || bad "decode into a closed pipe: exit $(cat st)"
[ "$(wc -l < two.txt | tr -d ' ')" = 2 ] && ok "the two tokens arrived" || bad "head got: $(cat two.txt)"
absent gone.kv "decode -o: no snapshot when the token reader went away"
no_temps "no temp files at the end"

finish
