#!/bin/sh
# seeds.sh — fill build/fuzz/corpus/<target>/ with seed inputs, made from the
# fixtures (../shared/fixtures or $DSV4_FIXTURES), tests/data and small files
# that build/fuzz/mkseeds and the programs in bin/ write.  Seeds are named
# seed-*; what the fuzzers add to a corpus is left alone, so a corpus grows
# from run to run (delete build/fuzz/corpus to start over).  Needs `make
# fuzz-build` (bin/, build/fuzz/mkseeds) first.  Idempotent.
set -u
cd "$(dirname "$0")/../.." || exit 1
LC_ALL=C; export LC_ALL
FX=${DSV4_FIXTURES:-../shared/fixtures}
C=build/fuzz/corpus
W=build/fuzz/seedwork
TOKC=${DSV4_TOK_CACHE:-.cache/tok}
die() { echo "seeds.sh: $*" >&2; exit 1; }
[ -x build/fuzz/mkseeds ] && [ -x bin/dsv4-convert ] && [ -x bin/dsv4-prefill ] ||
    die "build first: make fuzz-build"
[ -f "$FX/tiny-v4-swa/config.json" ] || die "no fixtures at $FX (set DSV4_FIXTURES)"
mkdir -p "$W" || exit 1
for t in json safetensors tok model toks snap dsml chat; do mkdir -p "$C/$t" || exit 1; done
put() { rm -f "$C/$1/seed-$3"; cat "$2" > "$C/$1/seed-$3" || die "cannot copy $2"; }   # put TARGET FILE NAME
# the first 8 + header-length bytes of a safetensors file: its header alone
st_header() { n=$(od -An -t u8 -N 8 "$1" | tr -d ' '); head -c $((8 + n)) "$1"; }

build/fuzz/mkseeds "$W" "$FX/tiny-v4-swa/config.json" || die "mkseeds failed"

# json: config files, chat documents, a few hand-written edge cases
for f in "$FX"/*/config.json; do d=${f%/config.json}; put json "$f" "config-${d##*/}.json"; done
put json "$FX/tiny-v4/generation_config.json" generation_config.json
put json "$FX/tiny-v4/stats.json" stats.json
for f in tests/data/*.json; do put json "$f" "${f##*/}"; done
printf '[1, -0, 0.5, 1e-7, 123456789012345678901234567890, -1.5E+300, true, false, null]' > "$C/json/seed-numbers.json"
printf '{"s": "a\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\u0000", "e": "", "o": {"": {}}, "a": [[], [{}]]}' \
    > "$C/json/seed-strings.json"
printf '{"k": 1, "k": 2, "lone": "\\ud800"}' > "$C/json/seed-dupkeys.json"

# safetensors: whole small files; the headers of the fixture shards; folder mode
put safetensors "$W/single.safetensors" single.safetensors
put safetensors "$W/index.seed" index
for d in tiny-v4-swa tiny-v4-csa; do
    for f in "$FX/$d"/*.safetensors; do
        b=${f##*/}; st_header "$f" > "$C/safetensors/seed-$d-${b%.safetensors}.hdr"
    done
done

# tok: the small handmade tokenizer.json; with python3 and the fetched V4
# tokenizer (tests/tools/fetch-tokenizer.sh), a cut-down copy of it as well
put tok "$W/tokenizer.json" tokenizer.json
if [ -f "$TOKC/tokenizer.json" ] && command -v python3 >/dev/null 2>&1; then
    python3 - "$TOKC/tokenizer.json" "$C/tok/seed-v4-small.json" <<'PYEOF' || echo "seeds.sh: no cut-down V4 tokenizer" >&2
import json, sys
j = json.load(open(sys.argv[1], encoding="utf-8"))
m = j["model"]
keep = {k: v for k, v in m["vocab"].items() if v < 600}
def parts(x):
    return x.split(" ", 1) if isinstance(x, str) else x
m["merges"] = [x for x in m["merges"] if all(p in keep for p in parts(x)) and "".join(parts(x)) in keep][:300]
m["vocab"] = keep
j["added_tokens"] = [a for a in j["added_tokens"] if a["id"] < 600 or a["content"].startswith("<\uff5c")][:40]
json.dump(j, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False, separators=(",", ":"))
PYEOF
fi

# model: two ~20 KB .dsv4 files; the header and metadata of a converted fixture
put model "$W/model.dsv4" model.dsv4
put model "$W/model-q.dsv4" model-q.dsv4
if [ ! -f "$W/swa.dsv4" ]; then
    bin/dsv4-convert -q -f -o "$W/swa.dsv4" "$FX/tiny-v4-swa" || die "dsv4-convert failed"
fi
head -c 40960 "$W/swa.dsv4" > "$C/model/seed-swa-meta.dsv4"

# toks: text and binary token streams
printf '0 1 2\n3\n' > "$C/toks/seed-text"
printf '  10\t20\r\n4294967295\n' > "$C/toks/seed-text-ws"
printf '' > "$C/toks/seed-empty"
hdr() { printf '\211TK4\r\n\032\n\001\000\000\000\000\000\000\000\070\000\000\000%b' "$1"; \
        head -c 32 /dev/zero | tr '\000' "$2"; }
{ hdr '\000\004\000\000' '\000'; printf '\001\000\000\000\377\003\000\000'; } > "$C/toks/seed-bin"
{ hdr '\000\000\000\000' '\001'; printf '\007\000\000\000'; } > "$C/toks/seed-bin-fp"

# snap: snapshots of each layer kind, made by dsv4-prefill on a few tokens
for k in swa csa hca; do
    [ -f "$W/$k.dsv4" ] || bin/dsv4-convert -q -f -o "$W/$k.dsv4" "$FX/tiny-v4-$k" || die "dsv4-convert failed"
done
printf '0 5 9 13 200\n' > "$W/t5"
printf '0 5 9 13\n' > "$W/t4"
printf '0 5\n' > "$W/t2"
run() { bin/dsv4-prefill -q -f -m "$W/$1.dsv4" -i "$W/$2" -o "$C/snap/seed-$1-$2-$3.kv" --kv "$3" || die "dsv4-prefill failed"; }
run swa t5 compact
run swa t2 bf16
run csa t4 compact
run hca t2 compact

# dsml and chat: the DSML.md examples
for f in tests/data/chat/*.txt; do put dsml "$f" "${f##*/}"; done
for f in tests/data/chat/*.json; do put chat "$f" "${f##*/}"; done
for t in json safetensors tok model toks snap dsml chat; do
    printf '%s: %s seeds\n' "$t" "$(ls "$C/$t" | grep -c '^seed-')"
done
