#!/bin/sh
# dsv4-kvdump: the description of snapshots made by dsv4-prefill -o from the
# tiny-v4 fixture (SWA, CSA and HCA layers and an MTP block), in text and
# JSON; --tokens round-trips the ids; --verify on good and damaged snapshots
# (truncated, flipped bytes in the header, a layer and the trailer, an
# unknown version, trailing bytes); standard input; -m with the right and a
# foreign model; --diff of identical, different and incomparable snapshots;
# usage errors.
. "$(dirname "$0")/lib.sh"

# size FILE: its size in bytes
size() { wc -c < "$1" | tr -d ' '; }
# field NAME: the value after "NAME:" in the last stdout
field() { sed -n "s/^$1: *//p" out; }
# eq GOT WANT DESC
eq() { if [ "$1" = "$2" ]; then ok "$3"; else bad "$3 (got '$1', wanted '$2')"; fi; }
no_out() { if [ -s out ]; then bad "$1 (stdout: $(head -c 200 out))"; else ok "$1"; fi; }

expect 0 "convert tiny-v4" -- dsv4-convert -q -o tiny.dsv4 "$FIXTURES/tiny-v4"
expect 0 "convert tiny-v4-swa (another model)" -- dsv4-convert -q -o swa.dsv4 "$FIXTURES/tiny-v4-swa"
dsv4-convert --info tiny.dsv4 > info.txt 2>&1
FP=$(sed -n 's/^ *fingerprint: *//p' info.txt)
[ ${#FP} = 64 ] && ok "model fingerprint known" || bad "no fingerprint in dsv4-convert --info: $(head -n 3 info.txt)"

# 300 ids: 75 CSA entries and 2 HCA entries per compressed layer
N=300
awk -v n=$N 'BEGIN { for (i = 1; i <= n; i++) print (i * 37) % 1024 }' > p.txt
head -n 250 p.txt > q.txt; echo 5 >> q.txt; tail -n 49 p.txt >> q.txt    # id 250 changed
head -n 200 p.txt > r.txt                                                    # a prefix

expect 0 "prefill -o a.kv (compact)" -- dsv4-prefill -q -m tiny.dsv4 -i p.txt --kv compact -o a.kv
expect 0 "prefill -o c.kv (compact, other chunks)" -- dsv4-prefill -q -m tiny.dsv4 -i p.txt --kv compact --chunk 7 -o c.kv
expect 0 "prefill -o b.kv (one id changed)" -- dsv4-prefill -q -m tiny.dsv4 -i q.txt --kv compact -o b.kv
expect 0 "prefill -o r.kv (a prefix)" -- dsv4-prefill -q -m tiny.dsv4 -i r.txt --kv compact -o r.kv
expect 0 "prefill -o bf.kv (bf16)" -- dsv4-prefill -q -m tiny.dsv4 -i p.txt --kv bf16 -o bf.kv
SZ=$(size a.kv)

# ---- the description -----------------------------------------------------

expect 0 "describe a.kv" -- dsv4-kvdump a.kv
[ ! -s err ] && ok "nothing on stderr" || bad "stderr: $(head -n 2 err)"
cp out a.txt
eq "$(field file)" "'a.kv'" "file: names the snapshot"
eq "$(field format)" "1.0, flags 0x0000" "format: 1.0, no flags"
eq "$(field model)" "$FP" "model: the fingerprint of tiny.dsv4"
eq "$(field layout)" "compact (entries 584 bytes, indexer keys 68 bytes)" "layout: compact, 584/68"
eq "$(field tokens)" "$N (MTP positions 0)" "tokens: $N"
grep_out "^dimensions: *vocab_size 1024, dim 128, hc_mult 4, window 128, head_dim 512, rope_dim 64, index_head_dim 128$" "dimensions"
eq "$(field layers)" "6 + 1 MTP" "layers: 6 + 1 MTP"
grep_out "^0  *SWA  *300  *128  *0  *1  *74752 " "layer 0: SWA, 128 window slots of 584 bytes"
grep_out "^1  *CSA  *300  *128  *75  *1 " "layer 1: CSA, 75 entries"
grep_out "^2  *HCA  *300  *128  *2  *1 " "layer 2: HCA, 2 entries"
grep_out "^5  *CSA  *300  *128  *75  *1 " "layer 5: CSA"
grep_out "^6  *MTP  *0  *0  *0  *1  *0 " "layer 6: the MTP block, empty"
grep_out "^tokens  *-  .* 1  *1200 " "tokens section: 4 bytes per id"
grep_out "^hidden  *-  .* 1  *2048 " "hidden section: 4 x 128 float32"
grep_out "^overhead: *header 272, chunk headers 864 (9 chunks), trailer 56 bytes$" "overhead: header, 9 chunk headers, trailer"
eq "$(field stream)" "$SZ bytes" "stream: the file size"
grep_out "^bytes/token: .*growth 498.12$" "growth: 3 CSA x 163 + 2 HCA x 4.5625"
grep_out "^checksums: *OK (header, 9 chunks, stream)$" "checksums: OK"
# the table adds up: raw and compressed sums, and header + chunks + trailer = file
awk '/^section/ { on = 1; next } on && NF == 0 { exit } on { r += $7; z += $8 }
     END { print r, z }' a.txt > sums.txt
read raw zst < sums.txt
grep_out "^payload: *$raw bytes raw, $zst compressed" "payload: the sums of the table"
eq $((272 + 9 * 96 + zst + 56)) "$SZ" "header + chunk headers + frames + trailer = file size"

expect 0 "describe bf.kv" -- dsv4-kvdump bf.kv
eq "$(field layout)" "bf16 (entries 1024 bytes, indexer keys 256 bytes)" "bf16 layout: 1024/256"
grep_out "^0  *SWA  *300  *128  *0  *1  *131072 " "bf16 layer 0: 128 slots of 1024 bytes"
grep_out "^bytes/token: .*growth 976.00$" "bf16 growth: 3 x 320 + 2 x 8"

# ---- JSON ------------------------------------------------------------------

expect 0 "--json" -- dsv4-kvdump --json a.kv
cp out a.json
eq "$(wc -l < a.json | tr -d ' ')" 1 "--json: one line"
grep_out "\"stream_bytes\": $SZ," "--json: stream_bytes is the file size"
grep_out "\"fingerprint\": \"$FP\"" "--json: fingerprint"
grep_out "\"tokens\": $N," "--json: tokens"
grep_out "\"raw_bytes\": $raw, \"compressed_bytes\": $zst," "--json: totals as in the text"
grep_out '"checksums": "ok"' "--json: checksums"
if command -v python3 >/dev/null 2>&1; then
    expect 0 "--json is valid JSON" -- python3 -m json.tool a.json
    cat > check.py <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
text = open(sys.argv[2]).read().split("\n")
rows = {}
on = False
for line in text:
    if line.startswith("section"):
        on = True
        continue
    if on and not line.strip():
        break
    if on:
        f = line.split()
        rows[f[0]] = f
kinds = [l["kind"] for l in j["layers"]]
assert kinds == ["SWA", "CSA", "HCA", "CSA", "HCA", "CSA", "MTP"], kinds
for l in j["layers"]:
    f = rows[str(l["index"])]
    assert [f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]), int(f[7])] == \
        [l["kind"], l["positions"], l["window_slots"], l["entries"], l["chunks"], l["raw_bytes"],
         l["compressed_bytes"]], (f, l)
for s in j["sections"]:
    f = rows[s["section"]]
    assert int(f[6]) == s["raw_bytes"] and int(f[7]) == s["compressed_bytes"], (f, s)
assert j["raw_bytes"] == sum(l["raw_bytes"] for l in j["layers"] + j["sections"])
assert j["stream_bytes"] == j["header_bytes"] + j["chunk_header_bytes"] + j["compressed_bytes"] + j["trailer_bytes"]
assert j["chunks"] == 9 and j["n_layers"] == 6 and j["n_mtp_layers"] == 1 and j["layout"] == "compact"
assert j["dimensions"]["head_dim"] == 512 and j["entry_bytes"] == 584 and j["ikey_bytes"] == 68
assert abs(j["bytes_per_token"]["growth"] - 498.125) < 1e-9
assert j["model_check"] is None and j["format"] == "1.0"
EOF
    expect 0 "--json agrees with the text, field by field" -- python3 check.py a.json a.txt
    sed 's/^/    /' err | tail -n 5
else
    echo "skip: python3 not installed, JSON not validated"
fi

# ---- --tokens ----------------------------------------------------------------

expect 0 "--tokens" -- dsv4-kvdump --tokens a.kv
if cmp -s out p.txt; then ok "--tokens prints the ids, one per line"; else bad "--tokens differs from the input ids"; fi
dsv4-kvdump --tokens a.kv | dsv4-prefill -q -m tiny.dsv4 --kv compact -o again.kv 2>err
if cmp -s again.kv a.kv; then ok "--tokens | dsv4-prefill rebuilds the same snapshot"; else bad "rebuilt snapshot differs: $(head -n 2 err)"; fi
expect 0 "--json --tokens" -- dsv4-kvdump --json --tokens a.kv
grep_out "\"token_ids\": \[$(head -n 3 p.txt | tr '\n' ',' | sed 's/,/, /g')" "--json --tokens: token_ids"
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json, sys; j = json.load(open("out")); print("\n".join(map(str, j["token_ids"])))' > ids.txt
    if cmp -s ids.txt p.txt; then ok "token_ids are the ids"; else bad "token_ids differ from the ids"; fi
fi

# ---- --verify ----------------------------------------------------------------

expect 0 "--verify a good snapshot" -- dsv4-kvdump --verify a.kv
grep_out "^'a.kv': OK (format 1.0, $N tokens, 9 chunks, $SZ bytes)$" "--verify: the verdict line"
eq "$(wc -l < out | tr -d ' ')" 1 "--verify: one line"
expect 0 "--verify -q" -- dsv4-kvdump --verify -q a.kv
no_out "--verify -q: nothing on stdout"

# damage NAME DESC PATTERN: --verify and plain both exit 1 naming the file and PATTERN
damage() {
    expect 1 "--verify: $2" -- dsv4-kvdump --verify "$1"
    grep_err "^dsv4-kvdump: '$1'" "$2: the message names the file"
    grep_err "$3" "$2: the message says what: $3"
    no_out "$2: nothing on stdout"
    expect 1 "describe: $2" -- dsv4-kvdump "$1"
    no_out "describe $2: nothing on stdout"
}
# offset of section K's first frame byte (0 tokens, 1 hidden, 2 + l layer l)
frame_at() {
    awk -v k="$1" '/^section/ { on = 1; next } on && NF == 0 { exit }
        on { if (i == k) { print off + 96; exit } off += 96 + $8; i++ }' a.txt | { read o; echo $((272 + o)); }
}
L3=$(frame_at 5)
Z3=$(awk '/^3  *CSA/ { print $8 }' a.txt)

head -c $((SZ - 1)) a.kv > t1.kv
damage t1.kv "truncated in the trailer" "truncated: the stream ends inside the trailer"
head -c $((L3 + 100)) a.kv > t2.kv
damage t2.kv "truncated in layer 3" "truncated: the stream ends inside the layer 3 data"
head -c 100 a.kv > t3.kv
damage t3.kv "truncated in the header" "truncated: the stream ends inside the header"
: > t4.kv
damage t4.kv "empty file" "truncated"

cp a.kv f1.kv; dsv4-tcorrupt flip f1.kv 50 >/dev/null
damage f1.kv "a flipped byte in the header" "the header is damaged (checksum mismatch)"
cp a.kv f2.kv; dsv4-tcorrupt flip f2.kv 200 >/dev/null
damage f2.kv "a flipped byte in a layer record" "the header is damaged"
cp a.kv f3.kv; dsv4-tcorrupt flip f3.kv $((L3 + Z3 / 2)) 0x10 >/dev/null
damage f3.kv "a flipped byte in layer 3's frame" "layer 3: chunk 0"
cp a.kv f4.kv; dsv4-tcorrupt flip f4.kv $((L3 - 10)) >/dev/null
damage f4.kv "a flipped byte in layer 3's chunk hash" "layer 3: chunk 0 is damaged (checksum mismatch)"
cp a.kv f5.kv; dsv4-tcorrupt flip f5.kv $((SZ - 1)) >/dev/null
damage f5.kv "a flipped byte in the trailer's hash" "the stream checksum does not match"
cp a.kv f6.kv; dsv4-tcorrupt flip f6.kv $((SZ - 56 + 8)) >/dev/null
damage f6.kv "a flipped byte in the trailer's chunk count" "the trailer counts"
cp a.kv f7.kv; dsv4-tcorrupt flip f7.kv $((SZ - 56)) >/dev/null
damage f7.kv "a flipped byte in the trailer's signature" "expected the trailer"
cp a.kv f8.kv; dsv4-tcorrupt flip f8.kv 0 >/dev/null
damage f8.kv "a flipped byte in the signature" "is not a KV snapshot"
cp a.kv v2.kv; dsv4-tcorrupt put16 v2.kv 8 2 >/dev/null
damage v2.kv "major version 2" "version 2.0 is not supported"
cp a.kv v3.kv; dsv4-tcorrupt put16 v3.kv 12 1 >/dev/null
damage v3.kv "an incompatible flag" "features this build does not know"
cp a.kv g1.kv; printf 'x' >> g1.kv
damage g1.kv "a byte after the trailer" "unexpected bytes after the trailer"
cat a.kv a.kv > g2.kv
damage g2.kv "two snapshots in one file" "unexpected bytes after the trailer"
cp a.kv m1.kv; dsv4-tcorrupt put16 m1.kv 10 7 >/dev/null
damage m1.kv "a minor version without its header hash" "header is damaged"

# what a later minor version may do is accepted (dsv4-snapshot(5),
# Compatibility): a higher minor, an ignorable flag, header fields before the
# header hash; the hashes and the trailer are rebuilt to match
if command -v python3 >/dev/null 2>&1; then
    cat > minor.py <<'EOF'
import hashlib, struct, sys
src, dst, minor, flags, extra = sys.argv[1], sys.argv[2], int(sys.argv[3], 0), int(sys.argv[4], 0), int(sys.argv[5], 0)
b = open(src, "rb").read()
hb = struct.unpack_from("<I", b, 16)[0]
head = bytearray(b[:hb - 32]) + bytes(extra)
struct.pack_into("<HH", head, 10, minor, flags)
struct.pack_into("<I", head, 16, len(head) + 32)
head += hashlib.blake2b(bytes(head), digest_size=32).digest()
body = bytes(head) + b[hb:len(b) - 56]
chunks = struct.unpack_from("<Q", b, len(b) - 48)[0]
# the stream hash: the header, then each 96-byte chunk header (frames are covered by their own hashes)
h = hashlib.blake2b(digest_size=32)
h.update(bytes(head))
off = hb
for _ in range(chunks):
    h.update(b[off:off + 96])
    off += 96 + struct.unpack_from("<Q", b, off + 24)[0]
tr = b"KV4TRAIL" + struct.pack("<QQ", chunks, len(body)) + h.digest()
open(dst, "wb").write(body + tr)
EOF
    python3 minor.py a.kv same.kv 0 0 0
    if cmp -s same.kv a.kv; then ok "minor.py rebuilds a.kv byte for byte"; else bad "minor.py does not rebuild a.kv"; fi
    python3 minor.py a.kv n1.kv 7 0x0100 16
    expect 0 "--verify: minor 7, flag bit 8, 16 more header bytes" -- dsv4-kvdump --verify n1.kv
    expect 0 "describe it" -- dsv4-kvdump n1.kv
    eq "$(field format)" "1.7, flags 0x0100" "format: 1.7 and the flag"
    grep_out "^overhead: *header 288," "the longer header is counted"
    python3 minor.py a.kv n2.kv 0 0x0080 0
    damage n2.kv "incompatible flag bit 7, hashes valid" "features this build does not know (flags 0x0080)"
else
    echo "skip: python3 not installed, later minor versions not tested"
fi

expect 1 "a missing file" -- dsv4-kvdump --verify nosuch.kv
grep_err "cannot open 'nosuch.kv'" "names the missing file"
expect 1 "a model file is not a snapshot" -- dsv4-kvdump tiny.dsv4
grep_err "'tiny.dsv4' is not a KV snapshot" "names it"

# ---- standard input and pipes ------------------------------------------------

dsv4-kvdump < a.kv > out 2>err
[ $? = 0 ] && ok "describe standard input" || bad "stdin: $(head -n 2 err)"
eq "$(field file)" "standard input" "file: standard input"
sed 1d out > s.txt; sed 1d a.txt > a1.txt
if cmp -s s.txt a1.txt; then ok "the same description as from the file"; else bad "stdin description differs"; fi
cat a.kv | dsv4-kvdump --verify - > out 2>err
[ $? = 0 ] && ok "--verify - from a pipe" || bad "pipe: $(head -n 2 err)"
grep_out "^standard input: OK (format 1.0, $N tokens, 9 chunks, $SZ bytes)$" "pipe: the verdict names standard input"
dsv4-prefill -q -m tiny.dsv4 -i p.txt --kv compact -o - | dsv4-kvdump --verify > out 2>err
[ $? = 0 ] && ok "dsv4-prefill -o - | dsv4-kvdump --verify" || bad "prefill pipe: $(head -n 2 err)"
cat t2.kv | dsv4-kvdump --verify > out 2>err
[ $? = 1 ] && ok "a truncated pipe exits 1" || bad "truncated pipe did not exit 1"
grep_err "^dsv4-kvdump: standard input: truncated" "truncated pipe: names standard input"
cat g1.kv | dsv4-kvdump > out 2>err
[ $? = 1 ] && ok "trailing bytes in a pipe exit 1" || bad "trailing bytes in a pipe did not exit 1"
grep_err "standard input: unexpected bytes after the trailer" "trailing bytes in a pipe: named"
dsv4-kvdump --tokens < a.kv > out 2>err
if cmp -s out p.txt; then ok "--tokens from standard input"; else bad "--tokens from stdin differs"; fi
if script --version 2>/dev/null | grep -q util-linux; then
    script -qec "dsv4-kvdump; echo rc=\$?" /dev/null < /dev/null > tty.log 2>&1
    if grep -q 'rc=1' tty.log && grep -q 'standard input is a terminal' tty.log; then ok "a terminal on stdin is refused"
    else bad "terminal stdin: $(head -c 200 tty.log | tr -d '\000')"; fi
else
    echo "skip: no util-linux script(1), terminal refusal not tested"
fi

# ---- -m ------------------------------------------------------------------------

expect 0 "-m the right model" -- dsv4-kvdump -m tiny.dsv4 a.kv
grep_out "^model check: *OK, made with 'tiny.dsv4'$" "model check: OK"
expect 0 "--verify -m the right model" -- dsv4-kvdump --verify -m tiny.dsv4 a.kv
grep_out "OK (.*, made with 'tiny.dsv4')$" "verdict names the model"
expect 0 "--json -m" -- dsv4-kvdump --json -m tiny.dsv4 a.kv
grep_out '"model_check": "tiny.dsv4"' "--json: model_check"
expect 1 "-m another model" -- dsv4-kvdump -m swa.dsv4 a.kv
grep_err "'a.kv' was made with another model (fingerprint ${FP%${FP#????????????????}}" "names the snapshot and its fingerprint"
no_out "another model: nothing on stdout"
expect 1 "--verify -m another model" -- dsv4-kvdump --verify -m swa.dsv4 a.kv
grep_err "another model" "--verify: another model"
expect 1 "-m a missing model" -- dsv4-kvdump -m nosuch.dsv4 a.kv
grep_err "nosuch.dsv4" "names the missing model"

# ---- --diff --------------------------------------------------------------------

expect 0 "--diff of identical snapshots" -- dsv4-kvdump --diff a.kv c.kv
grep_out "^tokens: *identical$" "identical: tokens"
grep_out "^hidden: *identical" "identical: hidden"
grep_out "^1  *CSA  *0  *0  *0  *0  *identical$" "identical: CSA layer, all differences 0"
grep_out "^2  *HCA  *0  *0  *-  *0  *identical$" "identical: HCA layer has no indexer keys"
grep_out "^0  *SWA  *0  *-  *-  *-  *identical$" "identical: SWA layer has only its window"
grep_out "^result: *identical$" "identical: result"
expect 1 "--diff of different snapshots" -- dsv4-kvdump --diff a.kv b.kv
grep_out "^tokens: *differ at position 250 (71, 5)$" "different: the first differing token"
grep_out "^hidden: *differs" "different: hidden"
grep_out "^3  *CSA  *[0-9.e+-]*  *[0-9.e+-]*  *[0-9.e+-]*  *[0-9.e+-]*  *differs$" "different: layer 3 differs"
grep_out "^result: *different; layers that differ: 0 1 2 3 4 5$" "different: names the layers"
grep_out "^6  *MTP .* identical$" "different: the MTP block did not run in either"
expect 1 "--diff against a prefix" -- dsv4-kvdump --diff a.kv r.kv
grep_out "^tokens: *differ at position 200 (b ends there)$" "prefix: where b ends"
grep_out "^1  *CSA  *0  *0  *0  *[0-9.e+-]*  *differs$" "prefix: the positions both hold are equal"
head -n 100 p.txt > first.txt; tail -n 200 p.txt > rest.txt
dsv4-prefill -q -m tiny.dsv4 --kv compact -i first.txt -o two.kv &&
    dsv4-prefill -q -m tiny.dsv4 -r two.kv -i rest.txt -o two.kv 2>err
expect 0 "--diff: a resumed snapshot is the one-run snapshot" -- dsv4-kvdump --diff a.kv two.kv
expect 2 "--diff of compact and bf16" -- dsv4-kvdump --diff a.kv bf.kv
grep_err "'a.kv' and 'bf.kv' cannot be compared: their KV layouts differ" "incomparable layouts are refused"
expect 2 "--diff with a damaged snapshot is trouble" -- dsv4-kvdump --diff a.kv f3.kv
grep_err "'f3.kv': layer 3" "names the damaged one"
expect 2 "--diff with a missing snapshot" -- dsv4-kvdump --diff a.kv nosuch.kv
expect 1 "--diff -q of different snapshots" -- dsv4-kvdump --diff -q a.kv b.kv
no_out "--diff -q: nothing on stdout"
dsv4-kvdump --diff - c.kv < a.kv > out 2>err
[ $? = 0 ] && ok "--diff with A on standard input" || bad "--diff - c.kv: $(head -n 2 err)"
grep_out "^a: *standard input" "--diff: names standard input"
expect 0 "--diff -m" -- dsv4-kvdump --diff -m tiny.dsv4 a.kv c.kv
expect 2 "--diff -m another model" -- dsv4-kvdump --diff -m swa.dsv4 a.kv c.kv

# ---- progress and usage ----------------------------------------------------------

expect 0 "--progress" -- dsv4-kvdump --progress --verify a.kv
grep_err "reading 100.0% (" "--progress shows a reading line to 100%"
expect 0 "no progress for a small snapshot" -- dsv4-kvdump --verify a.kv
[ ! -s err ] && ok "no progress line by default" || bad "stderr: $(head -c 100 err)"

expect 2 "unknown option" -- dsv4-kvdump --no-such-option a.kv
grep_err "--help" "points to --help"
expect 2 "two snapshots without --diff" -- dsv4-kvdump a.kv c.kv
grep_err "unexpected argument 'c.kv'" "names the extra argument"
expect 2 "--diff with one snapshot" -- dsv4-kvdump --diff a.kv
grep_err "two snapshots" "says --diff needs two"
expect 2 "--diff with three" -- dsv4-kvdump --diff a.kv b.kv c.kv
expect 2 "--diff - -" -- dsv4-kvdump --diff - -
expect 2 "--diff --json" -- dsv4-kvdump --diff --json a.kv c.kv
expect 2 "--verify --tokens" -- dsv4-kvdump --verify --tokens a.kv
expect 2 "--verify --json" -- dsv4-kvdump --verify --json a.kv
expect 2 "-m without a value" -- dsv4-kvdump a.kv -m
expect 0 "--help" -- dsv4-kvdump --help
grep_out "dsv4-snapshot(5)" "--help names the format page"

finish
