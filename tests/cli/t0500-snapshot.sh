#!/bin/sh
# KV snapshots with dsv4-prefill -o/-r: prefill(N) -> save -> resume ->
# prefill(M) gives the logits and the snapshot bytes of prefill(N+M), in
# files and through pipes, in both KV layouts; bad input of every kind is
# refused with exit 1 and a message naming the file, and never leaves a
# partial file under the final name (also on SIGINT).
. "$(dirname "$0")/lib.sh"

V=1024
size() { wc -c < "$1" | tr -d ' '; }
same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi; }
absent() { if [ -e "$1" ]; then bad "$2 ($1 exists)"; else ok "$2"; fi; }
no_leftovers() {
    if ls -a | grep -q '\.tmp\.'; then bad "$1 (temp files left: $(ls -a | grep '\.tmp\.' | tr '\n' ' '))"
    else ok "$1"; fi
}
# ids FROM COUNT: COUNT pseudo-random ids in [2, V) (deterministic)
ids() { awk -v s="$1" -v n="$2" -v v=$V 'BEGIN { x = s; for (i = 0; i < n; i++) { x = (x * 1103515245 + 12345) % 2147483648; printf "%d\n", 2 + x % (v - 2) } }'; }

expect 0 "convert tiny-v4 (every layer kind)" -- dsv4-convert -q -o tiny.dsv4 "$FIXTURES/tiny-v4"
expect 0 "convert tiny-v4-swa (another model)" -- dsv4-convert -q -o swa.dsv4 "$FIXTURES/tiny-v4-swa"
{ echo 0; ids 7 299; } > all.txt
head -n 131 all.txt > a.txt          # cut inside an HCA block, 3 past a CSA block
tail -n +132 all.txt > b.txt
head -n 50 b.txt > b1.txt
tail -n +51 b.txt > b2.txt

# ---- exactness ------------------------------------------------------------

for kv in compact bf16; do
    expect 0 "$kv: prefill 300 tokens -o" -- dsv4-prefill -m tiny.dsv4 --kv $kv -i all.txt -o all-$kv.kv --logits all-$kv.f32
    grep_err "snapshot 'all-$kv.kv': 300 tokens (0 resumed), [0-9]* bytes raw, [0-9]* written" "summary: the snapshot's sizes"
    expect 0 "$kv: prefill the first 131 -o" -- dsv4-prefill -q -m tiny.dsv4 --kv $kv -i a.txt -o a-$kv.kv
    expect 0 "$kv: resume with the other 169" -- dsv4-prefill -m tiny.dsv4 -r a-$kv.kv -i b.txt -o ab-$kv.kv --logits ab-$kv.f32
    grep_err "300 tokens (131 resumed)" "summary: tokens resumed"
    same all-$kv.kv ab-$kv.kv "$kv: 131 + 169 tokens: the same snapshot bytes as 300 at once"
    same all-$kv.f32 ab-$kv.f32 "$kv: and the same last logits"
done
expect 0 "three steps: 131 + 50 + 119, chunk 7" -- dsv4-prefill -q -m tiny.dsv4 -r a-compact.kv -i b1.txt -o ab1.kv --chunk 7
expect 0 "  (step 3, updating the snapshot in place)" -- dsv4-prefill -q -m tiny.dsv4 -r ab1.kv -i b2.txt -o ab1.kv --chunk 64
same ab1.kv all-compact.kv "three steps in place: the same bytes"
if cmp -s all-compact.kv all-bf16.kv; then bad "the two layouts give the same bytes"; else ok "the layouts differ"; fi
cs=$(size all-compact.kv) bs=$(size all-bf16.kv)
[ "$cs" -lt "$bs" ] && ok "compact snapshot ($cs B) is smaller than bf16 ($bs B)" || bad "compact $cs B >= bf16 $bs B"

# through pipes, never touching the disk
dsv4-prefill -q -m tiny.dsv4 --kv compact -i a.txt -o - 2>err1 |
    dsv4-prefill -q -m tiny.dsv4 -r - -i b.txt -o - > piped.kv 2>err2
[ -s piped.kv ] && [ ! -s err1 ] && [ ! -s err2 ] && ok "prefill -o - | prefill -r - -o -" || bad "pipe: $(cat err1 err2)"
same piped.kv all-compact.kv "through pipes: the same bytes"
cat a-compact.kv | dsv4-prefill -q -m tiny.dsv4 -r - -i b.txt --logits pl.f32 2>err
same pl.f32 all-compact.f32 "snapshot from stdin: the same logits"

# a snapshot for dsv4-kvdump and for the size figures
expect 0 "summary reports bytes per token" -- dsv4-prefill -m tiny.dsv4 --kv compact -i all.txt -o s.kv -f
grep_err "bytes/token)" "bytes per token of the snapshot"

# ---- bad input ------------------------------------------------------------

expect 1 "a snapshot made with another model" -- dsv4-prefill -m swa.dsv4 -r all-compact.kv -i b.txt -o x.kv
grep_err "'all-compact.kv' was made with another model" "names the snapshot"
grep_err "swa.dsv4" "names the model"
absent x.kv "no output"

for cut in 10 200 5000 $(( $(size all-compact.kv) - 1 )); do
    head -c $cut all-compact.kv > trunc.kv
    expect 1 "snapshot truncated to $cut bytes" -- dsv4-prefill -m tiny.dsv4 -r trunc.kv -i b.txt -o x.kv
    grep_err "'trunc.kv'.*truncated" "truncation named with the file ($cut)"
done
absent x.kv "no output after truncations"

n=$(size all-compact.kv)
for at in 40 100 $((n / 3)) $((n / 2)) $((n - 60)) $((n - 1)); do
    cp all-compact.kv flip.kv
    dsv4-tcorrupt flip flip.kv $at 0x20 >/dev/null
    expect 1 "a flipped byte at $at" -- dsv4-prefill -m tiny.dsv4 -r flip.kv -i b.txt -o x.kv
    grep_err "'flip.kv'" "flip at $at: names the file"
done
grep_err "damaged\|checksum" "a flipped byte is reported as damage"
absent x.kv "no output after flipped bytes"

cp all-compact.kv v2.kv
dsv4-tcorrupt put16 v2.kv 8 2 >/dev/null
expect 1 "an unknown major version" -- dsv4-prefill -m tiny.dsv4 -r v2.kv -i b.txt
grep_err "'v2.kv': snapshot format version 2.0 is not supported" "names the version"
printf 'not a snapshot at all, just text' > junk.kv
expect 1 "not a snapshot" -- dsv4-prefill -m tiny.dsv4 -r junk.kv -i b.txt
grep_err "'junk.kv' is not a KV snapshot" "says it is not a snapshot"
cat all-compact.kv all.txt > tail.kv
expect 1 "bytes after the trailer" -- dsv4-prefill -m tiny.dsv4 -r tail.kv -i b.txt
grep_err "after the trailer" "names the trailing bytes"
expect 1 "a missing snapshot" -- dsv4-prefill -m tiny.dsv4 -r nosuch.kv -i b.txt
grep_err "nosuch.kv" "names the missing snapshot"

printf '5 1024 7\n' > big.txt
expect 1 "a token id out of range" -- dsv4-prefill -m tiny.dsv4 -r all-compact.kv -i big.txt -o x.kv
grep_err "'big.txt': line 1, column 3: id 1024 is out of range" "names the id"
: > empty.txt
expect 1 "an empty token stream with -o" -- dsv4-prefill -m tiny.dsv4 -i empty.txt -o x.kv
grep_err "'empty.txt' holds no tokens" "empty stream explained"
expect 1 "an empty token stream with -r" -- dsv4-prefill -m tiny.dsv4 -r all-compact.kv -i empty.txt
absent x.kv "no output for empty streams"
expect 1 "--kv that contradicts the snapshot" -- dsv4-prefill -m tiny.dsv4 -r all-compact.kv --kv bf16 -i b.txt
grep_err "holds a compact KV state" "names the snapshot's layout"

# a context beyond the model's limit: the same weights with max_position_embeddings 400
mkdir short
for f in "$FIXTURES"/tiny-v4/*; do ln -s "$f" short/; done
rm short/config.json
sed 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 400/' "$FIXTURES/tiny-v4/config.json" > short/config.json
expect 0 "convert a 400-position variant" -- dsv4-convert -q -o short.dsv4 short
expect 0 "300 tokens fit in 400" -- dsv4-prefill -q -m short.dsv4 -i all.txt -o short.kv
expect 1 "300 + 169 do not" -- dsv4-prefill -m short.dsv4 -r short.kv -i b.txt -o x.kv
grep_err "max_position_embeddings 400" "names the limit"
absent x.kv "no output beyond the limit"

cp all-compact.kv keep.kv
expect 1 "an existing output is not overwritten" -- dsv4-prefill -m tiny.dsv4 -i a.txt -o keep.kv
grep_err "'keep.kv' already exists" "refusal explains --force"
same keep.kv all-compact.kv "the existing file is untouched"
expect 2 "-r - with tokens from stdin" -- dsv4-prefill -m tiny.dsv4 -r -
expect 2 "-o - with --logits -" -- dsv4-prefill -m tiny.dsv4 -i a.txt -o - --logits -
expect 2 "-o and --logits the same file" -- dsv4-prefill -m tiny.dsv4 -i a.txt -o same.kv --logits same.kv

# SIGINT in the middle of a run: no file under the final name, no temp file
{ echo 0; ids 11 699; } > long.txt
cp all-compact.kv prev.kv
dsv4-prefill -q -m tiny.dsv4 -i long.txt --chunk 1 --threads 1 -o int.kv 2>/dev/null &
pid=$!
sleep 1
kill -INT $pid 2>/dev/null
wait $pid; st=$?
if [ $st != 0 ]; then ok "SIGINT stops the run (exit $st)"; else bad "the run finished before SIGINT (inconclusive)"; fi
absent int.kv "SIGINT: no snapshot under the final name"
dsv4-prefill -q -m tiny.dsv4 -r prev.kv -i long.txt --chunk 1 --threads 1 -o prev.kv 2>/dev/null &
pid=$!
sleep 1
kill -INT $pid 2>/dev/null
wait $pid
same prev.kv all-compact.kv "SIGINT while updating in place: the previous snapshot is intact"
no_leftovers "no temp files left"

finish
