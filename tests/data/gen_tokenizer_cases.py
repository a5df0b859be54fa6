#!/usr/bin/env python3
"""Writes tokenizer_cases.json: GPT-2 ids for many strings, from OpenAI's gpt-2 encoder.py
algorithm (retyped below; it needs the `regex` module) over assets/tokenizer/.

Optionally cross-checks against the npm package gpt-3-encoder (an independent JavaScript
port): pass the path of its node_modules directory, e.g.
    (cd /tmp && npm install gpt-3-encoder@1.1.4)
    python3 tests/data/gen_tokenizer_cases.py /tmp/node_modules
Known, expected disagreements with the JS port: its regex's \\s includes U+FEFF but not U+0085
(Python's is Unicode White_Space; PCRE2 10.42's would add U+180E, hence the explicit set in
src/tokenizer.cpp), and it keys merge ranks by "a,b", which is ambiguous for
symbols containing commas. Cases hitting those are marked "js_differs".
"""
import json
import os
import subprocess
import sys

import regex as re

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "..", "..", "assets", "tokenizer")


def bytes_to_unicode():
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
          list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word):
    return set(zip(word, word[1:]))


class Encoder:
    def __init__(self, encoder, bpe_merges):
        self.encoder = encoder
        self.byte_encoder = bytes_to_unicode()
        self.bpe_ranks = dict(zip(bpe_merges, range(len(bpe_merges))))
        self.pat = re.compile(
            r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token):
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        return " ".join(word)

    def encode(self, text):
        ids = []
        for token in re.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def encode_special(self, text):
        ids = []
        parts = text.split("<|endoftext|>")
        for k, part in enumerate(parts):
            if k:
                ids.append(50256)
            ids.extend(self.encode(part))
        return ids


TEXTS = [
    "Hello world", "The dog", "a  b", "Hello, world! How are you today?",
    "I'm here, you're there, we've done it, she'll go, he'd say, it's John's dog, don't",
    "I'M LOUD, YOU'RE LOUD, DON'T", "'s 't 're 've 'm 'll 'd ''", "rock'n'roll o'clock",
    "12345 678 3.14159 1,000,000 2024-01-01 0x1F 1e-9 ½ ² ٣ ४२",
    "In 1969, 600 million people watched.", "你好，世界！今天天气很好。我们去公园散步吧。",
    "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, आप कैसे हैं?", "Привет, мир! Как дела?",
    "こんにちは世界、カタカナとひらがな。", "안녕하세요 세계", "Γειά σου Κόσμε", "שלום עולם",
    "สวัสดีชาวโลก", "naïve café résumé Über straße", "e\u0301 combining a\u0308\u0304",
    "I love 🍕 and 🐍! 👨‍👩‍👧‍👦 family 🏳️‍🌈 flag 👍🏽", "😀😃😄😁😆😅😂🤣",
    "a\tb\t\tc\t", "line1\nline2\n\n\nline3\r\nline4\n", "a    b", "   leading",
    "trailing   ", "  \n  ", " \t \n x", "\u00a0nbsp\u00a0 \u3000ideographic\u2003em",
    "\u2028line\u2029para", "<|endoftext|>", "Hello<|endoftext|>World <|endoftext|> again",
    "def f(x):\n    return x**2  # square\n\n\tpass\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i]; }", "!!!???...,,,;;;", "a,b,,c ,,, x,",
    "$100.00 @user #tag %20 ^_^ ~/path/to/file.txt", "\"quoted\" 'single' `tick` «guillemets»",
    "https://example.com/a?b=c&d=e#frag", "email: someone@example.org",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", " " * 40, "\n" * 12,
    "The quick brown fox jumps over the lazy dog. " * 3, "ZWJ\u200dZWNJ\u200cx\ufeffBOM",
    "NEL\u0085here", "a \u0085b", "x \ufeffy", "\u0085\u0085 z", "a \u180eb \u180e\u180e c",
    "\x00\x01\x02 controls \x1b[0m \x7f", "Ω≈ç√∫˜µ≤≥÷ åß∂ƒ©˙∆˚¬…æ",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math 𝟙𝟚𝟛", "x" + "\u0301" * 5, "ﬁ ligature ﬂ", "Ⅻ roman ⅷ", "₀₁₂ subscripts",
]
SPECIAL = ["<|endoftext|>", "Hello<|endoftext|>World <|endoftext|> again",
           "<|endoftext|><|endoftext|>x", "a <|endoftext|>\n<|endoftext", "<|endoftext|>"[:-1]]


def main():
    with open(os.path.join(ASSETS, "encoder.json"), encoding="utf-8") as f:
        encoder = json.load(f)
    with open(os.path.join(ASSETS, "vocab.bpe"), encoding="utf-8") as f:
        merges = [tuple(s.split()) for s in f.read().split("\n")[1:-1]]
    enc = Encoder(encoder, merges)
    cases = [{"text": t, "ids": enc.encode(t)} for t in TEXTS]
    cases += [{"text": t, "allow_special": True, "ids": enc.encode_special(t)} for t in SPECIAL]
    if len(sys.argv) > 1:
        script = "const e=require('gpt-3-encoder');const t=JSON.parse(require('fs')" \
                 ".readFileSync(0,'utf8'));console.log(JSON.stringify(t.map(x=>e.encode(x))))"
        out = subprocess.run(["node", "-e", script], input=json.dumps(TEXTS), text=True,
                             capture_output=True, check=True, env={**os.environ,
                                                                  "NODE_PATH": sys.argv[1]})
        for case, js in zip(cases, json.loads(out.stdout)):
            if js != case["ids"]:
                case["js_differs"] = True
                print("JS port differs on", repr(case["text"]), file=sys.stderr)
        print("cross-checked %d cases against gpt-3-encoder" % len(TEXTS), file=sys.stderr)
    with open(os.path.join(HERE, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")


if __name__ == "__main__":
    main()
