#!/bin/sh
# The tokenizer (lib/tok.h) against Hugging Face tokenizers on the real
# DeepSeek-V4 tokenizer.json: ids of a varied corpus and of seeded random
# strings, round trips, the pre-tokenizer over every code point, decode of
# every id and of random sequences, streaming decode (tests/tools/tok_check.py).
# The reference is fetched once into .cache/tok by tests/tools/fetch-tokenizer.sh;
# without python3, venv, pip or the network the test is skipped (exit 77).
# DSV4_TOK_QUICK=1 runs fewer random cases.
. "$(dirname "$0")/lib.sh"

C=$(sh "$TOP/tests/tools/fetch-tokenizer.sh" 2>fetch.err); st=$?
if [ "$st" != 0 ]; then
    cat fetch.err
    [ "$st" = 77 ] && exit 77
    bad "fetch-tokenizer.sh failed"; finish; exit 1
fi
exec "$C/venv/bin/python" "$TOP/tests/tools/tok_check.py" "$C/tokenizer.json" \
    "$TOP/build/tools/dsv4-ttok" ${DSV4_TOK_QUICK:+--quick}
