"""Tokenizer throughput: lib/tok.h (through build/tools/dsv4-ttok bench)
against Hugging Face tokenizers, single thread, on the same texts.  Run by
tests/bench/bench_tok.sh.  Two corpora from tests/tools/tok_corpus.py:
"mixed", the test corpus's kinds of text and seeded random mixtures (seed 3),
and "text", its fixed English, CJK, code and number texts, each 300 times
(ordinary text, and repeated strings favour HF's cache across calls).

    VENV/bin/python tests/bench/bench_tok.py TOKENIZER.json DSV4_TTOK [N_RANDOM]

Three ways for each side: one encode call per string, HF's encode_batch
(serial: TOKENIZERS_PARALLELISM=false), and the whole corpus joined into one
text.  Best of three runs each.  Prints tokens/s and MB/s (1 MB = 1e6 bytes
of UTF-8 input) and our speed over HF's.  Not a test: it never fails on
slowness.
"""
import os
import struct
import subprocess
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import tok_corpus  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402


def best(fn, reps=3):
    t = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        r = fn()
        t = min(t, time.perf_counter() - t0)
    return t, r


def run(name, texts, hf, tokjson, ttok):
    data = [s.encode() for s in texts]
    nbytes = sum(map(len, data))
    whole = "".join(texts)
    rows = []
    t, ntok = best(lambda: sum(len(hf.encode(s, add_special_tokens=False).ids) for s in texts))
    rows.append(("hf", "one call per string", t, ntok))
    t, ntok = best(lambda: sum(len(e.ids) for e in hf.encode_batch(texts, add_special_tokens=False)))
    rows.append(("hf", "encode_batch (serial)", t, ntok))
    t, ntok = best(lambda: len(hf.encode(whole, add_special_tokens=False).ids))
    rows.append(("hf", "one joined text", t, ntok))

    recs = b"".join(struct.pack("<I", len(b)) + b for b in data)
    r = subprocess.run([ttok, "bench", tokjson], input=recs, capture_output=True, check=True)
    load = 0.0
    for line in r.stdout.decode().splitlines():
        f = line.split()
        if f[0] == "load:":
            load = float(f[1])
        elif f[0] == "one:":
            rows.append(("dsv4", "one call per string", float(f[1]), int(f[2])))
        elif f[0] == "joined:":
            rows.append(("dsv4", "one joined text", float(f[1]), int(f[2])))

    print("%s corpus: %d strings, %.2f MB" % (name, len(texts), nbytes / 1e6))
    print("  %-5s %-22s %9s %10s %12s %8s" % ("", "mode", "seconds", "tokens", "tokens/s", "MB/s"))
    for who, mode, t, ntok in rows:
        print("  %-5s %-22s %9.3f %10d %12.0f %8.2f" % (who, mode, t, ntok, ntok / t, nbytes / 1e6 / t))
    sec = {(w, m): t for w, m, t, _ in rows}
    one, batch, joined = "one call per string", "encode_batch (serial)", "one joined text"
    print("  dsv4 one call per string: %.2fx HF one call per string, %.2fx HF encode_batch; "
          "one joined text: %.2fx HF" % (sec["hf", one] / sec["dsv4", one], sec["hf", batch] / sec["dsv4", one],
                                         sec["hf", joined] / sec["dsv4", joined]))
    return load


def main():
    tokjson, ttok = sys.argv[1], sys.argv[2]
    n_random = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    t0 = time.perf_counter()
    hf = Tokenizer.from_file(tokjson)
    hf_load = time.perf_counter() - t0
    print("tokenizer benchmark, single thread, best of 3 (HF tokenizers %s)" % __import__("tokenizers").__version__)
    mixed = [b.decode("utf-8", "replace") for b in tok_corpus.corpus(seed=3, n_random=n_random)]
    load = run("mixed", mixed, hf, tokjson, ttok)
    text = (tok_corpus.ENGLISH + tok_corpus.CJK + tok_corpus.CODE + tok_corpus.DIGITS) * 300
    run("text", text, hf, tokjson, ttok)
    print("loading tokenizer.json: dsv4 %.3f s, hf %.3f s" % (load, hf_load))


if __name__ == "__main__":
    main()
