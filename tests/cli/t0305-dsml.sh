#!/bin/sh
# dsv4-dsml without a tokenizer: encode --text is byte-exact on DeepSeek's
# official vectors and the worked examples of DSML.md §4 (tests/data/chat),
# --thinking overrides the document, parse (lenient and --strict), output
# safety, and bad input of every kind (exit 1 naming the file) and bad usage
# (exit 2).
. "$(dirname "$0")/lib.sh"

SPEC=${DSV4_SPEC:-$TOP/../shared/spec}
VEC=$SPEC/encoding-tests
DATA=$TOP/tests/data/chat
EOS='<｜end▁of▁sentence｜>'
D='｜DSML｜'

# same A B DESC: files A and B are byte-identical
same() { if cmp -s "$1" "$2"; then ok "$3"; else bad "$3 ($1 and $2 differ)"; cmp "$1" "$2" | head -n 2; fi; }

# ---- encode --text ------------------------------------------------------------

for i in 1 2 3 4; do
    mode=high; [ $i = 4 ] && mode=chat
    expect 0 "official vector $i" -- dsv4-dsml encode --text --thinking $mode "$VEC/test_input_$i.json"
    same out "$VEC/test_output_$i.txt" "official vector $i is byte-exact"
done
for f in "$DATA"/*.json; do
    n=${f##*/}; n=${n%.json}
    expect 0 "DSML.md example $n" -- dsv4-dsml encode --text "$f"
    same out "$DATA/$n.txt" "DSML.md example $n is byte-exact"
done
expect 0 "--thinking overrides the document" -- dsv4-dsml encode --text --thinking chat "$DATA/4.1-high.json"
same out "$DATA/4.1-chat.txt" "--thinking chat on a high document gives the chat prompt"
expect 0 "the default mode is high" -- sh -c "printf '[{\"role\":\"user\",\"content\":\"hi\"}]' | dsv4-dsml encode --text"
printf '<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>' > want.txt
same out want.txt "standard input, Think High, no newline added"
expect 0 "max from the command line" -- dsv4-dsml encode --text --thinking max - < "$DATA/4.1-chat.json"
same out "$DATA/4.1-max.txt" "'-' reads standard input"
expect 0 "--keep-thinking" -- dsv4-dsml encode --text --keep-thinking "$DATA/4.3-high.json"
same out "$DATA/4.3-keep.txt" "--keep-thinking keeps earlier reasoning"

# -o: atomic, no overwrite without --force
expect 0 "encode -o" -- dsv4-dsml encode --text -o p.txt "$DATA/4.1-chat.json"
same p.txt "$DATA/4.1-chat.txt" "-o writes the prompt"
[ ! -s out ] && ok "nothing on stdout with -o" || bad "wrote to stdout with -o"
expect 1 "existing output" -- dsv4-dsml encode --text -o p.txt "$DATA/4.1-high.json"
grep_err "'p.txt' already exists" "refuses to overwrite"
expect 0 "--force overwrites" -- dsv4-dsml encode --text -f -o p.txt "$DATA/4.1-high.json"
same p.txt "$DATA/4.1-high.txt" "--force replaced the file"
if ls -a | grep -q '\.tmp\.'; then bad "temp files left"; else ok "no temp files left"; fi

# ---- bad chat input -------------------------------------------------------------

# refuse FILE CONTENT PATTERN: encode --text of FILE holding CONTENT (printf
# escapes allowed) exits 1 with PATTERN on stderr
refuse() {
    printf "$2" > "$1"
    expect 1 "$1 is refused" -- dsv4-dsml encode --text "$1"
    grep_err "$3" "$1: the error names the file and the problem"
}
refuse badjson.json '[{"role": "user", "content": "x"},\n {"role": "user" "content": "y"}]' \
    "^dsv4-dsml: 'badjson.json': line 2, column"
refuse role.json '[{"role": "robot", "content": "x"}]' "'role.json': messages\[0\].role: unknown role 'robot'"
refuse tool.json '[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c", "content": "r"}]' \
    "'tool.json': messages\[1\]: tool result without a preceding assistant tool call"
refuse toolid.json '[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"b","content":"r"}]' \
    "messages\[2\].tool_call_id: 'b' matches no tool call of messages\[1\]"
refuse undef.json '{"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"g","arguments":"{}"}}]}]}' \
    "'undef.json': messages\[1\].tool_calls\[0\].function.name: 'g' is not a defined tool"
refuse latin1.json '[{"role": "user", "content": "caf\351"}]' "'latin1.json': line 1, column 34: invalid UTF-8"
refuse think.json '{"messages": [], "thinking": "low"}' "thinking: expected"
expect 1 "missing file" -- dsv4-dsml encode --text nosuch.json
grep_err "cannot open 'nosuch.json'" "missing file named"

# ---- parse ------------------------------------------------------------------------

printf 'Let me check.\n\n<%stool_calls>\n<%sinvoke name="search">\n<%sparameter name="q" string="true">x<y & "z"\nline 2</%sparameter>\n<%sparameter name="opts" string="false">{"n": 3}</%sparameter>\n</%sinvoke>\n</%stool_calls>%s' \
    "$D" "$D" "$D" "$D" "$D" "$D" "$D" "$D" "$EOS" > calls.txt
for s in "" --strict; do
    expect 0 "parse $s" -- dsv4-dsml parse --thinking chat $s calls.txt
    grep_out '^{"role": "assistant", "content": "Let me check.", "reasoning_content": "", "tool_calls": \[{"id": "call_[0-9a-f]\{24\}", "type": "function", "function": {"name": "search", "arguments": "{\\"q\\": \\"x<y & \\\\\\"z\\\\\\"\\\\nline 2\\", \\"opts\\": {\\"n\\": 3}}"}}\]}$' "parse $s: the message"
    cp out "msg$s.json"
done
same msg.json msg--strict.json "lenient and strict agree on well-formed output"
printf 'Simple arithmetic.</think>2 + 2 = 4.%s' "$EOS" > think.txt
expect 0 "parse thinking (the default)" -- dsv4-dsml parse think.txt
grep_out '"content": "2 + 2 = 4.", "reasoning_content": "Simple arithmetic.", "tool_calls": \[\]' "reasoning split at </think>"
printf 'Hello wor' > trunc.txt
expect 0 "lenient: truncated" -- dsv4-dsml parse --thinking chat trunc.txt
grep_out '"content": "Hello wor"' "truncated text kept as content"
expect 1 "strict: truncated" -- dsv4-dsml parse --strict --thinking chat trunc.txt
grep_err "'trunc.txt': invalid format: missing the end-of-sentence token" "strict error names the file"
head -c 120 calls.txt > cut.txt
expect 0 "lenient: block cut in a value" -- dsv4-dsml parse --thinking chat cut.txt
grep_out '"content": "Let me check.\\n\\n<｜DSML｜tool_calls>' "the cut block stays in content"
grep_out '"tool_calls": \[\]' "no call from a cut block"
printf 'a\377b' > bad8.txt
expect 1 "parse: invalid UTF-8" -- dsv4-dsml parse bad8.txt
grep_err "'bad8.txt': line 1, column 2: invalid UTF-8" "parse: invalid UTF-8 named"

# ---- usage -------------------------------------------------------------------------

expect 2 "no command" -- dsv4-dsml
grep_err "missing command" "no command: says so"
expect 2 "unknown command" -- dsv4-dsml frobnicate
grep_err "unknown command 'frobnicate'" "unknown command named"
expect 2 "--raw with encode" -- dsv4-dsml encode --raw x.json
grep_err "option '--raw' does not apply to 'encode'" "misplaced option named"
expect 2 "encode without a tokenizer" -- dsv4-dsml encode x.json
grep_err "needs a tokenizer" "missing tokenizer"
expect 2 "bad --thinking" -- dsv4-dsml encode --text --thinking low x.json
expect 2 "bad --format" -- dsv4-dsml tokenize --tokenizer t.json --format hex
expect 2 "two inputs" -- dsv4-dsml parse a.txt b.txt
expect 2 "--model and --tokenizer" -- dsv4-dsml decode -m m.dsv4 --tokenizer t.json

finish
