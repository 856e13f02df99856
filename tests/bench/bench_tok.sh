#!/bin/sh
# Tokenizer benchmark (run by `make bench`): lib/tok.h against Hugging Face
# tokenizers on the same corpus, single thread; see bench_tok.py.  Fetches
# the reference once like the tests (tests/tools/fetch-tokenizer.sh) and says
# why when it cannot.  Never fails on slowness.
#   usage: sh tests/bench/bench_tok.sh [N_RANDOM]     (default 20000 strings)
TOP=$(cd "$(dirname "$0")/../.." && pwd)
C=$(sh "$TOP/tests/tools/fetch-tokenizer.sh") || { echo "bench_tok: skipped (no reference tokenizer)"; exit 0; }
exec "$C/venv/bin/python" "$TOP/tests/bench/bench_tok.py" "$C/tokenizer.json" "$TOP/build/tools/dsv4-ttok" "$@"
