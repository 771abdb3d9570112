"""What the dashboard's readability checks look for, shared by the browser test and
the template tests: figures people must not have to count the digits of."""

import re

# A figure of 10,000 or more written without separators...
RAW = re.compile(r"(?<![\d,.])\d{5,}(?![\d,])(?:\.\d+)?")
# ...next to what it counts: "498957 of", "of ~506559", "1000000 / 1000000",
# "30000 rows", "12345 rows/s", "20151%".
AFTER = re.compile(r"\s*(?:rows\b|of\b|/|%)")
BEFORE = re.compile(r"(?:\bof|/)\s*(?:~|about\s+)?$")
TAG = re.compile(r"<[^>]+>")


def raw_figures(text: str) -> list[str]:
    """The unreadable figures in `text` (plain text, or HTML: tags are dropped)."""
    text = TAG.sub(" ", text)
    return [
        m.group()
        for m in RAW.finditer(text)
        if AFTER.match(text, m.end()) or BEFORE.search(text[max(0, m.start() - 12) : m.start()])
    ]
