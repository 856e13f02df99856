#!/bin/sh
# dsv4-convert: conversion of the fixtures, --check and --info on both kinds
# of input, output safety, and every kind of broken checkpoint or model file
# (each must fail with exit 1 and a message naming the tensor or file).
. "$(dirname "$0")/lib.sh"

TINY=$FIXTURES/tiny-v4
S1=model-00001-of-00002.safetensors
S2=model-00002-of-00002.safetensors
have_py=0
python3 -c 'import json' 2>/dev/null && have_py=1

# no_leftovers DESC: no temp file of an output left in the scratch dir
no_leftovers() {
    if ls -a | grep -q '\.tmp\.'; then bad "$1 (temp files left: $(ls -a | grep '\.tmp\.' | tr '\n' ' '))"
    else ok "$1"; fi
}
# absent FILE DESC
absent() { if [ -e "$1" ]; then bad "$2 ($1 exists)"; else ok "$2"; fi; }
# json_ok FILE DESC: FILE is one valid JSON document
json_ok() {
    if [ $have_py = 1 ]; then
        if python3 -m json.tool "$1" >/dev/null 2>&1; then ok "$2"; else bad "$2 (not JSON)"; sed 's/^/    /' "$1" | head -n 5; fi
    elif head -c 1 "$1" | grep -q '{' && tail -c 2 "$1" | grep -q '}'; then ok "$2 (no python3: shape only)"
    else bad "$2 (not a JSON object)"; fi
}
# fresh DIR: a writable copy of the tiny-v4 checkpoint
fresh() { rm -rf "$1" && cp -r "$TINY" "$1" && chmod -R u+w "$1"; }
# must_fail_both DIR DESC PATTERN: --check and conversion of DIR fail naming PATTERN
must_fail_both() {
    expect 1 "$2: --check fails" -- dsv4-convert --check "$1"
    grep_out "$3" "$2: --check names it"
    grep_out "problem" "$2: --check counts problems"
    expect 1 "$2: convert fails" -- dsv4-convert -o "$1.dsv4" "$1"
    grep_err "$3" "$2: convert names it on stderr"
    grep_err "nothing written" "$2: convert says nothing was written"
    absent "$1.dsv4" "$2: no output file"
    no_leftovers "$2: no temp files"
}

# ---- the good path -------------------------------------------------------

expect 0 "convert tiny-v4" -- dsv4-convert -o tiny.dsv4 "$TINY"
grep_err "wrote 'tiny.dsv4' (fingerprint [0-9a-f]\{16\})" "convert reports the fingerprint"
[ -s tiny.dsv4 ] && ok "tiny.dsv4 written" || bad "tiny.dsv4 missing or empty"
[ ! -s out ] && ok "convert prints nothing on stdout" || bad "convert wrote to stdout"
no_leftovers "no temp files after a conversion"
fp16=$(sed -n "s/.*fingerprint \([0-9a-f]*\)).*/\1/p" err)

expect 0 "--check tiny.dsv4" -- dsv4-convert --check tiny.dsv4
grep_out "^tiny.dsv4: OK$" "--check tiny.dsv4 says OK"
expect 0 "--check the HF folder" -- dsv4-convert --check "$TINY"
grep_out ": OK$" "--check HF folder says OK"
expect 0 "--check --json tiny.dsv4" -- dsv4-convert --check --json tiny.dsv4
json_ok out "--check --json is JSON"
grep_out '"ok": true, "problems": \[\]' "--check --json: ok, no problems"

expect 0 "--info tiny.dsv4" -- dsv4-convert --info tiny.dsv4
grep_out "fingerprint:   $fp16[0-9a-f]\{48\}$" "--info shows the fingerprint convert printed"
fp=$(sed -n 's/^  fingerprint: *\([0-9a-f]*\)$/\1/p' out)
grep_out "dsv4 model 1\.0, .*, 932 tensors" "--info: format version and tensor count"
# parameter counts worked out independently from the safetensors headers
grep_out "parameters:    12407280 total (10869921 without MTP)" "--info shows the parameter counts"
grep_out "6 layers + 1 MTP" "--info shows the layers"
grep_out "1 sliding-window, 3 CSA (ratio 4, top-32), 2 HCA (ratio 128)" "--info shows the attention kinds"
grep_out "embedded: .*config.json" "--info lists the embedded config.json"

expect 0 "--info --json tiny.dsv4" -- dsv4-convert --info --json tiny.dsv4
json_ok out "--info --json is JSON"
grep_out "\"fingerprint\": \"$fp\"" "--info --json: same fingerprint"
grep_out '"total": 12407280, "backbone": 10869921, "mtp": 1537359' "--info --json: parameter counts"
grep_out '"tensors": 932' "--info --json: tensor count"
if [ $have_py = 1 ]; then
    cp out info.json
    expect 0 "--info --json fields read back" -- python3 -c '
import json
j = json.load(open("info.json"))
assert j["kind"] == "dsv4" and len(j["fingerprint"]) == 64, j
assert j["layers"] == 6 and j["mtp_layers"] == 1 and j["params"]["total"] == 12407280, j
assert sum(j["bytes_by_dtype"].values()) <= j["bytes"], j'
fi
expect 0 "--info on the HF folder" -- dsv4-convert --info "$TINY"
grep_out "parameters:    12407280 total" "--info HF folder: same parameter counts"

# (f) lossless: the same bytes, and the same dequantised FP8/FP4 values
expect 0 "tiny.dsv4 holds the checkpoint's tensors exactly" -- dsv4-tdequant tiny.dsv4 "$TINY"
grep_out "^932 tensors with identical bytes; [1-9][0-9]* FP8 and [1-9][0-9]* FP4 weights dequantised; 0 differences$" \
    "every FP8 and FP4 weight dequantises identically"

# output safety
cp tiny.dsv4 keep.dsv4
expect 1 "existing output refused without -f" -- dsv4-convert -o tiny.dsv4 "$TINY"
grep_err "'tiny.dsv4' already exists; use --force" "refusal explains --force"
cmp -s tiny.dsv4 keep.dsv4 && ok "refused output left untouched" || bad "refused output was changed"
expect 0 "-f overwrites" -- dsv4-convert -f -o tiny.dsv4 "$TINY"
cmp -s tiny.dsv4 keep.dsv4 && ok "conversion is deterministic (byte-identical)" || bad "second conversion differs"
no_leftovers "no temp files after -f"
expect 0 "default output name" -- dsv4-convert "$TINY/"
cmp -s tiny-v4.dsv4 keep.dsv4 && ok "default output is BASENAME.dsv4" || bad "tiny-v4.dsv4 missing or different"
rm -f tiny-v4.dsv4

# one-layer fixtures: each layer kind
for kind in swa csa hca; do
    fx=$FIXTURES/tiny-v4-$kind
    expect 0 "--check tiny-v4-$kind" -- dsv4-convert --check "$fx"
    grep_out ": OK$" "--check tiny-v4-$kind says OK"
    expect 0 "convert tiny-v4-$kind" -- dsv4-convert -o $kind.dsv4 "$fx"
    expect 0 "--check $kind.dsv4" -- dsv4-convert --check $kind.dsv4
    expect 0 "$kind.dsv4 equals its checkpoint" -- dsv4-tdequant $kind.dsv4 "$fx"
    grep_out " 0 differences$" "$kind: every weight dequantises identically"
done

# ---- broken .dsv4 files --------------------------------------------------

# (a) one flipped bit inside a tensor's data
W=layers.0.attn.wkv.weight
expect 0 "find $W in the file" -- dsv4-tcorrupt offset tiny.dsv4 $W
set -- $(cat out) 0 0
cp tiny.dsv4 flip.dsv4
dsv4-tcorrupt flip flip.dsv4 $(($1 + $2 / 2))
expect 1 "--check: flipped byte in $W" -- dsv4-convert --check flip.dsv4
grep_out "^flip.dsv4: $W: checksum mismatch" "--check names $W and says checksum"
grep_out "^flip.dsv4: 1 problem$" "--check finds exactly one problem"
expect 1 "--check --json: flipped byte" -- dsv4-convert --check --json flip.dsv4
json_ok out "--check --json with a problem is JSON"
grep_out "\"ok\": false, \"problems\": \[{\"subject\": \"$W\", \"message\": \"checksum mismatch" \
    "--check --json names $W"
expect 1 "dsv4-tdequant notices the flipped byte" -- dsv4-tdequant flip.dsv4 "$TINY"
grep_out "^$W: dequantised value" "dsv4-tdequant names $W"
E=layers.3.ffn.experts.7.w2.weight
set -- $(dsv4-tcorrupt offset tiny.dsv4 $E) 0 0
cp tiny.dsv4 flip.dsv4
dsv4-tcorrupt flip flip.dsv4 $(($1 + $2 - 1)) 0x80
expect 1 "--check: flipped last byte of FP4 expert $E" -- dsv4-convert --check flip.dsv4
grep_out "^flip.dsv4: $E: checksum mismatch" "--check names $E"

# header, metadata, version, signature, truncation: the file cannot be opened
cp tiny.dsv4 hdr.dsv4
dsv4-tcorrupt flip hdr.dsv4 44
expect 1 "--check: flipped byte in the header" -- dsv4-convert --check hdr.dsv4
grep_out "header checksum mismatch" "header corruption is named"
expect 1 "--info refuses a corrupted header" -- dsv4-convert --info hdr.dsv4
grep_err "hdr.dsv4.*header checksum mismatch" "--info says why"
cp tiny.dsv4 meta.dsv4
dsv4-tcorrupt flip meta.dsv4 4100
expect 1 "--check: flipped byte in the metadata" -- dsv4-convert --check meta.dsv4
grep_out "metadata checksum mismatch" "metadata corruption is named"
cp tiny.dsv4 v2.dsv4
dsv4-tcorrupt put16 v2.dsv4 8 2
expect 1 "--check: major version 2" -- dsv4-convert --check v2.dsv4
grep_out "version 2\.0 is not supported" "unknown major version is named"
cp tiny.dsv4 sig.dsv4
dsv4-tcorrupt flip sig.dsv4 1
expect 1 "--check: bad signature" -- dsv4-convert --check sig.dsv4
grep_err "sig.dsv4.*bad signature" "a bad signature is named"
cp tiny.dsv4 short.dsv4
truncate -s $(($(wc -c <tiny.dsv4) - 4096)) short.dsv4
expect 1 "--check: truncated model file" -- dsv4-convert --check short.dsv4
grep_out "short.dsv4.*truncated" "truncation is named"
: >empty.dsv4
expect 1 "--info: empty file" -- dsv4-convert --info empty.dsv4
grep_err "empty.dsv4" "empty file is named"

# ---- hostile .dsv4 files: fields that lie under valid checksums ----------
# (tests/unit/test_hostile.c tries every field; these check that the
# programs refuse such files and name them)

u64at() { od -A n -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
# hostile NAME DESC OFFSET VALUE PATTERN: tiny.dsv4 with the u64 at OFFSET
# set to VALUE, checksums recomputed; --check fails saying PATTERN
hostile() {
    cp tiny.dsv4 "$1.dsv4" && dsv4-tcorrupt put64 "$1.dsv4" "$3" "$4" && dsv4-tcorrupt rehash "$1.dsv4"
    expect 1 "--check: $2" -- dsv4-convert --check "$1.dsv4"
    grep_out "$1\.dsv4.*$5" "--check: $2: named"
}
fsize=$(wc -c <tiny.dsv4)
dir0=$(u64at tiny.dsv4 88)
hostile h-ntens "n_tensors 2^61" 80 0x2000000000000000 "inconsistent section offsets"
hostile h-moff "meta_offset = file size - 1" 40 $((fsize - 1)) "inconsistent section offsets"
hostile h-dirb "dir_bytes 2^64 - 1" 96 0xffffffffffffffff "inconsistent section offsets"
hostile h-doff "data region over the metadata" 56 4096 "inconsistent section offsets"
hostile h-toff "a tensor offset of 2^64 - 4096" $((dir0 + 40)) 0xfffffffffffff000 "lies outside the data region"
hostile h-tover "a tensor over the header" $((dir0 + 40)) 0 "lies outside the data region"
hostile h-tnb "a tensor's nbytes 2^64 - 1" $((dir0 + 48)) 0xffffffffffffffff "do not match its shape"
hostile h-dim "a dim of 2^63" $((dir0 + 8)) 0x8000000000000000 "absurd shape"
expect 1 "dsv4-prefill refuses a hostile model" -- dsv4-prefill -m h-toff.dsv4 -i /dev/null
grep_err "h-toff\.dsv4.*outside the data region" "dsv4-prefill names it"

# ---- broken checkpoints --------------------------------------------------

# (b) truncated shard
fresh trunc
truncate -s $(($(wc -c <trunc/$S2) / 2)) trunc/$S2
must_fail_both trunc "truncated shard" "$S2: .*truncated shard"
fresh stub
truncate -s 4 stub/$S1
must_fail_both stub "shard shorter than its header length" "$S1: file too short"
fresh hlen
dsv4-tcorrupt put64 hlen/$S1 0 0xffffffffffffffff
must_fail_both hlen "header length 2^64 - 1" "$S1: header length [0-9]* exceeds the 100 MB limit"
fresh hlen2
dsv4-tcorrupt put64 hlen2/$S1 0 $(($(wc -c <hlen2/$S1) - 7))
must_fail_both hlen2 "header length past the end" "$S1: header length [0-9]* but the file has"
fresh gone
rm gone/$S2
must_fail_both gone "missing shard" "$S2: shard listed in the index does not exist"

# (c) missing tensor: gone from its shard and from the index
fresh miss
dsv4-stedit miss/$S1 miss/new.st layers.0.attn_norm.weight --drop && mv miss/new.st miss/$S1
sed '/"layers\.0\.attn_norm\.weight"/d' miss/model.safetensors.index.json >miss/i && mv miss/i miss/model.safetensors.index.json
must_fail_both miss "missing tensor" "layers\.0\.attn_norm\.weight: missing (expected BF16 \[128\])"
# the index names a tensor its shard does not have
fresh idx
sed 's/"layers\.0\.ffn_norm\.weight"/"layers.0.ffn_norm.weigth"/' idx/model.safetensors.index.json >idx/i &&
    mv idx/i idx/model.safetensors.index.json
must_fail_both idx "index names an absent tensor" "layers\.0\.ffn_norm\.weigth: listed in the index"
# a misnamed tensor: the config's name is missing, the other is unexpected
fresh extra
dsv4-stedit extra/$S1 extra/new.st layers.0.attn.attn_sink --rename layers.0.attn.attn_sunk && mv extra/new.st extra/$S1
sed 's/"layers\.0\.attn\.attn_sink"/"layers.0.attn.attn_sunk"/' extra/model.safetensors.index.json >extra/i &&
    mv extra/i extra/model.safetensors.index.json
must_fail_both extra "misnamed tensor" "layers\.0\.attn\.attn_sunk: unexpected tensor"
grep_err "layers\.0\.attn\.attn_sink: missing" "misnamed tensor: the expected name is missing"

# (d) wrong shape
fresh shape
dsv4-stedit shape/$S1 shape/new.st layers.0.attn.wkv.weight --shape 128,512 && mv shape/new.st shape/$S1
must_fail_both shape "wrong shape" "layers\.0\.attn\.wkv\.weight: shape \[128, 512\], expected \[512, 128\]"

# (e) wrong dtype, same size and different size
fresh dt
dsv4-stedit dt/$S1 dt/new.st layers.0.attn.wkv.weight --dtype I8 && mv dt/new.st dt/$S1
must_fail_both dt "wrong dtype (same width)" "layers\.0\.attn\.wkv\.weight: dtype I8, expected F8_E4M3"
fresh dt2
dsv4-stedit dt2/$S1 dt2/new.st layers.0.attn.attn_sink --dtype BF16 && mv dt2/new.st dt2/$S1
must_fail_both dt2 "wrong dtype (narrower)" "layers\.0\.attn\.attn_sink: dtype BF16, expected F32"

# values: a NaN scale byte
fresh nan
set -- $(dsv4-tcorrupt stoffset nan/$S1 layers.0.attn.wkv.scale) 0 0
dsv4-tcorrupt put8 nan/$S1 $1 255
must_fail_both nan "NaN scale byte" "layers\.0\.attn\.wkv\.scale: scale bytes out of range: 1 NaN"

# malformed index JSON: the message gives line and column
fresh badjson
sed '/"norm\.weight"/d' badjson/model.safetensors.index.json >badjson/i && mv badjson/i badjson/model.safetensors.index.json
expect 1 "--check: index with a trailing comma" -- dsv4-convert --check badjson
grep_err "model.safetensors.index.json.*line [0-9]*, column [0-9]*: trailing comma" "index JSON error has line and column"

# all the broken copies together: one exit status for the lot
expect 1 "--check of good and bad inputs exits 1" -- dsv4-convert --check tiny.dsv4 flip.dsv4
grep_out "^tiny.dsv4: OK$" "the good one is still OK"

finish
