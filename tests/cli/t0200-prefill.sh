#!/bin/sh
# dsv4-prefill: logits do not depend on the chunk size or the thread count,
# --logits is the last row of --logits-all, text and binary token streams
# give the same results, the tokenizer fingerprint is checked, output safety,
# and bad input (ids out of range, broken streams, missing files, bad options).
. "$(dirname "$0")/lib.sh"

SWA=$FIXTURES/tiny-v4-swa
V=1024                    # vocab_size of the fixture
ROW=$((V * 4))            # bytes of one row of float32 logits

# the first 50 tokens of the fixture's goldens (I32 "tokens")
IDS='0 203 261 750 39 547 86 209 295 468 164 386 847 24 855 985 845 82 107 854
318 50 997 872 8 505 508 377 443 492 624 665 1005 816 1019 441 314 14 540 96
496 506 422 439 429 391 309 796 78 314'
N=50

# size FILE: its size in bytes
size() { wc -c < "$1" | tr -d ' '; }
# same A B DESC: files A and B are byte-identical
same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi; }
# has_size FILE BYTES DESC
has_size() { _s=$(size "$1" 2>/dev/null); if [ "$_s" = "$2" ]; then ok "$3"; else bad "$3 ($1: ${_s:-no file} bytes, wanted $2)"; fi; }
no_leftovers() {
    if ls -a | grep -q '\.tmp\.'; then bad "$1 (temp files left: $(ls -a | grep '\.tmp\.' | tr '\n' ' '))"
    else ok "$1"; fi
}
absent() { if [ -e "$1" ]; then bad "$2 ($1 exists)"; else ok "$2"; fi; }

expect 0 "convert tiny-v4-swa" -- dsv4-convert -q -o swa.dsv4 "$SWA"
printf '%s\n' "$IDS" > p.txt

# ---- chunking, threads, --logits vs --logits-all -------------------------

expect 0 "prefill --chunk 7 --logits-all" -- dsv4-prefill -m swa.dsv4 -i p.txt --chunk 7 --logits-all a7.f32 --logits l7.f32
grep_err "^dsv4-prefill: $N tokens in [0-9.]* s ([0-9.]* tokens/s); KV bf16: [0-9]* bytes" "summary: tokens, seconds, rate, KV bytes"
grep_err "bytes/token" "summary: bytes per token"
[ ! -s out ] && ok "nothing on stdout with file outputs" || bad "wrote to stdout"
has_size a7.f32 $((N * ROW)) "--logits-all is $N x $V float32"
has_size l7.f32 $ROW "--logits is $V float32"
expect 0 "prefill --chunk 50 --logits-all" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --chunk 50 --logits-all a50.f32
[ ! -s err ] && ok "-q: no summary" || bad "-q printed: $(head -n 2 err)"
same a7.f32 a50.f32 "chunks of 7 and of 50: identical logits"
tail -c $ROW a7.f32 > tail.f32
same tail.f32 l7.f32 "--logits is the last row of --logits-all"
expect 0 "default chunk, --logits only" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --logits l256.f32
same l256.f32 l7.f32 "--logits alone (no --logits-all) is the same row"
expect 0 "--chunk 1" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --chunk 1 --logits-all a1.f32
same a1.f32 a7.f32 "chunks of 1: identical logits"
expect 0 "--threads 1" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --threads 1 --chunk 13 --logits-all t1.f32
expect 0 "--threads 2" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --threads 2 --chunk 13 --logits-all t2.f32
same t1.f32 t2.f32 "1 and 2 threads: identical logits"

# --device: cpu is the reference; auto is cpu without a GPU; cuda without
# one (or in a build without CUDA) is a clear error, exit 1
expect 0 "--device cpu" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --device cpu --chunk 13 --logits-all dc.f32
same t1.f32 dc.f32 "--device cpu: the same logits"
if ! { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }; then
    expect 0 "--device auto without a GPU" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --device auto --chunk 13 --logits-all da.f32
    same t1.f32 da.f32 "--device auto without a GPU runs on the CPU"
    expect 1 "--device cuda without a GPU" -- dsv4-prefill -m swa.dsv4 -i p.txt --device cuda -o nogpu.kv
    grep_err "^dsv4-prefill: --device cuda: .*\(no CUDA device\|no CUDA backend\)" "--device cuda: says why"
    absent nogpu.kv "--device cuda failure leaves no snapshot"
fi
expect 2 "--device bad" -- dsv4-prefill -m swa.dsv4 -i p.txt --device tpu
grep_err "cpu, cuda or auto" "--device bad: lists the choices"
same t1.f32 a7.f32 "and the same as before"
expect 0 "the same run again" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --logits-all a7again.f32 --chunk 7
same a7again.f32 a7.f32 "deterministic across runs"

# stdin and stdout
dsv4-prefill -q -m swa.dsv4 --logits - < p.txt > lstdout.f32 2>err
[ $? = 0 ] && ok "tokens from stdin, --logits to stdout" || bad "stdin/stdout run failed: $(head -n 2 err)"
same lstdout.f32 l7.f32 "--logits - equals the file output"
dsv4-prefill -q -m swa.dsv4 -i - --chunk 9 --logits-all - < p.txt > astdout.f32 2>err
same astdout.f32 a7.f32 "--logits-all - equals the file output"

# the compact KV layout: runs, is chunk-invariant too, and is smaller
expect 0 "--kv compact --chunk 7" -- dsv4-prefill -m swa.dsv4 -i p.txt --kv compact --chunk 7 --logits-all c7.f32
grep_err "KV compact: [0-9]* bytes" "summary names the compact layout"
cbytes=$(sed -n 's/.*KV compact: \([0-9]*\) bytes.*/\1/p' err)
expect 0 "--kv compact --chunk 50" -- dsv4-prefill -q -m swa.dsv4 -i p.txt --kv compact --chunk 50 --logits-all c50.f32
same c7.f32 c50.f32 "compact: chunks of 7 and 50 identical"
expect 0 "--kv bf16" -- dsv4-prefill -m swa.dsv4 -i p.txt --kv bf16
bbytes=$(sed -n 's/.*KV bf16: \([0-9]*\) bytes.*/\1/p' err)
if [ -n "$cbytes" ] && [ -n "$bbytes" ] && [ "$cbytes" -lt "$bbytes" ]; then ok "compact state ($cbytes B) < bf16 ($bbytes B)"
else bad "compact state '$cbytes' is not smaller than bf16 '$bbytes'"; fi

expect 0 "--progress forces the progress line" -- dsv4-prefill --progress -m swa.dsv4 -i p.txt --chunk 10
grep_err "tokens.*(50/50)" "progress shows tokens done/total"
grep_err "tokens (.*/s)" "progress shows the rate"
expect 0 "no progress when stderr is not a terminal" -- dsv4-prefill -m swa.dsv4 -i p.txt --chunk 10
if grep -q '(50/50)' err; then bad "progress printed to a non-terminal"; else ok "no progress line by default"; fi

# an empty stream: nothing to run
: > empty.txt
expect 0 "empty stream --logits-all" -- dsv4-prefill -q -m swa.dsv4 -i empty.txt --logits-all e.f32
has_size e.f32 0 "empty stream: empty --logits-all"
expect 1 "empty stream --logits" -- dsv4-prefill -m swa.dsv4 -i empty.txt --logits e1.f32
grep_err "no tokens" "empty stream: no last logits"
absent e1.f32 "empty stream: no --logits file"

# ---- binary token streams ------------------------------------------------

tokbin 0 $ZERO $IDS > p.tok
has_size p.tok $((56 + N * 4)) "binary stream built with printf"
expect 0 "binary stream" -- dsv4-prefill -q -m swa.dsv4 -i p.tok --chunk 11 --logits-all b.f32
same b.f32 a7.f32 "binary and text streams: identical logits"
tokbin $V $ZERO $IDS > pv.tok
expect 0 "binary stream with vocab_size in the header" -- dsv4-prefill -q -m swa.dsv4 -i pv.tok --logits lb.f32
same lb.f32 l7.f32 "same last logits"
head -c $((56 + 4 * 20 + 2)) p.tok > trunc.tok
expect 1 "truncated binary stream" -- dsv4-prefill -m swa.dsv4 -i trunc.tok --logits x.f32
grep_err "'trunc.tok'.*truncated" "truncation is named with the file"
absent x.f32 "no output after an input error"
tokbin 0 $ZERO 5 1024 7 > big.tok
expect 1 "binary id out of range" -- dsv4-prefill -m swa.dsv4 -i big.tok
grep_err "'big.tok': token 1 (byte offset 60): id 1024 is out of range" "names the binary position"
printf 'GARBAGE' > junk.tok
expect 1 "not a token stream" -- dsv4-prefill -m swa.dsv4 -i junk.tok
grep_err "'junk.tok'" "names the file"

# the tokenizer fingerprint: a model with an embedded tokenizer.json
printf '{"version": "1.0", "model": {"type": "BPE"}}\n' > tokenizer.json
expect 0 "convert with a tokenizer" -- dsv4-convert -q -t tokenizer.json -o swat.dsv4 "$SWA"
if command -v b2sum >/dev/null 2>&1; then
    fp=$(b2sum -l 256 tokenizer.json | cut -c 1-64)
    tokbin $V "$fp" $IDS > good.tok
    expect 0 "stream with the model's tokenizer fingerprint" -- dsv4-prefill -q -m swat.dsv4 -i good.tok --logits lg.f32
    same lg.f32 l7.f32 "same logits"
else
    echo "skip: b2sum not installed, matching fingerprint not tested"
fi
tokbin $V 1111111111111111111111111111111111111111111111111111111111111111 $IDS > other.tok
expect 1 "stream made for another tokenizer" -- dsv4-prefill -m swat.dsv4 -i other.tok --logits lo.f32
grep_err "'other.tok' is not for model 'swat.dsv4'" "mismatch names both files"
grep_err "tokenizer 1111111111111111" "mismatch shows the stream's fingerprint"
absent lo.f32 "mismatch: no output"
expect 0 "unknown fingerprint is accepted" -- dsv4-prefill -q -m swat.dsv4 -i p.tok
expect 0 "a model without tokenizer.json does not check" -- dsv4-prefill -q -m swa.dsv4 -i other.tok

# ---- bad input and output safety -----------------------------------------

printf '0 5 17\n3 1024 9\n' > bad.txt
expect 1 "text id out of range" -- dsv4-prefill -m swa.dsv4 -i bad.txt --logits-all x.f32
grep_err "'bad.txt': line 2, column 3: id 1024 is out of range (vocab size 1024)" "names the line and column"
absent x.f32 "no output after an id out of range"
printf '0 5 1024\n' | dsv4-prefill -m swa.dsv4 >out 2>err
[ $? = 1 ] && ok "stdin: id out of range exits 1" || bad "stdin: id out of range did not exit 1"
grep_err "standard input: line 1, column 5: id 1024" "stdin: names standard input"
printf '0 5 x7\n' > junk.txt
expect 1 "text junk" -- dsv4-prefill -m swa.dsv4 -i junk.txt
grep_err "'junk.txt': line 1, column 5: unexpected 'x7'" "names the junk"
expect 1 "missing model" -- dsv4-prefill -m nosuch.dsv4 -i p.txt
grep_err "nosuch.dsv4" "names the missing model"
expect 1 "model that is not a model" -- dsv4-prefill -m p.txt -i p.txt
grep_err "p.txt" "names the bad model file"
expect 1 "missing token file" -- dsv4-prefill -m swa.dsv4 -i nosuch.txt
grep_err "cannot open 'nosuch.txt'" "names the missing token file"

cp l7.f32 keep.f32
expect 1 "existing output refused without -f" -- dsv4-prefill -m swa.dsv4 -i p.txt --logits keep.f32
grep_err "'keep.f32' already exists; use --force" "refusal explains --force"
printf 'x' > keep.f32
expect 0 "-f overwrites" -- dsv4-prefill -q -f -m swa.dsv4 -i p.txt --logits keep.f32
same keep.f32 l7.f32 "-f: new contents"
no_leftovers "no temp files left"

expect 2 "unknown option" -- dsv4-prefill -m swa.dsv4 --no-such-option
grep_err "--help" "unknown option points to --help"
expect 2 "missing -m" -- dsv4-prefill -i p.txt
grep_err "missing model" "missing -m is explained"
expect 2 "--chunk 0" -- dsv4-prefill -m swa.dsv4 -i p.txt --chunk 0
grep_err "'--chunk'" "bad --chunk names the option"
expect 2 "--chunk abc" -- dsv4-prefill -m swa.dsv4 -i p.txt --chunk abc
expect 2 "--threads -1" -- dsv4-prefill -m swa.dsv4 -i p.txt --threads -1
expect 2 "--kv bogus" -- dsv4-prefill -m swa.dsv4 -i p.txt --kv fp8
grep_err "'--kv'" "bad --kv names the option"
expect 2 "extra argument" -- dsv4-prefill -m swa.dsv4 p.txt
expect 2 "both logits to stdout" -- dsv4-prefill -m swa.dsv4 -i p.txt --logits - --logits-all -
expect 2 "both logits to one file" -- dsv4-prefill -m swa.dsv4 -i p.txt --logits same.f32 --logits-all same.f32
# binary output to a terminal (needs util-linux script(1) to make one)
if script --version 2>/dev/null | grep -q util-linux; then
    script -qec "dsv4-prefill -m swa.dsv4 -i p.txt --logits -; echo rc=\$?" /dev/null > tty.log 2>&1
    if grep -q 'rc=1' tty.log && grep -q -e '--logits: standard output is a terminal' tty.log; then
        ok "--logits - refused on a terminal"
    else bad "--logits - on a terminal: $(head -c 200 tty.log | tr -d '\000')"; fi
else
    echo "skip: no util-linux script(1), terminal refusal not tested"
fi

expect 0 "--help" -- dsv4-prefill --help
grep_out "snapshot" "--help says where snapshots stand"

finish
