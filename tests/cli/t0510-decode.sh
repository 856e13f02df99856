#!/bin/sh
# dsv4-decode: greedy tokens are the argmax of the logits; decoding with -o
# gives the snapshot of prefilling prompt + output; the same seed gives the
# same tokens, also across -o/-r round trips and pipes; EOS and --stop end
# the run; --logits; the agent loop (decode, append, decode); bad input and
# usage errors; SIGINT leaves no file.
. "$(dirname "$0")/lib.sh"

V=1024
size() { wc -c < "$1" | tr -d ' '; }
same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi; }
absent() { if [ -e "$1" ]; then bad "$2 ($1 exists)"; else ok "$2"; fi; }
ids() { awk -v s="$1" -v n="$2" -v v=$V 'BEGIN { x = s; for (i = 0; i < n; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d\n", 2 + x % (v - 2) } }'; }
count() { wc -w < "$1" | tr -d ' '; }

expect 0 "convert tiny-v4" -- dsv4-convert -q -o tiny.dsv4 "$FIXTURES/tiny-v4"
expect 0 "convert tiny-v4-swa" -- dsv4-convert -q -o swa.dsv4 "$FIXTURES/tiny-v4-swa"
{ echo 0; ids 3 200; } > p.txt
expect 0 "prefill the prompt -o" -- dsv4-prefill -q -m tiny.dsv4 --kv compact -i p.txt -o p.kv

# ---- greedy ----------------------------------------------------------------

expect 0 "greedy, 12 tokens" -- dsv4-decode -m tiny.dsv4 -r p.kv -n 12 --temperature 0 --format text -o g.kv --logits g.f32
cp out g.txt
[ "$(count g.txt)" = 12 ] && ok "12 ids, one per line" || bad "wanted 12 ids: $(cat g.txt | tr '\n' ' ')"
grep_err "^dsv4-decode: 12 tokens in [0-9.]* s ([0-9.]* tokens/s), stopped by the token limit (-n); seed [0-9]*" "summary"
grep_err "snapshot 'g.kv': 213 tokens (201 resumed)" "summary: the snapshot"
cat p.txt g.txt > pg.txt
expect 0 "prefill prompt + the 12 tokens" -- dsv4-prefill -q -m tiny.dsv4 --kv compact -i pg.txt -o pg.kv --logits pg.f32 --logits-all pga.f32
same g.kv pg.kv "decode -o: the same snapshot bytes as prefilling prompt + output"
same g.f32 pg.f32 "--logits: the logits after the last token"
if command -v python3 >/dev/null 2>&1; then
    # every greedy token is the argmax of the logits at the position before it
    python3 - pga.f32 pg.txt 201 $V > argmax.log 2>&1 <<'EOF'
import struct, sys
f, ids, p0, V = sys.argv[1], open(sys.argv[2]).read().split(), int(sys.argv[3]), int(sys.argv[4])
data = open(f, 'rb').read()
rows = len(data) // (4 * V)
bad = 0
for i in range(p0, len(ids)):
    row = struct.unpack_from('<%df' % V, data, 4 * V * (i - 1))
    m = max(range(V), key=lambda v: (row[v], -v))
    if m != int(ids[i]):
        bad += 1
        print('position', i, 'argmax', m, 'token', ids[i])
print('checked', len(ids) - p0, 'bad', bad)
sys.exit(1 if bad else 0)
EOF
    [ $? = 0 ] && ok "greedy tokens are the argmax ($(tail -n 1 argmax.log))" || bad "greedy is not argmax: $(cat argmax.log)"
else
    echo "skip: no python3, argmax not checked"
fi
expect 0 "--top-k 1 at temperature 1" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 12 --top-k 1 --seed 4 --format text
same out g.txt "--top-k 1 is greedy"
expect 0 "--min-p 1" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 12 --min-p 1 --seed 5 --format text
same out g.txt "--min-p 1 is greedy"

# ---- sampling: seeds, round trips, pipes ----------------------------------

expect 0 "seed 7, 10 tokens" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 10 --seed 7 --format text
cp out s7.txt
expect 0 "seed 7 again" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 10 --seed 7 --format text --threads 1
same out s7.txt "the same seed: the same tokens (also with another thread count)"
expect 0 "seed 8" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 10 --seed 8 --format text
if cmp -s out s7.txt; then bad "seeds 7 and 8 gave the same 10 tokens"; else ok "another seed: other tokens"; fi
if cmp -s s7.txt g.txt; then bad "sampling gave the greedy tokens"; else ok "sampling differs from greedy"; fi
expect 0 "seed 7, 4 tokens, -o" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 4 --seed 7 --format text -o mid.kv
cp out s7a.txt
expect 0 "resume it, 6 more" -- dsv4-decode -q -m tiny.dsv4 -r mid.kv -n 6 --seed 7 --format text
cat s7a.txt out > s7ab.txt
same s7ab.txt s7.txt "4 + save/load + 6 tokens: the same as 10 at once"
{ head -n 100 p.txt > p1.txt; tail -n +101 p.txt > p2.txt; }
dsv4-prefill -q -m tiny.dsv4 --kv compact -i p1.txt -o - | dsv4-prefill -q -m tiny.dsv4 -r - -i p2.txt -o - |
    dsv4-decode -q -m tiny.dsv4 -r - -n 10 --seed 7 --format text > piped.txt 2>err
same piped.txt s7.txt "prefill | prefill -r - | decode -r -: the same tokens"

# the token stream: binary into a pipe, with the tokenizer-agnostic header
dsv4-decode -q -m tiny.dsv4 -r p.kv -n 10 --seed 7 > s7.tok 2>err
[ "$(size s7.tok)" = $((56 + 40)) ] && ok "binary token stream: 56-byte header + 10 ids" || bad "s7.tok: $(size s7.tok) bytes"
# the agent loop: decode, append the output and a tool result, go on
ids 99 20 > tool.txt
expect 0 "append decode output to the snapshot" -- dsv4-prefill -q -m tiny.dsv4 -r p.kv -i s7.tok -o loop.kv
expect 0 "decode -o of the same 10 tokens" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 10 --seed 7 --format none -o dec.kv
same loop.kv dec.kv "decode -o equals prefill -r of its output"
expect 0 "append a tool result" -- dsv4-prefill -q -m tiny.dsv4 -r loop.kv -i tool.txt -o loop.kv
expect 0 "decode again" -- dsv4-decode -q -m tiny.dsv4 -r loop.kv -n 5 --seed 1 --format text -o loop.kv
[ "$(count out)" = 5 ] && ok "second turn: 5 tokens" || bad "second turn: $(cat out)"
# -i: append and decode in one run, as prefill -r then decode -r
expect 0 "decode -i tool.txt" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -i tool.txt -n 5 --seed 2 --format text -o di.kv
cp out di.txt
expect 0 "prefill -r -i tool.txt" -- dsv4-prefill -q -m tiny.dsv4 -r p.kv -i tool.txt -o pi.kv
expect 0 "then decode" -- dsv4-decode -q -m tiny.dsv4 -r pi.kv -n 5 --seed 2 --format text -o pd2.kv
same out di.txt "-i: the same tokens as prefill -r + decode"
same di.kv pd2.kv "-i: the same snapshot"
: > empty.txt
expect 1 "-i with an empty stream" -- dsv4-decode -m tiny.dsv4 -r p.kv -i empty.txt -n 2
grep_err "'empty.txt' holds no tokens" "empty -i explained"
expect 2 "-r - and -i -" -- dsv4-decode -m tiny.dsv4 -r - -i -
expect 0 "-o - with --format none" -- dsv4-decode -q -m tiny.dsv4 -r p.kv -n 10 --seed 7 --format none -o -
same out dec.kv "-o -: the snapshot on standard output"

# ---- stopping ----------------------------------------------------------------

third=$(sed -n 3p g.txt)
expect 0 "--stop the third greedy token" -- dsv4-decode -m tiny.dsv4 -r p.kv -n 12 --temperature 0 --format text --stop 1023 --stop "$third"
[ "$(count out)" = 3 ] && ok "stopped after 3 tokens" || bad "--stop: $(tr '\n' ' ' < out)"
grep_err "stopped by a --stop token" "summary names --stop"
# EOS from generation_config.json: a copy of the model whose EOS is the second greedy token
second=$(sed -n 2p g.txt)
mkdir eosm
for f in "$FIXTURES"/tiny-v4/*; do ln -s "$f" eosm/; done
rm eosm/generation_config.json
printf '{"bos_token_id": 0, "eos_token_id": [77777, %s], "temperature": 0.0}\n' "$second" > eosm/generation_config.json
expect 0 "convert with that generation config" -- dsv4-convert -q -o eos.dsv4 eosm
# the fingerprint covers config.json and the weights, not the sampling defaults
expect 0 "the original's snapshot fits it" -- dsv4-decode -q -m eos.dsv4 -r p.kv -n 1 --format none
expect 0 "prefill with it" -- dsv4-prefill -q -m eos.dsv4 --kv compact -i p.txt -o pe.kv
same pe.kv p.kv "the same snapshot as with the original"
expect 0 "decode stops at EOS (temperature 0 from the generation config)" -- dsv4-decode -m eos.dsv4 -r pe.kv -n 12 --format text
[ "$(count out)" = 2 ] && ok "2 tokens, the EOS included" || bad "EOS: $(tr '\n' ' ' < out)"
grep_err "stopped by the end-of-sequence token" "summary names EOS"
expect 0 "--ignore-eos" -- dsv4-decode -q -m eos.dsv4 -r pe.kv -n 12 --format text --ignore-eos
same out g.txt "--ignore-eos goes on (greedy, the same 12 tokens)"

# ---- bad input -------------------------------------------------------------

expect 1 "a snapshot of another model" -- dsv4-decode -m swa.dsv4 -r p.kv -n 3 -o x.kv
grep_err "'p.kv' was made with another model" "names the snapshot"
absent x.kv "no output"
head -c 3000 p.kv > trunc.kv
expect 1 "a truncated snapshot" -- dsv4-decode -m tiny.dsv4 -r trunc.kv -n 3 -o x.kv
grep_err "'trunc.kv'.*truncated" "names the truncation"
cp p.kv flip.kv
dsv4-tcorrupt flip flip.kv 5000 >/dev/null
expect 1 "a damaged snapshot" -- dsv4-decode -m tiny.dsv4 -r flip.kv -n 3 -o x.kv
grep_err "'flip.kv'.*damaged" "names the damage"
absent x.kv "no output after bad snapshots"
mkdir short
for f in "$FIXTURES"/tiny-v4/*; do ln -s "$f" short/; done
rm short/config.json
sed 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 210/' "$FIXTURES/tiny-v4/config.json" > short/config.json
expect 0 "convert a 210-position variant" -- dsv4-convert -q -o short.dsv4 short
expect 0 "prefill 201 tokens" -- dsv4-prefill -q -m short.dsv4 -i p.txt -o short.kv
expect 1 "10 more with -o do not fit" -- dsv4-decode -m short.dsv4 -r short.kv -n 10 -o x.kv
grep_err "max_position_embeddings 210: 10 more do not fit (at most 9)" "names the room left"
expect 0 "9 fit" -- dsv4-decode -q -m short.dsv4 -r short.kv -n 9 -o x.kv --format none
rm -f x.kv
printf '5\n6\n7\n' > three.txt
expect 1 "3 appended + 7 do not fit" -- dsv4-decode -m short.dsv4 -r short.kv -i three.txt -n 7 -o x.kv
grep_err "the sequence holds 204 tokens of the model's max_position_embeddings 210: 7 more do not fit (at most 6)" "counts the appended tokens"
absent x.kv "no output"
expect 1 "--stop out of range" -- dsv4-decode -m tiny.dsv4 -r p.kv --stop 1024
grep_err "--stop 1024" "names the stop id"

expect 2 "missing -r" -- dsv4-decode -m tiny.dsv4
grep_err "missing snapshot" "missing -r explained"
expect 2 "missing -m" -- dsv4-decode -r p.kv
expect 2 "--temperature -1" -- dsv4-decode -m tiny.dsv4 -r p.kv --temperature -1
expect 2 "--top-p 0" -- dsv4-decode -m tiny.dsv4 -r p.kv --top-p 0
expect 2 "--top-p 1.5" -- dsv4-decode -m tiny.dsv4 -r p.kv --top-p 1.5
expect 2 "--min-p 2" -- dsv4-decode -m tiny.dsv4 -r p.kv --min-p 2
expect 2 "-n 0" -- dsv4-decode -m tiny.dsv4 -r p.kv -n 0
expect 2 "--format bogus" -- dsv4-decode -m tiny.dsv4 -r p.kv --format hex
expect 2 "-o - with a token stream" -- dsv4-decode -m tiny.dsv4 -r p.kv -o -
expect 2 "an operand" -- dsv4-decode -m tiny.dsv4 -r p.kv p.kv

# SIGINT while decoding with -o: no file
dsv4-decode -q -m tiny.dsv4 -r p.kv -n 100000 --ignore-eos --threads 1 --format none -o int.kv 2>/dev/null &
pid=$!
sleep 1
kill -INT $pid 2>/dev/null
wait $pid; st=$?
[ $st != 0 ] && ok "SIGINT stops decoding (exit $st)" || bad "decode finished before SIGINT"
absent int.kv "SIGINT: no snapshot"
# a token reader that goes away: decoding ends, and -o leaves nothing behind
dsv4-decode -q -m tiny.dsv4 -r p.kv -n 100000 --ignore-eos --threads 1 --format text -o pipe.kv 2>/dev/null | head -n 2 > head.txt
[ "$(count head.txt)" = 2 ] && ok "two tokens reached head" || bad "head got: $(cat head.txt)"
absent pipe.kv "closed pipe: no snapshot"
if ls -a | grep -q '\.tmp\.'; then bad "temp files left"; else ok "no temp files left"; fi

finish
