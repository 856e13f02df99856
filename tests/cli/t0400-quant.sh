#!/bin/sh
# dsv4-quant: each recipe and a free rule on the tiny fixture (untouched
# tensors bit-exact, the source fingerprint and rules recorded, the output
# runs in dsv4-prefill; the logits against the original are printed and only
# sanity-checked), determinism across thread counts, dry runs on a model and
# on the real Flash and Pro configs (the sizes dsv4-quant(1) quotes), and
# every kind of bad rule or unsafe output.
. "$(dirname "$0")/lib.sh"

FLASH=$TOP/tests/data/flash-config.json
PRO=$TOP/tests/data/pro-config.json
V=1024
IDS='0 203 261 750 39 547 86 209 295 468 164 386 847 24 855 985 845 82 107 854
318 50 997 872 8 505 508 377 443 492 624 665 1005 816 1019 441 314 14 540 96'

no_leftovers() {
    if ls -a | grep -q '\.tmp\.'; then bad "$1 (temp files left)"; else ok "$1"; fi
}
absent() { if [ -e "$1" ]; then bad "$2 ($1 exists)"; else ok "$2"; fi; }
# field NAME FILE: the number after NAME in a dsv4-tlogits / dsv4-tdiff line
field() { tr ' ' '\n' < "$2" | grep -A1 -x -e "$1" | tail -n 1; }
# at_least A B DESC: A >= B (decimals)
at_least() { if awk "BEGIN { exit !(${1:-0} >= $2) }"; then ok "$3 ($1)"; else bad "$3 (${1:-nothing} < $2)"; fi; }

expect 0 "convert the fixture" -- dsv4-convert -q -o tiny.dsv4 "$FIXTURES/tiny-v4"
echo "$IDS" > ids.txt
expect 0 "prefill the original" -- dsv4-prefill -q -m tiny.dsv4 -i ids.txt --logits-all ref.f32
FP=$(dsv4-convert --info tiny.dsv4 | sed -n 's/.*fingerprint: *//p')

expect 0 "--list-recipes" -- dsv4-quant --list-recipes
for r in experts-q2 experts-q3 fit-80g fp8-bf16; do grep_out "^$r" "--list-recipes names $r"; done
expect 0 "--help" -- dsv4-quant --help
grep_out "experts-q2 .*84.3 GB" "--help lists the recipes with their Flash sizes"

# recipe OUT-NAME RECIPE-ARGS...: quantise, run, compare
for spec in "q2:-R experts-q2" "q3:-R experts-q3" "f80:-R fit-80g" "bf:-R fp8-bf16" \
            "rule:-r layers.1.attn.wq_b.weight=Q3 -r layers.2.ffn.experts.*.w2.weight=Q2"; do
    n=${spec%%:*} args=${spec#*:}
    expect 0 "$n: quantise ($args)" -- dsv4-quant $args tiny.dsv4 $n.dsv4
    cp out $n.report
    grep_out "bits/weight" "$n: totals with bits per weight"
    grep_out " rmse .* max .* rel " "$n: per-tensor RMSE and max error"
    dsv4-tdiff tiny.dsv4 $n.dsv4 > $n.diff
    # everything not re-encoded is bit-exact: every changed tensor is one the rules chose (or its scale)
    case $n in
        q2|q3) pat='\.ffn\.experts\.[0-9]*\.w[123]\.\(weight\|scale\)$' ;;
        f80) pat='\(\.ffn\.experts\.[0-9]*\.w[123]\|shared_experts\.w[123]\|attn\.w\(q_b\|o_a\|o_b\)\)\.\(weight\|scale\)$' ;;
        bf) pat='\(attn\.w[a-z_]*\|indexer\.wq_b\|shared_experts\.w[123]\|[eh]_proj\)\.\(weight\|scale\)$' ;;
        rule) pat='\(layers\.1\.attn\.wq_b\|layers\.2\.ffn\.experts\.[0-9]*\.w2\)\.\(weight\|scale\)$' ;;
    esac
    if grep -v '^identical' $n.diff | grep -v -e "$pat" | grep -q .; then
        bad "$n: only the chosen tensors changed"; grep -v '^identical' $n.diff | grep -v -e "$pat" | head -n 3
    else ok "$n: only the chosen tensors changed ($(tail -n 1 $n.diff))"; fi
    if grep -q -e "$FP" $n.dsv4; then ok "$n: quant.json records the source fingerprint"
    else bad "$n: source fingerprint $FP not in the output"; fi
    expect 0 "$n: dsv4-convert --check accepts the output" -- dsv4-convert --check $n.dsv4
    expect 0 "$n: dsv4-prefill runs the output" -- dsv4-prefill -q -m $n.dsv4 -i ids.txt --logits-all $n.f32
    dsv4-tlogits $V ref.f32 $n.f32 > $n.cmp
    echo "    logits $n vs original: $(cat $n.cmp)"
    grep -q "finite yes" $n.cmp && ok "$n: logits finite" || bad "$n: logits not finite"
    # chance agreement is 1/1024
    at_least "$(field argmax_agree $n.cmp)" 0.1 "$n: argmax agrees far above chance"
done
grep -q "changed 0 only-a 0 only-b 0" q2.diff && bad "q2: nothing changed" || ok "q2: tensors were re-encoded"
grep -q "only-a .*\.scale" bf.diff && ok "bf: BF16 weights drop their scales" || bad "bf: scales kept"
grep -q "rmse 0.000e+00 max 0.000e+00" bf.report && ok "bf: FP8 -> BF16 is exact" || bad "bf: FP8 -> BF16 not exact"
cmp -s ref.f32 bf.f32 && ok "bf: the BF16 model gives the original's logits exactly" || bad "bf: logits differ from the original"
grep -q "2.125 bits/weight" q2.report && ok "q2: 2.125 bits/weight" || bad "q2: bits/weight"
grep -q "3.250 bits/weight" q3.report && ok "q3: 3.250 bits/weight" || bad "q3: bits/weight"

expect 0 "-v lists the copies too" -- dsv4-quant -v -R experts-q2 tiny.dsv4 q2v.dsv4
[ "$(grep -c ' bit-exact$' out)" = 260 ] && ok "-v: 260 copied tensors listed" || bad "-v: $(grep -c ' bit-exact$' out) copies listed, wanted 260"
# deterministic, whatever the thread count; '-' writes to a regular stdout
expect 0 "q2 with 1 thread" -- dsv4-quant -q --threads 1 -R experts-q2 tiny.dsv4 q2-t1.dsv4
expect 0 "q2 with 3 threads" -- dsv4-quant -q --threads 3 -R experts-q2 tiny.dsv4 q2-t3.dsv4
cmp -s q2-t1.dsv4 q2-t3.dsv4 && ok "same file for 1 and 3 threads" || bad "files differ by thread count"
cmp -s q2-t1.dsv4 q2.dsv4 && ok "same file as the default thread count" || bad "q2 runs differ"
dsv4-quant -q -R experts-q2 tiny.dsv4 - > q2-stdout.dsv4 2>err
cmp -s q2-stdout.dsv4 q2.dsv4 && ok "'-' writes the same file to stdout" || bad "stdout output differs"
dsv4-quant -q -R experts-q2 tiny.dsv4 - 2>err | cat > /dev/null
grep_err "regular file" "'-' refuses a pipe"
# the header's incompat_features: bit 0x1 marks Q2/Q3 tensors (dsv4-model(5))
incompat() { od -A n -t u8 -j 16 -N 8 "$1" | tr -d ' '; }
[ "$(incompat q2.dsv4)" = 1 ] && ok "Q2 output sets incompat bit 0x1" || bad "Q2 output incompat = $(incompat q2.dsv4)"
[ "$(incompat tiny.dsv4)" = 0 ] && ok "a converted file sets no incompat bit" || bad "tiny.dsv4 incompat = $(incompat tiny.dsv4)"
[ "$(incompat bf.dsv4)" = 0 ] && ok "BF16 re-encoding needs no incompat bit" || bad "bf.dsv4 incompat = $(incompat bf.dsv4)"
# requantising a quantised file works (from its dequantised values)
expect 0 "Q3 file to Q2" -- dsv4-quant -q -r '*.experts.*.weight=Q2' q3.dsv4 q3q2.dsv4
expect 0 "the requantised file runs" -- dsv4-prefill -q -m q3q2.dsv4 -i ids.txt --logits ll.f32

# dry runs: the plan and totals, nothing written
expect 0 "dry run on the model" -- dsv4-quant -n -R experts-q2 tiny.dsv4
grep_out "I8 -> Q2" "dry run lists the plan"
grep_out "tensor bytes: 12427508 .* -> 10965236" "dry run totals match the written file"
absent q2dry.dsv4 "dry run writes nothing"
expect 2 "dry run takes one input" -- dsv4-quant -n -R experts-q2 tiny.dsv4 x.dsv4
# the real configs: sizes quoted in dsv4-quant(1)
for spec in "experts-q3:124176005704" "experts-q2:84313340488" "fit-80g:81025716808" "fp8-bf16:165632138824"; do
    r=${spec%%:*} want=${spec#*:}
    expect 0 "Flash $r dry run" -- dsv4-quant -n -R $r "$FLASH"
    grep_out "tensor bytes: 159609485896 .* -> $want " "Flash $r: $want bytes"
done
expect 0 "Flash experts-q3 sizes" -- dsv4-quant -n -R experts-q3 "$FLASH"
tail -n 5 out | sed 's/^/    /'
# H200: 143771 MiB; H100: 81559 MiB (nvidia-smi), each less 1 GiB for the CUDA context
tot=$(sed -n 's/^weights + 1M-token KV state: \([0-9.]*\) GB.*/\1/p' out)
at_least "$(awk "BEGIN { print 143771 * 1048576 / 1e9 - 1.074 - $tot }")" 10 "experts-q3 + 1M-token KV fits an H200 with GB to spare"
expect 0 "Flash fit-80g sizes" -- dsv4-quant -n -R fit-80g "$FLASH"
w=$(sed -n 's/^tensor bytes: .* -> \([0-9]*\) .*/\1/p' out)
at_least "$(awk "BEGIN { print (81559 * 1048576 - 1073741824 - $w) / 1e9 }")" 2.5 "fit-80g leaves GB for KV and activations on an H100"
expect 0 "Pro experts-q2 dry run" -- dsv4-quant -n -R experts-q2 "$PRO"
grep_out "tensor bytes: 864704792696 " "Pro: the checkpoint's 864.7 GB"

# bad rules and unsafe outputs
expect 2 "rule without '='" -- dsv4-quant -r 'layers.*' tiny.dsv4 x.dsv4
grep_err "expected GLOB=FORMAT" "names the syntax"
expect 2 "unknown format" -- dsv4-quant -r '*.w1.weight=Q5' tiny.dsv4 x.dsv4
grep_err "unknown format 'Q5'" "names the format"
expect 2 "unknown recipe" -- dsv4-quant -R experts-q1 tiny.dsv4 x.dsv4
grep_err "unknown recipe 'experts-q1'" "names the recipe"
expect 2 "no rules" -- dsv4-quant tiny.dsv4 x.dsv4
expect 1 "Q2 on a vector" -- dsv4-quant -r 'layers.0.attn_norm.weight=Q2' tiny.dsv4 x.dsv4
grep_err "tiny.dsv4: rule 'layers.0.attn_norm.weight=Q2' matches layers.0.attn_norm.weight" "names the rule and the tensor"
expect 1 "BF16 on an integer table" -- dsv4-quant -r '*.tid2eid=BF16' tiny.dsv4 x.dsv4
grep_err "tid2eid (I64)" "names the dtype"
absent x.dsv4 "no output after a bad rule"
expect 0 "a rule that matches nothing" -- dsv4-quant -R experts-q3 -r 'nothing.*=Q2' tiny.dsv4 x.dsv4
grep_err "rule 'nothing.\*=Q2' matches no tensor" "warns about it"
expect 1 "existing output without --force" -- dsv4-quant -R experts-q3 tiny.dsv4 x.dsv4
grep_err "already exists" "says so"
cp tiny.dsv4 keep.dsv4
expect 1 "the input as output" -- dsv4-quant -f -R experts-q3 tiny.dsv4 ./tiny.dsv4
grep_err "is the input" "says so"
cmp -s keep.dsv4 tiny.dsv4 && ok "input untouched" || bad "input changed"
expect 1 "not a model file" -- dsv4-quant -R experts-q3 ids.txt y.dsv4
expect 1 "missing input" -- dsv4-quant -R experts-q3 nosuch.dsv4 y.dsv4
grep_err "nosuch.dsv4" "names the missing file"
no_leftovers "no temp files left"
finish
