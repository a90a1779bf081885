#!/usr/bin/env python3
"""Writes N benchmark links as JSON Lines (the format `shortener import` reads) and their codes.

    gen-links.py N LINKS.jsonl CODES.txt [SAMPLE]

Codes are 7 characters of the service's code alphabet, distinct and in a scrambled order: the
i-th code is a bijection of i over the 56**7 possible codes, so the output is the same on every
run and needs no memory. CODES.txt lists one code per line in the same order; with SAMPLE it
lists only about SAMPLE codes, evenly spaced (a uniform sample for load generators that cannot
hold ten million codes).
"""

import sys

ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 7
SPACE = len(ALPHABET) ** LENGTH
# Odd and not a multiple of 7, hence coprime with 56**7: i -> (i * MULT + OFFSET) % SPACE is a
# bijection.
MULT = 1_000_000_007
OFFSET = 123_456_789


def code(i: int) -> str:
    x = (i * MULT + OFFSET) % SPACE
    chars = []
    for _ in range(LENGTH):
        x, r = divmod(x, len(ALPHABET))
        chars.append(ALPHABET[r])
    return "".join(chars)


def main() -> None:
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    n = int(sys.argv[1])
    step = max(1, n // int(sys.argv[4])) if len(sys.argv) == 5 else 1
    with open(sys.argv[2], "w", buffering=1 << 20) as links, open(
        sys.argv[3], "w", buffering=1 << 20
    ) as codes:
        for i in range(n):
            c = code(i)
            # URLs of realistic, varied length (about 40 to 90 bytes).
            links.write(
                f'{{"code":"{c}","url":"https://www.example{i % 997}.com/articles/{i}/'
                f'{"a" * (i % 37)}?utm_source=bench","created_at":"2024-01-01T00:00:00.000Z",'
                f'"clicks":0}}\n'
            )
            if i % step == 0:
                codes.write(c + "\n")


if __name__ == "__main__":
    main()
