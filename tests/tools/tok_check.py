"""Compare lib/tok.h (through build/tools/dsv4-ttok) with Hugging Face
`tokenizers` on the DeepSeek-V4 tokenizer.json.

    VENV/bin/python tests/tools/tok_check.py TOKENIZER.json DSV4_TTOK [--quick]

Checks, each printed as "ok: ..." or "FAILED: ...", then "N passed, N failed":
  * the ids of spec/DSML.md §5.4;
  * encode of the corpus (tok_corpus.py: fixed texts and seeded random
    mixtures, then long runs); text with invalid UTF-8 goes to HF decoded with
    errors="replace", as lib/tok.h documents; the C side also checks that
    every string round-trips (decode(encode(x)) == x, raw bytes kept with
    DSV4_TOK_RAW_BYTES);
  * encode with DSV4_TOK_NO_ADDED against HF without the added tokens;
  * the pre-tokenizer's pieces over a sweep of every code point in several
    contexts (the Unicode tables);
  * decode of every id, and of random id sequences (with and without
    skip_special_tokens);
  * the streaming decoder against the one-shot decode.
"""
import json
import os
import random
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tok_corpus import corpus, long_runs, sweep  # noqa: E402

from tokenizers import Tokenizer  # noqa: E402

PASS = FAIL = 0


def report(good, what, details=()):
    global PASS, FAIL
    if good:
        PASS += 1
        print("ok: " + what)
    else:
        FAIL += 1
        print("FAILED: " + what)
        for d in list(details)[:10]:
            print("    " + d)
    sys.stdout.flush()


def records(items):
    return b"".join(struct.pack("<I", len(b)) + b for b in items)


def read_records(data):
    out, off = [], 0
    while off < len(data):
        n = struct.unpack_from("<I", data, off)[0]
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


def ttok(args, stdin=b""):
    r = subprocess.run([TTOK] + args[:1] + [TOKJSON] + args[1:], input=stdin, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode(errors="replace")


def c_lines(args, texts):
    rc, out, err = ttok(args, records(texts))
    return rc, [[int(x) for x in ln.split()] for ln in out.decode().split("\n")[:-1]], err


def compare_ids(what, texts, theirs, ours):
    bad = ["%r: hf %s ours %s" % (texts[i][:80], theirs[i][:24], ours[i][:24] if i < len(ours) else None)
           for i in range(len(texts)) if i >= len(ours) or ours[i] != theirs[i]]
    report(not bad and len(ours) == len(texts),
           "%s: %d strings, %d tokens, %d mismatches" % (what, len(texts), sum(map(len, theirs)), len(bad)), bad)


def main():
    global TOKJSON, TTOK
    TOKJSON, TTOK = sys.argv[1], sys.argv[2]
    quick = "--quick" in sys.argv
    hf = Tokenizer.from_file(TOKJSON)

    # spec/DSML.md §5.4
    vectors = {
        "Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ": [19923, 3, 223, 5464, 5008, 1175, 19, 940, 223, 19, 438, 223, 20, 6113,
                                         257, 76589, 131, 100, 76032, 1628, 76589, 131, 108, 76589, 131, 98],
        "<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>":
            [128803, 30594, 128804, 128821, 36101, 128822, 7624, 1],
        "    int x = 10;\n\n  return x;\n": [361, 688, 1527, 438, 223, 553, 1048, 223, 1354, 1527, 510],
        "naïve café 東京タワー 12345 3.14159 😀 don't stop":
            [2720, 91223, 57664, 223, 66771, 11767, 37560, 4045, 223, 6895, 1883, 223, 21, 16, 9926, 3318,
             53769, 225, 2090, 1664, 6409],
    }
    texts = [k.encode() for k in vectors]
    rc, ours, err = c_lines(["encode"], texts)
    compare_ids("spec/DSML.md §5.4 vectors", texts, list(vectors.values()), ours)

    # the corpus
    texts = corpus(seed=1, n_random=1000 if quick else 3000)
    fixed = [b.decode("utf-8", "replace") for b in texts]
    theirs = [e.ids for e in hf.encode_batch(fixed, add_special_tokens=False)]
    rc, ours, err = c_lines(["encode"], texts)
    compare_ids("encode, invalid UTF-8 replaced", texts, theirs, ours)
    report(rc == 0, "every string round-trips through decode (lossy text)", err.splitlines())
    invalid = sum(1 for b, s in zip(texts, fixed) if s.encode() != b)
    rc, raw, err = c_lines(["encode", "raw"], texts)
    bad = [repr(texts[i][:60]) for i in range(len(texts)) if fixed[i].encode() == texts[i] and raw[i] != theirs[i]]
    report(rc == 0 and not bad, "DSV4_TOK_RAW_BYTES: %d strings round-trip byte for byte (%d with invalid "
           "UTF-8); valid ones encode as without the flag" % (len(texts), invalid), err.splitlines() + bad)

    # no added tokens: HF with an empty added-token list is the reference
    j = json.load(open(TOKJSON, encoding="utf-8"))
    j["added_tokens"] = []
    plain = Tokenizer.from_str(json.dumps(j))
    theirs = [e.ids for e in plain.encode_batch(fixed, add_special_tokens=False)]
    rc, ours, err = c_lines(["encode", "no-added"], texts)
    compare_ids("DSV4_TOK_NO_ADDED vs HF without added tokens", texts, theirs, ours)

    # long pieces and runs
    texts = long_runs()
    theirs = [hf.encode(b.decode(), add_special_tokens=False).ids for b in texts]
    rc, ours, err = c_lines(["encode"], texts)
    compare_ids("encode of %d long runs (%d characters each)" % (len(texts), 1 << 16), texts, theirs, ours)

    # the pre-tokenizer over (nearly) every code point
    texts = sweep(stride_far=997 if quick else 61)
    pre = hf.pre_tokenizer
    theirs = []
    for b in texts:
        s = b.decode()
        lens, at = [], 0
        for _piece, (lo, hi) in pre.pre_tokenize_str(s):
            assert lo == at
            lens.append(len(s[lo:hi].encode()))
            at = hi
        theirs.append(lens)
    rc, out, err = ttok(["split", "no-added"], records(texts))
    ours = [[int(x) for x in ln.split()] for ln in out.decode().split("\n")[:-1]]
    bad = []
    for i, (a, b) in enumerate(zip(theirs, ours)):
        if a != b:
            k = next(k for k in range(min(len(a), len(b))) if a[k] != b[k]) if a[:len(b)] != b[:len(a)] else 0
            off = sum(a[:k])
            bad.append("text %d at byte %d: hf %s ours %s near %r" % (i, off, a[k:k + 4], b[k:k + 4],
                                                                       texts[i][off:off + 24].decode("utf-8", "replace")))
    report(rc == 0 and not bad and len(ours) == len(theirs),
           "pre-tokenizer pieces: %d code points in %d texts, %d pieces, %d texts differ"
           % (sum(len(t.decode()) for t in texts) // 13, len(texts), sum(map(len, theirs)), len(bad)), bad)

    # decode every id
    n = hf.get_vocab_size(with_added_tokens=True)
    theirs = [s.encode() for s in hf.decode_batch([[i] for i in range(n)], skip_special_tokens=False)]
    rc, out, err = ttok(["vocab"])
    ours = read_records(out)
    bad = ["id %d: hf %r ours %r" % (i, theirs[i], ours[i]) for i in range(min(n, len(ours))) if ours[i] != theirs[i]]
    report(rc == 0 and len(ours) == n and not bad, "decode of each of the %d ids, %d differ" % (n, len(bad)), bad)

    # decode random id sequences (biased to ids that split UTF-8 sequences)
    rng = random.Random(2)
    partial = [i for i in range(n) if theirs[i].endswith("\ufffd".encode())]
    seqs = [[rng.choice(partial) if rng.random() < 0.4 else
             (n - 1 - rng.randrange(1300) if rng.random() < 0.15 else rng.randrange(n))
             for _ in range(rng.randrange(1, 40))] for _ in range(500 if quick else 2000)]
    packed = records([struct.pack("<%dI" % len(s), *s) for s in seqs])
    for flags, skip in (([], False), (["skip"], True)):
        theirs = [s.encode() for s in hf.decode_batch(seqs, skip_special_tokens=skip)]
        rc, out, err = ttok(["decode", "lossy"] + flags, packed)
        ours = read_records(out)
        bad = ["%s: hf %r ours %r" % (seqs[i], theirs[i], ours[i]) for i in range(min(len(ours), len(seqs)))
               if ours[i] != theirs[i]]
        report(rc == 0 and len(ours) == len(seqs) and not bad,
               "decode of %d random id sequences%s, %d differ"
               % (len(seqs), " skipping special tokens" if skip else "", len(bad)), bad)

    # streaming decode == one-shot decode
    rc, out, err = ttok(["stream", "7", "500" if quick else "3000"])
    report(rc == 0, "streaming decoder: " + out.decode().strip(), err.splitlines())

    print("%d passed, %d failed" % (PASS, FAIL))
    return 1 if FAIL else 0


if __name__ == "__main__":
    sys.exit(main())
