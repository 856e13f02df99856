#!/bin/sh
# demo.sh — the end-to-end walk-through behind `make demo`: make a small
# synthetic DeepSeek-V4 checkpoint (random weights, official Hugging Face
# layout), convert it to a .dsv4 model file, validate both, describe the
# result, then the snapshot pipeline: prompt tokens -> prefill -> KV snapshot
# -> kvdump -> decode -> append a tool result -> decode again.  Everything
# goes under tests/out/demo/.  Exits non-zero, naming the step, as soon as a
# step fails.
#   usage: sh tests/tools/demo.sh [SCRATCH_DIR]
cd "$(dirname "$0")/../.." || exit 1
LC_ALL=C; export LC_ALL
TOP=$(pwd)
D=${1:-tests/out/demo}
PATH=$TOP/bin:$TOP/build/tools:$PATH; export PATH
n=0

step() { # step TITLE -- CMD...   print a heading, run CMD, stop on failure
    n=$((n + 1)); title=$1; shift 2
    printf '\n==> %d. %s\n$ %s\n' "$n" "$title" "$*"
    "$@" || { st=$?; printf '\ndemo: step %d (%s) failed with exit status %d\n' "$n" "$title" "$st" >&2; exit 1; }
}

for p in dsv4-synth dsv4-convert dsv4-prefill dsv4-decode dsv4-kvdump; do
    command -v "$p" >/dev/null 2>&1 || { echo "demo: $p is not built; run 'make' first" >&2; exit 1; }
done
rm -rf "$D" && mkdir -p "$D" || exit 1
echo "dsv4 demo in $D (synthetic model: random weights, meaningless output)"

step "make a synthetic checkpoint (tiny preset, Hugging Face layout)" -- \
    dsv4-synth --preset tiny --seed 1 -o "$D/tiny-hf"
step "validate the checkpoint against its config.json" -- \
    dsv4-convert --check "$D/tiny-hf"
step "convert it to one .dsv4 model file" -- \
    dsv4-convert --no-progress -o "$D/tiny.dsv4" "$D/tiny-hf"
step "validate the model file (structure, checksums, values)" -- \
    dsv4-convert --check "$D/tiny.dsv4"
step "describe the model file" -- \
    dsv4-convert --info "$D/tiny.dsv4"
# (a redirection, so not through step)
n=$((n + 1))
printf '\n==> %d. %s\n$ %s\n' "$n" "write a few token ids as a text token stream" \
    "printf '%s\\n' 0 17 42 7 99 3 250 11 > $D/prompt.txt"
printf '%s\n' 0 17 42 7 99 3 250 11 > "$D/prompt.txt" || { echo "demo: cannot write $D/prompt.txt" >&2; exit 1; }
step "run them through the model, keeping the last position's logits" -- \
    dsv4-prefill --no-progress -m "$D/tiny.dsv4" -i "$D/prompt.txt" --logits "$D/last.f32"
vocab=$(dsv4-convert --info --json "$D/tiny.dsv4" | sed -n 's/.*"vocab_size": \([0-9]*\).*/\1/p')
size=$(wc -c < "$D/last.f32" | tr -d ' ')
printf '%s: %s bytes = %s float32 logits (vocab_size %s)\n' "$D/last.f32" "$size" $((size / 4)) "$vocab"
[ "$size" = $((vocab * 4)) ] || { echo "demo: $D/last.f32 should hold $vocab float32 values" >&2; exit 1; }


step "prefill the prompt once and save the KV state as a snapshot" -- \
    dsv4-prefill --no-progress --kv compact -m "$D/tiny.dsv4" -i "$D/prompt.txt" -o "$D/chat.kv"
step "inspect the snapshot: layers, entries, sizes, checksums" -- \
    dsv4-kvdump "$D/chat.kv"
step "decode 8 tokens from it (seed 1), saving the extended snapshot" -- \
    dsv4-decode --no-progress -m "$D/tiny.dsv4" -r "$D/chat.kv" -n 8 --seed 1 --format text -o "$D/turn1.kv"
n=$((n + 1))
printf '\n==> %d. %s\n$ %s\n' "$n" "a tool result to append (token ids)" "printf '%s\\n' 5 6 7 8 > $D/tool.txt"
printf '%s\n' 5 6 7 8 > "$D/tool.txt" || { echo "demo: cannot write $D/tool.txt" >&2; exit 1; }
step "resume the snapshot with the tool result" -- \
    dsv4-prefill --no-progress -m "$D/tiny.dsv4" -r "$D/turn1.kv" -i "$D/tool.txt" -o "$D/turn2.kv"
step "decode again from there" -- \
    dsv4-decode --no-progress -m "$D/tiny.dsv4" -r "$D/turn2.kv" -n 8 --seed 1 --format text
step "verify the last snapshot" -- \
    dsv4-kvdump --verify "$D/turn2.kv"
step "its token ids: prompt, answer, tool result" -- \
    dsv4-kvdump --tokens "$D/turn2.kv"
n=$((n + 1))
printf '\n==> %d. %s\n' "$n" "the same first answer with the snapshot going through a pipe"
a=$(dsv4-decode -q -m "$D/tiny.dsv4" -r "$D/chat.kv" -n 8 --seed 1 --format text | tr '\n' ' ')
b=$(dsv4-prefill -q --kv compact -m "$D/tiny.dsv4" -i "$D/prompt.txt" -o - |
    dsv4-decode -q -m "$D/tiny.dsv4" -r - -n 8 --seed 1 --format text | tr '\n' ' ')
printf 'from the file: %s\nthrough a pipe: %s\n' "$a" "$b"
[ -n "$a" ] && [ "$a" = "$b" ] || { echo "demo: the piped snapshot decoded differently" >&2; exit 1; }

printf '\ndemo: all %d steps passed; files in %s\n' "$n" "$D"
