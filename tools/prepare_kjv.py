#!/usr/bin/env python3
"""Builds the training / held-out text for the shipped model from Debian's bible-kjv package.

    apt-get install bible-kjv
    python3 tools/prepare_kjv.py OUT_DIR

Writes OUT_DIR/train.txt and OUT_DIR/heldout.txt: one verse per line (the "Ge1:1" reference
stripped), a blank line between chapters. Whole books are held out (HELDOUT below), so no
held-out verse or chapter is ever seen in training.
"""
import os
import re
import subprocess
import sys

HELDOUT = {"Ruth", "Eccl", "Mark", "Phi", "Jude"}  # Ruth, Ecclesiastes, Mark, Philippians, Jude
REF = re.compile(r"^([0-9]?[A-Za-z]+)(\d+):(\d+) (.*)$")


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    raw = subprocess.run(["bible", "-f", "Genesis 1:1-Revelation 22:21"], check=True,
                         capture_output=True, text=True).stdout
    parts = {"train": [], "heldout": []}
    last = None
    for line in raw.splitlines():
        m = REF.match(line)
        if not m:
            raise SystemExit(f"unexpected line: {line[:60]!r}")
        book, chapter, _, text = m.groups()
        split = "heldout" if book in HELDOUT else "train"
        if last is not None and last != (book, chapter):
            parts[split].append("")
        parts[split].append(text.strip())
        last = (book, chapter)
    for split, lines in parts.items():
        with open(os.path.join(out, f"{split}.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines).strip() + "\n")
        print(f"{split}: {len(lines)} lines, {sum(len(l) + 1 for l in lines)} bytes")


if __name__ == "__main__":
    main()
