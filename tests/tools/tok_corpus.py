"""The tokenizer test corpus: fixed texts of many kinds plus seeded random
mixtures, as a list of bytes (some of them not valid UTF-8).

    from tok_corpus import corpus, sweep
    texts = corpus(seed=1, n_random=3000)

Used by tests/tools/tok_check.py (C tokenizer vs HF tokenizers) and
tests/bench/bench_tok.sh.  Only the standard library is needed.
"""
import random

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "It's a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. Don't we'll they're I'd you've HE'S SHE'LL",
    "Mr. O'Neil paid $1,234.56 (incl. 20% VAT) on 2024-03-15 at 09:30am -- see https://example.com/a?b=c&d=e#f.",
    "e-mail: first.last+tag@example.co.uk; tel +1 (555) 010-9999 x42",
    "\"Quoted,\" she said; 'single' ... ellipsis… em—dash – en dash «guillemets» ‘curly’ “double”",
]
CJK = [
    "深度求索的模型在数学和代码上表现出色。我们今天去北京吧！",
    "你好，世界。這是繁體中文的句子，包含標點符號：「引號」、（括號）。",
    "日本語の文章です。カタカナとひらがな、そして漢字が混ざっています。ｶﾀｶﾅ半角もある。",
    "東京タワーは１９５８年に完成しました。㈱ヰヱ〆〇々〻",
    "한국어 문장입니다. 안녕하세요, 만나서 반갑습니다! ㄱㄴㄷ ᄀᄂᄃ",
    "中文English混合mixed文本text１２３abc",
]
CODE = [
    "#include <stdio.h>\n\nint main(int argc, char **argv)\n{\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n",
    "def f(x: int) -> list[int]:\n    \"\"\"Doc.\"\"\"\n    return [i ** 2 for i in range(x) if i % 3 == 0]\n\n\nif __name__ == '__main__':\n\tprint(f(10))\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{:?}\", v);\n}\n",
    "const add = (a, b) => a + b; // arrow\nexport default { add, x: [1, 2, 3], 'k-v': null };\r\n",
    "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 3; i++ {\n\t\tfmt.Println(i)\n\t}\n}\n",
    "#!/bin/sh\nset -eu\nfor f in *.txt; do [ -f \"$f\" ] && wc -l \"$f\" | awk '{print $1}'; done 2>/dev/null\n",
    "<!DOCTYPE html>\n<html><body class=\"x\"><p>Hi &amp; bye</p><br/></body></html>\n",
    "{\"key\": [1, 2.5e-3, true, null], \"nested\": {\"a\": \"b\\u00e9\"}}",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "\\begin{equation} \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2} \\end{equation}",
    "x+=1;y-=2;z*=3;w/=4;a<<=1;b>>=2;c&&d||!e;f?.g??h;i===j!==k;",
]
SPACES = [
    " ", "  ", "   ", " " * 17, " " * 1000, "\t", "\t\t\t", "\n", "\n\n", "\n" * 50, "\r\n", "\r\n\r\n",
    "\r", " \n", "\n ", " \t \n \r\n\t ", "a" + " " * 300 + "b", "a\t\t\tb\n\n\nc", "x \n\n  y  \t\n",
    "  return", "\t\treturn;\n", "line1\r\nline2\r\n\r\n  line3", "\u00a0\u2003\u3000x\u2028y\u2029z\u0085",
    "\u000b\u000c\u001c\u001f", " " * 5000, "\n \n \n " * 200, "end   ",
]
DIGITS = ["0", "12", "123", "1234", "12345", "123456", "1234567890", "9" * 41, "3.14159265358979",
          "1,000,000", "1e-10", "0x1F2E3D", "１２３４５", "٠١٢٣٤٥٦٧٨٩", "०१२३४", "²³¹⁴", "½¾⅓", "ⅫⅯ",
          "①②③", "𝟏𝟐𝟑", "v1.2.3-rc4", "2024年3月15日", "12ab34cd", "a1b22c333d4444"]
EMOJI = ["😀", "😀😃😄", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇫🇷🇯🇵🇺🇸", "1️⃣#️⃣",
         "❤️ love ❤", "I ❤️ 🍕!", "🧑🏿\u200d🚀 in 🚀", "emoji😀inside😀words", "☺︎☺️"]
MARKS = ["e\u0301", "Cafe\u0301 re\u0301sume\u0301", "Z\u0351\u036b\u0343\u036a\u0302a\u0357l\u0311g\u0310o\u0488",
         "नमस्ते दुनिया", "สวัสดีครับ", "مرحبا بالعالم", "שָׁלוֹם עוֹלָם", "ἀλήθεια Ἀθῆναι",
         "Привет, мир! Ёжик", "Ελληνικά", "ქართული", "Հայերեն", "\u0300\u0301 leading marks",
         "a\u200db\u200cc\ufeffd\u2060e", "\u0915\u094d\u0937", "ﬁ ﬂ ǅ ǈ"]
SPECIAL = ["<｜User｜>", "<｜Assistant｜>", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "｜DSML｜",
           "<think>", "</think>", "<｜User｜>hi<｜Assistant｜><think>x</think>y<｜end▁of▁sentence｜>",
           "<<｜User｜>>", "<｜User", "｜User｜>", "<think><think>", "<｜DSML｜tool_calls>", "text｜DSML｜text",
           "<｜begin▁of▁sentence｜><｜begin▁of▁sentence｜>", "<|User|>", "<｜User｜ >", "<｜image｜>",
           # normalized and non-normalized added tokens next to and inside each other
           "<｜image2｜>", "<｜image2｜><｜image｜>2", "<｜/table>｜<｜table｜>", "<｜/td｜><｜td｜><｜/tr｜>",
           "<dsml:x</dsml:y>", "<<dsml:<｜tr｜>", "<|EOT|><｜EOT｜>", "<｜<｜User｜>｜>",
           "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>",
           "<｜fim▁begin｜>a<｜fim▁hole｜>b<｜fim▁end｜>", "｜DSML｜｜DSML｜<think>｜DSML｜</think>"]
INVALID = [b"\xff", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98", b"\xed\xa0\x80",
           b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"ok \xfe\xfe ok", b"\x80\x80\x80 x",
           b"\xe4\xb8\xad\xe6\x96", b"<\xef\xbd\x9cUser\xef\xbd\x9c>\xff", b"  \xff  \n\xc3\n"]

# Pools for the random mixtures.
WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have from or one "
         "had by word but not what all were we when your can said there use an each which she do how their "
         "if will up other about out many then them these so some her would make like him into time has look "
         "two more write go see number no way could people my than first water been call who oil its now find "
         "Hello World DeepSeek tokenizer JSON API HTTP GPU CUDA").split()
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "—", "…", "«", "»", "。", "，", "、", "！", "？",
                                                     "【", "】", "「", "」", "·", "•", "§", "¶", "©", "®", "™",
                                                     "€", "£", "¥", "∑", "√", "∞", "≠", "≤", "→", "⇒", "♥", "★"]
WS = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "   ", " \n", "\u00a0", "\u3000", "\r", "\x0b", "\x0c"]


def _random_cp(rng):
    """A code point from anywhere (not a surrogate), weighted to the BMP."""
    r = rng.random()
    if r < 0.5:
        cp = rng.randrange(0x80, 0x3000)
    elif r < 0.8:
        cp = rng.randrange(0x3000, 0x10000)
    elif r < 0.95:
        cp = rng.randrange(0x10000, 0x30000)
    else:
        cp = rng.randrange(0x30000, 0x110000)
    if 0xD800 <= cp < 0xE000:
        cp = 0xFFFD
    return chr(cp)


def _segment(rng, fixed):
    k = rng.randrange(12)
    if k == 0:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))
    if k == 1:
        return rng.choice(WS) * rng.randrange(1, 6)
    if k == 2:
        return "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 12)))
    if k == 3:
        return "".join(rng.choice(PUNCT) for _ in range(rng.randrange(1, 4)))
    if k == 4:
        return "".join(chr(rng.choice([rng.randrange(0x4E00, 0x9FA6), rng.randrange(0x3040, 0x3100),
                                       rng.randrange(0xAC00, 0xD7A4), rng.randrange(0x9FA6, 0xA000)]))
                       for _ in range(rng.randrange(1, 8)))
    if k == 5:
        return "".join(_random_cp(rng) for _ in range(rng.randrange(1, 5)))
    if k == 6:
        return rng.choice(SPECIAL)
    if k == 7:
        return rng.choice(EMOJI) + rng.choice(MARKS)[:rng.randrange(1, 6)]
    if k == 8:
        return rng.choice(fixed)[:rng.randrange(1, 40)]
    if k == 9:
        return rng.choice(WORDS) + rng.choice("\u0301\u0308\u0327\u200d\ufe0f") + rng.choice(WORDS)
    if k == 10:
        return rng.choice(PUNCT) + rng.choice(WORDS) + rng.choice(["\n", "\r\n", "", " "])
    return "".join(chr(rng.randrange(0x20, 0x7F)) for _ in range(rng.randrange(1, 10)))


def corpus(seed=1, n_random=3000):
    """The fixed texts, n_random seeded mixtures (about 1 in 20 with invalid
    UTF-8 bytes spliced in), then n_random / 10 strings of random bytes or
    of fragments of characters and added tokens."""
    fixed = ENGLISH + CJK + CODE + SPACES + DIGITS + EMOJI + MARKS + SPECIAL
    out = [s.encode() for s in fixed] + list(INVALID)
    out.append(b"".join(out))          # everything at once: a long text
    rng = random.Random(seed)
    for _ in range(n_random):
        b = "".join(_segment(rng, fixed) for _ in range(rng.randrange(1, 12))).encode()
        if rng.random() < 0.05:
            i = rng.randrange(len(b) + 1)
            b = b[:i] + rng.choice(INVALID) + b[i:]
        out.append(b)
    # raw bytes, and fragments of multi-byte characters and added tokens
    frags = [b"\xc3", b"\xa9", b"\xe4\xb8", b"\xad", b"\xf0\x9f", b"\x98\x80", b" ", b"\n", b"\r", b"\t",
             b"<\xef\xbd\x9c", b"User", b"\xef\xbd\x9c>", b"a", b"1", b"!", b"\xff", b"\x80", b"<think>"]
    for i in range(n_random // 10):
        if i % 2:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        else:
            out.append(b"".join(rng.choice(frags) for _ in range(rng.randrange(1, 30))))
    return out


def long_runs(n=1 << 16):
    """Single very long pieces and runs (BPE of long words, whitespace runs,
    long added-token prefixes), about n characters each."""
    return [s.encode() for s in (" " * n, "a" * n, "ab" * (n // 2), "!" * n, "中" * n, "\n " * (n // 2),
                                  "1" * n, "\x01" * n, "<｜" * (n // 2), "😀" * (n // 4), " \t" * (n // 2) + "x",
                                  "\r\n" * (n // 2), "\u3000" * n, "é" * n, "x\u0301" * (n // 2))]


def sweep(stride_far=61):
    """Texts that put every code point of planes 0-3 and 14 (and every
    stride_far-th elsewhere) in contexts where its general category and
    White_Space decide the pre-tokenizer's split."""
    cps = [c for c in range(0x110000)
           if not 0xD800 <= c < 0xE000 and (c < 0x40000 or 0xE0000 <= c < 0xF0000 or c % stride_far == 0)]
    out = []
    for i in range(0, len(cps), 512):
        parts = []
        for c in cps[i:i + 512]:
            ch = chr(c)
            parts.append("a" + ch + "b!" + ch + "1" + ch + ch + " " + ch + "\n" + ch + " x" + ch + "  ")
        out.append("".join(parts).encode())
    return out
